"""Whole training steps of the backend's model (ReLU + MaxPool2d(2) as one numba-loop module) at 1 and 2
threads: the same bits as the plain model's (torch's own modules)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fluxlenet import models, optim_spec
from fluxlenet.backends.torch_backend import build_model, load_weights
from fluxlenet.backends.torch_optim import ChainOptimiser
from fluxlenet.init import initial_weights


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def images(n: int, shape, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # like the datasets: multiples of 1/255 with many exact zeros, so pooling windows hold ties
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-200, 256, (n, *shape), generator=g).clamp_min(0).to(dtype) / 255
    return x, torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,batch", [("lenet5", 32), ("lenet5", 64), ("lenet-add-conv", 16), ("lenet-sigmoid", 16)])
def test_training_and_evaluation_are_bitwise_the_model(name, batch, dtype, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        spec = models.get_model(name)
        layers = spec["layers"]
        pairs = []
        for fuse in (False, True):
            model = build_model(layers, fuse_pooling=fuse).to(dtype=dtype)
            load_weights(model, initial_weights(layers, 0, np.float64 if dtype == torch.float64 else np.float32))
            pairs.append((model, ChainOptimiser(model.parameters(), optim_spec.optimiser_chain("Adam", 3e-3))))
        (plain, o_plain), (fused, o_fused) = pairs
        x, y = images(batch * 6, spec["input"], dtype)
        for i in range(6):
            xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
            for model, o in ((plain, o_plain), (fused, o_fused)):
                loss = F.cross_entropy(model(xb), yb)
                o.zero_grad()
                loss.backward()
                o.step()
            for p, q in zip(plain.parameters(), fused.parameters()):
                assert torch.equal(bits(p), bits(q))
        plain.eval()
        fused.eval()
        with torch.inference_mode():
            assert torch.equal(bits(plain(x)), bits(fused(x)))
    finally:
        torch.set_num_threads(before)
