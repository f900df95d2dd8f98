"""A run on disk asked for another length (epochs, steps): it goes on from its checkpoint where that is the
same as training the new length straight through, and is refused in one line where it is not
(RunConfig.length_problem). Real small torch runs through the CLI; the Flux version of the first test is
tests/test_julia_runs.py::test_resume_goes_on_from_the_checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxlenet.runlog import LOG_COLUMNS, RunFolder

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FASHION = SHARED / "fashion-mnist"
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {SHARED}")

# 500 samples / batch 100: 5 steps an epoch
TRAIN = ["train", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", str(FASHION), "--train-size",
         "500", "--test-size", "200", "--batchsize", "100", "--trace-steps", "20"]
FIGURES = [c for c in LOG_COLUMNS if c != "seconds"]


def fluxlenet(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fluxlenet", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def figures(run_dir: Path) -> list[dict]:
    return [{k: row[k] for k in FIGURES} for row in RunFolder(run_dir).read_log_rows()]


def one_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fluxlenet: error: "), out.stderr
    return lines[0]


def test_a_finished_run_asked_for_more_epochs_goes_on_and_equals_a_straight_run(tmp_path):
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    assert fluxlenet(*TRAIN, "--epochs", 1, "--checktime", 5, "--savepath", resumed).returncode == 0
    out = fluxlenet(*TRAIN, "--epochs", 2, "--checktime", 5, "--savepath", resumed)
    assert out.returncode == 0 and "already done" not in out.stdout, out.stdout + out.stderr
    run_dir = resumed / "resumed-seed0" / "torch"
    assert "Resuming from the checkpoint of epoch 1" in (run_dir / "console.log").read_text()
    for name in ("config.json", "checkpoint.json"):  # the new length is recorded
        assert json.loads((run_dir / name).read_text())["config"]["epochs"] == 2, name
    status = RunFolder(run_dir).read_status()
    assert status["status"] == "finished" and status["last_epoch"] == 2

    assert fluxlenet(*TRAIN, "--epochs", 2, "--checktime", 5, "--savepath", straight).returncode == 0
    straight_dir = straight / "straight-seed0" / "torch"
    assert figures(run_dir) == figures(straight_dir) and len(figures(run_dir)) == 3  # lockstep: equal
    assert RunFolder(run_dir).read_trace_rows() == RunFolder(straight_dir).read_trace_rows()  # step for step, 10 steps

    # the same length in other words (10 steps = 2 epochs of 5) is done; fewer is refused, nothing changed
    again = fluxlenet(*TRAIN, "--steps", 10, "--checktime", 5, "--savepath", resumed)
    assert again.returncode == 0 and "already done" in again.stdout, again.stdout + again.stderr
    log = (run_dir / "log.csv").read_bytes()
    line = one_error(fluxlenet(*TRAIN, "--epochs", 1, "--checktime", 5, "--savepath", resumed))
    assert line == (f"fluxlenet: error: {run_dir} holds a run of 2 epochs, longer than the 1 epoch asked for; "
                    f"ask for 2 epochs or more (it goes on from its checkpoint), or use another folder "
                    f"(--runs-dir; --savepath for train)")
    assert (run_dir / "log.csv").read_bytes() == log


def test_a_sweep_run_with_more_epochs_is_resumed_not_skipped_and_other_settings_still_refused(tmp_path):
    sweep = ["sweep", "--grid", "eta=1e-3", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir",
             FASHION, "--train-size", 500, "--test-size", 200, "--runs-dir", tmp_path / "runs"]
    run_dir = tmp_path / "runs" / "grid" / "eta=1e-3-seed0" / "torch"
    assert fluxlenet(*sweep, "--epochs", 1).returncode == 0
    out = fluxlenet(*sweep, "--epochs", 2)
    assert out.returncode == 0 and "already done" not in out.stdout, out.stdout + out.stderr
    assert [r["epoch"] for r in RunFolder(run_dir).read_log_rows()] == [0, 1, 2]
    assert "Resuming from the checkpoint of epoch 1" in (run_dir / "console.log").read_text()
    line = one_error(fluxlenet(*sweep, "--epochs", 3, "--precision", "float64"))
    assert f"{run_dir} holds a run with other settings (epochs 2 there, 3 now, precision 'float32' there, " \
           f"'float64' now)" in line


def test_what_cannot_go_on_to_another_length_is_refused_in_one_line(tmp_path):
    # a finished run without checkpoints has nothing to go on from
    none = tmp_path / "none"
    assert fluxlenet(*TRAIN, "--epochs", 1, "--checktime", 0, "--savepath", none).returncode == 0
    log = (none / "none-seed0" / "torch" / "log.csv").read_bytes()
    line = one_error(fluxlenet(*TRAIN, "--epochs", 2, "--checktime", 0, "--savepath", none))
    assert line == (f"fluxlenet: error: {none / 'none-seed0' / 'torch'} holds a finished run of 1 epoch without a "
                    f"checkpoint to go on from (checktime 0), so it cannot be trained to 2 epochs; use another folder "
                    f"(--runs-dir; --savepath for train) or remove that one")
    assert (none / "none-seed0" / "torch" / "log.csv").read_bytes() == log
    # a step budget that ends inside an epoch (7 steps, 5 an epoch): its last checkpoint lies inside epoch 2
    partial = tmp_path / "partial"
    assert fluxlenet(*TRAIN, "--steps", 7, "--savepath", partial).returncode == 0
    line = one_error(fluxlenet(*TRAIN, "--epochs", 3, "--savepath", partial))
    assert line.endswith(f"{partial / 'partial-seed0' / 'torch'} holds checkpoints of a run of 7 steps, which ends "
                         f"inside an epoch (5 steps each), so it cannot go on to 3 epochs; use another folder "
                         f"(--runs-dir; --savepath for train) or remove that one")
