"""The Flux backend: the post's loop in Julia (julia/src, package FluxLeNet), driven from Python.

Imported only inside a spawned Flux worker (fluxlenet.worker), never next to torch. Same interface
as the torch backend: `versions(cfg)`, `device_name(cfg)`, `train(cfg, data, log)`.

What crosses to Julia (see fluxlenet.backends.flux_layout):
- the run's settings as one TOML document (layer specs, rule specs, schedule, budget, paths);
- the images as zero-copy (W, H, C, N) views of the NumPy memory, the labels as they are (Julia
  copies each once into a plain Array and one-hot encodes the labels);
- lockstep runs: the initial weights of fluxlenet.init in Flux layout, and one permutation per
  epoch (0-based; Julia adds 1), drawn by the run's `rng` scheme (numpy, or julia: the post's own);
- a schedule as the learning-rate factor of every step (RunConfig.lr_factors, as torch takes it);
- Python callables: `report` (-> log.record, which prints the post's line and writes log.csv,
  console.log and TensorBoard), `say` (-> log.say), `started` (fresh start or resume), `saved`
  (a checkpoint written), `trace` (the first trace_steps steps) and `poll` (lets Ctrl-C through).
All but the job and the weights go by keyword (FluxLeNet.run_job in julia/src/bridge.jl).
Julia errors come back as juliacall.JuliaError; they leave here as FluxError with the first line of
the Julia message (the whole Julia error and backtrace stay chained to it, for error.txt).
"""

import juliacall  # noqa: I001  the first import: before anything can import torch (see worker.py)

import os
import sys

import numpy as np
from juliacall import Main as jl

from .. import faults
from ..init import epoch_orders, initial_weights
from ..julia_env import julia_source_file
from ..runlog import round4
from . import flux_layout

_FLUXLENET = None


class FluxError(RuntimeError):
    """A Julia error during a Flux run, summarised in one line."""


def fluxlenet_module():
    """The FluxLeNet Julia module, loaded into Main the first time.

    `using FluxLeNet`: the package as fluxlenet/juliapkg.json declares it (developed from its path), so
    Pkg precompiled it with its workload at set-up. Where the Julia project lacks it (a project of your
    own, PYTHON_JULIACALL_PROJECT) or its precompilation fails, it is `include`d from its sources
    instead: it runs the same, only its first epoch compiles more.
    """
    global _FLUXLENET
    if _FLUXLENET is None:
        try:
            jl.seval("using FluxLeNet")
        except juliacall.JuliaError as e:
            source = julia_source_file()
            if source is None:
                raise FluxError("the Julia sources of FluxLeNet are missing from this installation; "
                                "reinstall fluxlenet") from e
            print(f"NOTE: `using FluxLeNet` failed ({julia_error_summary(e)}); loading it from {source} instead",
                  file=sys.stderr)
            try:
                jl.include(str(source))
            except juliacall.JuliaError as e2:
                raise FluxError(f"loading FluxLeNet ({source}) failed: {julia_error_summary(e2)}") from e2
        _FLUXLENET = jl.seval("Main.FluxLeNet")
    return _FLUXLENET


def julia_error_summary(error) -> str:
    """The first line of a Julia exception's message, without the backtrace."""
    try:
        text = str(jl.sprint(jl.showerror, error.exception))
    except Exception:
        text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    return first if len(first) <= 400 else first[:397] + "..."


def julia_versions() -> dict:
    julia, flux, optimisers, bson = (str(v) for v in fluxlenet_module().versions())
    return {"julia": julia, "Flux": flux, "Optimisers": optimisers, "BSON": bson}


def _set_threads(cfg) -> tuple[int, int]:
    n = cfg.threads or os.cpu_count() or 1
    fluxlenet_module()
    set_threads = jl.seval("Main.FluxLeNet.set_threads!")
    julia_threads, blas_threads = set_threads(int(n))
    return int(julia_threads), int(blas_threads)


def versions(cfg) -> dict:
    return {**julia_versions(), "juliacall": juliacall.__version__, "numpy": np.__version__}


