"""Does a write-up's own run replay? And is its seed a typical draw? The statistics behind both.

A write-up made with one seed of a known generator (the 2021 post: Julia's MersenneTwister, seed 42)
can be rerun from the same draws: the same initial weights, the same batch order. What is left to
differ is arithmetic (the other framework, another CPU and thread count, float32 rounding that grows
chaotically over the epochs). So:

- **The band** of a figure (a metric at an epoch) is how far runs of the same seed and draws lie apart
  when only their arithmetic differs: from every pair of such runs of ours (Flux and PyTorch, float32
  and float64), pooled over the runs of a write-up, band = max(floor, k * RMS of the differences).
  If the published run is one more arithmetic variant of the same draws, its distance to our replay
  is a difference of the same kind: k = 3 leaves about 3 in 1000 outside by chance (for normal
  differences). The floor is the rounding of the printed figures (4 digits).
- A published figure is **replayed** when |published - our replay| <= band at its epoch, **not
  replayed** outside, **inconclusive** without a replay run or without a band at that epoch. The
  headline figures (each run's final test accuracy) decide, as for the seed verdicts.
- **Where the seed stands**: the replay seed's figure against our other seeds of the same scheme,
  judged like a published figure (parity.reproduction's prediction interval): **typical** inside,
  **lucky** when better (higher accuracy, lower loss), **unlucky** when worse; with its z-score
  ((value - mean) / sd of the other seeds) and its rank among all seeds (1: the best).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import pandas as pd

from .reproduction import INCONCLUSIVE, PublishedFigure, Sample, figure_values, judge_figure, sample_of

REPLAYED, NOT_REPLAYED = "replayed", "not replayed"
TYPICAL, LUCKY, UNLUCKY = "typical", "lucky", "unlucky"
ROUNDING_FLOOR = 1e-4 * (1 + 1e-9)   # the figures are printed to 4 digits: one unit of the last one


def variant_name(run) -> str:
    """'PyTorch float32' for a fluxlenet.runs.RunFiles."""
    from .compare import BACKEND_NAMES
    return f"{BACKEND_NAMES.get(run.backend, run.backend)} {run.precision}"


@dataclass
class Band:
    """Half-widths per (metric, epoch), and how they were made."""
    widths: dict[tuple[str, int], float]
    counts: dict[tuple[str, int], int]      # the differences behind each width
    pairs: list[str]                        # the kinds of pair, e.g. "PyTorch float32 vs PyTorch float64"
    k: float
    floor: float

    def width(self, metric: str, epoch: int | None) -> float | None:
        return self.widths.get((metric, epoch))

    def describe(self) -> str:
        kinds = ", ".join(self.pairs) or "none"
        return (f"band = max({self.floor:.4g}, {self.k:g} × RMS of the differences between same-seed runs that "
                f"differ only in arithmetic ({kinds}), per metric and epoch, pooled over the write-up's runs")


def estimate_band(variants: list[list], metrics: tuple[str, ...], k: float = 3.0,
                  floor: float = ROUNDING_FLOOR) -> Band:
    """`variants`: for each run of the write-up, its runs of the replay seed and draws (fluxlenet.runs.RunFiles)."""
    differences: dict[tuple[str, int], list[float]] = {}
    pairs = []
    for runs in variants:
        for a, b in combinations(runs, 2):
            kind = " vs ".join(sorted((variant_name(a), variant_name(b))))
            if kind not in pairs:
                pairs.append(kind)
            for metric in metrics:
                if metric not in a.log or metric not in b.log:
                    continue
                d = pd.to_numeric(a.log[metric], errors="coerce") - pd.to_numeric(b.log[metric], errors="coerce")
                for epoch, value in d.items():
                    if math.isfinite(value):   # NaN: a figure one of them lacks (no validation split, an epoch)
                        differences.setdefault((metric, int(epoch)), []).append(float(value))
    widths = {key: max(floor, k * math.sqrt(math.fsum(d * d for d in ds) / len(ds)))
              for key, ds in differences.items()}
    return Band(widths, {key: len(ds) for key, ds in differences.items()}, pairs, k, floor)


@dataclass
class ReplayFigure:
    figure: PublishedFigure
    epoch: int | None           # the epoch judged (a final figure: the last epoch the replay reached)
    value: float | None         # our replay's figure
    band: float | None
    verdict: str
    why: str = ""

    @property
    def difference(self) -> float | None:
        return None if self.value is None else self.value - self.figure.value


def judge_replay(replay, figures: list[PublishedFigure], band: Band) -> list[ReplayFigure]:
    """Each published figure against the replay run (fluxlenet.runs.RunFiles, or None when it was not run)."""
    out = []
    for figure in figures:
        if replay is None:
            out.append(ReplayFigure(figure, figure.epoch, None, None, INCONCLUSIVE, "no replay run"))
            continue
        epoch, values = figure_values([replay], figure.metric, figure.epoch)
        value = values.get(replay.seed)
        width = band.width(figure.metric, epoch)
        if value is None or not math.isfinite(value):
            out.append(ReplayFigure(figure, epoch, value, width, INCONCLUSIVE, f"the replay has no epoch {epoch}"))
        elif width is None:
            out.append(ReplayFigure(figure, epoch, value, None, INCONCLUSIVE,
                                    f"no same-seed variant reached epoch {epoch}, so no band"))
        else:
            inside = abs(value - figure.value) <= width
            out.append(ReplayFigure(figure, epoch, value, width, REPLAYED if inside else NOT_REPLAYED,
                                    f"|{value - figure.value:+.4g}| {'<=' if inside else '>'} {width:.4g}"))
    return out


@dataclass
class Standing:
    metric: str
    epoch: int
    value: float                # the replay seed's figure
    others: Sample              # the other seeds'
    rank: int                   # among all seeds, 1: the best
    of: int
    verdict: str

    @property
    def z(self) -> float | None:
        sd = self.others.sd
        if sd is None:
            return None
        gap = self.value - self.others.mean
        return gap / sd if sd > 0 else (0.0 if gap == 0 else math.copysign(math.inf, gap))


def standing(replay, others: list, metric: str, epoch: int | None, level: float, min_seeds: int) -> Standing | None:
    """Where the replay seed's figure stands among the other seeds' (None when the replay lacks it)."""
    epoch, values = figure_values([replay], metric, epoch)
    value = values.get(replay.seed)
    if value is None or not math.isfinite(value):
        return None
    sample = sample_of(figure_values(others, metric, epoch)[1])
    lower_is_better = metric.endswith("loss")
    better = sum((v < value) if lower_is_better else (v > value) for v in sample.values)
    state, interval, _ = judge_figure(sample, value, level, min_seeds)
    if state != INCONCLUSIVE:
        low, high = interval
        state = TYPICAL if low <= value <= high else LUCKY if (value < low) == lower_is_better else UNLUCKY
    return Standing(metric, epoch, value, sample, better + 1, sample.n + 1, state)


def rule_lines(k: float, level: float, min_seeds: int, seed: int) -> list[str]:
    return [
        f"Replay: our run of seed {seed} with the write-up's own draws beside each published figure; replayed when "
        f"|published − replay| ≤ band, band = max(1e-4, {k:g} × RMS of same-seed differences that arithmetic alone "
        f"makes) at that epoch; the headline figures (final test accuracy) decide.",
        f"Seed {seed} among our other seeds: typical inside their {level:.3g} prediction interval, lucky above it "
        f"(accuracy; below it for a loss), unlucky below; inconclusive with fewer than {min_seeds:g} other seeds.",
    ]


__all__ = ["LUCKY", "NOT_REPLAYED", "REPLAYED", "TYPICAL", "UNLUCKY", "Band", "ReplayFigure", "Standing",
           "estimate_band", "judge_replay", "rule_lines", "standing"]
