"""Did a published figure reproduce? Seed statistics and the rules that turn them into verdicts.

With n seeds, each figure of ours (a metric at an epoch) is a sample: mean, sd (n - 1 in the
denominator), min, max. A published figure is one run of the same experiment, made elsewhere.

- A published figure is **reproduced** when it lies inside the prediction interval of one new
  run of ours, mean +- t(1 - (1 - level) / 2, n - 1) * sd * sqrt(1 + 1/n) (level 0.99:
  t(0.995, n - 1)); **not reproduced** when it lies outside; **inconclusive** when fewer than
  min_seeds (3) of our seeds have the figure. If the published run and ours come from one
  normal distribution, (published - mean) / (sd * sqrt(1 + 1/n)) follows Student's t with
  n - 1 degrees of freedom, so a figure that did reproduce falls outside only 1 - level of the
  time: the interval accounts for both our run-to-run noise and the uncertainty of our mean.
- Two frameworks with several seeds each (native mode) are compared by their means: they are
  **consistent** when |mean_a - mean_b| <= max(t(1 - (1 - level) / 2, df) * se, floor), with
  se = sqrt(sd_a^2 / n_a + sd_b^2 / n_b) and Welch's df (a two-sided Welch test at 1 - level);
  **different** otherwise; **inconclusive** with fewer than min_seeds seeds a side.
- A conclusion "X is the best setting" **holds** when X has the highest mean final test
  accuracy, **does not hold** when another setting is better than X beyond the same Welch band,
  and is **inconclusive** when another setting's mean is higher but within noise, or with too
  few seeds.

Every figure gets a verdict; the headline figures (the final test accuracy of each run: the
figures of the write-ups' tables) decide. Judging many figures at 1 - level each, some fall
outside by chance alone (at 0.99, 1 figure in 100): the per-epoch verdicts show where a gap is,
they do not decide.

The t quantile is scipy.stats.t's; tests check it against published table values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
CONSISTENT, DIFFERENT = "consistent", "different"
HOLDS, DOES_NOT_HOLD = "holds", "does not hold"
FIGURE_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "valid_loss", "valid_acc")
HEADLINE_METRIC = "test_acc"


# -- Student's t -----------------------------------------------------------------------------

def t_quantile(p: float, df: float) -> float:
    """The p quantile of Student's t (0.5 <= p < 1, df > 0, not necessarily whole)."""
    if not 0.5 <= p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df > 0, got p={p}, df={df}")
    from scipy import stats  # here: a second's import that `train` and `sweep` do not need
    return float(stats.t.ppf(p, df))