def threads_used(cfg) -> dict:
    """Julia's threads (fixed when Julia started: PYTHON_JULIACALL_THREADS, set by the worker) and BLAS's."""
    julia_threads, blas_threads = _set_threads(cfg)
    return {"julia": julia_threads, "blas": blas_threads}


def device_name(cfg) -> str:
    if cfg.device != "cpu":
        raise FluxError(f"the Flux backend runs on the CPU only (device {cfg.device!r} was asked for); "
                        "use device = \"cpu\" for Flux runs")
    julia_threads, blas_threads = _set_threads(cfg)
    return f"cpu: Julia {julia_threads} thread{'s' if julia_threads != 1 else ''}, BLAS {blas_threads} threads"


def train(cfg, data, log, progress: bool = False) -> str:
    """Train one run in Julia; returns "finished" or "diverged". Resumes from model.bson when it is there.
    `progress`: ProgressMeter's bar per epoch."""
    data.check_finite()  # Julia's `prepare` refuses them too; checked here, it is the torch backend's DataError
    FL = fluxlenet_module()
    device_name(cfg)  # checks the device, sets the BLAS threads
    n = len(data.train_y)
    dtype = np.float64 if cfg.precision == "float64" else np.float32
    lockstep = cfg.mode == "lockstep"
    job = flux_layout.job_toml(cfg, savepath=str(log.dir), progress=progress)

    if lockstep:
        weights = flux_layout.flux_params(cfg.layers(), initial_weights(cfg.layers(), cfg.seed, dtype, rng=cfg.rng))
        orders = epoch_orders(cfg.layers(), cfg.seed, n, cfg.rng, cfg.infotime)
        permutations = flux_layout.permutation_matrix(orders, cfg.total_epochs(n), n)
    else:
        weights, permutations = [], None

    def labels(y):
        return np.ascontiguousarray(y, dtype=np.int64)

    valid = data.valid_y is not None
    arrays = dict(xtrain=flux_layout.julia_view(data.train_x), ytrain=labels(data.train_y),
                  xtest=flux_layout.julia_view(data.test_x), ytest=labels(data.test_y),
                  xvalid=flux_layout.julia_view(data.valid_x) if valid else None,
                  yvalid=labels(data.valid_y) if valid else None)
    factors = cfg.lr_factors(n)

    def figures(loss, acc):
        return {"loss": round4(loss), "acc": round4(acc)}

    diverged: list[int] = []

    def report(epoch, train_loss, train_acc, test_loss, test_acc, valid_loss, valid_acc, seconds, lr):
        row = log.record(int(epoch), figures(train_loss, train_acc), figures(test_loss, test_acc),
                         None if valid_loss is None else figures(valid_loss, valid_acc),
                         seconds=None if seconds is None else float(seconds), lr=None if lr is None else float(lr))
        if row == "diverged":  # Julia stops on the same test (a NaN or infinite loss)
            diverged.append(int(epoch))
        if faults.RULES:
            faults.point("epoch", int(epoch), cfg.run)

    def say(line):
        log.say(str(line))

    def saved(epoch):  # after its report, if it has one (with infotime > 1 many have none)
        if faults.RULES:
            faults.point("checkpoint", int(epoch), cfg.run)

    def started(epoch):
        epoch = int(epoch)
        if epoch == 0:
            log.reset()
        else:
            log.truncate(epoch)
            log.keep_trace(sum(cfg.steps_in_epoch(e, n) for e in range(1, epoch + 1)))

    def trace(step, loss, checksum):
        log.trace_step(int(step), float(loss), float(checksum))

    def poll():
        return None  # a call into Python: a pending Ctrl-C raises KeyboardInterrupt here

    try:
        status = FL.run_job(job, *weights, **arrays, permutations=permutations,
                            lr_factors=None if factors is None else np.asarray(factors, dtype=np.float64),
                            report=report, say=say, started=started, saved=saved, trace=trace, poll=poll)
    except juliacall.JuliaError as e:
        raise FluxError(f"Julia: {julia_error_summary(e)}") from e
    status = str(status)
    if status not in ("finished", "diverged"):
        raise FluxError(f"the Julia loop returned {status!r}")
    return "diverged" if diverged else status
