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
import math

import numpy as np

from ..init import epoch_permutation
from ..models import has_weights

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


# How a weight in torch layout (fluxlenet.init) becomes Flux's, per layer kind with weights.
TO_FLUX = {"conv": conv_weight_to_flux, "dense": np.ascontiguousarray}


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


def permutation_matrix(seed: int, epochs: int, n: int) -> np.ndarray:
    """One permutation per epoch (0-based sample indices), as an (n, epochs) Julia-ordered view.

    Column e-1 is `fluxlenet.init.epoch_permutation(seed, e, n)`; int32 to halve the memory
    (Julia adds 1 and widens). The view is over a C-ordered (epochs, n) array, so each Julia
    column is contiguous.
    """
    if n >= 2**31:
        raise ValueError(f"{n} samples do not fit int32 indices")
    rows = np.empty((epochs, n), dtype=np.int32)
    for e in range(1, epochs + 1):
        rows[e - 1] = epoch_permutation(seed, e, n)
    return rows.transpose()


# ------------------------------------------------------------------ settings

# The keys of the job document, each read by FluxLeNet.args_from_job (julia/src/bridge.jl).
JOB_KEYS = ("batchsize", "epochs", "steps", "seed", "infotime", "checktime", "savepath",
            "warmup_epochs", "milestones", "gamma", "precision", "mode", "trace_steps", "flush_subnormals",
            "progress", "resume", "layers", "rules")


def job_spec(cfg, savepath: str, progress: bool = False, resume: bool = True) -> dict:
    """Everything the Julia loop needs to know about a run, as a JSON/TOML-ready dict.

    `layers` and `rules` are the very dicts of fluxlenet.models / optim_spec (the Julia side builds
    the Chain and the OptimiserChain from them); `steps` is left out when there is no step budget
    (TOML has no null).
    """
    job = {
        "batchsize": cfg.batchsize,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "infotime": cfg.infotime,
        "checktime": cfg.checktime,
        "savepath": str(savepath),
        "warmup_epochs": float(cfg.warmup_epochs),
        "milestones": [int(m) for m in cfg.milestones],
        "gamma": float(cfg.gamma),
        "precision": cfg.precision,
        "mode": cfg.mode,
        "trace_steps": cfg.trace_steps,
        "flush_subnormals": bool(cfg.flush_subnormals),
        "progress": bool(progress),
        "resume": bool(resume),
        "layers": [dict(layer) for layer in cfg.layers()],
        "rules": [dict(rule) for rule in cfg.optimiser_chain()],
    }
    if cfg.steps is not None:
        job["steps"] = cfg.steps
    json.dumps(job)  # JSON-ready by construction; fail here, not in Julia, if not
    return job


def to_toml(doc: dict) -> str:
    """A small TOML writer for job documents: scalars, arrays of scalars, and arrays of flat tables.

    Top-level scalars and scalar arrays come first, then each list of dicts as `[[name]]` tables.
    Nested dicts (other than inside such lists) and None values are not supported: say so.
    """
    head, tables = [], []
    for key, value in doc.items():
        _check_key(key)
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                tables.append(f"\n[[{key}]]")
                for k, v in item.items():
                    _check_key(k)
                    tables.append(f"{k} = {_toml_value(v, f'{key}.{k}')}")
        else:
            head.append(f"{key} = {_toml_value(value, key)}")
    return "\n".join(head + tables) + "\n"


def job_toml(cfg, savepath: str, progress: bool = False, resume: bool = True) -> str:
    return to_toml(job_spec(cfg, savepath, progress=progress, resume=resume))


def _check_key(key) -> None:
    if not isinstance(key, str) or not key or not all(c.isalnum() or c in "_-" for c in key):
        raise ValueError(f"TOML key {key!r}: only bare keys (letters, digits, _ and -) are written")


def _toml_value(value, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)  # shortest round-trip form: Julia parses it back to the same Float64
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: same escapes as JSON for what we write
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (dict, list, tuple)) for v in value):
            raise ValueError(f"{where}: nested arrays are not written")
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise ValueError(f"{where}: cannot write {type(value).__name__} {value!r} as TOML")
