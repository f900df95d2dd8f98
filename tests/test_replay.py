"""The post's random scheme (rng = "julia"): its weights and batch orders, and its epoch-0 line replayed."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fluxlenet.backends import flux_layout
from fluxlenet.config import ConfigError, RunConfig
from fluxlenet.init import epoch_orders, initial_weights
from fluxlenet.runlog import RunFolder

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "reference" / "julia-mersenne-twister"
MNIST = REPO.parent / "shared" / "data" / "mnist"
needs_vectors = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"Julia's test vectors not found at {VECTORS}")

LAYERS = RunConfig().layers()  # the post's LeNet-5
POST_ARRAYS = ("conv1", "conv2", "dense1", "dense2", "dense3")
FANS = {"conv1": (25, 150), "conv2": (150, 400), "dense1": (256, 120), "dense2": (120, 84), "dense3": (84, 10)}


@needs_vectors
def test_the_julia_schemes_weights_are_flux_0_12_glorot_of_the_posts_draws():
    """In Flux's layout each weight is (u - 0.5f0) * sqrt(24f0 / (fan_in + fan_out)) of the uniform draw
    Julia made, in Float32, bit for bit; biases are zero. A layout or fan mistake fails here."""
    params = initial_weights(LAYERS, 42, np.float32, rng="julia")
    in_flux = flux_layout.flux_params(LAYERS, params)
    assert len(in_flux) == 2 * len(POST_ARRAYS)
    for k, name in enumerate(POST_ARRAYS):
        u = np.load(VECTORS / f"post42_{name}_uniform.npy")
        fan_in, fan_out = FANS[name]
        want = (u - np.float32(0.5)) * np.sqrt(np.float32(24) / np.float32(fan_in + fan_out))
        assert in_flux[2 * k].shape == want.shape and np.array_equal(in_flux[2 * k], want), name
        assert not in_flux[2 * k + 1].any()
    # float64 runs start from the same Float32 weights, widened
    wide = initial_weights(LAYERS, 42, np.float64, rng="julia")
    assert all(np.array_equal(w64, w32) and w64.dtype == np.float64 for (w64, _), (w32, _) in zip(wide, params))


@needs_vectors
def test_the_julia_schemes_orders_are_the_posts_shuffles():
    """Epoch e trains on the order after shuffle 2e (report(0) shuffles first, each report(epoch) once
    more); with infotime 2 only the even epochs report; a resumed run starts at its epoch's order."""
    shuffles = np.load(VECTORS / "post42_shuffles_60000x21.npy").astype(np.int64) - 1
    orders = epoch_orders(LAYERS, 42, 60000, rng="julia")
    for epoch in (1, 2, 3):
        order = next(orders)
        assert order.dtype == np.int64 and np.array_equal(order, shuffles[:, 2 * epoch - 1]), epoch
    assert np.array_equal(next(epoch_orders(LAYERS, 42, 60000, "julia", start=10)), shuffles[:, 19])
    every_other = epoch_orders(LAYERS, 42, 60000, "julia", infotime=2)
    assert np.array_equal(next(every_other), shuffles[:, 1])   # epoch 1: shuffle 2, and no report
    assert np.array_equal(next(every_other), shuffles[:, 2])   # epoch 2: shuffle 3
    assert np.array_equal(next(every_other), shuffles[:, 4])   # report(2) took shuffle 4


def test_the_numpy_scheme_is_unchanged_and_another_seed_gives_other_draws():
    numpy_weights = initial_weights(LAYERS, 42, np.float32)
    julia_weights = initial_weights(LAYERS, 42, np.float32, rng="julia")
    assert all(a.shape == b.shape and not np.array_equal(a, b) for (a, _), (b, _) in zip(numpy_weights, julia_weights))
    other_seed = initial_weights(LAYERS, 43, np.float32, rng="julia")
    assert not np.array_equal(other_seed[0][0], julia_weights[0][0])
    first = next(epoch_orders(LAYERS, 7, 50, "numpy"))
    assert np.array_equal(first, np.random.default_rng([7, 1, 1]).permutation(50))


def test_the_julia_scheme_needs_lockstep_and_fixes_the_evaluation_batch():
    with pytest.raises(ConfigError, match="rng 'julia' draws the lockstep inputs") as e:
        RunConfig(rng="julia", mode="native").validate()
    assert e.value.key == "rng"
    assert RunConfig(rng="julia", batchsize=32).eval_batchsize() == 32
    assert RunConfig(batchsize=32).eval_batchsize() is None
    job = flux_layout.job_spec(RunConfig(rng="julia", batchsize=512), savepath="x")
    assert job["evalbatch"] == 512


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"real MNIST not found at {MNIST}")
def test_sweep_baseline_seed_42_replays_the_posts_epoch_0_line(tmp_path):
    """The issue's check, as a user runs it: the post's line digit for digit, and epoch 1 near it."""
    out = subprocess.run([sys.executable, "-m", "fluxlenet", "sweep", "baseline", "--seeds", "42", "--backend",
                          "torch", "--dataset", "mnist", "--data-dir", MNIST.parent, "--epochs", "1",
                          "--runs-dir", tmp_path], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "Epoch: 0   Train: (loss = 2.3162, acc = 12.1333)   Test: (loss = 2.316, acc = 12.11)" in out.stdout
    rows = RunFolder(tmp_path / "baseline" / "default-seed42" / "torch").read_log_rows()
    assert abs(rows[1]["test_acc"] - 95.53) <= 0.25, rows[1]  # published 95.53
