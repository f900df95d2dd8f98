"""Wall time of whole sweeps through the CLI, for several --jobs values (PyTorch backend).

    python benchmarks/sweep_wall.py                                   # batchsize sweep, 2 epochs of 12k, jobs 1 and 2
    python benchmarks/sweep_wall.py --protocol --jobs 2               # the post's whole protocol, full size
    python benchmarks/sweep_wall.py --sweeps optimizer --epochs 1 --jobs 1,2

Each sweep runs as `python -m fluxlenet sweep NAME --backend torch --jobs J` in a fresh runs folder,
exactly as a user runs it (spawned workers, evaluation of the whole train and test sets after
every epoch, checkpoints, logs); the time is from the command's start to its exit. `--protocol`
is the post's baseline + batchsize + l2 + optimizer sweeps (11 runs of 10 epochs), written into
one sweep file (each run with its own sweep's settings, the batch-32 runs first), so that
`--jobs 2` keeps both cores busy across the four sweeps instead of idling at the end of each.
The jobs values alternate when --rounds > 1, so that a change of machine load hits each of them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from speed import cpu_name, default_data_dir, load  # noqa: E402

PROTOCOL = ["baseline", "batchsize", "l2", "optimizer"]


def protocol_file(folder: Path) -> Path:
    """The four sweeps of the post as one sweep file, the longest (batch 32) runs first."""
    from fluxlenet import sweeps
    runs = []
    for name in PROTOCOL:
        with open(sweeps.find(name), "rb") as f:
            doc = sweeps.tomllib.load(f)
        for run in doc["runs"]:
            settings = {**doc.get("base", {}), **run, "name": f"{name}-{run.get('name', 'run')}"}
            runs.append(settings)
    runs.sort(key=lambda r: r.get("batchsize", 128))  # a stable sort: the sweeps' order within a size
    lines = ['description = "the post\'s baseline + batchsize + l2 + optimizer sweeps in one file"', ""]
    for run in runs:
        lines.append("[[runs]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in run.items()]
        lines.append("")
    path = folder / "protocol.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run_sweep(name: str, jobs: int, runs_dir: Path, args) -> float:
    threads = max(1, (os.cpu_count() or 1) // jobs)  # the cores shared by the jobs, as measured in the README
    cmd = [sys.executable, "-m", "fluxlenet", "sweep", name, "--backend", "torch", "--jobs", str(jobs),
           "--threads", str(threads), "--runs-dir", str(runs_dir), "--dataset", args.dataset]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.train_size:
        cmd += ["--train-size", str(args.train_size)]
    if args.flush_subnormals:
        cmd.append("--flush-subnormals")
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    if args.verbose:
        print(out.stdout)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {out.returncode}):\n{out.stdout[-3000:]}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweeps", default="batchsize", help="comma-separated sweep names (default: batchsize)")
    p.add_argument("--protocol", action="store_true", help="the post's 4 sweeps (11 runs), 10 epochs, full size")
    p.add_argument("--jobs", default="1,2", help="comma-separated --jobs values (default: 1,2)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: 2, or the sweeps' own with --protocol)")
    p.add_argument("--train-size", type=int, default=None, help="first N training samples (default: 12000; all with --protocol)")
    p.add_argument("--rounds", type=int, default=1, help="repeat each jobs value this many times, alternating")
    p.add_argument("--flush-subnormals", action="store_true", help="pass --flush-subnormals to every sweep")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--verbose", action="store_true", help="print the sweeps' output")
    p.add_argument("--keep", metavar="DIR", default=None,
                   help="leave the run folders under DIR/jobsJ-roundR (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    sweeps = ["protocol"] if args.protocol else args.sweeps.split(",")
    if not args.protocol:
        args.epochs = args.epochs or 2
        args.train_size = args.train_size or 12000
    jobs_values = [int(j) for j in args.jobs.split(",")]
    size = f"first {args.train_size} training samples" if args.train_size else "full training set"
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; sweeps {', '.join(sweeps)}; "
          f"{args.epochs or 'the sweeps own'} epochs per run, {size}"
          f"{'; subnormals flushed' if args.flush_subnormals else ''}; load before: {load()}", flush=True)
    walls: dict[int, list[float]] = {j: [] for j in jobs_values}
    for r in range(args.rounds):
        for jobs in (jobs_values if r % 2 == 0 else jobs_values[::-1]):
            with tempfile.TemporaryDirectory() as tmp:
                if args.keep:
                    tmp = Path(args.keep) / f"jobs{jobs}-round{r + 1}"
                    tmp.mkdir(parents=True, exist_ok=False)
                total = 0.0
                for name in sweeps:
                    sweep = str(protocol_file(Path(tmp))) if name == "protocol" else name
                    seconds = run_sweep(sweep, jobs, Path(tmp) / "runs", args)
                    total += seconds
                    print(f"  round {r + 1} --jobs {jobs}: sweep {name} {seconds:.1f} s (load {load()})", flush=True)
            walls[jobs].append(total)
            print(f"  round {r + 1} --jobs {jobs}: total {total:.1f} s", flush=True)
    print(f"load after: {load()}")
    print()
    print("| --jobs | wall time (s) | vs --jobs 1 |")
    print("| ---: | ---: | ---: |")
    first = statistics.median(walls[jobs_values[0]])
    for jobs in jobs_values:
        med = statistics.median(walls[jobs])
        print(f"| {jobs} | {med:.1f} ({min(walls[jobs]):.1f}) | {med / first:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
