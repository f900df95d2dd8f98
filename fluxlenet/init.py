"""Lockstep inputs generated in NumPy from the seed: initial weights and batch order.

Weights follow Flux's scheme (glorot_uniform weights, zero biases) and are given in
torch's layout: conv (Cout, Cin, kH, kW), dense (out, in). The Flux side converts them
(see fluxlenet.backends.flux_layout). Julia's random streams differ from NumPy's, so for
lockstep runs both frameworks take these arrays instead of drawing their own.
"""

from __future__ import annotations

import numpy as np

from .models import LAYERS, has_weights

# Separate streams for weights and for each epoch's permutation, so that resuming at
# epoch k needs nothing but (seed, k).
_WEIGHTS_STREAM = 0
_PERMUTATION_STREAM = 1


def glorot_bound(layer: dict) -> float:
    """sqrt(6 / (fan_in + fan_out)) with Flux's fans (conv k*k*Cin and k*k*Cout, dense in and out)."""
    fan_in, fan_out = LAYERS[layer["kind"]].fans(layer)
    return float(np.sqrt(6.0 / (fan_in + fan_out)))


def initial_weights(layers: list[dict], seed: int, dtype=np.float32) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) for every layer with weights, in order, torch layout."""
    rng = np.random.default_rng([seed, _WEIGHTS_STREAM])
    params = []
    for layer in filter(has_weights, layers):
        bound = glorot_bound(layer)
        weight = rng.uniform(-bound, bound, size=LAYERS[layer["kind"]].weight_shape(layer))
        params.append((weight.astype(np.float32).astype(dtype), np.zeros(layer["out"], dtype=dtype)))
    return params


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the n training samples in `epoch` (1-based), 0-based indices, int64."""
    return np.random.default_rng([seed, _PERMUTATION_STREAM, epoch]).permutation(n).astype(np.int64)
