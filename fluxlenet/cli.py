"""Command line: `python -m fluxlenet sweep|train|list|data ...`.

Exit codes: 0 every run finished (a diverged run is a result), 1 a run failed,
2 bad input (said in one line before any training), 3 Flux asked for but Julia not
ready, 130 stopped by Ctrl-C. `reproduce`: 0 reproduced, 1 not reproduced, 4 inconclusive.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from pathlib import Path

from . import models, optim_spec, plan, sweeps
from .config import ALIASES, DATASETS, USER_NAMES, ConfigError, RunConfig, name_problem, normal_name
from .plan import EXIT_FAILED, EXIT_USAGE, RAY_TIMEOUT_S
from .rundir import run_dir

EXIT_NO_JULIA, EXIT_INTERRUPTED = 3, 130
EXIT_INCONCLUSIVE = 4   # reproduce: too few seeds, runs missing, or the runs are not the published protocol
EPOCHS_AND_STEPS = ("--epochs and --steps both given; choose one: --epochs N trains N whole epochs, "
                    "--steps N stops after N optimiser steps")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line (exit code 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 1,2,3, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected seeds >= 0 like 1,2,3, got {text!r}")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"seed {twice[0]} is given twice in {text!r}; each seed is one run folder")
    return seeds


def folder(text: str) -> str:
    """A folder option: an empty value (an unset shell variable, say) would mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty string")
    return text


# Argument types of the settings given on the command line, beyond their annotated type.
ARG_TYPES = {"data_dir": folder}


def add_setting_options(p: argparse.ArgumentParser, group: str, defaults: bool) -> None:
    """An option for each setting of the table (RunConfig) in `group` ("run" or "train"); with
    `defaults` each option has the setting's default, else None (the sweep file's value stays)."""
    d = RunConfig()
    for f in RunConfig.settings(cli=group):
        m, default = f.metadata, getattr(d, f.name)
        kind = type(False) if isinstance(default, bool) else {"int": int, "float": float}.get(str(f.type).split(" ")[0])
        flag = "--" + USER_NAMES.get(f.name, f.name).replace("_", "-")
        shown = "" if default is None or default is False or default == "" else f" (default {default})"
        common = {"dest": f.name, "default": default if defaults else None, "help": (m["help"] or "") + shown}
        if kind is bool:
            p.add_argument(flag, action="store_const", const=True, **{**common, "default": None})
        elif m["choices"] is not None:
            p.add_argument(flag, choices=list(m["choices"]()) if f.name not in ("model", "optimizer") else None,
                           metavar="NAME" if f.name in ("model", "optimizer") else None, **common)
        else:
            # the run options are checked here; train's (the post's Args) by RunConfig.validate, as in a sweep file
            counts = group == "run" and kind is int and (m["low"] or 0) >= 1
            arg_type = ARG_TYPES.get(f.name) or (positive_int if counts else kind)
            p.add_argument(flag, type=arg_type, metavar="N" if kind is int else flag[2:].upper().replace("-", "_"),
                           **common)


