"""What the Flux worker hands to Julia, in plain NumPy: no juliacall here, so all of it is testable anywhere.

Layouts (see shared/design/flux-torch-semantics.md, "Layers and data layout"):

- A NumPy array (N, C, H, W) in C order and a Julia array (W, H, C, N) in column-major order share
  one memory layout. Julia receives a NumPy array as a zero-copy `PyArray` that keeps NumPy's index
  order, so we pass the reversed-axes view `x.transpose()` (Fortran-ordered, shape (W, H, C, N)):
  its NumPy index [w, h, c, n] is the Julia index [w, h, c, n] (1-based there), and Julia copies it
  once into a plain `Array`.
- Flux's `Conv` is a true convolution (NNlib flips the kernel), torch's Conv2d a cross-correlation.
  A torch weight (Cout, Cin, kH, kW) becomes the Flux weight (kW, kH, Cin, Cout) whose column-major
  memory is `np.ascontiguousarray(w[:, :, ::-1, ::-1])`: flip both spatial axes, then reinterpret.
- Dense weights (out, in) and all biases are the same in both frameworks.
- `Flux.flatten` of (W, H, C, N) gives feature w + W*h + W*H*c (0-based), which is torch's
  `flatten(1)` of (N, C, H, W): dense weights after a flatten copy index for index.

The run's settings travel as one TOML document (`job_toml`): Julia's standard library reads TOML,
so the Julia side needs no JSON package and no PythonCall-specific conversions. Arrays travel as
arguments (zero-copy), callbacks as Python callables.
"""

from __future__ import annotations

import json

import numpy as np
import tomli_w

from ..config import RunConfig
from ..models import LAYERS, has_weights

# ------------------------------------------------------------------ arrays


def julia_view(x: np.ndarray) -> np.ndarray:
    """The reversed-axes view of a C-ordered array: NumPy index order == Julia index order.

    (N, C, H, W) images become a Fortran-ordered (W, H, C, N) view of the same memory; 1-D arrays
    are returned as they are. No copy is made when `x` is already C-contiguous.
    """
    return np.ascontiguousarray(x).transpose()


def from_julia_memory(memory: np.ndarray, shape: tuple) -> np.ndarray:
    """Reinterpret the bytes of `memory` (read in C order) as the column-major Julia array of `shape`.

    This is what Julia sees when it receives that memory: element [i, j, ...] (0-based here) of the
    result is Julia's element [i+1, j+1, ...]. For tests.
    """
    flat = np.ascontiguousarray(memory).reshape(-1)
    return flat.reshape(shape, order="F")


def conv_weight_memory(weight: np.ndarray) -> np.ndarray:
    """The memory of the Flux (kW, kH, Cin, Cout) kernel for a torch (Cout, Cin, kH, kW) kernel."""
    if weight.ndim != 4:
        raise ValueError(f"a conv weight has 4 dimensions (Cout, Cin, kH, kW), got shape {weight.shape}")
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1])


def conv_weight_to_flux(weight: np.ndarray) -> np.ndarray:
    """The Flux kernel as a (kW, kH, Cin, Cout) view whose NumPy index order is Julia's."""
    return conv_weight_memory(weight).transpose()


def conv_weight_from_flux(weight: np.ndarray) -> np.ndarray:
    """The torch (Cout, Cin, kH, kW) kernel of a Flux (kW, kH, Cin, Cout) kernel in Julia index order."""
    return np.ascontiguousarray(weight.transpose()[:, :, ::-1, ::-1])


# How a weight in torch layout (fluxlenet.init) becomes Flux's, and back, per layer kind with weights.
TO_FLUX = {"conv": conv_weight_to_flux, "dense": np.ascontiguousarray}
FROM_FLUX = {"conv": conv_weight_from_flux, "dense": np.ascontiguousarray}
# The Flux shape of each kind's weight from its torch shape: conv (kW, kH, Cin, Cout), dense (out, in) as torch.
FLUX_SHAPE = {"conv": lambda shape: tuple(reversed(shape)), "dense": tuple}


def flux_weight_shape(layer: dict) -> tuple:
    return FLUX_SHAPE[layer["kind"]](LAYERS[layer["kind"]].weight_shape(layer))


def flux_params(layers: list[dict], params: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Torch-layout (weight, bias) pairs of `layers` (fluxlenet.init.initial_weights) -> flat list for Julia.

    [w1, b1, w2, b2, ...] with each array in Julia index order: conv kernels flipped and reversed
    (kW, kH, Cin, Cout), dense weights (out, in) and biases as they are.
    """
    weighted = [layer for layer in layers if has_weights(layer)]
    if len(weighted) != len(params):
        raise ValueError(f"{len(params)} (weight, bias) pairs for {len(weighted)} layers with weights")
    out = []
    for layer, (weight, bias) in zip(weighted, params):
        out += [TO_FLUX[layer["kind"]](weight), np.ascontiguousarray(bias)]
    return out


def permutation_matrix(orders, epochs: int, n: int) -> np.ndarray:
    """One permutation per epoch (0-based sample indices), as an (n, epochs) Julia-ordered view.

    Column e-1 is the e-th order that `orders` yields (`fluxlenet.init.epoch_orders`); int32 to
    halve the memory (Julia adds 1 and widens). The view is over a C-ordered (epochs, n) array,
    so each Julia column is contiguous.
    """
    if n >= 2**31:
        raise ValueError(f"{n} samples do not fit int32 indices")
    rows = np.empty((epochs, n), dtype=np.int32)
    for e, order in zip(range(epochs), orders):
        rows[e] = order
    return rows.transpose()


# ------------------------------------------------------------------ settings

# What the job document holds besides the settings marked `julia` in RunConfig's table (config.setting):
# the run's folder, whether to show progress and resume, the model and optimiser as specs, and the
# evaluation batch size where the run's scheme fixes it (RunConfig.eval_batchsize).
DERIVED_KEYS = ("savepath", "progress", "resume", "layers", "rules", "evalbatch")
# The keys of the job document, each read by FluxLeNet.args_from_job or run_job (julia/src/bridge.jl).
JOB_KEYS = tuple(f.name for f in RunConfig.settings(julia=True)) + DERIVED_KEYS


def job_spec(cfg, savepath: str, progress: bool = False, resume: bool = True) -> dict:
    """Everything the Julia loop needs to know about a run, as a JSON/TOML-ready dict.

    The settings marked `julia` in the table as they are; `layers` and `rules` are the very dicts of
    fluxlenet.models / optim_spec (the Julia side builds the Chain and the OptimiserChain from them).
    A setting left unset (a step budget of None) is left out: TOML has no null, and Julia then keeps
    its default.
    """
    job = {f.name: getattr(cfg, f.name) for f in RunConfig.settings(julia=True) if getattr(cfg, f.name) is not None}
    job.update(savepath=str(savepath), progress=bool(progress), resume=bool(resume),
               layers=[dict(layer) for layer in cfg.layers()], rules=[dict(rule) for rule in cfg.optimiser_chain()])
    if cfg.eval_batchsize() is not None:
        job["evalbatch"] = cfg.eval_batchsize()
    json.dumps(job)  # JSON-ready by construction; fail here, not in Julia, if not
    return job


def job_toml(cfg, savepath: str, progress: bool = False, resume: bool = True) -> str:
    """The job document as TOML, which Julia's standard library reads (tomli-w writes floats exactly)."""
    return tomli_w.dumps(job_spec(cfg, savepath, progress=progress, resume=resume))
