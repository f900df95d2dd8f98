"""`reproduce post` with the post's own seed: a real small run of the baseline (seed 42 with the post's
draws, seeds 0-2 beside it, and the float64 variant of seed 42 that sizes the band), judged against
figures planted equal to the replay and moved out of its band."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fluxlenet.runs import load_run
from parity.replay import ROUNDING_FLOOR

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"
SMALL = ["--sweeps", "baseline", "--backend", "torch", "--data-dir", str(MNIST), "--train-size", "1000",
         "--test-size", "500", "--epochs", "1"]
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def fluxlenet(*args):
    return subprocess.run([sys.executable, "-m", "fluxlenet", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not (MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST files in {MNIST}")
    root = tmp_path_factory.mktemp("replay") / "runs"
    done = fluxlenet("reproduce", "post", *SMALL, "--seeds", "0,1,2,42", "--jobs", "2", "--runs-dir", root)
    return root, done


def replay_run(root):
    return load_run(root / "baseline" / "default-seed42" / "torch")


def plant(root: Path, path: Path, shift: dict | None = None) -> Path:
    """Published figures equal to the PyTorch replay's, some moved: {(epoch, metric): points}."""
    log = replay_run(root).log
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sweep", "value", "epoch", *METRICS])
        for epoch, row in log.iterrows():
            writer.writerow(["baseline", "default", epoch] + [repr(float(row[m]) + (shift or {}).get((epoch, m), 0))
                                                              for m in METRICS])
    return path


def replay_rows(root: Path) -> list[dict]:
    return list(csv.DictReader((root / "reproduce-post" / "replay.csv").open()))


def test_seed_42_runs_first_with_its_float64_variant(runs):
    root, done = runs
    assert done.returncode == 4, done.stdout[-3000:] + done.stderr   # the shipped figures do not apply here
    out = done.stdout
    assert ("Reproduce post: sweeps baseline, seeds 0,1,2,42, backends: torch; then 1 same-seed runs in other "
            "arithmetic to size the replay's band (baseline-replay-float64)") in out
    assert out.index("default seed 42 [torch]") < out.index("default seed 0 [torch]")  # the replay first
    variant = root / "baseline-replay-float64" / "default-seed42" / "torch"
    config = json.loads((variant / "config.json").read_text())["config"]
    assert (config["precision"], config["rng"], config["seed"], config["backend"]) == ("float64", "julia", 42, "torch")
    assert replay_run(root).config["rng"] == "julia" and replay_run(root).precision == "float32"
    # float64 arithmetic on the same draws: the same run, not the same figures to the last digit
    assert load_run(variant).log.at[0, "test_loss"] == pytest.approx(replay_run(root).log.at[0, "test_loss"], abs=1e-3)
    assert "Do the write-up's own runs replay (seed 42, its generator's draws)? INCONCLUSIVE" in out
    assert "Flux: not run (Julia not set up): the replay is PyTorch's alone" in out


def test_figures_equal_to_the_replay_are_replayed(runs, cli, tmp_path):
    root, _ = runs
    code, out, err = cli("reproduce", "post", "--sweeps", "baseline", "--report-only", "--runs-dir", root,
                         "--published", plant(root, tmp_path / "same.csv"))
    assert code == 0, out + err
    assert "Do the write-up's own runs replay (seed 42, its generator's draws)? REPLAYED" in out
    assert ("PyTorch: replayed (1 headline figure: 1 replayed; every published figure: 8 replayed)") in out
    assert "Is seed 42 a typical draw (its final test accuracy among our other seeds)?" in out
    assert "PyTorch (seeds 0,1,2 beside it): " in out
    assert "a question about the seeds' distribution, not about the post's own run" in out
    rows = replay_rows(root)
    assert len(rows) == 8 and {r["verdict"] for r in rows} == {"replayed"}
    assert all(float(r["difference"]) == 0 for r in rows)
    # seed 42 is the post's run again: left out of the seed sample the distribution is judged on
    assert {r["n"] for r in csv.DictReader((root / "reproduce-post" / "figures.csv").open())} == {"3"}
    md = (root / "reproduce-post" / "report.md").read_text()
    assert "## The post's own runs, replayed (seed 42)" in md
    assert "| run | epoch | published test acc | Flux replay | PyTorch replay | band ± |" in md
    assert "PyTorch float32 vs PyTorch float64" in md and "### The band per epoch" in md


def test_a_figure_outside_the_band_is_not_replayed_and_the_band_is_printed(runs, cli, tmp_path):
    root, _ = runs
    planted = plant(root, tmp_path / "moved.csv", {(1, "test_acc"): 5.0})
    code, out, err = cli("reproduce", "post", "--sweeps", "baseline", "--report-only", "--runs-dir", root,
                         "--published", planted)
    assert code == 1, out + err
    assert "? NOT REPLAYED" in out
    assert "baseline/default, final test accuracy (epoch 1): not replayed: published" in out
    row = next(r for r in replay_rows(root) if r["metric"] == "test_acc" and r["epoch"] == "1")
    assert row["verdict"] == "not replayed" and row["headline"] == "True"
    assert float(row["difference"]) == pytest.approx(-5.0, abs=1e-9)
    # one pair (float32 and float64 of seed 42): band = max(floor, 3 x |their difference|)
    variant = load_run(root / "baseline-replay-float64" / "default-seed42" / "torch")
    d = replay_run(root).log.at[1, "test_acc"] - variant.log.at[1, "test_acc"]
    assert float(row["band"]) == pytest.approx(max(ROUNDING_FLOOR, 3 * math.fabs(d)), rel=1e-12)
    # the band's k is the policy's, and the rule printed says it
    code, out, err = cli("reproduce", "post", "--sweeps", "baseline", "--report-only", "--runs-dir", root,
                         "--published", planted, "--tolerance", "replay_k=5")
    assert code == 1 and "band = max(1e-4, 5 × RMS of same-seed differences" in out, out + err
    widths = {(r["metric"], r["epoch"]): float(r["band"]) for r in replay_rows(root)}
    assert widths[("test_acc", "1")] == pytest.approx(max(ROUNDING_FLOOR, 5 * math.fabs(d)), rel=1e-12)
