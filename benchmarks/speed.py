"""Speed of fluxlenet's PyTorch backend against a minimal hand-written PyTorch loop (and of Flux).

    python benchmarks/speed.py                      # full Fashion-MNIST, batch 32 and 128, 3 repeats
    python benchmarks/speed.py --repeats 5 --whole-runs --data-dir ../shared/data

On the same data (the full Fashion-MNIST unless --train-size), for each batch size:

- "minimal": a loop as anyone would write it, independent of fluxlenet: the post's LeNet-5 as an
  nn.Sequential, torch.optim.Adam(3e-4) (foreach), whole tensors in memory, one randperm per epoch
  and each batch gathered by indexing with its slice of it, zero_grad / backward / step; evaluation
  under torch.no_grad() in batches of 1000 over the whole train and test sets (the post's report);
- "fluxlenet": the torch worker's own entry point (`fluxlenet.worker.worker_main`, which
  `python -m fluxlenet train` spawns) for a one-epoch run: the training seconds are those the
  backend writes to log.csv, the evaluation seconds its `evaluate` calls (train + test set).

Every measurement runs in a fresh process (the backend sets process-wide things: threads, glibc
malloc), the two loops alternating (A B, B A, A B, ...) so that a change of load hits both. Each
figure is the median over the repeats (the minimum in brackets); a ratio is fluxlenet / minimal of
the medians. `--flux auto` also times the Flux backend (Julia) in a separate process when Julia is
set up: its first epoch (compilation included), a steady epoch, and handing the dataset to Julia.

Timings on a shared machine are noisy: the load average is printed before and after; rerun when
it was high. OpenMP threads that outnumber the free cores slow torch down by up to 10x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def default_data_dir() -> str | None:
    for candidate in (REPO / "shared" / "data", REPO.parent / "shared" / "data"):
        if (candidate / "fashion-mnist").is_dir():
            return str(candidate)
    return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


# ---------------------------------------------------------------- the minimal loop


def minimal_model():
    import torch.nn as nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def minimal_epoch(model, opt, x, y, batchsize, generator) -> float:
    import torch
    import torch.nn.functional as F
    started = time.perf_counter()
    perm = torch.randperm(len(y), generator=generator)
    for i in range(0, len(y), batchsize):
        idx = perm[i:i + batchsize]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - started


def minimal_evaluate(model, sets, batchsize=1000) -> float:
    import torch
    import torch.nn.functional as F
    started = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for x, y in sets:
            loss, correct = 0.0, 0
            for i in range(0, len(y), batchsize):
                out = model(x[i:i + batchsize])
                loss += F.cross_entropy(out, y[i:i + batchsize], reduction="sum").item()
                correct += (out.argmax(1) == y[i:i + batchsize]).sum().item()
    model.train()
    return time.perf_counter() - started


# ---------------------------------------------------------------- fluxlenet's backend


class TimedEvaluate:
    """Wraps torch_backend.evaluate: the seconds of each call."""

    def __init__(self, backend):
        self.backend, self.inner, self.calls = backend, backend.evaluate, []

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        out = self.inner(*args, **kwargs)
        self.calls.append(time.perf_counter() - started)
        return out

    def __enter__(self):
        self.backend.evaluate = self
        return self

    def __exit__(self, *exc):
        self.backend.evaluate = self.inner


# ---------------------------------------------------------------- one measurement = one process
# The backend tunes process-wide settings (threads, glibc malloc): each measurement runs in a
# fresh process of its own, so that the minimal loop never inherits them.


def child(args) -> dict:
    import torch

    from fluxlenet.config import RunConfig
    from fluxlenet.data import load_dataset
    batchsize = args.batch_list[0]
    cfg = RunConfig(run="bench", dataset=args.dataset, data_dir=args.data_dir, train_size=args.train_size,
                    batchsize=batchsize, epochs=1, checktime=0, threads=args.threads, seed=args.seed,
                    flush_subnormals=args.flush_subnormals).validate()
    if args.child == "fluxlenet":
        # the worker's own entry point (as `python -m fluxlenet train` runs it), in this process
        from fluxlenet import worker
        from fluxlenet.backends import torch_backend
        from fluxlenet.runlog import RunFolder
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            with TimedEvaluate(torch_backend) as timed:
                worker.worker_main("torch", cfg.to_dict(), tmp)
            wall = time.perf_counter() - started
            status = RunFolder(tmp).read_status()["status"]
            assert status == "finished", status
            train_s = [r["seconds"] for r in RunFolder(tmp).read_log_rows() if r["seconds"] is not None]
        evals = [sum(timed.calls[i:i + 2]) for i in range(0, len(timed.calls), 2)]  # train + test set
        return {"train": train_s, "eval": evals, "wall": wall}
    torch.set_flush_denormal(args.flush_subnormals)
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, args.data_dir, train_size=args.train_size, download=False, progress=False)
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    sets = [(x, y), (torch.from_numpy(data.test_x), torch.from_numpy(data.test_y))]
    torch.manual_seed(args.seed)
    model = minimal_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    generator = torch.Generator().manual_seed(args.seed)
    evals = [minimal_evaluate(model, sets)]
    train_s = [minimal_epoch(model, opt, x, y, batchsize, generator)]
    evals.append(minimal_evaluate(model, sets))
    return {"train": train_s, "eval": evals}


def measure(args, which: str, batchsize: int, seed: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", which, "--batches", str(batchsize),
           "--threads", str(args.threads), "--dataset", args.dataset, "--seed", str(seed)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.train_size:
        cmd += ["--train-size", str(args.train_size)]
    if args.flush_subnormals:
        cmd.append("--flush-subnormals")
    out = subprocess.run(cmd, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{which} batch {batchsize} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")


def whole_run(args, batchsize: int, folder: Path) -> float:
    """Wall time of `python -m fluxlenet train` (1 epoch, torch), from the shell to the exit."""
    cmd = [sys.executable, "-m", "fluxlenet", "train", "--backend", "torch", "--epochs", "1",
           "--batchsize", str(batchsize), "--dataset", args.dataset, "--savepath", str(folder)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.train_size:
        cmd += ["--train-size", str(args.train_size)]
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return time.perf_counter() - started


# ---------------------------------------------------------------- Flux (a separate process)


def flux_child(args) -> None:
    """Runs in its own process: juliacall must be imported before anything imports torch."""
    result = {}
    started = time.perf_counter()
    from fluxlenet.backends import flux  # imports juliacall first
    from fluxlenet.backends import flux_layout
    from fluxlenet.config import RunConfig
    from fluxlenet.data import load_dataset
    from fluxlenet.runlog import RunFolder, RunLog
    FL = flux.fluxlenet_module()
    result["julia_load_s"] = time.perf_counter() - started
    data = load_dataset(args.dataset, args.data_dir, train_size=args.train_size, download=False, progress=False)
    handover = []
    for _ in range(2):  # the first call compiles
        t = time.perf_counter()
        FL.prepare((flux_layout.julia_view(data.train_x), data.train_y.astype("int64")), flux.jl.Float32, 10)
        FL.prepare((flux_layout.julia_view(data.test_x), data.test_y.astype("int64")), flux.jl.Float32, 10)
        handover.append(time.perf_counter() - t)
    result["handover_first_s"], result["handover_s"] = handover
    for batchsize in args.batch_list:
        cfg = RunConfig(run="bench", backend="flux", dataset=args.dataset, data_dir=args.data_dir,
                        train_size=args.train_size, batchsize=batchsize, epochs=2, checktime=0,
                        threads=args.threads).validate()
        with tempfile.TemporaryDirectory() as tmp:
            log = RunLog(tmp, echo=lambda line: None)
            t = time.perf_counter()
            flux.train(cfg, data, log)
            wall = time.perf_counter() - t
            log.close()
            seconds = [r["seconds"] for r in RunFolder(tmp).read_log_rows() if r["seconds"] is not None]
        # 3 reports (epochs 0, 1, 2); their cost is the wall time the epochs do not explain
        result[f"b{batchsize}"] = {"first_epoch_s": seconds[0], "steady_epoch_s": seconds[1],
                                   "report_s": (wall - sum(seconds)) / 3}
    print("FLUX_RESULT " + json.dumps(result), flush=True)


def run_flux(args) -> dict | None:
    try:
        from fluxlenet.julia_env import julia_status
        ready, reason = julia_status()
    except Exception as e:  # noqa: BLE001
        ready, reason = False, f"{type(e).__name__}: {e}"
    if not ready:
        print(f"Flux: not timed ({reason})")
        return None
    cmd = [sys.executable, __file__, "--flux-child", "--dataset", args.dataset, "--batches", args.batches,
           "--threads", str(args.threads)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.train_size:
        cmd += ["--train-size", str(args.train_size)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("FLUX_RESULT "):
            return json.loads(line[len("FLUX_RESULT "):])
    print(f"Flux: failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
    return None


# ---------------------------------------------------------------- main


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=default_data_dir(), help="folder with fashion-mnist/ (default: shared/data)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--train-size", type=int, default=None, help="first N training samples (default: all)")
    p.add_argument("--batches", default="32,128", help="batch sizes, comma-separated")
    p.add_argument("--repeats", type=int, default=3, help="epochs timed per loop and batch size")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    p.add_argument("--flush-subnormals", action="store_true",
                   help="both loops flush subnormal floats to zero (fluxlenet's --flush-subnormals)")
    p.add_argument("--whole-runs", action="store_true",
                   help="also time whole `python -m fluxlenet train --epochs 1` processes")
    p.add_argument("--flux", choices=["auto", "no"], default="auto", help="also time the Flux backend if Julia is set up")
    p.add_argument("--child", choices=["minimal", "fluxlenet"], help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--flux-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.batch_list = [int(b) for b in args.batches.split(",")]
    if args.flux_child:
        flux_child(args)
        return 0
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0

    import numpy as np
    import torch

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__} ({args.threads} threads), "
          f"numpy {np.__version__}, Python {platform.python_version()}, {platform.platform()}")
    print(f"data: {args.dataset}{'' if not args.train_size else f' (first {args.train_size} training samples)'}; "
          f"load average before: {load()}")
    print("each figure: one epoch (or one report) in a fresh process; A/B order alternates"
          + ("; subnormals flushed to zero in both loops" if args.flush_subnormals else ""))
    results = {}
    for batchsize in args.batch_list:
        rows = {"minimal train": [], "fluxlenet train": [], "minimal eval": [], "fluxlenet eval": [], "pair": []}
        for r in range(args.repeats):
            order = ("minimal", "fluxlenet") if r % 2 == 0 else ("fluxlenet", "minimal")
            got = {}
            for which in order:
                got[which] = measure(args, which, batchsize, seed=r)
                rows[f"{which} train"] += got[which]["train"]
                rows[f"{which} eval"] += got[which]["eval"]
            rows["pair"].append(got["fluxlenet"]["train"][0] / got["minimal"]["train"][0])
            print(f"  batch {batchsize} repeat {r + 1}: train minimal {got['minimal']['train'][0]:.2f} s, "
                  f"fluxlenet {got['fluxlenet']['train'][0]:.2f} s; eval minimal {got['minimal']['eval'][-1]:.2f} s, "
                  f"fluxlenet {got['fluxlenet']['eval'][-1]:.2f} s (load {load()})", flush=True)
        results[batchsize] = rows

    whole = {}
    if args.whole_runs:
        with tempfile.TemporaryDirectory() as tmp:
            for batchsize in args.batch_list:
                whole[batchsize] = [whole_run(args, batchsize, Path(tmp) / f"b{batchsize}r{r}")
                                    for r in range(max(1, args.repeats - 1))]
    print(f"load average after: {load()}")
    print()
    print("| batch | minimal train s/epoch | fluxlenet train s/epoch | ratio | minimal eval s | fluxlenet eval s | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batchsize, rows in results.items():
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"| {batchsize} | {summary(rows['minimal train'])} | {summary(rows['fluxlenet train'])} | "
              f"{med['fluxlenet train'] / med['minimal train']:.2f} | {summary(rows['minimal eval'])} | "
              f"{summary(rows['fluxlenet eval'])} | {med['fluxlenet eval'] / med['minimal eval']:.2f} |")
    print("(median, minimum in brackets; ratio = fluxlenet / minimal of the medians; eval = one report, "
          "the whole train and test sets)")
    sizes = sorted(results)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for which in ("minimal", "fluxlenet"):
            a = statistics.median(results[small][f"{which} train"])
            b = statistics.median(results[large][f"{which} train"])
            print(f"{which}: a batch-{small} epoch takes {a / b:.2f}x a batch-{large} epoch")
    for batchsize, walls in whole.items():
        print(f"`python -m fluxlenet train --epochs 1 --batchsize {batchsize}` (start to exit, 2 reports): "
              f"{summary(walls)} s")

    if args.flux == "auto":
        flux = run_flux(args)
        if flux:
            print()
            print(f"Flux: Julia + FluxLeNet load {flux['julia_load_s']:.1f} s; handing the dataset to Julia "
                  f"{flux['handover_s']:.2f} s ({flux['handover_first_s']:.2f} s the first time, compilation included)")
            print("| batch | Flux first epoch s | Flux steady epoch s | Flux report s |")
            print("| ---: | ---: | ---: | ---: |")
            for batchsize in args.batch_list:
                f = flux[f"b{batchsize}"]
                print(f"| {batchsize} | {f['first_epoch_s']:.2f} | {f['steady_epoch_s']:.2f} | {f['report_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
