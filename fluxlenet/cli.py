"""Command line: `python -m fluxlenet sweep|train|list|data ...`.

Exit codes: 0 every run finished (a diverged run is a result), 1 a run failed,
2 bad input (said in one line before any training), 3 Flux asked for but Julia not
ready, 130 stopped by Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import models, optim_spec, sweeps
from .config import DATASETS, DEVICES, MODES, PRECISIONS, ConfigError, RunConfig

EXIT_FAILED, EXIT_USAGE, EXIT_NO_JULIA, EXIT_INTERRUPTED = 1, 2, 3, 130


class NoJulia(Exception):
    """Flux was asked for explicitly and the Julia side is not ready."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 1,2,3, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected seeds >= 0 like 1,2,3, got {text!r}")
    return seeds


def add_run_options(p: argparse.ArgumentParser, sweep: bool) -> None:
    """Options shared by `sweep` and `train`: how and on what the runs happen."""
    p.add_argument("--backend", choices=["auto", "torch", "flux", "both"], default="auto",
                   help="auto (default): Flux and PyTorch when Julia is set up, else PyTorch alone with a notice")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="lockstep (default): both frameworks start from the same weights and see the same "
                        "batches; native: each uses its own RNG")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="float32 (default) or float64")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="default mnist; mnist-t10k-split trains on the first 8,000 MNIST test images "
                        "and tests on the last 2,000")
    p.add_argument("--data-dir", default=None,
                   help="folder with the dataset files (default: $FLUXLENET_DATA, else a user cache folder; "
                        "missing files are downloaded)")
    p.add_argument("--train-size", type=positive_int, default=None, help="use the first N training samples")
    p.add_argument("--test-size", type=positive_int, default=None, help="use the first N test samples")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="stop after N optimiser steps instead of whole epochs")
    p.add_argument("--device", choices=DEVICES, default=None, help="cpu (default) or cuda")
    p.add_argument("--trace-steps", type=int, default=None, metavar="K",
                   help="record the loss at each of the first K optimiser steps (trace.csv)")
    if sweep:
        p.add_argument("--epochs", type=positive_int, default=None, help="override the sweep's epochs")
        p.add_argument("--seeds", type=seed_list, default=None, help="repeat every run for each seed, e.g. 1,2,3")
        p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    p.add_argument("--jobs", type=positive_int, default=1, help="backend runs at once, sharing the cores")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fluxlenet",
        description="Reproduce 'How my LeNet reaches 99% on MNIST' (Flux.jl, 2021) in Flux.jl and PyTorch, "
                    "epoch by epoch.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sweep", help="run a sweep of the post (baseline, batchsize, l2, optimizer, ...) or a TOML file",
                       description="Run every run of a sweep with the chosen backends. A rerun skips finished "
                                   "runs and resumes unfinished ones.")
    p.add_argument("sweep", metavar="NAME|FILE", help=f"built-in: {', '.join(sweeps.builtin_names())}; or a .toml path")
    add_run_options(p, sweep=True)

    d = RunConfig()
    p = sub.add_parser("train", help="one run with the post's Args as flags",
                       description="One run of the post's loop, with the post's Args (conv_mnist.jl) as flags.")
    p.add_argument("--eta", type=float, default=d.eta, help=f"learning rate (default {d.eta})")
    p.add_argument("--lambda", dest="lambda_", type=float, default=d.lambda_,
                   help="L2 regularisation: Optimiser(WeightDecay(lambda), opt) when > 0 (default 0)")
    p.add_argument("--batchsize", type=int, default=d.batchsize, help=f"default {d.batchsize}")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    p.add_argument("--infotime", type=int, default=d.infotime, help="report every INFOTIME epochs (default 1)")
    p.add_argument("--checktime", type=int, default=d.checktime,
                   help="checkpoint every CHECKTIME epochs, 0 for none (default 5)")
    p.add_argument("--savepath", default="runs/train", help="run folder (default runs/train)")
    p.add_argument("--optimizer", default=d.optimizer, help=f"default {d.optimizer}; see `list`")
    p.add_argument("--model", default=d.model, help=f"default {d.model}; see `list`")
    add_run_options(p, sweep=False)

    sub.add_parser("list", help="list sweeps, models and optimisers")

    p = sub.add_parser("data", help="download or check datasets")
    p.add_argument("action", choices=["fetch", "verify"])
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--data-dir", default=None)
    return parser


# -- sweep and train --------------------------------------------------------------------

def overrides(args) -> dict:
    """CLI options that replace the sweep file's values."""
    names = {"mode": "mode", "precision": "precision", "dataset": "dataset", "data_dir": "data_dir",
             "train_size": "train_size", "test_size": "test_size", "steps": "steps", "device": "device",
             "trace_steps": "trace_steps", "epochs": "epochs"}
    return {field: getattr(args, opt) for opt, field in names.items() if getattr(args, opt, None) is not None}


def choose_backends(requested: str, echo) -> list[str]:
    if requested == "torch":
        return ["torch"]
    from .julia_env import julia_status
    ready, reason = julia_status()
    if requested in ("flux", "both") and not ready:
        raise NoJulia(reason)
    if requested == "flux":
        return ["flux"]
    if requested == "both" or ready:
        return ["torch", "flux"]
    echo(f"NOTE: Flux was not run: {reason}")
    echo("NOTE: running PyTorch alone; its results are not a Flux comparison.")
    return ["torch"]


