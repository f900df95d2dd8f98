"""The PyTorch training loop written plainly: what torch_backend.train computes, without its speed-ups.

The model is made of torch's own modules (no fused pooling), each batch is indexed from the epoch's
permutation, and a step is the usual forward / loss / zero_grad / backward / step, with the same
initial weights, batch order and ChainOptimiser (the Optimisers.jl rules) as the backend.
torch_backend.train must give the same losses and parameters to the bit
(tests/test_torch_reference.py); it adds the fused pooling, evaluation, logs and checkpoints.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import optim_spec
from ..init import epoch_orders, initial_weights
from .torch_backend import build_model, load_weights, native_init
from .torch_optim import ChainOptimiser


def train_plain(cfg, data) -> tuple[list[float], torch.nn.Module]:
    """Train the run `cfg` on `data` (fluxlenet.data.Dataset); returns every step's loss and the model."""
    dtype = torch.float64 if cfg.precision == "float64" else torch.float32
    layers = cfg.layers()
    torch.manual_seed(cfg.seed)  # dropout masks, and native-mode weights and shuffles
    model = build_model(layers, fuse_pooling=False).to(cfg.device, dtype)
    if cfg.mode == "lockstep":
        load_weights(model, initial_weights(layers, cfg.seed, np.float64 if dtype == torch.float64 else np.float32,
                                            rng=cfg.rng))
    else:
        native_init(model, layers)
    optimiser = ChainOptimiser(model.parameters(), cfg.optimiser_chain())
    x = torch.from_numpy(data.train_x).to(cfg.device, dtype)
    y = torch.from_numpy(data.train_y).to(cfg.device)
    n, size = len(y), cfg.batchsize
    shuffle = torch.Generator().manual_seed(cfg.seed)
    losses = []
    orders = epoch_orders(layers, cfg.seed, n, cfg.rng, cfg.infotime)
    for epoch in range(1, cfg.total_epochs(n) + 1):
        if cfg.mode == "lockstep":
            order = torch.from_numpy(next(orders))
        else:
            order = torch.randperm(n, generator=shuffle)
        for i in range(cfg.steps_in_epoch(epoch, n)):
            batch = order[i * size:(i + 1) * size].to(cfg.device)
            optimiser.set_lr_factor(optim_spec.lr_factor(len(losses), cfg.steps_per_epoch(n), **cfg.schedule()))
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    return losses, model
