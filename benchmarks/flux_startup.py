"""The Flux backend's start-up and speed, where Julia is set up (`python -m fluxlenet setup-julia`).

    python benchmarks/flux_startup.py                       # full MNIST, 3 epochs, the optimiser sweep
    python benchmarks/flux_startup.py --train-size 10000 --epochs 2

It runs `python -m fluxlenet sweep optimizer --backend flux --jobs 1` (three runs, one Flux worker
that keeps Julia loaded) in a fresh runs folder, time-stamping every line the sweep prints, and then
benchmarks/plain_flux_loop.jl, the same loop in plain Flux in the same Julia with as many threads.
It reports:

- Julia's start: from the worker's start to the first run's epoch-0 report;
- for each later run, the time from the previous run's last line to its epoch-0 report (the
  report is made before training: that is when the run starts training);
- each run's first and steady epoch (log.csv `seconds`: the training loop only), and the plain
  script's, with the ratios the goals are about: steady epoch <= 1.10x the plain script's, first
  epoch <= 1.5x steady, a later run training within 2 s of the previous run's end.

Where Julia is not set up it says so and measures nothing (exit code 1).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def timed_lines(cmd: list[str]) -> tuple[int, list[tuple[float, str]]]:
    """Run `cmd`, echoing its output; every line with the seconds since the start."""
    started = time.monotonic()
    lines = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        lines.append((time.monotonic() - started, line.rstrip("\n")))
        print(f"{lines[-1][0]:8.2f}  {lines[-1][1]}", flush=True)
    return proc.wait(), lines


def run_phases(lines: list[tuple[float, str]]) -> list[dict]:
    """Per run, in order: when it was handed out, its epoch-0 report, its last line."""
    runs = []
    for t, line in lines:
        if line.startswith("--- ") and line.rstrip().endswith("/flux") and "[flux]" in line:
            runs.append({"name": line[4:].split(" seed")[0], "given": t, "epoch0": None, "last": t})
        elif runs:
            if line.startswith("Epoch: 0 ") and runs[-1]["epoch0"] is None:
                runs[-1]["epoch0"] = t
            if line.startswith(("Epoch: ", "Model saved in")):
                runs[-1]["last"] = t
    return runs


def epoch_seconds(folder: Path) -> list[float]:
    with open(folder / "log.csv", newline="") as f:
        return [float(r["seconds"]) for r in csv.DictReader(f) if r["seconds"]]


def plain_flux(data, n: int, batchsize: int, epochs: int, threads: int, tmp: Path) -> list[float]:
    import juliapkg
    images, labels = tmp / "images.f32", tmp / "labels.i64"
    np.ascontiguousarray(data.train_x[:n]).tofile(images)  # (N, 1, 28, 28) C order == Julia (28, 28, 1, N)
    np.ascontiguousarray(data.train_y[:n], dtype=np.int64).tofile(labels)
    cmd = [juliapkg.executable(), f"--project={juliapkg.project()}", "-t", str(threads),
           str(REPO / "benchmarks" / "plain_flux_loop.jl"), str(images), str(labels), str(n), str(batchsize),
           str(epochs)]
    code, lines = timed_lines(cmd)
    if code != 0:
        raise SystemExit(f"the plain Flux script failed (exit code {code})")
    return [float(line.split()[2]) for _, line in lines if line.startswith("EPOCH ")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DATA), help="folder holding mnist/ (default: ../shared/data)")
    parser.add_argument("--train-size", type=int, default=None, help="first N training images (default: all)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from fluxlenet.data import load_dataset
    from fluxlenet.julia_env import julia_status
    ready, reason = julia_status()
    if not ready:
        print(f"Not measured: Julia is not set up here ({reason}).")
        return 1

    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="flux-startup-") as tmp:
        tmp = Path(tmp)
        cmd = [sys.executable, "-m", "fluxlenet", "sweep", "optimizer", "--backend", "flux", "--jobs", "1",
               "--threads", str(threads),
               "--dataset", "mnist", "--data-dir", args.data_dir, "--epochs", str(args.epochs),
               "--runs-dir", str(tmp / "runs")]
        if args.train_size:
            cmd += ["--train-size", str(args.train_size)]
        code, lines = timed_lines(cmd)
        if code != 0:
            print(f"The sweep failed (exit code {code}); nothing measured.")
            return 1
        runs = run_phases(lines)
        worker = next((t for t, line in lines if "starting a flux worker" in line), runs[0]["given"])
        seconds = {r["name"]: epoch_seconds(tmp / "runs" / "optimizer" / f"{r['name']}-seed0" / "flux") for r in runs}
        data = load_dataset("mnist", args.data_dir, train_size=args.train_size, download=False, progress=False)
        plain = plain_flux(data, len(data.train_y), 32, args.epochs, threads, tmp)

    print(f"\nMNIST, {len(data.train_y)} training images, batch 32, {args.epochs} epochs, {threads} threads")
    print(f"Julia start (worker start -> first run's epoch-0 report): {runs[0]['epoch0'] - worker:.1f} s")
    for previous, run in zip(runs, runs[1:]):
        gap = run["epoch0"] - previous["last"]
        print(f"{run['name']}: starts training {gap:.1f} s after {previous['name']} ended "
              f"(goal <= 2 s: {'met' if gap <= 2 else 'NOT met'})")
    plain_steady = statistics.median(plain[1:] or plain)
    print(f"plain Flux script: first epoch {plain[0]:.1f} s, steady {plain_steady:.1f} s")
    for name, secs in seconds.items():
        steady = statistics.median(secs[1:] or secs)
        print(f"{name}: first epoch {secs[0]:.1f} s ({secs[0] / steady:.2f}x steady; goal <= 1.5x), "
              f"steady {steady:.1f} s ({steady / plain_steady:.2f}x the plain script; goal <= 1.10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
