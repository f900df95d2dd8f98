"""Workers that take runs one after another (fluxlenet.runner.ServingWorker, fluxlenet.worker.serve).

A Flux worker keeps Julia loaded for all the runs it is given; the protocol is the same for any
backend, so it is tested here with real (small) torch runs served the same way: hand-over of runs,
one run failing while the worker goes on, a worker dying and a fresh one taking the rest, Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fluxlenet.config import RunConfig
from fluxlenet.runlog import RunFolder
from fluxlenet.rundir import Task, run_dir
from fluxlenet.runner import run_tasks

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "data" / "fashion-mnist"
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {FASHION}")


def tasks(runs_dir: Path, names=("A", "B", "C"), **settings) -> list[Task]:
    base = dict(sweep="serve", backend="torch", dataset="fashion-mnist", data_dir=str(FASHION), train_size=256,
                test_size=64, batchsize=64, epochs=2, checktime=1, threads=1)
    out = []
    for i, name in enumerate(names):
        cfg = RunConfig(**{**base, "run": name, "eta": 1e-3 * (i + 1), **settings}).validate()
        out.append(Task(cfg, run_dir(runs_dir / cfg.sweep, cfg)))
    return out


def figures(task: Task) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in RunFolder(task.run_dir).read_log_rows()]


def test_one_worker_serves_the_runs_one_after_another(tmp_path):
    said = []
    served = tasks(tmp_path / "served")
    results = run_tasks(served, jobs=1, echo=said.append, served=("torch",))
    assert [t.cfg.run for t in results["finished"]] == ["A", "B", "C"]
    pids = {RunFolder(t.run_dir).read_status()["pid"] for t in served}
    assert len(pids) == 1 and os.getpid() not in pids  # one process ran all three
    assert sum("starting a torch worker" in line for line in said) == 1

    alone = tasks(tmp_path / "alone")  # the usual way: a process per run
    assert len(run_tasks(alone, jobs=1, echo=lambda line: None)["finished"]) == 3
    assert len({RunFolder(t.run_dir).read_status()["pid"] for t in alone}) == 3
    for s, a in zip(served, alone):  # lockstep: a served run gives the figures of a run alone
        assert figures(s) == figures(a) and len(figures(s)) == 3


def test_a_failing_run_fails_alone_and_the_worker_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("FLUXLENET_FAULT", "B:raise@epoch1")  # inherited by the spawned worker
    runs = tasks(tmp_path)
    results = run_tasks(runs, jobs=1, echo=lambda line: None, served=("torch",))
    assert [t.cfg.run for t in results["finished"]] == ["A", "C"]
    status = RunFolder(runs[1].run_dir).read_status()
    assert status["status"] == "failed" and "fault injected by FLUXLENET_FAULT at epoch1" in status["reason"]
    assert (runs[1].run_dir / "error.txt").is_file()
    pids = [RunFolder(run.run_dir).read_status()["pid"] for run in (runs[0], runs[2])]
    assert pids == [status["pid"]] * 2


def test_a_worker_that_dies_fails_its_run_and_a_fresh_one_takes_the_rest(tmp_path, monkeypatch):
    """B's worker is SIGKILLed right after B's epoch-1 checkpoint: B failed, a fresh worker takes C, and
    the rerun of B goes on from that checkpoint to the figures of an uninterrupted run (the Flux
    version: tests/test_julia_runs.py)."""
    monkeypatch.setenv("FLUXLENET_FAULT", "B:kill@checkpoint1")
    runs = tasks(tmp_path)
    said = []
    results = run_tasks(runs, jobs=1, echo=said.append, served=("torch",))
    assert [t.cfg.run for t in results["finished"]] == ["A", "C"]
    status = RunFolder(runs[1].run_dir).read_status()
    assert status["status"] == "failed" and "killed by SIGKILL" in status["reason"]
    assert RunFolder(runs[0].run_dir).read_status()["pid"] != RunFolder(runs[2].run_dir).read_status()["pid"]
    assert sum("starting a torch worker" in line for line in said) == 2
    # the rerun resumes B from its epoch-1 checkpoint with a served worker again
    monkeypatch.delenv("FLUXLENET_FAULT")
    again = tasks(tmp_path)
    assert [t.cfg.run for t in run_tasks(again[1:2], jobs=1, echo=lambda line: None,
                                         served=("torch",))["finished"]] == ["B"]
    assert [r["epoch"] for r in RunFolder(runs[1].run_dir).read_log_rows()] == [0, 1, 2]
    assert "Resuming from the checkpoint of epoch 1" in (runs[1].run_dir / "console.log").read_text()
    straight = tasks(tmp_path / "straight", names=("A", "B"))[1:]
    assert len(run_tasks(straight, jobs=1, echo=lambda line: None, served=("torch",))["finished"]) == 1
    assert figures(straight[0]) == figures(runs[1])


def test_two_slots_two_workers(tmp_path):
    runs = tasks(tmp_path, names=("A", "B", "C", "D"))
    said = []
    results = run_tasks(runs, jobs=2, echo=said.append, served=("torch",))
    assert len(results["finished"]) == 4
    assert len({RunFolder(t.run_dir).read_status()["pid"] for t in runs}) == 2
    assert sum("starting a torch worker" in line for line in said) == 2


SWEEP_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_serving import tasks
from fluxlenet.runner import run_tasks
try:
    run_tasks(tasks(Path({runs!r}), names=("A",), epochs=40), jobs=1, served=("torch",))
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_the_served_run_as_interrupted_and_the_rerun_resumes(tmp_path):
    runs = tmp_path / "runs"
    script = SWEEP_SCRIPT.format(tests=str(ROOT / "tests"), runs=str(runs))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    folder = tasks(runs, names=("A",), epochs=40)[0].run_dir
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(RunFolder(folder).read_log_rows()) < 3:  # [] until log.csv is there
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # Ctrl-C, to the sweep process only (the workers ignore it anyway)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "INTERRUPTED" in out, err[-2000:]
    status = RunFolder(folder).read_status()
    assert status["status"] == "interrupted" and status["reason"] == "stopped by Ctrl-C or SIGTERM", status
    assert RunFolder(folder).read_log_rows()[-1]["epoch"] >= 2 and (folder / "model.pt").is_file()  # resumable
