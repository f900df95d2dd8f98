"""Model specs: plain lists of layers that both backends build from.

A layer is a dict, JSON-ready, so the same value is handed to torch and to Julia:

    {"kind": "conv", "kernel": 5, "in": 1, "out": 6, "pad": 0, "act": "relu"}
    {"kind": "maxpool", "size": 2}          # stride = size, no padding (Flux MaxPool(k))
    {"kind": "meanpool", "size": 2}         # Flux MeanPool(k), torch AvgPool2d(k)
    {"kind": "flatten"}
    {"kind": "dense", "in": 256, "out": 120, "act": "relu"}
    {"kind": "dropout", "p": 0.3}

`act` is one of ACTIVATIONS; "identity" means none. Kernels are square; `pad` is
symmetric zero padding ("same" for odd kernels is pad = kernel // 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")
# How a layer's weight starts (its bias starts at zero): each scheme has one function a name (init.py's
# NUMPY_INITS and JULIA_INITS, torch_backend.TORCH_INITS); Flux's layers start so by default.
WEIGHT_INITS = ("glorot_uniform", "ones")


class SpecError(ValueError):
    """A model spec that cannot be built or does not fit its data."""


def _conv_output(layer: dict, shape: tuple) -> tuple:
    if len(shape) != 3 or shape[0] != layer["in"]:
        raise SpecError(f"expects {layer['in']} input channels, gets shape {shape}")
    k, p = layer["kernel"], layer["pad"]
    h, w = shape[1] + 2 * p - k + 1, shape[2] + 2 * p - k + 1
    if h < 1 or w < 1:
        raise SpecError(f"a {k}x{k} kernel does not fit input {shape}")
    return (layer["out"], h, w)


def _pool_output(layer: dict, shape: tuple) -> tuple:
    s = layer["size"]
    if len(shape) != 3 or shape[1] < s or shape[2] < s:
        raise SpecError(f"pool {s} does not fit input {shape}")
    return (shape[0], shape[1] // s, shape[2] // s)


def _dense_output(layer: dict, shape: tuple) -> tuple:
    if shape != (layer["in"],):
        raise SpecError(f"expects {layer['in']} features, gets shape {shape}")
    return (layer["out"],)


@dataclass(frozen=True)
class LayerKind:
    """What the checks, the lockstep weights and both backends need to know of a kind of layer.
    Each backend builds it with one line of its own (torch_backend.TORCH_LAYERS, specs.jl)."""
    fields: tuple[str, ...]                                  # the spec's keys besides "kind"
    output: Callable[[dict, tuple], tuple]                   # its output shape; SpecError if the input does not fit
    weight_shape: Callable[[dict], tuple] | None = None      # torch layout; None: no weights (else a bias (out,))
    fans: Callable[[dict], tuple[int, int]] | None = None    # Flux's (fan_in, fan_out), for glorot_uniform
    weight_init: str | None = None                           # one of WEIGHT_INITS, for a kind with weights


LAYERS = {
    "conv": LayerKind(("kernel", "in", "out", "pad", "act"), _conv_output,
                      weight_shape=lambda l: (l["out"], l["in"], l["kernel"], l["kernel"]),
                      fans=lambda l: (l["kernel"] ** 2 * l["in"], l["kernel"] ** 2 * l["out"]),
                      weight_init="glorot_uniform"),
    "maxpool": LayerKind(("size",), _pool_output),     # stride = size, no padding
    "meanpool": LayerKind(("size",), _pool_output),
    "flatten": LayerKind((), lambda layer, shape: (math.prod(shape),)),
    "dense": LayerKind(("in", "out", "act"), _dense_output, weight_shape=lambda l: (l["out"], l["in"]),
                       fans=lambda l: (l["in"], l["out"]), weight_init="glorot_uniform"),
    "dropout": LayerKind(("p",), lambda layer, shape: shape),
}
LAYER_KINDS = tuple(LAYERS)


def has_weights(layer: dict) -> bool:
    return LAYERS[layer["kind"]].weight_shape is not None


def conv(k, cin, cout, act="relu", pad=0):
    return {"kind": "conv", "kernel": k, "in": cin, "out": cout, "pad": pad, "act": act}


def same_conv(k, cin, cout, act="relu"):
    return conv(k, cin, cout, act, pad=k // 2)


def maxpool(k=2):
    return {"kind": "maxpool", "size": k}


def meanpool(k=2):
    return {"kind": "meanpool", "size": k}


def flatten():
    return {"kind": "flatten"}


def dense(nin, nout, act="identity"):
    return {"kind": "dense", "in": nin, "out": nout, "act": act}


def dropout(p):
    return {"kind": "dropout", "p": p}


def _variant(conv_layers, dense_layers):
    """The variants report's network: 'same' convs each followed by max pool 2, then dense."""
    layers = []
    for c in conv_layers:
        layers += [c, maxpool(2)]
    return layers + [flatten()] + dense_layers


