"""`python -m fluxlenet reproduce`: a real small run of the post's batch-size sweep (3 seeds, MNIST, 1000 / 500
images, 1 epoch), judged against the shipped figures (they do not apply to so small a run) and against
figures planted inside and far outside our seed band."""

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fluxlenet.runs import load_sweep_dir

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"
SWEEPS = "batchsize"
SMALL = ["--sweeps", SWEEPS, "--backend", "torch", "--data-dir", str(MNIST), "--train-size", "1000",
         "--test-size", "500", "--epochs", "1"]
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
T_0995_2 = 9.924843200918287   # t(0.995, 2): 3 seeds


def fluxlenet(*args):
    return subprocess.run([sys.executable, "-m", "fluxlenet", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`reproduce post --sweeps batchsize` with 3 seeds on small data: 4 runs x 3 seeds."""
    if not (MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST files in {MNIST}")
    root = tmp_path_factory.mktemp("reproduce") / "runs"
    done = fluxlenet("reproduce", "post", *SMALL, "--seeds", "0,1,2", "--jobs", "2", "--runs-dir", root)
    return root, done


def seed_figures(root: Path) -> dict:
    """{(sweep, run, epoch, metric): [the seeds' values]} from the run folders."""
    figures = {}
    for sweep in SWEEPS.split(","):
        for r in load_sweep_dir(root / sweep):
            for epoch, row in r.log.iterrows():
                for metric in METRICS:
                    figures.setdefault((sweep, r.run, int(epoch), metric), []).append(float(row[metric]))
    return figures


def mean_sd(values):
    mean = math.fsum(values) / len(values)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def plant(root: Path, path: Path, shift: dict | None = None) -> Path:
    """Published figures equal to our seeds' means; `shift` moves some by a number of our sd:
    {(sweep, run, epoch, metric): k}."""
    figures = seed_figures(root)
    rows = {}
    for (sweep, run, epoch, metric), values in figures.items():
        mean, sd = mean_sd(values)
        rows.setdefault((sweep, run, epoch), {})[metric] = mean + (shift or {}).get((sweep, run, epoch, metric), 0) * sd
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sweep", "value", "epoch", *METRICS, "epoch_seconds"])
        for (sweep, run, epoch), values in rows.items():
            writer.writerow([sweep, run, epoch] + [repr(values[m]) for m in METRICS] + ["0.5" if epoch else ""])
    return path


def figure_rows(root: Path) -> list[dict]:
    return list(csv.DictReader((root / "reproduce-post" / "figures.csv").open()))


def test_small_runs_are_not_the_posts_protocol_so_the_verdict_is_inconclusive(runs):
    root, done = runs
    assert done.returncode == 4, done.stdout[-3000:] + done.stderr
    out = done.stdout
    assert "Reproduce post: sweeps batchsize, seeds 0,1,2, backends: torch" in out
    assert "Reproduction of post (How my LeNet reaches 99% on MNIST (Flux.jl, 2021)): INCONCLUSIVE (sweeps " \
           "batchsize only)" in out
    assert "the published figures do not apply: epochs 1 (published: 10); train_size 1000 (published: the full " \
           "set); test_size 500 (published: the full set)" in out
    folder = root / "reproduce-post"
    md = (folder / "report.md").read_text()
    # the post's table of the batch-size sweep: every setting, our 3 seeds with their spread, the best marked
    assert "| setting | Flux test acc | PyTorch test acc | published test acc | verdict (Flux) | verdict (PyTorch) " \
           "| Flux s/epoch | PyTorch s/epoch | published s/epoch |" in md
    settings = ("| 32", "| 64", "| 256", "| 512")
    table = [line.split(" | ") for line in md.splitlines() if line.split(" | ")[0] in settings]
    assert [row[0] for row in table] == ["| 32", "| 64", "| 256", "| 512"]
    assert all(row[1] == "not run" and "n=3)" in row[2] and row[3] == "n/a" for row in table)
    assert sum("★" in row[2] for row in table) == 1
    # 1 epoch of 1000 images: batch 32 takes 32 steps, batch 512 two; the ranking says so
    best = next(row[0] for row in table if "★" in row[2])
    assert best == "| 32"
    assert "not judged: the runs are not the published protocol" in md
    assert "Left out with --sweeps: baseline, l2, optimizer." in md
    for name in ("performance-batchsize.png", "time-batchsize.png", "band-batchsize.png"):
        assert (folder / name).stat().st_size > 10_000, name
        assert f"]({name})" in md
    assert (folder / "report.html").read_text().count('src="data:image/png;base64,') == 3
    assert figure_rows(root) == []   # nothing judged against figures that do not apply
    # resumable like any sweep: the same command again runs nothing
    again = fluxlenet("reproduce", "post", *SMALL, "--seeds", "0,1,2", "--runs-dir", root)
    assert again.returncode == 4 and again.stdout.count("already done") == 12, again.stdout[-2000:]


def test_published_figures_inside_the_seed_band_reproduce(runs, cli, tmp_path):
    root, _ = runs
    planted = plant(root, tmp_path / "inside.csv")
    code, out, err = cli("reproduce", "post", "--sweeps", SWEEPS, "--report-only", "--runs-dir", root,
                         "--published", planted)
    assert code == 0, out + err
    assert "Reproduction of post (How my LeNet reaches 99% on MNIST (Flux.jl, 2021)): REPRODUCED" in out
    assert "PyTorch: reproduced (4 headline figures: 4 reproduced; conclusions: 1 holds)" in out
    rows = figure_rows(root)
    assert len(rows) == 4 * 2 * 4 and {r["verdict"] for r in rows} == {"reproduced"}
    assert all(abs(float(r["z"])) < 1e-9 for r in rows)
    md = (root / "reproduce-post" / "report.md").read_text()
    assert "| the best batch size is 32 |" in md and ": holds (32 has the highest mean" in md


def test_published_figures_far_outside_the_seed_band_are_not_reproduced(runs, cli, tmp_path):
    root, _ = runs
    shift = {("batchsize", "64", 1, "test_acc"): -30, ("batchsize", "256", 1, "test_loss"): 30}
    planted = plant(root, tmp_path / "outside.csv", shift)
    code, out, err = cli("reproduce", "post", "--sweeps", SWEEPS, "--report-only", "--runs-dir", root,
                         "--published", planted)
    assert code == 1, out + err
    assert "): NOT REPRODUCED" in out
    assert "PyTorch: not reproduced (4 headline figures: 3 reproduced, 1 not reproduced; conclusions: 1 holds)" in out
    assert "batchsize/64, final test accuracy (epoch 1): not reproduced: published" in out and "-30.0 sd" in out
    rows = {(r["sweep"], r["run"], r["metric"], r["epoch"]): r for r in figure_rows(root)}
    values = seed_figures(root)[("batchsize", "64", 1, "test_acc")]
    mean, sd = mean_sd(values)
    row = rows[("batchsize", "64", "test_acc", "1")]
    assert row["verdict"] == "not reproduced" and row["headline"] == "True" and row["n"] == "3"
    assert float(row["z"]) == pytest.approx(-30, rel=1e-9)
    half = T_0995_2 * sd * math.sqrt(1 + 1 / 3)   # the prediction interval of 3 seeds
    assert float(row["interval_low"]) == pytest.approx(mean - half, rel=1e-9)
    assert float(row["interval_high"]) == pytest.approx(mean + half, rel=1e-9)
    # a per-epoch figure out of its band is shown, but does not decide
    loss = rows[("batchsize", "256", "test_loss", "1")]
    assert loss["verdict"] == "not reproduced" and loss["headline"] == "False"
    md = (root / "reproduce-post" / "report.md").read_text()
    assert "| batchsize/64 | +0.0 | -30.0 ✗ |" in md                  # the test accuracy grid: epochs 0 and 1
    assert "| batchsize/256 | PyTorch | test loss | 1 |" in md        # outside all our seeds, by how many sd


def test_one_seed_is_inconclusive_never_a_failure(runs, cli, tmp_path):
    root, _ = runs
    one = tmp_path / "runs"
    shutil.copytree(root, one, ignore=shutil.ignore_patterns("*-seed1", "*-seed2", "reproduce-post"))
    planted = plant(root, tmp_path / "outside.csv", {("batchsize", "64", 1, "test_acc"): -30})
    code, out, err = cli("reproduce", "post", "--sweeps", SWEEPS, "--report-only", "--runs-dir", one,
                         "--published", planted)
    assert code == 4, out + err
    assert "): INCONCLUSIVE" in out and "FAIL" not in out and ": not reproduced" not in out.lower()
    assert "final test accuracy of batchsize/32, batchsize/64, batchsize/256, batchsize/512: inconclusive: 1 " \
           f"seed(s), at least 3 needed: `python -m fluxlenet reproduce post --sweeps batchsize --epochs 1 " \
           f"--train-size 1000 --test-size 500 --data-dir {MNIST} --runs-dir {one} --seeds 0,1,2,3,4` gives enough" in out
    assert {r["verdict"] for r in figure_rows(one)} == {"inconclusive"}
    # the policy decides how many seeds are enough, and the report prints it
    code, out, err = cli("reproduce", "post", "--sweeps", SWEEPS, "--report-only", "--runs-dir", root,
                         "--published", planted, "--tolerance", "min_seeds=4")
    assert code == 4 and "3 seed(s), at least 4 needed" in out


def test_user_mistakes_are_one_line(runs, cli, tmp_path):
    root, _ = runs
    bad = tmp_path / "bad.csv"
    bad.write_text("sweep,value,epoch,test_acc\nbaseline,default,1,high\n")
    cases = [(["--sweeps", "nosuch"], "--sweeps: nosuch is not a sweep of `reproduce post`"),
             (["--published", tmp_path / "missing.csv"], "no such file"),
             (["--published", bad], "column test_acc must hold numbers, not 'high'"),
             (["--tolerance", "level=1.5"], "tolerance level must be at least 0.5 and below 1"),
             (["--runs-dir", tmp_path / "empty"], "no runs of `reproduce post`")]
    for args, words in cases:
        code, out, err = cli("reproduce", "post", "--report-only", *args)
        assert code == 2 and words in err, (args, err)
        assert len(err.strip().splitlines()) == 1


def test_the_gap_in_flux_and_pytorch_where_both_ran(runs, cli, tmp_path):
    """A Flux run folder holds the same files as a torch one: copies of the torch runs, backend renamed and one
    figure moved, stand for Flux runs here (no Julia needed)."""
    import json
    root, _ = runs
    both = tmp_path / "runs"
    shutil.copytree(root, both, ignore=shutil.ignore_patterns("reproduce-post"))
    for torch_dir in (both / "batchsize").glob("*-seed*/torch"):
        flux_dir = torch_dir.parent / "flux"
        shutil.copytree(torch_dir, flux_dir)
        doc = json.loads((flux_dir / "config.json").read_text())
        doc["config"]["backend"] = "flux"
        doc["versions"] = {"julia": "1.10.5", "Flux": "0.16.10"}
        (flux_dir / "config.json").write_text(json.dumps(doc))
        (flux_dir / "checkpoint.json").write_text(json.dumps({"config": doc["config"]}))
    log = both / "batchsize" / "512-seed1" / "flux" / "log.csv"
    lines = log.read_text().splitlines()
    cells = lines[2].split(",")                  # epoch 1: epoch, train_loss, train_acc, test_loss, test_acc, ...
    cells[4] = repr(float(cells[4]) + 5.0)
    lines[2] = ",".join(cells)
    log.write_text("\n".join(lines) + "\n")
    planted = plant(root, tmp_path / "inside.csv", {("batchsize", "64", 1, "test_acc"): -30})
    code, out, err = cli("reproduce", "post", "--sweeps", SWEEPS, "--report-only", "--runs-dir", both,
                         "--published", planted)
    assert code == 1, out + err
    assert "  Flux: not reproduced (4 headline figures: 3 reproduced, 1 not reproduced; conclusions: 1 holds)" in out
    md = (both / "reproduce-post" / "report.md").read_text()
    assert "| run | published − Flux mean | published − PyTorch mean | Flux vs PyTorch |" in md
    gaps = {line.split(" | ")[0]: line.split(" | ") for line in md.splitlines() if line.startswith("| batchsize/")
            and line.endswith("(lockstep) |")}
    assert gaps["| batchsize/64"][1] == gaps["| batchsize/64"][2] and gaps["| batchsize/64"][3] == "agree (lockstep) |"
    assert gaps["| batchsize/512"][3] == "differ (lockstep) |"     # 5 points at epoch 1: beyond the lockstep band
    assert "Flux and PyTorch differ on some runs" in md
    assert "| Flux | 0.12.4 (with the Zygote and NNlib of its time) |" in md and "no: Flux 0.16.10 here |" in md