def check_inputs(configs: list[RunConfig], echo) -> None:
    """Everything that can be said before training: data present and sound, models fit, device there."""
    from . import data
    seen = set()
    for cfg in configs:
        key = (cfg.dataset, cfg.data_dir, cfg.train_size, cfg.test_size, cfg.valid_size, cfg.seed)
        if key in seen:
            continue
        seen.add(key)
        dataset = data.load_dataset(cfg.dataset, cfg.data_dir, train_size=cfg.train_size, test_size=cfg.test_size,
                                    valid_size=cfg.valid_size, seed=cfg.seed, download=True, progress=True)
        for model in {c.model for c in configs if c.dataset == cfg.dataset}:
            try:
                models.check_model(model, dataset.input_shape, dataset.nclasses)
            except models.SpecError as e:
                raise ConfigError(str(e)) from None
    if any(cfg.device == "cuda" for cfg in configs):
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available to torch here; use --device cpu")


def execute(configs: list[RunConfig], backends: list[str], folder_of, lock_dir: Path, jobs: int, echo) -> int:
    from . import runner
    tasks = []
    for cfg in configs:
        for backend in backends:
            c = cfg.replace(backend=backend)
            tasks.append(runner.Task(c, folder_of(c)))
    check_inputs(configs, echo)
    with runner.SweepLock(lock_dir):
        todo = []
        for task in tasks:
            state = runner.check_existing(task)
            if state == "done":
                echo(f"--- {task.label}: already done in {task.run_dir}, skipped")
            else:
                todo.append(task)
        results = runner.run_tasks(todo, jobs=jobs, echo=echo)
    print_summary(tasks, echo)
    return EXIT_FAILED if results.get("failed") or results.get("interrupted") else 0


def print_summary(tasks, echo) -> None:
    from .runlog import read_log_rows, read_status
    echo("")
    echo(f"{'run':<14} {'seed':>4} {'backend':<7} {'status':<11} {'epoch':>5} {'train acc':>9} "
         f"{'test acc':>8} {'test loss':>9} {'s/epoch':>7}  folder")
    for task in tasks:
        status = read_status(task.run_dir)["status"]
        rows = read_log_rows(task.run_dir)
        last = rows[-1] if rows else {}
        secs = [r["seconds"] for r in rows if r.get("seconds") is not None]

        def fmt(value, spec):
            return format(value, spec) if value is not None else "-"
        echo(f"{task.cfg.run:<14} {task.cfg.seed:>4} {task.cfg.backend:<7} {status:<11} "
             f"{fmt(last.get('epoch'), 'd'):>5} {fmt(last.get('train_acc'), '.2f'):>9} "
             f"{fmt(last.get('test_acc'), '.2f'):>8} {fmt(last.get('test_loss'), '.4f'):>9} "
             f"{fmt(sum(secs) / len(secs) if secs else None, '.1f'):>7}  {task.run_dir}")


def cmd_sweep(args, echo) -> int:
    from . import runner
    sweep = sweeps.load(args.sweep)
    changes = overrides(args)
    configs = []
    for cfg in sweep.runs:
        cfg = cfg.replace(**changes)
        for seed in args.seeds or [cfg.seed]:
            configs.append(cfg.replace(seed=seed).validate())
    backends = choose_backends(args.backend, echo)
    echo(f"Sweep {sweep.name}: {len(sweep.runs)} runs x {len(configs) // len(sweep.runs)} seeds, "
         f"backends: {', '.join(backends)}")
    runs_dir = Path(args.runs_dir)
    return execute(configs, backends, lambda c: runner.run_dir(runs_dir, c), runs_dir / sweep.name,
                   args.jobs, echo)


def cmd_train(args, echo) -> int:
    values = {k: getattr(args, k) for k in ("eta", "lambda_", "batchsize", "epochs", "seed", "infotime",
                                            "checktime", "optimizer", "model")}
    cfg = RunConfig(sweep="train", run=Path(args.savepath).name, **values).replace(**overrides(args)).validate()
    backends = choose_backends(args.backend, echo)
    savepath = Path(args.savepath)
    return execute([cfg], backends, lambda c: savepath / c.backend, savepath, args.jobs, echo)


# -- list and data ----------------------------------------------------------------------

def cmd_list(args, echo) -> int:
    echo("Sweeps (python -m fluxlenet sweep NAME):")
    for name in sweeps.builtin_names():
        sweep = sweeps.load(name)
        echo(f"  {name:<16} {len(sweep.runs)} runs  {sweep.description.splitlines()[0] if sweep.description else ''}")
    echo("Models (--model):")
    for name, spec in models.MODELS.items():
        echo(f"  {name:<16} {models.parameter_count(spec['layers']):>9,} params  {spec['description']}")
    echo("Optimisers (--optimizer):")
    for name, meaning in optim_spec.OPTIMISERS.items():
        echo(f"  {name:<18} {meaning}")
    echo(f"Datasets (--dataset): {', '.join(DATASETS)}")
    return 0


def cmd_data(args, echo) -> int:
    from . import data
    if args.action == "fetch":
        folder = data.fetch(args.dataset, args.data_dir, progress=True)
        echo(f"{args.dataset}: all files present and sound in {folder}")
        return 0
    bad = 0
    for path, state in data.verify(args.dataset, args.data_dir):
        echo(f"{state:<8} {path}" if state == "ok" else f"BAD      {path}: {state}")
        bad += state != "ok"
    return EXIT_USAGE if bad else 0


COMMANDS = {"sweep": cmd_sweep, "train": cmd_train, "list": cmd_list, "data": cmd_data}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def echo(line=""):
        print(line, flush=True)

    from .data import DataError
    try:
        return COMMANDS[args.command](args, echo)
    except (ConfigError, DataError) as e:
        print(f"fluxlenet: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except NoJulia as e:
        print(f"fluxlenet: error: Flux was requested but cannot run: {e}", file=sys.stderr)
        return EXIT_NO_JULIA
    except KeyboardInterrupt:
        print("\nfluxlenet: stopped. Finished epochs and checkpoints are saved; "
              "run the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
