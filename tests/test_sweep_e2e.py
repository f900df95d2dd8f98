"""The product as a user runs it: real sweeps and runs through the CLI, on small real data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxlenet.runlog import RunFolder

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FASHION = SHARED / "fashion-mnist"
MNIST = SHARED / "mnist"
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {SHARED}")


def fluxlenet(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fluxlenet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def optimizer_sweep(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    out = fluxlenet("sweep", "optimizer", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", FASHION,
                    "--epochs", 2, "--train-size", 640, "--test-size", 200, "--runs-dir", runs)
    return runs, out


def test_sweep_prints_the_posts_lines_and_writes_every_file(optimizer_sweep):
    runs, out = optimizer_sweep
    assert out.returncode == 0, out.stderr
    for name in ("ADAMW", "NADAM", "AdaBelief"):
        folder = runs / "optimizer" / f"{name}-seed42" / "torch"
        for f in ("config.json", "log.csv", "console.log", "status.json", "model.pt"):
            assert (folder / f).is_file(), f"{folder / f} missing"
        assert list(folder.glob("events.out.tfevents.*"))
        rows = RunFolder(folder).read_log_rows()
        assert [r["epoch"] for r in rows] == [0, 1, 2]
        assert RunFolder(folder).read_status()["status"] == "finished"
        config = json.loads((folder / "config.json").read_text())
        assert config["config"]["batchsize"] == 32 and config["config"]["lambda_"] == 1e-6
        assert config["versions"]["torch"].startswith("2.") and config["device"].startswith("cpu")
        assert config["threads"] == {"torch": 1}  # the threads train() set: 1 by default, whatever --jobs
        console = (folder / "console.log").read_text()
        for epoch in range(3):
            assert f"Epoch: {epoch}   Train: (loss = " in console
        assert rows[2]["train_loss"] < rows[0]["train_loss"] - 0.2  # it learns
    # every epoch line went to the terminal too, three runs x epochs 0..2
    assert out.stdout.count("Epoch: ") == 9
    # lockstep: same initial weights, so every run has the same epoch-0 figures
    first = {tuple(RunFolder(runs / "optimizer" / f"{n}-seed42" / "torch").read_log_rows()[0].values())[:5]
             for n in ("ADAMW", "NADAM", "AdaBelief")}
    assert len(first) == 1


def test_rerun_skips_finished_runs(optimizer_sweep):
    runs, _ = optimizer_sweep
    log = runs / "optimizer" / "NADAM-seed42" / "torch" / "log.csv"
    before = log.read_text()
    out = fluxlenet("sweep", "optimizer", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", FASHION,
                    "--epochs", 2, "--train-size", 640, "--test-size", 200, "--runs-dir", runs)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("already done") == 3 and "Epoch:" not in out.stdout
    assert log.read_text() == before


def test_other_settings_in_the_same_runs_folder_are_not_mixed(optimizer_sweep):
    runs, _ = optimizer_sweep  # (more epochs are not other settings: tests/test_resume_length.py)
    out = fluxlenet("sweep", "optimizer", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", FASHION,
                    "--epochs", 2, "--train-size", 640, "--test-size", 200, "--runs-dir", runs, "--mode", "native", "--rng", "numpy")
    assert out.returncode == 2
    assert "holds a run with other settings (" in out.stderr
    assert "mode 'lockstep' there, 'native' now" in out.stderr and "rng 'julia' there, 'numpy' now" in out.stderr
    assert "Traceback" not in out.stderr


def test_auto_backend_without_julia_runs_torch_and_says_flux_was_not_run(tmp_path):
    out = fluxlenet("train", "--dataset", "fashion-mnist", "--data-dir", FASHION, "--epochs", 1,
                    "--train-size", 256, "--test-size", 100, "--savepath", tmp_path / "t")
    assert out.returncode == 0, out.stderr
    assert "Flux was not run" in out.stdout and "setup-julia" in out.stdout
    run = tmp_path / "t" / "t-seed0"  # <savepath>/<name>-seed<N>/<backend>/
    assert (run / "torch" / "log.csv").is_file() and not (run / "flux").exists()


def test_train_takes_the_posts_args(tmp_path):
    out = fluxlenet("train", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", FASHION,
                    "--eta", 1e-3, "--lambda", 1e-4, "--batchsize", 64, "--epochs", 2, "--infotime", 2,
                    "--checktime", 1, "--optimizer", "NAdam", "--model", "lenet5-1998", "--seed", 7,
                    "--train-size", 256, "--test-size", 100, "--savepath", tmp_path / "t")
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "t" / "t-seed7" / "torch"  # laid out as a sweep's runs: <savepath>/<name>-seed<N>/<backend>/
    assert [r["epoch"] for r in RunFolder(folder).read_log_rows()] == [0, 2]  # report(0), then every infotime = 2
    assert out.stdout.count("Model saved in") == 2  # checktime = 1
    cfg = json.loads((folder / "config.json").read_text())["config"]
    assert (cfg["eta"], cfg["lambda_"], cfg["batchsize"], cfg["optimizer"], cfg["model"], cfg["seed"]) == \
        (1e-3, 1e-4, 64, "NAdam", "lenet5-1998", 7)


def test_flush_subnormals_is_a_setting_of_the_run(tmp_path):
    args = ["train", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", FASHION, "--epochs", 1,
            "--train-size", 256, "--test-size", 100, "--lambda", 1e-2, "--batchsize", 32]
    out = fluxlenet(*args, "--flush-subnormals", "--savepath", tmp_path / "ftz")
    assert out.returncode == 0, out.stderr
    assert "cannot flush" not in out.stdout
    cfg = json.loads((tmp_path / "ftz" / "ftz-seed0" / "torch" / "config.json").read_text())["config"]
    assert cfg["flush_subnormals"] is True
    # the same run without it is another run, not a finished one to skip
    out = fluxlenet(*args, "--savepath", tmp_path / "ftz")
    assert out.returncode == 2 and "flush_subnormals True there, False now" in out.stderr, out.stderr


@pytest.mark.parametrize("args, message", [
    (["sweep", "nosuchsweep"], "unknown sweep 'nosuchsweep'"),
    (["train", "--eta", "-0.1"], "eta must be > 0"),
    (["train", "--batchsize", "0"], "batchsize must be >= 1"),
    (["train", "--checktime", "-1"], "checktime must be >= 0"),
    (["train", "--optimizer", "SGDD"], "unknown optimizer 'SGDD'"),
    (["train", "--dataset", "fashion-mnist", "--data-dir", FASHION, "--train-size", 70000], "70000"),
    (["train", "--dataset", "fashion-mnist", "--data-dir", FASHION, "--model", "cifar-cnn"], "takes inputs of shape"),
])
def test_bad_input_is_one_line_and_exit_2_before_training(tmp_path, args, message):
    out = fluxlenet(*args, "--savepath" if args[0] == "train" else "--runs-dir", tmp_path / "x")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Epoch:" not in out.stdout


def test_lenet5_passes_97_percent_on_real_mnist_digits(tmp_path):
    """First 8,000 images of the real MNIST test set to train, the last 2,000 to test."""
    if not (MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("real MNIST test set not found")
    out = fluxlenet("train", "--backend", "torch", "--dataset", "mnist-t10k-split", "--data-dir", MNIST,
                    "--eta", 1e-3, "--batchsize", 32, "--epochs", 8, "--checktime", 0, "--savepath", tmp_path / "m")
    assert out.returncode == 0, out.stderr
    rows = RunFolder(tmp_path / "m" / "m-seed0" / "torch").read_log_rows()
    assert rows[-1]["epoch"] == 8
    assert rows[-1]["test_acc"] > 97.0, rows[-1]
