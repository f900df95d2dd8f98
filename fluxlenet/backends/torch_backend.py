"""The PyTorch backend: the post's loop (conv_mnist.jl) written with torch.

Imported only inside a spawned torch worker (see fluxlenet.worker).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .. import optim_spec
from ..fsutil import atomic_path
from ..init import epoch_permutation, initial_weights
from ..runlog import round4
from .torch_optim import ChainOptimiser

ACTIVATIONS = {"identity": None, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
EVAL_BATCH = 2000  # evaluation needs no gradients: large batches, same sums as the post's loaders


def build_model(layers: list[dict]) -> nn.Sequential:
    modules = []
    for layer in layers:
        kind = layer["kind"]
        if kind == "conv":
            # torch Conv2d is a cross-correlation, Flux Conv a true convolution: weights handed
            # between the two are flipped (fluxlenet.backends.flux_layout); each side is consistent.
            modules.append(nn.Conv2d(layer["in"], layer["out"], layer["kernel"], padding=layer["pad"]))
        elif kind == "dense":
            modules.append(nn.Linear(layer["in"], layer["out"]))
        elif kind == "maxpool":
            modules.append(nn.MaxPool2d(layer["size"]))
        elif kind == "meanpool":
            modules.append(nn.AvgPool2d(layer["size"]))
        elif kind == "flatten":
            modules.append(nn.Flatten())  # NCHW flatten(1) == Flux.flatten of (W,H,C,N)
        elif kind == "dropout":
            modules.append(nn.Dropout(layer["p"]))
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        act = ACTIVATIONS[layer.get("act", "identity")] if kind in ("conv", "dense") else None
        if act is not None:
            modules.append(act())
    return nn.Sequential(*modules)


def parametrised(model: nn.Module) -> list[nn.Module]:
    return [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def load_weights(model: nn.Module, params: list[tuple[np.ndarray, np.ndarray]]) -> None:
    layers = parametrised(model)
    assert len(layers) == len(params), "spec and weights disagree"
    for module, (weight, bias) in zip(layers, params):
        module.weight.copy_(torch.from_numpy(weight))
        module.bias.copy_(torch.from_numpy(bias))


@torch.no_grad()
def native_init(model: nn.Module) -> None:
    """Flux's scheme with torch's RNG: glorot_uniform (= xavier_uniform, same fans) and zero biases."""
    for module in parametrised(model):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The post's eval_loss_accuracy: mean loss over all samples, accuracy in percent, round4."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(y), EVAL_BATCH):
        out = model(x[i:i + EVAL_BATCH])
        yb = y[i:i + EVAL_BATCH]
        loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()  # onecold: the first maximum wins, as in argmax
    model.train()
    n = len(y)
    return {"loss": round4(loss_sum.item() / n), "acc": round4(correct.item() / n * 100)}


def versions(cfg) -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__}


def device_name(cfg) -> str:
    if cfg.device == "cuda":
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {torch.get_num_threads()} threads"


def train(cfg, data, log) -> str:
    """Train one run; returns "finished" or "diverged". Resumes from model.pt when it is there."""
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    device = torch.device(cfg.device)
    dtype = torch.float64 if cfg.precision == "float64" else torch.float32
    layers = cfg.layers()

    def tensors(x, y):
        return torch.from_numpy(x).to(device, dtype), torch.from_numpy(y).to(device)

    train_x, train_y = tensors(data.train_x, data.train_y)
    test_x, test_y = tensors(data.test_x, data.test_y)
    valid = tensors(data.valid_x, data.valid_y) if data.valid_y is not None else None
    n = len(train_y)

    torch.manual_seed(cfg.seed)  # dropout masks, and native-mode weights and shuffles
    model = build_model(layers).to(device, dtype)
    if cfg.mode == "lockstep":
        load_weights(model, initial_weights(layers, cfg.seed, np.float64 if dtype == torch.float64 else np.float32))
    else:
        native_init(model)
    optimiser = ChainOptimiser(model.parameters(), cfg.optimiser_chain())
    shuffle = torch.Generator().manual_seed(cfg.seed)
    schedule = cfg.schedule()
    scheduled = schedule["warmup_epochs"] > 0 or bool(schedule["milestones"])
    steps_per_epoch = cfg.steps_per_epoch(n)
    checkpoint = log.dir / "model.pt"

    def report(epoch, seconds=None):
        train_figures = evaluate(model, train_x, train_y)
        test_figures = evaluate(model, test_x, test_y)
        valid_figures = evaluate(model, *valid) if valid else None
        lr = cfg.eta * optim_spec.lr_factor(max(step - 1, 0), steps_per_epoch, **schedule)
        return log.record(epoch, train_figures, test_figures, valid_figures, seconds=seconds, lr=lr)

    start_epoch, step = 0, 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        torch.set_rng_state(state["torch_rng"])
        shuffle.set_state(state["shuffle_rng"])
        start_epoch, step = state["epoch"], state["step"]
        log.truncate(start_epoch)
        log.say(f"Resuming from the checkpoint of epoch {start_epoch} ({checkpoint})")
    else:
        log.reset()
        if report(0) == "diverged":
            return "diverged"

    trace = []
    for epoch in range(start_epoch + 1, cfg.total_epochs(n) + 1):
        if cfg.mode == "lockstep":
            order = torch.from_numpy(epoch_permutation(cfg.seed, epoch, n)).to(device)
        else:
            order = torch.randperm(n, generator=shuffle).to(device)
        epoch_x, epoch_y = train_x[order], train_y[order]  # one gather; batches are then plain slices
        nsteps = cfg.steps_in_epoch(epoch, n)
        loss_sum = torch.zeros((), dtype=dtype, device=device)
        started = time.perf_counter()
        for i in tqdm(range(nsteps), desc=f"Epoch {epoch}", file=sys.stderr, leave=False,
                      disable=None, mininterval=0.5):
            if scheduled:
                optimiser.set_lr_factor(optim_spec.lr_factor(step, steps_per_epoch, **schedule))
            xb = epoch_x[i * cfg.batchsize:(i + 1) * cfg.batchsize]
            yb = epoch_y[i * cfg.batchsize:(i + 1) * cfg.batchsize]
            loss = F.cross_entropy(model(xb), yb)  # == Flux.logitcrossentropy on onehot labels
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if step < cfg.trace_steps:  # a host sync per step, only while tracing
                trace.append({"step": step + 1, "loss": loss.item(), "checksum": parameter_checksum(model)})
            optimiser.step()
            loss_sum += loss.detach()
            step += 1
        seconds = time.perf_counter() - started
        last = epoch == cfg.total_epochs(n)
        if trace and (len(trace) == cfg.trace_steps or last):
            log.write_trace(trace)
            trace = []
        # A NaN step loss forces a report, so the divergence lands in the log at once.
        if epoch % cfg.infotime == 0 or last or not torch.isfinite(loss_sum).item():
            if report(epoch, seconds) == "diverged":
                return "diverged"
        if cfg.checktime > 0 and (epoch % cfg.checktime == 0 or last):
            with atomic_path(checkpoint) as tmp:
                torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                            "torch_rng": torch.get_rng_state(), "shuffle_rng": shuffle.get_state(),
                            "epoch": epoch, "step": step, "config": cfg.to_dict()}, tmp)
            log.say(f"Model saved in \"{checkpoint}\"")
    return "finished"


@torch.no_grad()
def parameter_checksum(model: nn.Module) -> float:
    return float(sum(p.double().sum() for p in model.parameters()))
