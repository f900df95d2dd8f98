"""`sweep --grid KEY=V1,V2 ...`: sweeps declared on the command line, run, written, reported, rerun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxlenet import sweeps
from fluxlenet.config import ConfigError
from fluxlenet.runlog import read_log_rows, read_status

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "data" / "fashion-mnist"
SMALL = ["--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", str(FASHION), "--train-size", "256",
         "--test-size", "64", "--epochs", "1"]


def fluxlenet(*args):
    return subprocess.run([sys.executable, "-m", "fluxlenet", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_the_grid_is_every_combination_named_after_its_values():
    doc = sweeps.grid_document(["eta=1e-3,3e-4", "batchsize=32,128", "optimizer=NAdam"])
    assert [r["name"] for r in doc["runs"]] == [
        "eta=1e-3_batchsize=32_optimizer=NAdam", "eta=1e-3_batchsize=128_optimizer=NAdam",
        "eta=3e-4_batchsize=32_optimizer=NAdam", "eta=3e-4_batchsize=128_optimizer=NAdam"]
    assert doc["runs"][1] == {"eta": 1e-3, "batchsize": 128, "optimizer": "NAdam", "name": doc["runs"][1]["name"]}
    over = sweeps.grid_document(["eta=1e-3"], sweeps.load("optimizer"))  # over each run of a sweep
    assert [r["name"] for r in over["runs"]] == ["ADAMW_eta=1e-3", "NADAM_eta=1e-3", "AdaBelief_eta=1e-3"]
    assert over["base"]["lambda"] == 1e-6 and over["runs"][0]["optimizer"] == "ADAMW_flux012"
    for bad in (["eta"], ["eta="], ["eta=1,"], ["=1"], ["eta=1", "eta=2"]):
        with pytest.raises(ConfigError, match="--grid"):
            sweeps.grid_document(bad)


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {FASHION}")
def test_a_grid_runs_writes_its_sweep_file_and_is_reported_compared_and_rerun(tmp_path):
    runs = tmp_path / "runs"
    out = fluxlenet("sweep", "--grid", "eta=1e-3,3e-3", "batchsize=64", *SMALL, "--runs-dir", runs)
    assert out.returncode == 0, out.stderr
    folder = runs / "grid"
    for name in ("eta=1e-3_batchsize=64", "eta=3e-3_batchsize=64"):
        assert read_status(folder / f"{name}-seed0" / "torch")["status"] == "finished"
    written = sweeps.load(str(folder / "grid.toml"))
    assert [(c.run, c.eta, c.batchsize) for c in written.runs] == [("eta=1e-3_batchsize=64", 1e-3, 64),
                                                                   ("eta=3e-3_batchsize=64", 3e-3, 64)]
    assert fluxlenet("report", "grid", "--runs-dir", runs).returncode == 0
    assert (folder / "report.md").is_file() and "eta=3e-3_batchsize=64" in (folder / "report.md").read_text()
    assert fluxlenet("parity", "grid", "--runs-dir", runs).returncode == 0

    # the written file reruns the same sweep: everything is done already
    again = fluxlenet("sweep", folder / "grid.toml", *SMALL, "--runs-dir", runs)
    assert again.returncode == 0 and again.stdout.count("already done") == 2
    # another grid under the same name would mix two sweeps in one folder: refused, nothing changed
    before = (folder / "grid.toml").read_text()
    other = fluxlenet("sweep", "--grid", "eta=1e-2", *SMALL, "--runs-dir", runs)
    assert other.returncode == 2 and "holds another grid" in other.stderr and "--name" in other.stderr
    assert (folder / "grid.toml").read_text() == before
    assert fluxlenet("sweep", "--grid", "eta=1e-2", *SMALL, "--name", "lr", "--runs-dir", runs).returncode == 0
    assert [r["epoch"] for r in read_log_rows(runs / "lr" / "eta=1e-2-seed0" / "torch")] == [0, 1]


@pytest.mark.parametrize("args, message", [
    (["--grid", "etax=1"], "--grid: run 'etax=1': unknown setting 'etax'"),
    (["--grid", "eta=abc"], "--grid: run 'eta=abc': eta must be a number, not 'abc'"),
    (["--grid", "eta=-1"], "--grid: run 'eta=-1': learning rate eta must be > 0"),
    (["--grid", "eta"], "--grid expects KEY=VALUE[,VALUE...]"),
    (["--grid", "eta=1e-3", "--base", "nosuch"], "unknown sweep 'nosuch'"),
    (["baseline", "--grid", "eta=1e-3"], "give a sweep (baseline) or --grid, not both"),
    (["--base", "baseline"], "--base goes with --grid"),
    ([], "which sweep?"),
])
def test_bad_grids_are_one_line_and_write_nothing(tmp_path, args, message):
    out = fluxlenet("sweep", *args, "--runs-dir", tmp_path / "runs")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fluxlenet: error: ") and message in lines[0], lines
    assert not (tmp_path / "runs").exists()