def add_run_options(p: argparse.ArgumentParser, sweep: bool) -> None:
    """Options shared by `sweep`, `train` and `reproduce`: how and on what the runs happen."""
    p.add_argument("--backend", choices=["auto", "torch", "flux", "both"], default="auto",
                   help="auto (default): Flux and PyTorch; sets Julia up on first use where the network is "
                        "reachable (about 1 GB, minutes), else PyTorch alone with a notice. torch: PyTorch alone")
    add_setting_options(p, "run", defaults=False)
    if sweep:
        p.add_argument("--seeds", type=seed_list, default=None, help="repeat every run for each seed, e.g. 1,2,3")
        p.add_argument("--runs-dir", type=folder, default="runs", help="where run folders go (default: runs)")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="backend runs at once, sharing the cores (default 1; --executor local)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (default): spawned processes on this machine, --jobs at a time; ray: each "
                        "backend run a Ray task reserving its --threads as CPUs (pip install 'fluxlenet[ray]')")
    p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="the Ray cluster for --executor ray (default: a Ray instance on this machine)")
    p.add_argument("--ray-timeout", type=positive_float, default=None, metavar="S",
                   help=f"with --ray-address: seconds the cluster has to answer before the command gives up "
                        f"(default {RAY_TIMEOUT_S:g})")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m fluxlenet",
        description="Reproduce 'How my LeNet reaches 99% on MNIST' (Flux.jl, 2021) in Flux.jl and PyTorch, "
                    "epoch by epoch.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sweep", help="run a sweep of the post (baseline, batchsize, l2, optimizer, ...) or a TOML file",
                       description="Run every run of a sweep with the chosen backends. A rerun skips finished "
                                   "runs and resumes unfinished ones.")
    p.add_argument("sweep", metavar="NAME|FILE", nargs="?",
                   help=f"built-in: {', '.join(sweeps.builtin_names())}; or a .toml path (or --grid instead)")
    p.add_argument("--grid", nargs="+", metavar="KEY=V1,V2", default=None,
                   help="a sweep declared here: every combination of the values (e.g. --grid eta=1e-3,3e-4 "
                        "batchsize=32,128), over --base or the defaults; runs are named after their values and "
                        "the sweep file is written into the sweep folder (rerun it, report it, compare it)")
    p.add_argument("--base", default=None, metavar="NAME|FILE", help="with --grid: the sweep whose runs the grid spans")
    p.add_argument("--name", default=None,
                   help="with --grid: the sweep's name, one folder name under --runs-dir (default: grid)")
    p.add_argument("--max-runs", type=positive_int, default=None, metavar="N",
                   help=f"with --grid: run a grid of more than {sweeps.GRID_MAX_RUNS:,} runs (up to N)")
    add_run_options(p, sweep=True)

    p = sub.add_parser("train", help="one run with the post's Args as flags",
                       description="One run of the post's loop, with the post's Args (conv_mnist.jl) as flags.")
    add_setting_options(p, "train", defaults=True)
    p.add_argument("--savepath", type=folder, default="runs/train",
                   help="the folder of train's runs, laid out as a sweep's: <savepath>/<name>-seed<N>/<backend>/, "
                        "the run named after the folder (default runs/train)")
    add_run_options(p, sweep=False)

    sub.add_parser("list", help="list sweeps, models and optimisers")

    p = sub.add_parser("data", help="download or check datasets")
    p.add_argument("action", choices=["fetch", "verify"])
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--data-dir", type=folder, default=None)

    add_parity_parsers(sub)
    add_reproduce_parser(sub)

    sub.add_parser("setup-julia", help="download and precompile Julia and Flux for the Flux backend",
                   description="Resolve and precompile the Julia side (Julia 1.10, Flux, Optimisers, BSON, "
                               "ProgressMeter) through juliapkg; says what it downloads first. Minutes the "
                               "first time; needs the network.")
    sub.add_parser("doctor", help="versions of Python, torch, Julia and Flux, or why Julia is not available")

    p = sub.add_parser("ray-node", help="start a Ray node here for --executor ray (Flux runs where Julia is set up)",
                       description="Start a Ray node on this machine with `ray start`: a head node, or a worker "
                                   "joining --address. Where Julia is set up (python -m fluxlenet setup-julia) "
                                   "the node declares the resource that Flux runs ask for; elsewhere it takes "
                                   "PyTorch runs only. Run folders and data must be on storage every node sees.")
    p.add_argument("--address", default=None, metavar="HOST:PORT", help="the head node to join (default: start a head)")
    p.add_argument("--num-cpus", type=positive_int, default=None, help="CPUs this node offers (default: all)")
    return parser


