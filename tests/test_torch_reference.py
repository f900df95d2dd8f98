"""torch_backend.train computes what the plain loop (fluxlenet.backends.torch_reference) computes:
the same loss at every step and the same parameters at the end, to the bit, on real MNIST."""

from __future__ import annotations

import dataclasses
import inspect
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from fluxlenet.backends import torch_backend, torch_reference
from fluxlenet.config import RunConfig
from fluxlenet.data import Dataset, load_dataset
from fluxlenet.runlog import RunLog

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
real_data = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"real data not found at {SHARED}")

# The settings that change results but that the plain loop does not read, and why that is right.
NOT_READ_BY_THE_PLAIN_LOOP = {
    "sweep": "where the run is filed", "run": "where the run is filed", "backend": "it is the torch loop",
    "dataset": "the data handed to it", "train_size": "the data handed to it", "test_size": "the data handed to it",
    "valid_size": "the data handed to it",
    "checktime": "which epochs are checkpointed, not the training",
    "flush_subnormals": "a setting of the process (torch_backend sets it); the bit-for-bit test runs without it",
}

CASES = {
    # 640 / 32 = 20 steps an epoch, two epochs (two permutations)
    "lockstep-Adam": dict(train_size=640, epochs=2),
    # randperm shuffles and torch's initialisation, a partial last batch (600 = 18 * 32 + 24), coupled
    # L2 before Nesterov, warm-up over the first epoch and a decay from the second
    "native-WD+Nesterov-schedule": dict(train_size=600, epochs=2, mode="native", optimizer="Nesterov", eta=0.01,
                                        lambda_=1e-3, warmup_epochs=1.0, milestones=[1], gamma=0.5),
}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).view(torch.int64 if t.dtype == torch.float64 else torch.int32)


class Reading:
    """A RunConfig that notes every setting read from it, by its methods too (cfg.schedule() reads gamma)."""

    def __init__(self, cfg: RunConfig):
        self.cfg, self.read = cfg, set()

    def __getattr__(self, name):
        method = getattr(RunConfig, name, None)
        if inspect.isfunction(method):
            return types.MethodType(method, self)
        self.read.add(name)
        return getattr(self.cfg, name)


@pytest.mark.parametrize("mode", ["lockstep", "native"])
def test_the_plain_loop_reads_every_setting_that_changes_results(mode):
    """A new setting that changes results is honoured by the plain loop (and so held to torch_backend by the
    bit-for-bit test), or said here to be none of its business."""
    rng = np.random.default_rng(0)
    data = Dataset(train_x=rng.random((8, 1, 28, 28), dtype=np.float32), train_y=rng.integers(0, 10, 8),
                   test_x=None, test_y=None)
    cfg = Reading(RunConfig(batchsize=4, epochs=1, mode=mode).validate())
    threads = torch.get_num_threads()
    try:
        losses, _ = torch_reference.train_plain(cfg, data)
    finally:
        torch.set_num_threads(threads)
    assert len(losses) == 2
    results = {f.name for f in dataclasses.fields(RunConfig) if f.metadata["result"]}
    assert set(NOT_READ_BY_THE_PLAIN_LOOP) <= results
    assert not cfg.read & set(NOT_READ_BY_THE_PLAIN_LOOP), "read after all: take it out of NOT_READ_BY_THE_PLAIN_LOOP"
    missed = results - cfg.read - set(NOT_READ_BY_THE_PLAIN_LOOP)
    assert not missed, f"torch_reference.train_plain ignores {sorted(missed)}: honour them, or say why not above"


@real_data
@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_train_is_the_plain_loop_bit_for_bit(tmp_path, case, precision):
    cfg = RunConfig(run=case, dataset="mnist", data_dir=str(SHARED), test_size=100, batchsize=32, checktime=2,
                    threads=1, trace_steps=1000, precision=precision, **CASES[case]).validate()
    data = load_dataset("mnist", SHARED, train_size=cfg.train_size, test_size=cfg.test_size, download=False,
                        progress=False)
    threads = torch.get_num_threads()
    try:
        log = RunLog(tmp_path, echo=lambda line: None)
        assert torch_backend.train(cfg, data, log) == "finished"
        log.close()
        losses, model = torch_reference.train_plain(cfg, data)
    finally:
        torch.set_num_threads(threads)  # train sets the process's threads

    assert len(losses) == 2 * cfg.steps_per_epoch(cfg.train_size)  # 40 and 38 steps
    assert [row["loss"] for row in log.trace] == losses  # trace.csv: every step's loss, exactly
    trained = torch.load(tmp_path / "model.pt", weights_only=False)["model"]  # after the last epoch
    reference = model.state_dict()
    assert list(trained) == list(reference)
    for key, value in reference.items():
        assert value.dtype == trained[key].dtype and torch.equal(bits(value), bits(trained[key])), key
    assert losses[-1] < losses[0]  # it learnt something
