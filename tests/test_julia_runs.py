"""Real Flux runs (marked `julia`): skipped, with the reason, where Julia is not set up.

Set up with `python -m fluxlenet setup-julia`, then `pytest -m julia`. Each test starts Julia in a
spawned worker (as the runner does) or a child process, so the first one pays for compilation.
The data are small synthetic MNIST-format files, so no download is needed.
"""

from __future__ import annotations

import csv
import gzip
import json
import multiprocessing
import os
import signal
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest

from fluxlenet.julia_env import julia_status

READY, REASON = julia_status()
pytestmark = pytest.mark.julia
if not READY:
    pytest.skip(f"Julia is not set up: {REASON}", allow_module_level=True)

from fluxlenet.config import RunConfig  # noqa: E402
from fluxlenet.worker import worker_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER_TIMEOUT_S = 1200


# ------------------------------------------------------------------ data and runs


def _idx(magic: int, arr: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """MNIST-format files: 640 training and 256 test images, each class a bright bar plus noise."""
    folder = tmp_path_factory.mktemp("data") / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)

    def images(labels):
        x = rng.integers(0, 60, size=(len(labels), 28, 28))
        for i, c in enumerate(labels):
            x[i, 2 + 2 * c: 5 + 2 * c, 4:24] = 255
        return x

    for prefix, n in (("train", 640), ("t10k", 256)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(2051, images(labels))))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(2049, labels)))
    return folder.parent


def run(backend: str, run_dir: Path, data_dir: Path, **settings) -> dict:
    """One backend run in a spawned worker, as the runner starts it; returns status.json."""
    base = dict(sweep="julia-tests", run=run_dir.name, backend=backend, dataset="mnist", data_dir=str(data_dir),
                batchsize=64, epochs=2, checktime=1, threads=2, seed=1)
    cfg = RunConfig(**{**base, **settings}).validate()
    proc = multiprocessing.get_context("spawn").Process(target=worker_main, args=(backend, cfg.to_dict(), str(run_dir)))
    proc.start()
    proc.join(WORKER_TIMEOUT_S)
    if proc.is_alive():
        proc.terminate()
        pytest.fail(f"the {backend} worker did not finish within {WORKER_TIMEOUT_S} s")
    return json.loads((run_dir / "status.json").read_text())


def log_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def trace_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "trace.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def python_with_julia(code: str, timeout: float = WORKER_TIMEOUT_S) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


# ------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def flux_run(tmp_path_factory, data_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "native" / "flux"
    status = run("flux", run_dir, data_dir, mode="native", epochs=2, checktime=2)
    assert status["status"] == "finished", status
    return run_dir