def add_parity_parsers(sub) -> None:
    """`parity` and `report`: compare the runs of a sweep (Flux, PyTorch, published figures)."""
    tolerance_help = ("override tolerances of the policy, e.g. lockstep_acc_max=1,native_acc=0.5 "
                      "(the keys are listed in the output)")
    p = sub.add_parser("parity", help="compare Flux, PyTorch and the published figures epoch by epoch; "
                                      "exit 1 when a verdict fails",
                       description="Align a sweep's runs by run, seed and epoch, compare Flux with PyTorch and "
                                   "each with the published figures, judge them with the tolerance policy "
                                   "(printed), and exit 1 when a verdict fails. Forms: `parity SWEEP` "
                                   "(runs under --runs-dir); `parity SWEEP --against OTHER_RUNS_DIR` (each "
                                   "backend with itself in another runs folder: two torch runs with the same "
                                   "seed are held to be identical); `parity RUN_FOLDER --against OTHER_RUN_FOLDER` "
                                   "(two <run>/<backend>/ folders).")
    p.add_argument("sweep", metavar="SWEEP", help="a sweep name or .toml file (its runs under --runs-dir), or a "
                                                  "folder: a runs folder, a sweep folder, a run folder (such as "
                                                  "a `train --savepath` folder)")
    p.add_argument("--runs-dir", type=folder, default="runs", help="where the sweep's run folders are (default: runs)")
    p.add_argument("--against", metavar="DIR", default=None,
                   help="another runs folder holding the same sweep (or, for a run folder, another run folder)")
    p.add_argument("--tolerance", metavar="KEY=VALUE,...", default=None, help=tolerance_help)
    p.add_argument("--policy", metavar="FILE.toml", default=None, help="tolerances from a TOML file of key = value")
    p.add_argument("--steps", nargs="?", type=positive_int, const=0, default=None, metavar="N",
                   help="also print the step traces (trace.csv, from --trace-steps) side by side: the first N "
                        "steps, all when N is left out")

    p = sub.add_parser("report", help="write report.md, report.html and PNG plots into the sweep's run folder",
                       description="Write runs/<sweep>/report.md and a self-contained report.html (plots "
                                   "embedded) with the PNG plots beside them: Flux, PyTorch and the published "
                                   "figures side by side, the differences, the verdicts, the environment.")
    p.add_argument("sweep", metavar="SWEEP", help="a sweep name or .toml file (its runs under --runs-dir), or a "
                                                  "folder: a runs folder, a sweep folder, a run folder")
    p.add_argument("--runs-dir", type=folder, default="runs", help="where the sweep's run folders are (default: runs)")
    p.add_argument("--tolerance", metavar="KEY=VALUE,...", default=None, help=tolerance_help)
    p.add_argument("--policy", metavar="FILE.toml", default=None, help="tolerances from a TOML file of key = value")


def add_reproduce_parser(sub) -> None:
    from .targets import TARGETS
    p = sub.add_parser("reproduce", help="run a write-up's experiments with seeds; a verdict per published figure",
                       description="Run every sweep of a write-up with several seeds (default --seeds 0,1,2,3,4; "
                                   "both frameworks where Julia is set up), then write one report into "
                                   "<runs-dir>/reproduce-TARGET/: the write-up's tables (Flux | PyTorch | published, with the seed spread), its "
                                   "charts, a verdict for every published figure (reproduced / not reproduced / "
                                   "inconclusive, by the rule printed) and for its conclusions, and where a gap "
                                   "lies. Resumable like any sweep. Exit code: 0 reproduced, 1 not reproduced, "
                                   "4 inconclusive. Targets: " + "; ".join(f"{t.name}: {t.title}"
                                                                          for t in TARGETS.values()) + ".")
    p.add_argument("target", choices=list(TARGETS), help="post (its 4 sweeps) or variants (the LeNet variants report)")
    p.add_argument("--sweeps", metavar="NAME,...", default=None,
                   help="only these sweeps of the target (the report says which were left out)")
    p.add_argument("--published", metavar="FILE.csv", default=None,
                   help="judge against these figures instead of the shipped ones (columns sweep,value,epoch and any "
                        "of train_loss,train_acc,test_loss,test_acc,epoch_seconds, as fluxlenet/reference/"
                        "blog-2021-epoch-logs.csv); they are taken to apply to the runs as they ran")
    p.add_argument("--report-only", action="store_true", help="run nothing: the report of the runs already there")
    p.add_argument("--tolerance", metavar="KEY=VALUE,...", default=None,
                   help="override the policy, e.g. level=0.999,min_seeds=5 (the keys are listed in the report)")
    p.add_argument("--policy", metavar="FILE.toml", default=None, help="tolerances from a TOML file of key = value")
    add_run_options(p, sweep=True)


# -- sweep and train --------------------------------------------------------------------