MODELS = {
    # The post's model (model-zoo conv_mnist.jl): 44,426 parameters.
    "lenet5": {
        "description": "LeNet-5 of the Flux model zoo and the 2021 post (ReLU, max pooling)",
        "input": (1, 28, 28),
        "layers": [
            conv(5, 1, 6), maxpool(2), conv(5, 6, 16), maxpool(2), flatten(),
            dense(256, 120, "relu"), dense(120, 84, "relu"), dense(84, 10),
        ],
    },
    # LeCun et al. 1998 on 28x28 input: the first conv pads by 2 to see a 32x32 field.
    "lenet5-1998": {
        "description": "classic 1998 LeNet-5 (tanh, average pooling)",
        "input": (1, 28, 28),
        "layers": [
            conv(5, 1, 6, "tanh", pad=2), meanpool(2), conv(5, 6, 16, "tanh"), meanpool(2), flatten(),
            dense(400, 120, "tanh"), dense(120, 84, "tanh"), dense(84, 10),
        ],
    },
    # The architecture-variants report: base network and six variants.
    "lenet-base": {
        "description": "variants report base: conv5x5 1=>32, pool, conv5x5 32=>64, pool, dense 3136=>1024=>10",
        "input": (1, 28, 28),
        "layers": _variant([same_conv(5, 1, 32), same_conv(5, 32, 64)],
                           [dense(3136, 1024, "relu"), dense(1024, 10)]),
    },
    "lenet-add-conv": {
        "description": "variant: a third conv + pool layer to 128 channels",
        "input": (1, 28, 28),
        "layers": _variant([same_conv(5, 1, 32), same_conv(5, 32, 64), same_conv(5, 64, 128)],
                           [dense(1152, 1024, "relu"), dense(1024, 10)]),
    },
    "lenet-kernel7": {
        "description": "variant: second conv kernel 7x7",
        "input": (1, 28, 28),
        "layers": _variant([same_conv(5, 1, 32), same_conv(7, 32, 64)],
                           [dense(3136, 1024, "relu"), dense(1024, 10)]),
    },
    "lenet-16-32": {
        "description": "variant: 16 and 32 channels",
        "input": (1, 28, 28),
        "layers": _variant([same_conv(5, 1, 16), same_conv(5, 16, 32)],
                           [dense(1568, 1024, "relu"), dense(1024, 10)]),
    },
    "lenet-sigmoid": {
        "description": "variant: sigmoid everywhere",
        "input": (1, 28, 28),
        "layers": _variant([same_conv(5, 1, 32, "sigmoid"), same_conv(5, 32, 64, "sigmoid")],
                           [dense(3136, 1024, "sigmoid"), dense(1024, 10)]),
    },
    "lenet-fc128": {
        "description": "variant: a 128-unit dense layer instead of 1024",
        "input": (1, 28, 28),
        "layers": _variant([same_conv(5, 1, 32), same_conv(5, 32, 64)],
                           [dense(3136, 128, "relu"), dense(128, 10)]),
    },
    "lenet-add-fc": {
        "description": "variant: an extra dense layer 1024 => 128",
        "input": (1, 28, 28),
        "layers": _variant([same_conv(5, 1, 32), same_conv(5, 32, 64)],
                           [dense(3136, 1024, "relu"), dense(1024, 128, "relu"), dense(128, 10)]),
    },
    # The CIFAR-10 learning-rate study.
    "cifar-cnn": {
        "description": "CIFAR-10 CNN: 3x(conv3x3 pad 1 + relu + maxpool) 16/32/64, dropout 0.3, dense 1024=>500=>10",
        "input": (3, 32, 32),
        "layers": [
            same_conv(3, 3, 16), maxpool(2), same_conv(3, 16, 32), maxpool(2), same_conv(3, 32, 64), maxpool(2),
            flatten(), dropout(0.3), dense(1024, 500, "relu"), dropout(0.3), dense(500, 10),
        ],
    },
}


def get_model(name: str) -> dict:
    if name not in MODELS:
        raise SpecError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name]


def output_shapes(layers: list[dict], input_shape) -> list[tuple]:
    """Shape (C, H, W) or (features,) after each layer; raises SpecError where layers don't fit."""
    shape = tuple(input_shape)
    shapes = []
    for i, layer in enumerate(layers):
        kind = layer["kind"]
        where = f"layer {i + 1} ({kind})"
        if kind not in LAYERS:
            raise SpecError(f"{where}: unknown layer kind; known: {', '.join(LAYER_KINDS)}")
        if "act" in LAYERS[kind].fields and layer.get("act", "identity") not in ACTIVATIONS:
            raise SpecError(f"{where}: unknown activation {layer['act']!r}; known: {', '.join(ACTIVATIONS)}")
        try:
            shape = LAYERS[kind].output(layer, shape)
        except SpecError as e:
            raise SpecError(f"{where}: {e}") from None
        shapes.append(shape)
    return shapes


def check_model(name: str, input_shape, nclasses: int = 10) -> dict:
    """The model's spec, after checking that it fits data of `input_shape` with `nclasses` outputs."""
    model = get_model(name)
    if tuple(model["input"]) != tuple(input_shape):
        raise SpecError(f"model {name!r} takes inputs of shape {tuple(model['input'])}, "
                        f"the dataset has {tuple(input_shape)}; pick a model made for this dataset")
    out = output_shapes(model["layers"], input_shape)[-1]
    if out != (nclasses,):
        raise SpecError(f"model {name!r} ends with shape {out}, not ({nclasses},)")
    return model


def parameter_count(layers: list[dict]) -> int:
    return sum(math.prod(LAYERS[layer["kind"]].weight_shape(layer)) + layer["out"]
               for layer in layers if has_weights(layer))
