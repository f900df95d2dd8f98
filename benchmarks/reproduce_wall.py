"""Wall time of `python -m fluxlenet reproduce post` (the post's 4 sweeps, 11 runs, x seeds), per framework.

    python benchmarks/reproduce_wall.py                              # full size, 5 seeds, PyTorch, --jobs 2
    python benchmarks/reproduce_wall.py --backend flux               # the same for Flux (Julia set up)
    python benchmarks/reproduce_wall.py --train-size 2000 --test-size 500 --epochs 1   # a small version

The command runs exactly as a user runs it, in a fresh runs folder: spawned workers, every run's
evaluation after each epoch, checkpoints, then the report. The time is from the command's start to
its exit; the report's own time (plots, tables) is printed from the run folders' timestamps. At
full size with 5 seeds it is 55 runs of 10 epochs: on a 2-core machine an hour or more.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from speed import cpu_name, load  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["torch", "flux"], default="torch", help="one framework per measurement")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--epochs", type=int, default=None, help="default: the post's 10")
    p.add_argument("--train-size", type=int, default=None, help="default: all 60,000")
    p.add_argument("--test-size", type=int, default=None, help="default: all 10,000")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--flush-subnormals", action="store_true")
    p.add_argument("--keep", metavar="DIR", default=None, help="leave the runs under DIR (default: removed)")
    args = p.parse_args(argv)
    size = f"{args.train_size or 60000} / {args.test_size or 10000} images, {args.epochs or 10} epochs"
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; reproduce post --backend {args.backend} --seeds "
          f"{args.seeds} --jobs {args.jobs}; {size}; load before: {load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(args.keep) if args.keep else Path(tmp) / "runs"
        cmd = [sys.executable, "-m", "fluxlenet", "reproduce", "post", "--backend", args.backend, "--seeds",
               args.seeds, "--jobs", str(args.jobs), "--data-dir", args.data_dir, "--runs-dir", str(runs_dir)]
        for option, value in (("--epochs", args.epochs), ("--train-size", args.train_size),
                              ("--test-size", args.test_size)):
            if value:
                cmd += [option, str(value)]
        if args.flush_subnormals:
            cmd.append("--flush-subnormals")
        started = time.perf_counter()
        out = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - started
        if out.returncode not in (0, 1, 4):   # 1 and 4 are verdicts (not reproduced, inconclusive), not failures
            raise SystemExit(f"{' '.join(cmd)} failed (exit {out.returncode}):\n{out.stdout[-3000:]}")
        runs = list(runs_dir.glob("*/*/*/log.csv"))
        last_run = max(p.stat().st_mtime for p in runs)
        report_s = (runs_dir / "reproduce-post" / "report.html").stat().st_mtime - last_run
        verdict = next((line for line in out.stdout.splitlines() if line.startswith("Reproduction of post")), "?")
    print(f"load after: {load()}")
    print(f"{len(runs)} runs in {wall:.1f} s ({wall / 60:.1f} min), of which the report ~{report_s:.1f} s; {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