def test_a_short_flux_run_through_the_worker(flux_run):
    rows = log_rows(flux_run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and all(r["status"] == "ok" for r in rows)
    assert float(rows[-1]["train_acc"]) > float(rows[0]["train_acc"])  # it learns the bars
    console = (flux_run / "console.log").read_text().splitlines()
    epoch_lines = [line for line in console if line.startswith("Epoch: ")]
    assert len(epoch_lines) == 3 and "Train: (loss = " in epoch_lines[0] and "Test: (loss = " in epoch_lines[0]
    assert console[-1] == f"Model saved in \"{flux_run / 'model.bson'}\""
    assert (flux_run / "model.bson").is_file() and (flux_run / "optimiser.bson").is_file()
    config = json.loads((flux_run / "config.json").read_text())
    assert config["versions"]["Flux"].startswith("0.16") and config["versions"]["julia"].startswith("1.10")
    assert config["device"].startswith("cpu: Julia")
    assert config["threads"] == {"julia": 2, "blas": 2}  # the run's threads = 2: Julia started with them
    assert list(flux_run.glob("events.out.tfevents.*"))  # TensorBoard scalars, as for torch


def test_model_bson_loads_back_and_predicts_the_same(flux_run, data_dir):
    code = f"""
import json
from fluxlenet.backends import flux
from fluxlenet.backends.flux_layout import julia_view
from fluxlenet.data import load_dataset
from juliacall import Main as jl
flux.fluxlenet_module()
jl.seval("import BSON, Flux")
data = load_dataset("mnist", {str(data_dir)!r}, seed=1, download=False, progress=False)
figures = jl.seval('''(path, x, y) -> begin
    BSON.@load path model epoch
    loader = Flux.DataLoader((Array{{Float32}}(x), Flux.onehotbatch(Vector{{Int}}(y), 0:9)); batchsize = 1000)
    r = Main.FluxLeNet.eval_loss_accuracy(loader, model)
    (epoch, r.loss, r.acc)
end''')
epoch, loss, acc = figures({str(flux_run / 'model.bson')!r}, julia_view(data.test_x), data.test_y)
print("RESULT", json.dumps([int(epoch), float(loss), float(acc)]))
"""
    out = python_with_julia(code)
    epoch, loss, acc = json.loads(out.split("RESULT", 1)[1])
    last = log_rows(flux_run)[-1]
    assert epoch == 2 and int(last["epoch"]) == 2
    assert loss == float(last["test_loss"]) and acc == float(last["test_acc"])


def test_resume_goes_on_from_the_checkpoint(tmp_path, data_dir):
    """A finished 1-epoch Flux run, asked for 2 epochs, goes on from its epoch-1 checkpoint (model.bson +
    optimiser.bson): the same as 2 epochs straight, figure for figure (lockstep); checkpoint.json then
    records the new length. The settings check is Python's (RunConfig.length_problem), as for torch
    (tests/test_resume_length.py)."""
    run_dir = tmp_path / "resume" / "flux"
    assert run("flux", run_dir, data_dir, mode="lockstep", epochs=1, checktime=1)["status"] == "finished"
    assert run("flux", run_dir, data_dir, mode="lockstep", epochs=2, checktime=1)["status"] == "finished"
    assert [int(r["epoch"]) for r in log_rows(run_dir)] == [0, 1, 2]
    console = (run_dir / "console.log").read_text()
    assert "Resuming from the checkpoint of epoch 1" in console
    assert json.loads((run_dir / "checkpoint.json").read_text())["config"]["epochs"] == 2
    # a lockstep run resumed gives the figures of an uninterrupted one
    straight = tmp_path / "straight" / "flux"
    assert run("flux", straight, data_dir, mode="lockstep", epochs=2, checktime=1)["status"] == "finished"

    def figures(folder):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in log_rows(folder)]
    assert figures(straight) == figures(run_dir)


@pytest.fixture(scope="module")
def lockstep_pair(tmp_path_factory, data_dir):
    def pair(precision: str):
        root = tmp_path_factory.mktemp(f"lockstep-{precision}")
        settings = dict(mode="lockstep", precision=precision, epochs=1, trace_steps=10, checktime=0)
        for backend in ("torch", "flux"):
            assert run(backend, root / backend, data_dir, **settings)["status"] == "finished"
        return root / "torch", root / "flux"
    return pair


def test_lockstep_float32_agrees_with_torch(lockstep_pair):
    torch_dir, flux_dir = lockstep_pair("float32")
    t_rows, f_rows = log_rows(torch_dir), log_rows(flux_dir)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):  # epoch 0: the same weights, the post's rounding
        assert abs(float(t_rows[0][key]) - float(f_rows[0][key])) <= 1e-4 + 1e-12, key
    t_trace, f_trace = trace_rows(torch_dir), trace_rows(flux_dir)
    assert [r["step"] for r in t_trace] == [r["step"] for r in f_trace] == list(range(1, 11))
    assert f_trace[0]["checksum"] == pytest.approx(t_trace[0]["checksum"], rel=1e-6)  # the same initial weights
    assert f_trace[0]["loss"] == pytest.approx(t_trace[0]["loss"], rel=1e-5)
    for t, f in zip(t_trace, f_trace):  # float32 rounding drifts slowly (semantics note: 4e-5 at step 10)
        assert f["loss"] == pytest.approx(t["loss"], rel=1e-3), t["step"]


def test_lockstep_float64_agrees_with_torch_to_1e10(lockstep_pair):
    torch_dir, flux_dir = lockstep_pair("float64")
    for t, f in zip(trace_rows(torch_dir), trace_rows(flux_dir)):
        assert f["loss"] == pytest.approx(t["loss"], rel=1e-10, abs=1e-12), t["step"]
        assert f["checksum"] == pytest.approx(t["checksum"], rel=1e-10, abs=1e-10), t["step"]
    t0, f0 = log_rows(torch_dir)[0], log_rows(flux_dir)[0]
    assert t0["train_loss"] == f0["train_loss"] and t0["test_acc"] == f0["test_acc"]


def test_a_diverging_run_stops_as_diverged(tmp_path, data_dir):
    run_dir = tmp_path / "diverge" / "flux"
    status = run("flux", run_dir, data_dir, mode="lockstep", optimizer="Descent", eta=1e30, epochs=3, checktime=0)
    assert status["status"] == "diverged", status
    assert log_rows(run_dir)[-1]["status"] == "diverged"


