"""The PyTorch backend: the post's loop (conv_mnist.jl) written with torch.

Imported only inside a spawned torch worker (see fluxlenet.worker).
"""

from __future__ import annotations

import ctypes
import io
import os
import re
import sys
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .. import faults
from ..config import LENGTH, ConfigError, RunConfig
from ..fsutil import atomic_path
from ..init import epoch_orders, initial_weights
from ..models import LAYERS, has_weights
from ..runlog import damaged, round4
from .torch_optim import ChainOptimiser
from .torch_pool import NumbaMaxPool2d, ReluMaxPool2d

ACTIVATIONS = {"identity": None, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
EVAL_BATCH = 500  # evaluation needs no gradients; 500 keeps the activations in cache (2000 was 2x slower)


# The torch module of each layer kind (fluxlenet.models.LAYERS); its activation follows as a module.
TORCH_LAYERS = {
    # torch Conv2d is a cross-correlation, Flux Conv a true convolution: weights handed between
    # the two are flipped (fluxlenet.backends.flux_layout); each side is consistent.
    "conv": lambda l: nn.Conv2d(l["in"], l["out"], l["kernel"], padding=l["pad"]),
    "maxpool": lambda l: nn.MaxPool2d(l["size"]),
    "meanpool": lambda l: nn.AvgPool2d(l["size"]),
    "flatten": lambda l: nn.Flatten(),  # NCHW flatten(1) == Flux.flatten of (W,H,C,N)
    "dense": lambda l: nn.Linear(l["in"], l["out"]),
    "dropout": lambda l: nn.Dropout(l["p"]),
}


def build_model(layers: list[dict], fuse_pooling: bool = True) -> nn.Sequential:
    """The torch model of a layer spec (fluxlenet.models). Each ReLU followed by MaxPool2d(2) is
    one ReluMaxPool2d module, and a MaxPool2d(2) after anything else a NumbaMaxPool2d (torch_pool:
    the same values and gradients, faster on a CPU); with fuse_pooling=False the model is made of
    torch's own modules only (torch_reference's). Modules are named by their positions in that
    plain model ("1-2" for a fused pair), so both have the same parameter names (model.pt keys)."""
    modules = []
    for layer in layers:
        if layer["kind"] not in TORCH_LAYERS:
            raise ValueError(f"unknown layer kind {layer['kind']!r}")
        modules.append(TORCH_LAYERS[layer["kind"]](layer))
        act = ACTIVATIONS[layer.get("act", "identity")]
        if act is not None:
            modules.append(act())
    if not fuse_pooling:
        return nn.Sequential(*modules)
    named, i = {}, 0
    while i < len(modules):
        if isinstance(modules[i], nn.ReLU) and i + 1 < len(modules) and _is_pool2(modules[i + 1]):
            named[f"{i}-{i + 1}"] = ReluMaxPool2d()
            i += 2
        else:
            named[str(i)] = NumbaMaxPool2d() if _is_pool2(modules[i]) else modules[i]
            i += 1
    return nn.Sequential(OrderedDict(named))


def _is_pool2(module: nn.Module) -> bool:
    return isinstance(module, nn.MaxPool2d) and module.kernel_size == 2  # as built above: stride 2, no padding


def parametrised(model: nn.Module) -> list[nn.Module]:
    """The modules with weights, in order: those of the spec's layers with weights (models.has_weights)."""
    return [m for m in model if getattr(m, "weight", None) is not None]


@torch.no_grad()
def load_weights(model: nn.Module, params: list[tuple[np.ndarray, np.ndarray]]) -> None:
    layers = parametrised(model)
    assert len(layers) == len(params), "spec and weights disagree"
    for module, (weight, bias) in zip(layers, params):
        module.weight.copy_(torch.from_numpy(weight))
        module.bias.copy_(torch.from_numpy(bias))


# models.LayerKind.weight_init with torch's RNG (xavier_uniform_ is glorot_uniform: the same fans as Flux's)
TORCH_INITS = {"glorot_uniform": nn.init.xavier_uniform_, "ones": nn.init.ones_}


@torch.no_grad()
def native_init(model: nn.Module, layers: list[dict]) -> None:
    """Flux's scheme with torch's RNG: each weight by its kind's weight_init, zero biases."""
    weighted = [layer for layer in layers if has_weights(layer)]
    modules = parametrised(model)
    assert len(weighted) == len(modules), "spec and model disagree"
    for layer, module in zip(weighted, modules):
        TORCH_INITS[LAYERS[layer["kind"]].weight_init](module.weight)
        nn.init.zeros_(module.bias)


def loss_of(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The post's loss, train.jl's `loss`: Flux.logitcrossentropy on onehot labels (the batch mean), for
    training and evaluation alike; reduction "none": one loss per sample."""
    return F.cross_entropy(logits, labels, reduction=reduction)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = EVAL_BATCH) -> dict:
    """The post's eval_loss_accuracy: mean loss over all samples, accuracy in percent, round4."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(y), batch):
        out = model(x[i:i + batch])
        yb = y[i:i + batch]
        # per-sample losses summed in float64: the total does not depend on the batch
        loss_sum += loss_of(out, yb, reduction="none").sum(dtype=torch.float64)
        correct += (out.argmax(1) == yb).sum()  # onecold: the first maximum wins, as in argmax
    model.train()
    n = len(y)
    return {"loss": round4(loss_sum.item() / n), "acc": round4(correct.item() / n * 100)}


def versions(cfg) -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__}


def threads_used(cfg) -> dict:
    return {"torch": cfg.threads or os.cpu_count() or 1}  # what train() sets


def device_name(cfg) -> str:
    if cfg.device == "cuda":
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {threads_used(cfg)['torch']} threads"


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory in the process (Linux; a no-op elsewhere).

    glibc serves blocks over its mmap threshold (128 KiB at first) with fresh mmap()s and gives
    freed memory at the top of the heap back to the kernel: a training step then page-faults its
    activations in anew (~400 faults per LeNet step at batch 32, 30-35% of the step on a 2-core
    VM). glibc raises that threshold by itself after large blocks are freed, which loading the
    dataset usually does, so in a worker this mostly makes sure of it. A worker runs one training
    loop: keeping what it freed for the next step costs nothing but its peak RSS."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def train(cfg, data, log, progress: bool = False) -> str:
    """Train one run; returns "finished" or "diverged". Resumes from model.pt when it is there.
    `progress`: a progress bar per epoch on stderr."""
    data.check_finite()
    # FTZ/DAZ is a per-thread CPU flag: set before torch's thread pool starts, so its threads
    # inherit it (a worker process has run no parallel op yet).
    if not torch.set_flush_denormal(cfg.flush_subnormals) and cfg.flush_subnormals:
        log.say("NOTE: this CPU cannot flush subnormals; the run goes on without")
    torch.set_num_threads(threads_used(cfg)["torch"])
    keep_freed_memory()
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
        load_weights(model, initial_weights(layers, cfg.seed, np.float64 if dtype == torch.float64 else np.float32,
                                            rng=cfg.rng))
    else:
        native_init(model, layers)
    # ChainOptimiser moves the parameters into one buffer (each becomes a view of it): every
    # operation of its rule is then one tensor op over all of them.
    optimiser = ChainOptimiser(model.parameters(), cfg.optimiser_chain())
    shuffle = torch.Generator().manual_seed(cfg.seed)
    lr_factors = cfg.lr_factors(n)  # None: no schedule
    checkpoint = log.folder.torch_checkpoint

    eval_batch = cfg.eval_batchsize() or EVAL_BATCH

    def report(epoch, seconds=None):
        train_figures = evaluate(model, train_x, train_y, eval_batch)
        test_figures = evaluate(model, test_x, test_y, eval_batch)
        valid_figures = evaluate(model, *valid, eval_batch) if valid else None
        lr = cfg.eta * (lr_factors[max(step - 1, 0)] if lr_factors else 1.0)  # the last step's
        return log.record(epoch, train_figures, test_figures, valid_figures, seconds=seconds, lr=lr)

    start_epoch, step = 0, 0
    if checkpoint.exists():
        try:
            state = torch.load(checkpoint, map_location=device, weights_only=False)
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            shuffle.set_state(state["shuffle_rng"])
            start_epoch, step = state["epoch"], state["step"]
        except Exception as e:  # a damaged or foreign file makes torch raise almost anything
            reason = re.split(r"\n|\s{2,}", str(e).strip())[0][:200]  # torch's first sentence
            raise damaged(checkpoint, f"cannot be resumed from ({type(e).__name__}: {reason})",
                          f"delete it to start the run afresh (or move the run folder {log.dir} away)") from e
        trained = state.get("config")
        if isinstance(trained, dict) and cfg.differences(trained, ignore=LENGTH):
            raise ConfigError(f"{checkpoint} was trained with other settings ({', '.join(cfg.differences(trained))}); "
                              f"use another folder or remove that one")
        if isinstance(trained, dict) and cfg.differences(trained):  # another length: see RunConfig.length_problem
            problem = cfg.length_problem(RunConfig.from_stored(trained), n, checkpointed=True, finished=False)
            if problem:
                raise ConfigError(f"{log.dir} {problem}")
        log.truncate(start_epoch)
        log.keep_trace(step)
        log.say(f"Resuming from the checkpoint of epoch {start_epoch} ({checkpoint})")
    else:
        log.reset()
        if report(0) == "diverged":
            return "diverged"
        faults.point("epoch", 0, cfg.run)  # fault injection for the tests; nothing unless FLUXLENET_FAULT

    orders = epoch_orders(layers, cfg.seed, n, cfg.rng, cfg.infotime, start=start_epoch + 1)
    for epoch in range(start_epoch + 1, cfg.total_epochs(n) + 1):
        if cfg.mode == "lockstep":
            order = torch.from_numpy(next(orders)).to(device)
        else:
            order = torch.randperm(n, generator=shuffle).to(device)
        epoch_x, epoch_y = train_x[order], train_y[order]  # one gather; batches are then plain slices
        nsteps = cfg.steps_in_epoch(epoch, n)
        losses = []  # the step losses, summed once at the end of the epoch (no op per step)
        started = time.perf_counter()
        # tqdm costs ~1 us a step (it redraws at most every 0.5 s)
        for i in tqdm(range(nsteps), desc=f"Epoch {epoch}", file=sys.stderr, leave=False,
                      disable=not progress, mininterval=0.5):
            if lr_factors:
                optimiser.set_lr_factor(lr_factors[step])
            xb = epoch_x[i * cfg.batchsize:(i + 1) * cfg.batchsize]
            yb = epoch_y[i * cfg.batchsize:(i + 1) * cfg.batchsize]
            loss = loss_of(model(xb), yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if step < cfg.trace_steps:  # a host sync (and a file write) per step, only while tracing
                log.trace_step(step + 1, loss.item(), parameter_checksum(model))
            if faults.RULES:
                faults.point("step", step + 1, cfg.run)
            optimiser.step()
            losses.append(loss.detach())
            step += 1
        seconds = time.perf_counter() - started
        loss_sum = torch.stack(losses).sum() if losses else torch.zeros((), dtype=dtype, device=device)
        last = epoch == cfg.total_epochs(n)
        # A NaN step loss forces a report, so the divergence lands in the log at once.
        if epoch % cfg.infotime == 0 or last or not torch.isfinite(loss_sum).item():
            if report(epoch, seconds) == "diverged":
                return "diverged"
            faults.point("epoch", epoch, cfg.run)
        if cfg.checktime > 0 and (epoch % cfg.checktime == 0 or last):
            # Serialised in memory, then written by Python: a full disk is a plain OSError (ENOSPC), and
            # no torch writer keeps the deleted temporary file (and its space) open while it is reported.
            buffer = io.BytesIO()
            torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                        "torch_rng": torch.get_rng_state(), "shuffle_rng": shuffle.get_state(),
                        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                        "epoch": epoch, "step": step, "config": cfg.to_dict()}, buffer)
            with atomic_path(checkpoint) as tmp:
                tmp.write_bytes(buffer.getbuffer())
            del buffer
            log.say(f"Model saved in \"{checkpoint}\"")
            faults.point("checkpoint", epoch, cfg.run)
    return "finished"


@torch.no_grad()
def parameter_checksum(model: nn.Module) -> float:
    return float(sum(p.double().sum() for p in model.parameters()))
