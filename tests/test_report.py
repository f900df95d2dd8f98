"""The side-by-side report: a real small torch sweep, plus Flux and post-protocol runs made from it."""

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fluxlenet import faults
from fluxlenet.cli import main
from fluxlenet.report import write_report
from parity import published

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "fashion-mnist"
RENDER = REPO / "scripts" / "render_report.sh"
PYTORCH_ORANGE = np.array([0xEE, 0x4C, 0x2C]) / 255
FLUX_PURPLE = np.array([0x95, 0x58, 0xB2]) / 255


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`sweep optimizer --backend torch` at small sizes: 1 epoch, 300 / 100 Fashion-MNIST images."""
    if not (DATA / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no Fashion-MNIST files in {DATA}")
    root = tmp_path_factory.mktemp("report") / "runs"
    done = subprocess.run([sys.executable, "-m", "fluxlenet", "sweep", "optimizer", "--backend", "torch",
                           "--dataset", "fashion-mnist", "--data-dir", str(DATA), "--train-size", "300",
                           "--test-size", "100", "--epochs", "1", "--trace-steps", "8", "--runs-dir", str(root)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def edit_config(run_dir: Path, meta: dict | None = None, **changes) -> None:
    """Change the run's settings, in config.json and checkpoint.json alike (they must agree), and its meta."""
    for path in (run_dir / "config.json", run_dir / "checkpoint.json"):
        doc = json.loads(path.read_text())
        doc["config"].update(changes)
        if path.name == "config.json":
            doc.update(meta or {})
        path.write_text(json.dumps(doc))