def test_a_julia_error_reads_as_one_line():
    out = python_with_julia("""
import juliacall
from fluxlenet.backends import flux
flux.fluxlenet_module()
try:
    flux.jl.seval('error("the first line\\\\nand a second")')
except juliacall.JuliaError as e:
    print("SUMMARY", flux.julia_error_summary(e))
""")
    assert out.split("SUMMARY ", 1)[1].strip() == "the first line"


def test_a_flux_run_killed_after_its_checkpoint_resumes_to_the_same_log(tmp_path, data_dir, monkeypatch):
    """SIGKILL of the worker right after the epoch-1 checkpoint (model.bson + optimiser.bson), then a
    rerun: it goes on from epoch 1, and log.csv equals that of an uninterrupted lockstep run."""
    settings = dict(mode="lockstep", epochs=3, checktime=1)
    killed = tmp_path / "killed" / "flux"
    monkeypatch.setenv("FLUXLENET_FAULT", "kill@checkpoint1")  # read by the spawned worker at import
    assert run("flux", killed, data_dir, **settings)["status"] == "running"  # died without a word
    assert [int(r["epoch"]) for r in log_rows(killed)] == [0, 1]
    monkeypatch.delenv("FLUXLENET_FAULT")
    assert run("flux", killed, data_dir, **settings)["status"] == "finished"
    assert "Resuming from the checkpoint of epoch 1" in (killed / "console.log").read_text()
    straight = tmp_path / "straight" / "flux"
    assert run("flux", straight, data_dir, **settings)["status"] == "finished"

    def figures(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert figures(log_rows(killed)) == figures(log_rows(straight))


def test_model_bson_loads_in_plain_julia(flux_run):
    """`BSON.@load "model.bson" model epoch`, as the post's readers would, in a Julia without Python."""
    import juliapkg
    script = 'using BSON, Flux; BSON.@load ARGS[1] model epoch; println("EPOCH ", epoch, " ", model isa Chain)'
    out = subprocess.run([juliapkg.executable(), f"--project={juliapkg.project()}", "-e", script,
                          str(flux_run / "model.bson")], capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "EPOCH 2 true" in out.stdout


def test_sigterm_stops_a_flux_run_as_interrupted(tmp_path, data_dir):
    """Julia runs with its signal handling on; the worker still takes SIGTERM itself (the sweep's way
    of stopping it on Ctrl-C) and records the run as interrupted, resumable."""
    run_dir = tmp_path / "term" / "flux"
    cfg = RunConfig(sweep="julia-tests", run="term", backend="flux", dataset="mnist", data_dir=str(data_dir),
                    batchsize=16, epochs=30, checktime=1, threads=2, seed=1).validate()
    proc = multiprocessing.get_context("spawn").Process(target=worker_main, args=("flux", cfg.to_dict(), str(run_dir)))
    proc.start()
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while time.monotonic() < deadline and proc.is_alive():
        if (run_dir / "log.csv").exists() and len(log_rows(run_dir)) >= 2:  # epoch 1 is logged
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(120)
    assert not proc.is_alive()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["reason"] == "stopped by Ctrl-C or SIGTERM", status
    assert proc.exitcode == 130


def test_no_mlutils_warning_when_a_split_is_smaller_than_the_evaluation_batch(tmp_path, data_dir, capfd):
    """640 training and 256 test images, evaluated in batches of up to 1000: MLUtils must not warn
    "Number of observations less than batch-size" (Julia writes it to the worker's stderr)."""
    assert run("flux", tmp_path / "small" / "flux", data_dir, mode="native", epochs=1, checktime=0,
               train_size=500)["status"] == "finished"
    err = capfd.readouterr().err
    assert "less than batch-size" not in err, err[-2000:]


def _flux_tasks(runs_dir: Path, data_dir: Path, names=("A", "B", "C")):
    from fluxlenet.rundir import Task, run_dir
    out = []
    for i, name in enumerate(names):
        cfg = RunConfig(sweep="served", run=name, backend="flux", dataset="mnist", data_dir=str(data_dir),
                        batchsize=64, epochs=2, checktime=1, threads=2, seed=1, eta=1e-3 * (i + 1)).validate()
        out.append(Task(cfg, run_dir(runs_dir / cfg.sweep, cfg)))
    return out


def test_one_flux_worker_takes_the_runs_of_a_sweep(tmp_path, data_dir):
    """Julia starts once for three runs (one process); benchmarks/flux_startup.py times the hand-over."""
    from fluxlenet.runner import run_tasks
    said = []
    tasks = _flux_tasks(tmp_path, data_dir)
    results = run_tasks(tasks, jobs=1, echo=said.append)
    assert [t.cfg.run for t in results["finished"]] == ["A", "B", "C"]
    assert len({json.loads((t.run_dir / "status.json").read_text())["pid"] for t in tasks}) == 1
    assert sum("starting a flux worker" in line for line in said) == 1
    for t in tasks:
        assert json.loads((t.run_dir / "config.json").read_text())["threads"]["julia"] == 2
    # a served run gives the figures of a run in a worker of its own (lockstep)
    alone = tmp_path / "alone" / "flux"
    assert run("flux", alone, data_dir, run="B", eta=2e-3, epochs=2, checktime=1)["status"] == "finished"

    def figures(folder):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in log_rows(folder)]
    assert figures(alone) == figures(tasks[1].run_dir)


def test_a_killed_flux_worker_fails_its_run_and_a_fresh_one_takes_the_rest(tmp_path, data_dir, monkeypatch):
    """B's worker is SIGKILLed right after B's epoch-1 checkpoint: B failed, a fresh worker takes C, and
    the rerun of B goes on from that checkpoint (tests/test_serving.py: the same with torch)."""
    from fluxlenet.runner import run_tasks
    monkeypatch.setenv("FLUXLENET_FAULT", "B:kill@checkpoint1")
    tasks = _flux_tasks(tmp_path, data_dir)
    results = run_tasks(tasks, jobs=1, echo=lambda line: None)
    assert [t.cfg.run for t in results["finished"]] == ["A", "C"]
    status = json.loads((tasks[1].run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "SIGKILL" in status["reason"]
    pids = [json.loads((t.run_dir / "status.json").read_text()).get("pid") for t in (tasks[0], tasks[2])]
    assert pids[0] != pids[1]
    monkeypatch.delenv("FLUXLENET_FAULT")
    assert [t.cfg.run for t in run_tasks(tasks[1:2], jobs=1, echo=lambda line: None)["finished"]] == ["B"]
    assert "Resuming from the checkpoint of epoch 1" in (tasks[1].run_dir / "console.log").read_text()
    assert [int(r["epoch"]) for r in log_rows(tasks[1].run_dir)] == [0, 1, 2]


def test_the_post_draws_python_hands_over_equal_julias_own_mersenne_twister():
    """The julia scheme's weights (in Flux's layout, as Flux receives them) and batch orders, computed in
    Python, against Julia's own MersenneTwister drawing as the post's train() does: glorot_uniform of Flux 0.12
    layer by layer, then shuffle! at report(0) and twice an epoch."""
    code = r'''
import numpy as np
from juliacall import Main as jl
from fluxlenet.backends import flux_layout
from fluxlenet.config import RunConfig
from fluxlenet.init import epoch_orders, initial_weights
from fluxlenet.models import LAYERS, has_weights

layers = [l for l in RunConfig().layers() if has_weights(l)]
shapes = [flux_layout.flux_weight_shape(l) for l in layers]
fans = [LAYERS[l["kind"]].fans(l) for l in layers]
jl.seval("using Random")
draws = jl.seval("""(seed, n, epochs) -> begin
    rng = MersenneTwister(seed)
    weights = [(rand(rng, Float32, dims...) .- 0.5f0) .* sqrt(24.0f0 / (fi + fo))
               for (dims, (fi, fo)) in zip(%s, %s)]
    idx = collect(1:n)
    shuffle!(rng, idx)                       # report(0)
    orders = Vector{Int}[]
    for e in 1:epochs
        shuffle!(rng, idx); push!(orders, copy(idx))
        shuffle!(rng, idx)                   # report(e)
    end
    weights, reduce(hcat, orders)
end""" % (repr(shapes), repr(fans)))
for seed in (42, 7, 2**32 - 1):
    weights, orders = draws(seed, 640, 3)
    ours = flux_layout.flux_params(layers, initial_weights(layers, seed, np.float32, rng="julia"))[0::2]
    for k, w in enumerate(ours):
        theirs = np.asarray(weights[k])
        assert theirs.shape == w.shape and theirs.dtype == w.dtype and np.array_equal(theirs, w), (seed, k)
    mine = epoch_orders(layers, seed, 640, "julia")
    for e in range(3):
        assert np.array_equal(np.asarray(orders)[:, e] - 1, next(mine)), (seed, e)
print("DRAWS EQUAL")
'''
    assert "DRAWS EQUAL" in python_with_julia(code)