def overrides(args) -> dict:
    """Command-line settings that replace the sweep file's values (those given)."""
    names = [f.name for f in RunConfig.settings(cli="run")]
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def run_changes(args) -> dict:
    """The settings the command line changes in every run: those given, and whole epochs for --epochs
    (even where a sweep file sets a step budget)."""
    changes = overrides(args)
    if args.epochs is not None:
        if args.steps is not None:
            raise ConfigError(EPOCHS_AND_STEPS)
        changes["steps"] = None
    return changes


def executor_options(args) -> dict:
    """How the runs are run (plan.execute's keywords), from the run options."""
    return {"executor": args.executor, "jobs": args.jobs or 1, "ray_address": args.ray_address,
            "ray_timeout": args.ray_timeout}


def check_run_options(args) -> None:
    """An option that would change nothing where it is given is refused in one line, not ignored."""
    if args.executor != "ray":
        for flag, value in (("--ray-address", args.ray_address), ("--ray-timeout", args.ray_timeout)):
            if value is not None:
                raise ConfigError(f"{flag} goes with --executor ray; without it the runs are processes of this "
                                  f"machine")
        return
    if args.jobs is not None:
        raise ConfigError("--jobs goes with --executor local; under Ray the cluster runs as many at once as its "
                          "CPUs take (--threads each)")
    if args.ray_timeout is not None and args.ray_address is None:
        raise ConfigError("--ray-timeout goes with --ray-address (without it a Ray instance of this machine is "
                          "started, not reached)")


def grid_sweep(args) -> tuple[sweeps.Sweep, str, list[str]]:
    """The sweep of --grid (validated like a sweep file), the text of its sweep file (to be written as
    runs/NAME/NAME.toml once the inputs are checked) and notes for the user."""
    import tomli_w
    if args.sweep:
        raise ConfigError(f"give a sweep ({args.sweep}) or --grid, not both")
    name = "grid" if args.name is None else args.name
    problem = name_problem(name)
    if problem:
        raise ConfigError(f"--name {name!r} {problem}")
    # an option replaces the grid's values (in every run alike): an axis it sets would train identical runs
    given = {name: "--" + USER_NAMES.get(name, name).replace("_", "-") for name in overrides(args)}
    given.update({"seed": "--seeds"} if args.seeds else {})
    given.update({"steps": "--epochs"} if args.epochs is not None else {})  # whole epochs: no step budget
    for key in sweeps.grid_axes(args.grid):
        flag = given.get(ALIASES.get(key, key))
        if flag:
            raise ConfigError(f"--grid {key}=... and {flag} both set {key} (the option would give every run the "
                              f"same value); use one")
    base = sweeps.load(args.base) if args.base else None
    doc, notes = sweeps.grid_document(args.grid, base, args.max_runs or sweeps.GRID_MAX_RUNS)
    path = Path(args.runs_dir) / name / f"{name}.toml"
    sweep = sweeps.from_document(doc, path, where="--grid: ")
    text = tomli_w.dumps(doc)
    check_grid_file(path, text)
    return sweep, text, [f"{note} (their settings: {path})" for note in notes]


def check_grid_file(path: Path, text: str) -> None:
    """An existing different grid of that name is kept, not replaced (its runs are in that folder)."""
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise ConfigError(f"{path.parent} holds another grid ({path}); give this one another --name, "
                          f"or rerun that one with `python -m fluxlenet sweep {path}`")


def write_grid_file(path: Path, text: str) -> None:
    """The grid's sweep file beside its runs."""
    from .fsutil import atomic_write_text
    check_grid_file(path, text)
    atomic_write_text(path, text)