# -- samples ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One figure over seeds: the finite values and the seeds they came from."""
    values: tuple[float, ...]
    seeds: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()      # seeds whose figure is NaN or infinite (a diverged run)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        if not self.n:
            return None
        if min(self.values) == max(self.values):
            return self.values[0]   # exactly (fsum / n can be off in the last bit)
        return math.fsum(self.values) / self.n

    @property
    def sd(self) -> float | None:
        if self.n < 2:
            return None
        if min(self.values) == max(self.values):
            return 0.0
        mean = self.mean
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values) / (self.n - 1))

    @property
    def min(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def max(self) -> float | None:
        return max(self.values) if self.values else None


def sample_of(values: dict[int, float]) -> Sample:
    """A Sample from {seed: value}; non-finite values are kept out (and named in `missing`)."""
    finite = {s: v for s, v in sorted(values.items()) if v is not None and math.isfinite(v)}
    return Sample(tuple(finite.values()), tuple(finite), tuple(s for s in sorted(values) if s not in finite))


def prediction_interval(sample: Sample, level: float) -> tuple[float, float] | None:
    """mean +- t(1 - (1 - level) / 2, n - 1) * sd * sqrt(1 + 1/n): where one new run falls with probability level."""
    if sample.n < 2:
        return None
    half = t_quantile(1.0 - (1.0 - level) / 2.0, sample.n - 1) * sample.sd * math.sqrt(1.0 + 1.0 / sample.n)
    return sample.mean - half, sample.mean + half


def welch_band(a: Sample, b: Sample, level: float) -> tuple[float, float]:
    """(half-width of the interval of mean_a - mean_b at `level`, Welch's degrees of freedom)."""
    va, vb = a.sd ** 2 / a.n, b.sd ** 2 / b.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return 0.0, float(a.n + b.n - 2)
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return t_quantile(1.0 - (1.0 - level) / 2.0, df) * se, df


def seeds_needed(have: list[int], min_seeds: int, target: int = 5) -> str:
    """The --seeds value that gives enough seeds: the ones there plus new ones (finished runs are skipped)."""
    seeds = sorted(set(have))
    wanted = max(min_seeds, target, len(seeds))
    candidate = 0
    while len(seeds) < wanted:
        if candidate not in seeds:
            seeds.append(candidate)
        candidate += 1
    return ",".join(map(str, sorted(seeds)))


# -- a published figure ----------------------------------------------------------------------

@dataclass(frozen=True)
class PublishedFigure:
    metric: str
    epoch: int | None          # None: the figure after the last epoch (a final figure without its epoch)
    value: float
    headline: bool             # the final test accuracy: a figure of the write-up's tables


def published_figures(pub) -> list[PublishedFigure]:
    """Every figure of a parity.published.Published: its epoch logs, and the final figures they do not hold.

    The headline figure is the final test accuracy: the published final one, else the last epoch's.
    """
    values: dict[tuple[str, int | None], float] = {}
    if pub.epochs is not None:
        for epoch, row in pub.epochs.iterrows():
            for metric in FIGURE_METRICS:
                if metric in row and not math.isnan(row[metric]):
                    values[(metric, int(epoch))] = float(row[metric])
    for metric, (value, epoch) in pub.final.items():
        if metric in FIGURE_METRICS:
            values.setdefault((metric, epoch), value)
    if HEADLINE_METRIC in pub.final:
        headline = (HEADLINE_METRIC, pub.final[HEADLINE_METRIC][1])
    else:
        epochs = [e for m, e in values if m == HEADLINE_METRIC and e is not None]
        headline = (HEADLINE_METRIC, max(epochs)) if epochs else None
    figures = [PublishedFigure(m, e, v, (m, e) == headline) for (m, e), v in values.items()]
    return sorted(figures, key=lambda f: (FIGURE_METRICS.index(f.metric), -1 if f.epoch is None else f.epoch))


@dataclass
class FigureVerdict:
    run: str
    side: str
    figure: PublishedFigure
    epoch: int | None               # the epoch judged (a final figure: the last epoch our runs reached)
    sample: Sample
    interval: tuple[float, float] | None
    verdict: str
    why: str = ""

    @property
    def metric(self) -> str:
        return self.figure.metric

    @property
    def headline(self) -> bool:
        return self.figure.headline

    @property
    def published(self) -> float:
        return self.figure.value

    @property
    def z(self) -> float | None:
        """(published - our mean) / our sd: how far out, in sd of one run of ours."""
        sd = self.sample.sd
        if sd is None:
            return None
        gap = self.published - self.sample.mean
        return gap / sd if sd > 0 else (0.0 if gap == 0 else math.copysign(math.inf, gap))

    @property
    def outside_range(self) -> bool:
        return self.sample.n > 0 and not self.sample.min <= self.published <= self.sample.max


def judge_figure(sample: Sample, value: float, level: float, min_seeds: int) -> tuple[str, tuple | None, str]:
    """(verdict, prediction interval, why) for a published value against our seeds."""
    interval = prediction_interval(sample, level)
    dropped = f"; {len(sample.missing)} seed(s) without a finite figure" if sample.missing else ""
    if sample.n < min_seeds:
        return INCONCLUSIVE, interval, f"{sample.n} seed(s), at least {min_seeds} needed{dropped}"
    low, high = interval
    inside = low <= value <= high
    return (REPRODUCED if inside else NOT_REPRODUCED), interval, \
        f"{'inside' if inside else 'outside'} {low:.4g}..{high:.4g}{dropped}"


def figure_values(runs, metric: str, epoch: int | None) -> tuple[int | None, dict[int, float]]:
    """(the epoch, {seed: value}) of a figure in a side's runs (fluxlenet.runs.RunFiles, one per seed).

    epoch None: the last epoch any seed reached, from the seeds that reached it."""
    logs = [r for r in runs if len(r.log) and metric in r.log]
    if epoch is None:
        epoch = max((int(r.log.index.max()) for r in logs), default=None)
    values = {}
    for r in logs:
        if epoch in r.log.index and r.log.at[epoch, metric] == r.log.at[epoch, metric]:
            values[r.seed] = float(r.log.at[epoch, metric])
        elif epoch in r.log.index:
            values[r.seed] = math.nan   # logged but NaN: the run diverged
    return epoch, values


def judge_published(run: str, side: str, runs, figures: list[PublishedFigure], level: float,
                    min_seeds: int) -> list[FigureVerdict]:
    verdicts = []
    for figure in figures:
        epoch, values = figure_values(runs, figure.metric, figure.epoch)
        sample = sample_of(values)
        verdict, interval, why = judge_figure(sample, figure.value, level, min_seeds)
        verdicts.append(FigureVerdict(run, side, figure, epoch, sample, interval, verdict, why))
    return verdicts


def headline_verdict(verdicts: list) -> str | None:
    """The verdict the headline figures give: not reproduced > inconclusive > reproduced; None: no headline."""
    states = {v.verdict for v in verdicts if v.figure.headline}
    for state in (NOT_REPRODUCED, INCONCLUSIVE, REPRODUCED):
        if state in states:
            return state
    return None


# -- two sides -------------------------------------------------------------------------------

@dataclass
class DifferenceVerdict:
    metric: str
    epoch: int
    a: Sample
    b: Sample
    band: float | None        # the largest consistent |mean_a - mean_b|; None: too few seeds
    verdict: str
    headline: bool

    @property
    def difference(self) -> float | None:
        return None if not self.a.n or not self.b.n else self.a.mean - self.b.mean


def judge_difference(a: Sample, b: Sample, level: float, min_seeds: int, floor: float) -> tuple[str, float | None]:
    """(consistent | different | inconclusive, band) for the means of two sides."""
    if min(a.n, b.n) < max(min_seeds, 2):
        return INCONCLUSIVE, None
    band = max(welch_band(a, b, level)[0], floor)
    return (CONSISTENT if abs(a.mean - b.mean) <= band else DIFFERENT), band


# -- a conclusion: "X is the best setting" ---------------------------------------------------

@dataclass
class ClaimVerdict:
    claimed: list[str]                 # the settings the write-up calls best (any of them)
    best: str | None                   # ours: the highest mean
    verdict: str
    why: str


def judge_best(claimed: list[str], samples: dict[str, Sample], level: float, min_seeds: int) -> ClaimVerdict:
    """Is one of `claimed` the setting with the highest mean (of final test accuracy)?"""
    short = [name for name, s in samples.items() if s.n < min_seeds]
    if not samples or short:
        return ClaimVerdict(claimed, None, INCONCLUSIVE,
                            f"too few seeds (at least {min_seeds} needed) for: {', '.join(short) or 'all settings'}")
    ranked = sorted(samples, key=lambda name: samples[name].mean, reverse=True)
    best, runner_up = ranked[0], (ranked[1] if len(ranked) > 1 else None)

    def versus(x: str, y: str) -> str:
        difference = samples[x].mean - samples[y].mean
        band = welch_band(samples[x], samples[y], level)[0]
        significant = "beyond" if abs(difference) > band else "within"
        return f"{x} − {y} = {difference:+.3f} points, {significant} noise (±{band:.3f})"

    if best in claimed:
        why = f"{best} has the highest mean" + (f"; {versus(best, runner_up)}" if runner_up else "")
        return ClaimVerdict(claimed, best, HOLDS, why)
    present = [c for c in claimed if c in samples]
    if not present:
        return ClaimVerdict(claimed, best, INCONCLUSIVE, f"none of {', '.join(claimed)} ran")
    beaten = all(samples[best].mean - samples[c].mean > welch_band(samples[best], samples[c], level)[0]
                 for c in present)
    why = "; ".join(versus(best, c) for c in present)
    return ClaimVerdict(claimed, best, DOES_NOT_HOLD if beaten else INCONCLUSIVE, why)


# -- the rule in words -----------------------------------------------------------------------

def rule_lines(level: float, min_seeds: int) -> list[str]:
    q = 1.0 - (1.0 - level) / 2.0
    return [
        f"A published figure is reproduced when it lies inside the {level:.3g} prediction interval of one new run "
        f"of ours: mean ± t({q:.4g}, n−1)·sd·√(1+1/n) over our n seeds; not reproduced when outside; inconclusive "
        f"with fewer than {min_seeds:g} seeds.",
        f"Flux vs PyTorch with several seeds a side (native mode): consistent when |mean difference| ≤ "
        f"t({q:.4g}, Welch df)·√(sd₁²/n₁ + sd₂²/n₂) (at least the floor of the seeds policy); inconclusive with "
        f"fewer than {min_seeds:g} seeds a side, or one seed a side.",
        "The headline figures (each run's final test accuracy, the figures of the write-up's tables) decide; the "
        f"per-epoch figures get verdicts too, to show where a gap lies: judged at {level:.3g} each, about "
        f"{100 * (1 - level):.2g} in 100 fall outside by chance alone.",
    ]


__all__ = ["CONSISTENT", "DIFFERENT", "DOES_NOT_HOLD", "HOLDS", "INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED",
           "ClaimVerdict", "DifferenceVerdict", "FigureVerdict", "PublishedFigure", "Sample", "judge_best",
           "judge_difference", "judge_figure", "judge_published", "prediction_interval", "published_figures",
           "rule_lines", "sample_of", "seeds_needed", "t_quantile", "welch_band"]
