"""Lockstep inputs generated in Python from the seed: initial weights and batch order.

Weights follow Flux's scheme (glorot_uniform weights, zero biases) and are given in torch's
layout: conv (Cout, Cin, kH, kW), dense (out, in). The Flux side converts them (see
fluxlenet.backends.flux_layout). Both frameworks take these arrays instead of drawing their own.
Two schemes (the `rng` setting) draw them:

- "numpy": NumPy streams of our own, a stream for the weights and one per epoch, so that resuming
  at epoch k needs nothing but (seed, k);
- "julia": the 2021 post's draws. Its `train()` calls `Random.seed!(seed)` and everything after
  comes from that one MersenneTwister (fluxlenet.julia_random): first Flux 0.12's
  `glorot_uniform` of each weight array in the order the layers are built,
  `(rand(Float32, dims...) .- 0.5f0) .* sqrt(24f0 / (fan_in + fan_out))` in Flux's layout; then
  an in-place `shuffle!` of the training indices at the start of every pass over the training
  loader. The post passes over it twice in an epoch that reports (to train, and inside
  `report(epoch)` to evaluate) and once in `report(0)`, so the order of epoch e is the state
  after the (e + reports before e + 1)-th shuffle.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import numpy as np

from .backends import flux_layout
from .julia_random import MersenneTwister
from .models import LAYERS, has_weights

# Separate NumPy streams for weights and for each epoch's permutation.
_WEIGHTS_STREAM = 0
_PERMUTATION_STREAM = 1


def glorot_bound(layer: dict) -> float:
    """sqrt(6 / (fan_in + fan_out)) with Flux's fans (conv k*k*Cin and k*k*Cout, dense in and out)."""
    fan_in, fan_out = LAYERS[layer["kind"]].fans(layer)
    return float(np.sqrt(6.0 / (fan_in + fan_out)))


def _shape(layer: dict) -> tuple:
    return LAYERS[layer["kind"]].weight_shape(layer)


def _julia_glorot_uniform(twister: MersenneTwister, layer: dict) -> np.ndarray:
    """Flux 0.12's glorot_uniform, drawn in Flux's layout, in Float32 arithmetic as Julia does it."""
    fan_in, fan_out = LAYERS[layer["kind"]].fans(layer)
    scale = np.sqrt(np.float32(24) / np.float32(fan_in + fan_out))  # sqrt(24.0f0 / sum(nfan(dims...)))
    u = twister.rand_float32(*flux_layout.flux_weight_shape(layer))
    return flux_layout.FROM_FLUX[layer["kind"]]((u - np.float32(0.5)) * scale)


# A weight's first values by models.LayerKind.weight_init, torch layout, in each scheme (a rule that
# draws nothing, "ones", draws nothing from the scheme's generator either, as in Flux).
def _numpy_glorot_uniform(stream: np.random.Generator, layer: dict) -> np.ndarray:
    bound = glorot_bound(layer)
    return stream.uniform(-bound, bound, _shape(layer))


NUMPY_INITS = {
    "glorot_uniform": _numpy_glorot_uniform,
    "ones": lambda stream, layer: np.ones(_shape(layer)),
}
JULIA_INITS = {
    "glorot_uniform": _julia_glorot_uniform,
    "ones": lambda twister, layer: np.ones(_shape(layer), dtype=np.float32),
}


def initial_weights(layers: list[dict], seed: int, dtype=np.float32,
                    rng: str = "numpy") -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) for every layer with weights, in order, torch layout; biases start at zero."""
    if rng == "julia":
        return _julia_weights(layers, MersenneTwister(seed), dtype)
    stream = np.random.default_rng([seed, _WEIGHTS_STREAM])
    return [(NUMPY_INITS[LAYERS[layer["kind"]].weight_init](stream, layer).astype(np.float32).astype(dtype),
             np.zeros(layer["out"], dtype=dtype)) for layer in filter(has_weights, layers)]


def _julia_weights(layers: list[dict], twister: MersenneTwister, dtype) -> list[tuple[np.ndarray, np.ndarray]]:
    """The post's weights: each layer's init drawn from `twister` in the order the layers are built."""
    return [(JULIA_INITS[LAYERS[layer["kind"]].weight_init](twister, layer).astype(dtype),
             np.zeros(layer["out"], dtype=dtype)) for layer in filter(has_weights, layers)]


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The numpy scheme's order of the n training samples in `epoch` (1-based), 0-based indices, int64."""
    return np.random.default_rng([seed, _PERMUTATION_STREAM, epoch]).permutation(n).astype(np.int64)


def epoch_orders(layers: list[dict], seed: int, n: int, rng: str = "numpy", infotime: int = 1,
                 start: int = 1) -> Iterator[np.ndarray]:
    """The training order (0-based int64 indices) of epoch `start`, `start` + 1, ... for ever.

    The julia scheme replays the post's one generator from its seeding (the weight draws, then each
    shuffle), so it yields from `start` after drawing what came before: a few seconds at 60,000 samples
    and 10 epochs. `infotime` matters there: `report(epoch)` shuffles only in the epochs that report.
    """
    if rng != "julia":
        yield from (epoch_permutation(seed, epoch, n) for epoch in count(start))
        return
    twister = MersenneTwister(seed)
    _julia_weights(layers, twister, np.float32)
    order = np.arange(n, dtype=np.int64)
    twister.shuffle(order)  # report(0)'s pass over the training loader
    for epoch in count(1):
        twister.shuffle(order)  # the training pass
        if epoch >= start:
            yield order.copy()
        if epoch % infotime == 0:
            twister.shuffle(order)  # report(epoch)'s pass