def cmd_sweep(args, echo) -> int:
    check_run_options(args)
    notes, prepare = [], None
    if args.grid:
        sweep, grid_text, notes = grid_sweep(args)
        prepare = functools.partial(write_grid_file, sweep.path, grid_text)  # once the inputs are sound
    elif args.base or args.name is not None or args.max_runs is not None:
        flag, what = next((f, w) for f, v, w in (("--base", args.base, "the sweep the grid spans"),
                                                 ("--name", args.name, "the grid's name; a sweep file's name is "
                                                                       "its file name"),
                                                 ("--max-runs", args.max_runs, "the most runs a grid may span"))
                          if v is not None)
        raise ConfigError(f"{flag} goes with --grid ({what})")
    elif not args.sweep:
        raise ConfigError("which sweep? give a name or a .toml file (see `python -m fluxlenet list`), or --grid KEY=V1,V2")
    else:
        sweep = sweeps.load(args.sweep)
    configs = plan.sweep_configs(sweep, run_changes(args), args.seeds, where="--grid: " if args.grid else "")
    backends = plan.choose_backends(args.backend, notes, configs, echo)
    notes.append(f"Sweep {sweep.name}: {len(sweep.runs)} runs x {len(configs) // len(sweep.runs)} seeds, "
                 f"backends: {', '.join(backends)}")
    runs_dir = Path(args.runs_dir)
    return plan.execute(configs, backends, lambda c: run_dir(runs_dir / c.sweep, c), [runs_dir / sweep.name], echo,
                        notes, **executor_options(args), prepare=prepare, sweeps_of={runs_dir / sweep.name: sweep})


def cmd_train(args, echo) -> int:
    check_run_options(args)
    if args.epochs is not None and args.steps is not None:
        raise ConfigError(EPOCHS_AND_STEPS)
    savepath = Path(args.savepath)
    name = normal_name(savepath.name)  # the run is named after its folder ("café" in NFC: one name, one folder)
    if name != savepath.name:
        savepath = savepath.parent / name
    if name in ("", ".", ".."):
        raise ConfigError(f"--savepath {args.savepath} names no folder of its own; give a new folder such as "
                          f"runs/train (the run is named after it)")
    if name_problem(name):
        raise ConfigError(f"--savepath {args.savepath}: the run is named after its last folder, and {name!r} "
                          f"{name_problem(name)}")
    values = {f.name: getattr(args, f.name) for f in RunConfig.settings(cli="train")}
    cfg = RunConfig(sweep="train", run=name, **values).replace(**overrides(args)).validate()
    plan.check_train_folder(savepath)
    notes = []
    backends = plan.choose_backends(args.backend, notes, [cfg], echo)
    # --savepath is the sweep folder of one run: <savepath>/<name>-seed<N>/<backend>/, as a sweep's runs
    return plan.execute([cfg], backends, lambda c: run_dir(savepath, c), [savepath], echo, notes,
                        **executor_options(args))


# -- list and data ----------------------------------------------------------------------

def cmd_list(args, echo) -> int:
    echo("Sweeps (python -m fluxlenet sweep NAME):")
    for name in sweeps.builtin_names():
        sweep = sweeps.load(name)
        runs = f"{len(sweep.runs)} run{'s' if len(sweep.runs) != 1 else ''}"
        echo(f"  {name:<16} {runs:<7} {sweep.description.splitlines()[0] if sweep.description else ''}")
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


# -- parity and report ------------------------------------------------------------------

def tolerance_policy(args):
    from parity import Policy, PolicyError
    policy = Policy()
    try:
        if args.policy:
            policy = policy.with_file(args.policy)
        if args.tolerance:
            policy = policy.with_overrides(args.tolerance)
    except PolicyError as e:
        raise ConfigError(str(e)) from None
    return policy


def cmd_parity(args, echo) -> int:
    from parity.table import result_lines, step_lines

    from .runs import compare_folders, compare_sweep
    policy = tolerance_policy(args)
    from .runlog import RunFolder
    if RunFolder(args.sweep).config_file.exists() and args.against:
        result = compare_folders(args.sweep, args.against, policy)
    else:
        result = compare_sweep(args.sweep, args.runs_dir, policy, against=args.against)
    for line in result_lines(result):
        echo(line)
    if args.steps is not None:
        for line in step_lines(result, args.steps or None):
            echo(line)
    return EXIT_FAILED if result.status == "fail" else 0


def cmd_report(args, echo) -> int:
    from .report import write_report
    written = write_report(args.sweep, args.runs_dir, tolerance_policy(args))
    result = written["result"]
    for note in result.notes:
        echo(f"NOTE: {note}")
    echo(f"Parity verdict: {result.status}")
    echo(f"Report: {written['markdown']}")
    echo(f"        {written['html']} (self-contained, opens from disk)")
    return 0