def write_log(run_dir: Path, rows: list[dict]) -> None:
    """log.csv of these rows, and status.json to match (a finished run's log ends where it says)."""
    columns = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "valid_loss", "valid_acc", "seconds",
               "lr", "status"]
    with (run_dir / "log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({**status, "last_epoch": int(rows[-1]["epoch"])}))


def pixels_near(png: Path, colour: np.ndarray) -> int:
    import matplotlib.image
    image = matplotlib.image.imread(png)[..., :3]
    return int((np.abs(image - colour).max(axis=-1) < 0.06).sum())


def test_report_of_a_torch_sweep(runs, capsys):
    assert main(["report", "optimizer", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    folder = runs / "optimizer"
    assert f"Report: {folder / 'report.md'}" in out
    md = (folder / "report.md").read_text()
    # the table: Flux marked as not run, the PyTorch figures, the published column (n/a on Fashion-MNIST)
    header = next(line for line in md.splitlines() if line.startswith("| value (optimizer)"))
    assert "Flux test acc" in header and "PyTorch test acc" in header and "published test acc" in header
    for run in ("ADAMW", "NADAM", "AdaBelief"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {run} |")).split(" | ")
        assert row[1] == "not run" and re.fullmatch(r"\d+\.\d\d", row[2]) and row[3] == "n/a"
    assert "Flux: not run (no flux run folders in" in md and "Julia not available here" in md
    assert "Published figures (lenet-99-post/optimizer): do not apply" in md
    assert "dataset fashion-mnist (published: mnist)" in md
    assert "the post's optimizer/ADAMW log is identical, figure for figure, to its l2/1e-6 log" in md
    assert "Flux 0.12's `ADAMW(eta, beta, decay=0)` had no decay by default" in md
    assert "| PyTorch | numpy " in md and "| Flux | not run |" in md
    # plots beside the report, with curves in them
    for name in ("test-accuracy.png", "test-loss.png", "final-accuracy.png", "step-trace.png"):
        assert (folder / name).stat().st_size > 10_000
        assert f"]({name})" in md
        assert pixels_near(folder / name, PYTORCH_ORANGE) > 200, name
    assert not (folder / "framework-difference.png").exists()  # nothing to take a difference of: said instead
    # the HTML is self-contained: every image embedded, nothing fetched
    page = (folder / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page and "<link" not in page


def post_sweep(runs: Path, tmp_path: Path) -> Path:
    """The sweep as if run at the post's protocol (full MNIST, 10 epochs) in both frameworks: torch logs
    the post's figures, Flux the same with a drift inside the lockstep bands."""
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    blog = published.blog_logs()
    for run_dir in (root / "optimizer").glob("*-seed42"):
        post = blog[(blog.sweep == "optimizer") & (blog.value == run_dir.name.removesuffix("-seed42"))]
        rows = [{"epoch": r.epoch, "train_loss": r.train_loss, "train_acc": r.train_acc, "test_loss": r.test_loss,
                 "test_acc": r.test_acc, "seconds": r.epoch_seconds if r.epoch else "", "lr": 3e-4, "status": "ok"}
                for r in post.itertuples()]
        torch_dir = run_dir / "torch"
        edit_config(torch_dir, {"train_samples": 60000, "test_samples": 10000}, dataset="mnist", train_size=None,
                    test_size=None, epochs=10)
        write_log(torch_dir, rows)
        flux_dir = run_dir / "flux"
        shutil.copytree(torch_dir, flux_dir)
        edit_config(flux_dir, {"versions": {"julia": "1.10.5", "Flux": "0.16.10"}, "device": "cpu: 8 threads"},
                    backend="flux")
        write_log(flux_dir, [{**r, "test_acc": r["test_acc"] - (0.3 if r["epoch"] >= 2 else 0.0),
                              "seconds": (r["seconds"] or 0) * 2 or ""} for r in rows])
    return root


def test_report_side_by_side_with_flux_and_the_post(runs, tmp_path):
    root = post_sweep(runs, tmp_path)
    written = write_report("optimizer", root)
    assert written["result"].status == "inconclusive"   # one seed: the published figures cannot be judged
    md = written["markdown"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| ADAMW |")).split(" | ")
    # value, Flux acc, PyTorch acc, published acc, Flux - PyTorch, - published (Flux / PyTorch)
    assert row[1:6] == ["98.75", "99.05", "99.05", "-0.30", "-0.30 / +0.00"]
    assert row[-2] == "inconclusive" and row[-1].endswith("/ 14 / 14 |")  # s/epoch: Flux / PyTorch / the post
    assert "Flux: 3 run folders (3 finished)" in md and "julia 1.10.5" in md
    assert "| ADAMW | 42 | Flux vs PyTorch | lockstep | 0–10 |" in md
    assert "| ADAMW | 42 | PyTorch vs published | published | 0–10 |" in md
    assert "| ADAMW | 42 | Flux vs PyTorch | lockstep | 0–10 | 0.3 | 0 | 8 | pass |" in md
    assert "Published figures (lenet-99-post/optimizer): do not apply" not in md
    folder = root / "optimizer"
    assert pixels_near(folder / "framework-difference.png", FLUX_PURPLE) > 50  # Flux - published curves
    assert pixels_near(folder / "test-accuracy.png", np.zeros(3)) > 500        # the published curve (black)
    assert pixels_near(folder / "test-accuracy.png", FLUX_PURPLE) > 200


def test_report_with_seeds_a_step_budget_and_validation_figures(runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    base = root / "optimizer" / "NADAM-seed42" / "torch"
    rows = list(csv.DictReader((base / "log.csv").open()))
    for offset, seed in enumerate((42, 1, 2)):
        folder = root / "optimizer" / f"NADAM-seed{seed}" / "torch"
        if offset:
            shutil.copytree(base, folder)
        edit_config(folder, {"valid_samples": 50}, seed=seed, steps=8, valid_size=50)
        write_log(folder, [{**r, "test_acc": float(r["test_acc"]) + offset, "valid_loss": 2.0,
                            "valid_acc": 20.0 + offset}
                           for r in rows])
    md = write_report("optimizer", root)["markdown"].read_text()
    assert "These runs used a budget of 8 optimiser steps (steps = 8), not whole epochs" in md
    assert "PyTorch valid acc" in md and "21.00 ± 1.00 (n=3)" in md
    row = next(line for line in md.splitlines() if line.startswith("| NADAM |")).split(" | ")
    assert row[2].endswith("± 1.00 (n=3)")


def test_report_into_a_folder_that_cannot_be_written(runs, monkeypatch, capsys):
    monkeypatch.setattr(faults, "RULES", [(None, "enospc", "*")])  # a full disk (root writes anywhere)
    assert main(["report", "optimizer", "--runs-dir", str(runs)]) == 2
    assert capsys.readouterr().err == (
        f"fluxlenet: error: cannot write the report into {runs / 'optimizer'} (No space left on device); the report "
        f"goes beside the runs: copy that folder somewhere writable and report on the copy\n")


def test_run_names_in_another_script_plot_without_warnings(runs, tmp_path):
    """DejaVu Sans has no CJK glyphs: the names are drawn as boxes, and matplotlib's warnings (with
    source lines) stay off the terminal."""
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    for i, run_dir in enumerate(sorted((root / "optimizer").glob("*-seed42"))):
        edit_config(run_dir / "torch", run=f"优化器{i}")
    done = subprocess.run([sys.executable, "-m", "fluxlenet", "report", str(root / "optimizer")], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
    assert "| 优化器0 |" in (root / "optimizer" / "report.md").read_text()


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(runs, tmp_path):
    root = post_sweep(runs, tmp_path)
    html = write_report("optimizer", root)["html"]
    png = tmp_path / "report.png"
    done = subprocess.run(["bash", str(RENDER), str(html), str(png), "1200", "2000"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    import matplotlib.image
    image = matplotlib.image.imread(png)[..., :3]
    assert image.shape[:2] == (2000, 1200)
    assert pixels_near(png, np.array([0xE3, 0xF5, 0xE1]) / 255) > 1000   # the green "pass" verdict box
    assert pixels_near(png, PYTORCH_ORANGE) > 100                         # the embedded plots were drawn


def test_test_loss_is_plotted_on_a_log_scale(runs, tmp_path, monkeypatch):
    """Epoch 0's loss of 2.3 would flatten the others onto the axis: the loss panels are logarithmic."""
    from fluxlenet import plots
    from fluxlenet.runs import compare_sweep
    scales, save = {}, plots.save_figure

    def record(fig, path):
        scales[path.name] = [ax.get_yscale() for ax in fig.axes if ax.has_data()]
        return save(fig, path)
    monkeypatch.setattr(plots, "save_figure", record)
    plots.make_plots(compare_sweep("optimizer", runs), tmp_path)
    assert scales["test-loss.png"] == ["log"] * 3
    assert scales["test-accuracy.png"] == ["linear"] * 3
