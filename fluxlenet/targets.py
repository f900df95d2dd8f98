"""Reproduction targets: a write-up's sweeps, the seeds a verdict needs, the conclusions it draws, its setup.

`python -m fluxlenet reproduce TARGET` runs a target's sweeps and judges them against the
published figures (fluxlenet.reproduce). The figures themselves are in fluxlenet/reference,
found through each sweep file's `published = ...`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError


@dataclass(frozen=True)
class Claim:
    """A conclusion of the write-up: one of `claimed` is the best setting of `sweep` (by final test accuracy)."""
    sweep: str
    claimed: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Target:
    name: str
    title: str
    sweeps: tuple[str, ...]
    claims: tuple[Claim, ...] = ()
    # the published setup, setting by setting: (setting, what the write-up ran, how this project runs it, what
    # decides whether a run reproduced it: julia | flux | data | protocol | draws | hardware | assumed)
    setup: tuple[tuple[str, str, str, str], ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    # The seed of the write-up's own runs, where its generator is known (the sweeps' `rng` scheme): its run of
    # ours is a replay of the published one (parity.replay). None: the write-up's draws are unknown.
    replay_seed: int | None = None
    # Same-seed runs that differ only in arithmetic, made beside the replay to size its band: (name, changes);
    # their runs go to the sweep folder `<sweep>-replay-<name>`, PyTorch only.
    replay_variants: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()

    def variant_sweep(self, sweep: str, variant: str) -> str:
        return f"{sweep}-replay-{variant}"

    def select(self, names: str | None) -> list[str]:
        """The sweeps asked for with --sweeps (all when None), in the target's order."""
        if names is None:
            return list(self.sweeps)
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in self.sweeps]
        if unknown or not wanted:
            raise ConfigError(f"--sweeps: {', '.join(unknown) or repr(names)} is not a sweep of `reproduce "
                              f"{self.name}`; its sweeps: {', '.join(self.sweeps)}")
        return [n for n in self.sweeps if n in wanted]


POST = Target(
    name="post",
    title="How my LeNet reaches 99% on MNIST (Flux.jl, 2021)",
    sweeps=("baseline", "batchsize", "l2", "optimizer"),
    claims=(
        Claim("batchsize", ("32",), "the best batch size is 32"),
        Claim("l2", ("1e-6",), "the best L2 lambda is 1e-6"),
        Claim("optimizer", ("ADAMW", "AdaBelief"),
              "the best optimiser is ADAMW (one version of the post) or AdaBelief (another; the configuration "
              "its code repository kept)"),
    ),
    setup=(
        ("Julia", "1.6.2", "Julia 1.10 through juliacall (the Flux side)", "julia"),
        ("Flux", "0.12.4 (with the Zygote and NNlib of its time)",
         "Flux 0.16 with Optimisers 0.4, the 0.12 rules the post ran rebuilt (ADAMW_flux012, AdaBelief_flux012); "
         "PyTorch beside it", "flux"),
        ("data", "MNIST through MLDatasets: 60,000 / 10,000 images, pixels in [0, 1], no normalisation",
         "the same files and scaling, read in Python", "data"),
        ("model and training", "the model zoo's LeNet-5 (conv 5x5 1=>6, 6=>16, dense 256=>120=>84=>10, ReLU, max "
                               "pooling); ADAM(3e-4) or the swept rule after WeightDecay(lambda), 10 epochs, batch "
                               "as swept", "the same layers and rules, from one spec for both frameworks", "protocol"),
        ("initial weights", "Flux 0.12's glorot_uniform, zero biases, drawn by Julia's MersenneTwister after "
                            "Random.seed!(42) (one seed for every run)",
         "the same draws, computed in Python (fluxlenet.julia_random) and handed to both frameworks: seed 42 "
         "replays the post's runs, other seeds are other draws of the same scheme", "draws"),
        ("batch order", "Flux 0.12's DataLoader: an in-place shuffle! of the same generator at every pass over "
                        "the training set (training, and report(epoch))",
         "the same shuffles, computed in Python", "draws"),
        ("hardware", "an 8-core i7-9700 desktop CPU", "this machine", "hardware"),
    ),
    seeds=(42, 1, 2, 3, 4),
    replay_seed=42,
    replay_variants=(("float64", (("precision", "float64"),)),),
)

VARIANTS = Target(
    name="variants",
    title="LeNet architecture variants report (MNIST, base network and six variants)",
    sweeps=("variants",),
    setup=(
        ("framework", "not stated (its base network is TensorFlow's Deep MNIST tutorial network)",
         "Flux and PyTorch, from one spec", "assumed"),
        ("training", "'1000 epochs' with --train_num 1000; optimiser not stated",
         "read as 1000 optimiser steps of Adam(1e-4) at batch 50, the tutorial's training", "assumed"),
        ("data", "MNIST", "the MNIST files, 60,000 / 10,000 images", "data"),
        ("model and budget", "the base network and six variants", "the same layers, the sweep file's settings",
         "protocol"),
        ("initial weights", "not stated", "glorot_uniform, zero biases, one draw per seed", "assumed"),
    ),
)

TARGETS = {t.name: t for t in (POST, VARIANTS)}