def cmd_reproduce(args, echo) -> int:
    from . import reproduce, reproduce_report
    from .targets import TARGETS
    check_run_options(args)
    target = TARGETS[args.target]
    names = target.select(args.sweeps)
    policy = tolerance_policy(args)
    if args.published:
        reproduce.load_published_file(args.published)  # a bad file is said before any training
    runs_dir = Path(args.runs_dir)
    if not args.report_only:
        seeds = args.seeds or list(target.seeds)
        loaded = {name: sweeps.load(name) for name in names}
        changes = run_changes(args)
        configs = [cfg for name in names for cfg in plan.sweep_configs(loaded[name], changes, seeds)]
        # every run of a seed before the next seed, the write-up's own seed (its replay) first: early figures
        configs.sort(key=lambda c: (c.seed != target.replay_seed, c.seed))
        notes = []
        backends = plan.choose_backends(args.backend, notes, configs, echo)
        variants = plan.replay_variant_configs(target, configs)
        notes.append(f"Reproduce {target.name}: sweeps {', '.join(names)}, seeds {','.join(map(str, seeds))}, "
                     f"backends: {', '.join(backends)}"
                     + (f"; then {len(variants)} same-seed runs in other arithmetic to size the replay's band "
                        f"({', '.join(sorted({c.sweep for c in variants}))})" if variants else ""))
        variant_backends = ["torch"] if "torch" in backends else backends
        plan.execute(configs, backends, lambda c: run_dir(runs_dir / c.sweep, c),
                     [runs_dir / n for n in names + sorted({c.sweep for c in variants})], echo, notes,
                     **executor_options(args), extra=[(c, variant_backends) for c in variants],
                     sweeps_of={runs_dir / n: loaded[n] for n in names})
    written = reproduce_report.write_report(target, runs_dir, policy, names, args.published)
    echo("")
    for line in written.summary():
        echo(line)
    return {reproduce.REPRODUCED: 0, reproduce.NOT_REPRODUCED: EXIT_FAILED}.get(written.exit_verdict,
                                                                                EXIT_INCONCLUSIVE)


# -- the Julia side ---------------------------------------------------------------------

def cmd_setup_julia(args, echo) -> int:
    from .julia_env import JuliaSetupError, setup_julia
    try:
        setup_julia(echo=echo)
    except JuliaSetupError as e:
        print(f"fluxlenet: error: {e}", file=sys.stderr)
        return EXIT_NO_JULIA
    return 0


def cmd_doctor(args, echo) -> int:
    from .julia_env import doctor_lines
    for line in doctor_lines():
        echo(line)
    return 0


def cmd_ray_node(args, echo) -> int:
    import shutil
    from .julia_env import julia_status
    from .ray_executor import JULIA_RESOURCE, import_ray
    import_ray()
    ready, reason = julia_status()
    cmd = [shutil.which("ray") or "ray", "start", "--disable-usage-stats"]
    cmd += ["--address", args.address] if args.address else ["--head"]
    if args.num_cpus:
        cmd += ["--num-cpus", str(args.num_cpus)]
    if ready:
        cmd += ["--resources", json.dumps({JULIA_RESOURCE: 1000})]
    else:
        echo(f"NOTE: Julia is not set up here ({reason}); this node takes PyTorch runs only")
    echo("Running: " + " ".join(cmd))
    return subprocess.run(cmd).returncode


COMMANDS = {"sweep": cmd_sweep, "train": cmd_train, "list": cmd_list, "data": cmd_data,
            "parity": cmd_parity, "report": cmd_report, "reproduce": cmd_reproduce, "setup-julia": cmd_setup_julia,
            "doctor": cmd_doctor, "ray-node": cmd_ray_node}


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
    except plan.NoJulia as e:
        print(f"fluxlenet: error: Flux was requested but cannot run: {e}", file=sys.stderr)
        return EXIT_NO_JULIA
    except plan.Interrupted as e:  # while runs went
        print(f"\nfluxlenet: stopped. {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # no run was going
        print("\nfluxlenet: stopped.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # a disk that fills up or goes away under the sweep itself
        where = f": {e.filename}" if e.filename else ""
        print(f"fluxlenet: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_FAILED
