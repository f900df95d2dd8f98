"""`sweep --grid KEY=V1,V2 ...`: sweeps declared on the command line, run, written, reported, rerun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxlenet import sweeps
from fluxlenet.config import ConfigError
from fluxlenet.runlog import RunFolder

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "data" / "fashion-mnist"
SMALL = ["--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", str(FASHION), "--train-size", "256",
         "--test-size", "64", "--epochs", "1"]


def fluxlenet(*args):
    return subprocess.run([sys.executable, "-m", "fluxlenet", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_the_grid_is_every_combination_named_after_its_values():
    doc, notes = sweeps.grid_document(["eta=1e-3,3e-4", "batchsize=32,128", "optimizer=NAdam"])
    assert notes == []
    assert [r["name"] for r in doc["runs"]] == [
        "eta=1e-3_batchsize=32_optimizer=NAdam", "eta=1e-3_batchsize=128_optimizer=NAdam",
        "eta=3e-4_batchsize=32_optimizer=NAdam", "eta=3e-4_batchsize=128_optimizer=NAdam"]
    assert doc["runs"][1] == {"eta": 1e-3, "batchsize": 128, "optimizer": "NAdam", "name": doc["runs"][1]["name"]}
    over, _ = sweeps.grid_document(["eta=1e-3"], sweeps.load("optimizer"))  # over each run of a sweep
    assert [r["name"] for r in over["runs"]] == ["ADAMW_eta=1e-3", "NADAM_eta=1e-3", "AdaBelief_eta=1e-3"]
    assert over["base"]["lambda"] == 1e-6 and over["runs"][0]["optimizer"] == "ADAMW_flux012"
    for bad in (["eta"], ["eta="], ["eta=1,"], ["=1"], ["eta=1", "eta=2"], ["lambda=1", "λ=2"], ["name=a,b"],
                ["backend=torch,flux"]):
        with pytest.raises(ConfigError, match="--grid"):
            sweeps.grid_document(bad)


def test_list_values_and_names_that_cannot_be_folders():
    # commas inside brackets (and quotes) belong to the value: two lists
    doc, _ = sweeps.grid_document(["milestones=[1,2],[3]", 'optimizer="Adam"'])
    assert [(r["name"], r["milestones"]) for r in doc["runs"]] == [('milestones=[1,2]_optimizer="Adam"', [1, 2]),
                                                                   ('milestones=[3]_optimizer="Adam"', [3])]
    # a name from the values longer than the limit (or holding a /): every run numbered, and said
    long = "0.001" + "0" * 100
    doc, notes = sweeps.grid_document([f"eta={long},3e-4", "batchsize=32,64"])
    assert [r["name"] for r in doc["runs"]] == ["run1", "run2", "run3", "run4"]
    assert [(r["eta"], r["batchsize"]) for r in doc["runs"]] == [(1e-3, 32), (1e-3, 64), (3e-4, 32), (3e-4, 64)]
    assert len(notes) == 1 and "is longer than 100 characters; the runs are numbered run1 to run4" in notes[0]
    # a huge product is counted, not built
    with pytest.raises(ConfigError, match=r"^--grid spans 1,000,000,000 runs \(1,000 x 1,000 x 1,000\), more than "
                                          r"1,000; give fewer values, or --max-runs 1000000000 to run them all$"):
        sweeps.grid_document([f"{k}={','.join(map(str, range(1, 1001)))}" for k in ("eta", "batchsize", "seed")])
    assert len(sweeps.grid_document(["seed=" + ",".join(map(str, range(1200)))], max_runs=1200)[0]["runs"]) == 1200


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {FASHION}")
def test_a_grid_runs_writes_its_sweep_file_and_is_reported_compared_and_rerun(tmp_path):
    runs = tmp_path / "runs"
    out = fluxlenet("sweep", "--grid", "eta=1e-3,3e-3", "batchsize=64", *SMALL, "--runs-dir", runs)
    assert out.returncode == 0, out.stderr
    folder = runs / "grid"
    for name in ("eta=1e-3_batchsize=64", "eta=3e-3_batchsize=64"):
        assert RunFolder(folder / f"{name}-seed0" / "torch").read_status()["status"] == "finished"
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
    assert [r["epoch"] for r in RunFolder(runs / "lr" / "eta=1e-2-seed0" / "torch").read_log_rows()] == [0, 1]


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {FASHION}")
def test_list_values_and_numbered_runs_run_and_the_sweep_file_is_written_after_the_input_checks(tmp_path):
    runs = tmp_path / "runs"
    # an input check that fails (no data there, no download): no sweep file, so a corrected grid may take the name
    no_data = [a if a != str(FASHION) else str(tmp_path / "nodata") for a in SMALL]
    out = subprocess.run([sys.executable, "-m", "fluxlenet", "sweep", "--grid", "eta=1e-2", *no_data, "--runs-dir",
                          runs], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "FLUXLENET_MIRROR": "http://127.0.0.1:9/"})
    assert out.returncode == 2 and "could not download" in out.stderr, out.stderr
    assert not (runs / "grid" / "grid.toml").exists()
    long = "0.001" + "0" * 100
    out = fluxlenet("sweep", "--grid", f"eta={long},3e-3", "milestones=[1],[1,2]", *SMALL, "--runs-dir", runs)
    assert out.returncode == 0, out.stderr
    assert "the runs are numbered run1 to run4" in out.stdout and str(runs / "grid" / "grid.toml") in out.stdout
    written = sweeps.load(str(runs / "grid" / "grid.toml"))
    assert [(c.run, c.eta, c.milestones) for c in written.runs] == [
        ("run1", 1e-3, [1]), ("run2", 1e-3, [1, 2]), ("run3", 3e-3, [1]), ("run4", 3e-3, [1, 2])]
    for name in ("run1", "run4"):
        assert RunFolder(runs / "grid" / f"{name}-seed0" / "torch").read_status()["status"] == "finished"


@pytest.mark.parametrize("args, message", [
    (["--grid", "etax=1"], "--grid: run 'etax=1': unknown setting 'etax'"),
    (["--grid", "eta=1e-3", "--name", "../x"], "--name '../x' must not start with a dot"),
    (["--grid", "eta=1e-3", "--name", "a/b"], "--name 'a/b' must not contain / or \\"),
    (["--grid", "eta=1e-3", "--name", "ABSOLUTE"], "must not contain / or \\"),
    (["--grid", "eta=1e-3", "--name", ""], "--name '' is empty"),
    (["--grid", "name=a,b"], "--grid: 'name' is not a setting a grid can vary (runs are named after their values)"),
    (["--grid", "backend=torch,flux"], "--grid: 'backend' is not a setting a grid can vary (the frameworks are "
                                       "chosen by --backend)"),
    (["--grid", "seed=1,2", "--seeds", "3,4"], "--grid seed=... and --seeds both set seed (the option would give "
                                               "every run the same value); use one"),
    (["--grid", "train_size=100,200", "--train-size", "50"], "--grid train_size=... and --train-size both set "
                                                             "train_size"),
    (["--grid", "steps=10,20", "--epochs", "2"], "--grid steps=... and --epochs both set steps"),
    (["--grid", "eta=1,2", "batchsize=1,2", "seed=" + ",".join(map(str, range(300)))],
     "--grid spans 1,200 runs (2 x 2 x 300), more than 1,000; give fewer values, or --max-runs 1200 to run them all"),
    (["--base", "optimizer", "--grid", "eta=1e-3", "seed=" + ",".join(map(str, range(400)))],
     "--grid spans 1,200 runs (1 x 400 x the 3 runs of optimizer), more than 1,000"),
    (["baseline", "--name", "x"], "--name goes with --grid (the grid's name; a sweep file's name is its file name)"),
    (["baseline", "--max-runs", "5"], "--max-runs goes with --grid"),
    (["--grid", "eta=abc"], "--grid: run 'eta=abc': eta must be a number, not 'abc'"),
    (["--grid", "eta=-1"], "--grid: run 'eta=-1': learning rate eta must be > 0"),
    (["--grid", "eta"], "--grid expects KEY=VALUE[,VALUE...]"),
    (["--grid", "eta=1e-3", "--base", "nosuch"], "unknown sweep 'nosuch'"),
    (["baseline", "--grid", "eta=1e-3"], "give a sweep (baseline) or --grid, not both"),
    (["--base", "baseline"], "--base goes with --grid"),
    ([], "which sweep?"),
])
def test_bad_grids_are_one_line_and_write_nothing(tmp_path, cli, args, message):
    work = tmp_path / "work"  # --name ../x would write beside runs/, here
    (work / "runs").mkdir(parents=True)
    args = [str(tmp_path / "abs") if a == "ABSOLUTE" else a for a in args]
    code, _, err = cli("sweep", *args, "--runs-dir", work / "runs")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fluxlenet: error: ") and message in lines[0], lines
    assert [p for p in tmp_path.rglob("*")] == [work, work / "runs"]  # nothing written anywhere
