"""Align runs by run name, seed and epoch; compare two sides and the published figures; give verdicts.

The two sides are Flux and PyTorch (the runs of one sweep folder), or the same backends in two
runs folders (`--against`), or two run folders. Which tolerance policy judges a pair follows
from the pair's settings (see `classify` and parity.policy).

Step traces (trace.csv) hold the loss and a parameter checksum (the sum of all parameters,
in float64) at each of a run's first K optimiser steps, both taken before that step's update:
step 1 is the loss of the first batch at the initial weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import published as published_figures
from . import reproduction
from .policy import Policy

# parity imports nothing of fluxlenet: it judges the runs it is handed (fluxlenet.runs.RunFiles, read and
# grouped by fluxlenet.runs.compare_sweep) and the sweep they belong to (fluxlenet.sweeps.Sweep).

METRICS = ("test_acc", "test_loss", "train_acc", "train_loss", "valid_acc", "valid_loss")
BACKENDS = ("flux", "torch")
BACKEND_NAMES = {"flux": "Flux", "torch": "PyTorch"}
# the status of a run or a sweep is the first of these that one of its checks has
STATES = ("fail", "incomplete", "inconclusive", "pass")
# a check's status in words, by kind (a published check says whether the figures reproduced)
# How a check's status reads, in the parity table and in the reports: one word each.
STATUS_WORDS = {"pass": "pass", "fail": "FAIL", "incomplete": "INCOMPLETE", "not compared": "not compared",
                "n/a": "n/a", "inconclusive": "inconclusive"}
PUBLISHED_WORDS = {"pass": "reproduced", "fail": "NOT REPRODUCED", "inconclusive": "inconclusive", "n/a": "n/a"}


@dataclass
class Break:
    at: str          # "epoch" or "step"
    index: int
    metric: str
    a: float
    b: float
    band: float
    relative: bool = False   # step traces are judged by relative difference

    @property
    def diff(self) -> float:
        if math.isnan(self.a) and math.isnan(self.b):
            return 0.0
        if math.isnan(self.a) or math.isnan(self.b):
            return math.inf
        d = abs(self.a - self.b)
        return d / max(abs(self.a), abs(self.b)) if self.relative and d else d


@dataclass
class Check:
    run: str
    seeds: list[int]
    a: str                    # side labels, e.g. "flux", "torch", "published"
    b: str
    kind: str | None          # the policy kind; None when the two cannot be compared
    status: str = "n/a"       # pass | fail | inconclusive | n/a
    first_break: Break | None = None        # first epoch figure out of its band
    step_break: Break | None = None         # first step-trace value out of its band
    diffs: pd.DataFrame | None = None       # index epoch, a - b per metric
    bands: pd.DataFrame | None = None       # index epoch, the band per metric
    steps: pd.DataFrame | None = None       # index step: a, b, rel, band (+ checksum_a, checksum_b, checksum_rel)
    notes: list[str] = field(default_factory=list)
    # statistical checks (seeds, published): a verdict per figure (parity.reproduction)
    figures: list | None = None

    @property
    def seed_text(self) -> str:
        return "seed " + ",".join(map(str, self.seeds)) if len(self.seeds) == 1 else \
            "seeds " + ",".join(map(str, self.seeds))

    def max_abs(self, metric: str) -> float | None:
        """The largest |a - b| of `metric`; NaN when one side is NaN at some epoch (a diverged run)."""
        if self.diffs is None or metric not in self.diffs or self.diffs[metric].isna().all():
            return None
        return float(self.diffs[metric].abs().max(skipna=False))

    def messages(self) -> list[str]:
        """Why this check failed, one line per broken band (epoch figures, step trace) or failed headline figure."""
        if self.figures is not None:
            return [describe_figure(self, f) for f in self.figures
                    if f.headline and f.verdict in (reproduction.NOT_REPRODUCED, reproduction.DIFFERENT)]
        lines = []
        if self.step_break is not None:
            lines.append(describe_step_break(self))
        if self.first_break is not None:
            br = self.first_break
            lines.append(f"{self.run} {self.seed_text}, epoch {br.index}, {br.metric}: {self.a} {fmt(br.a)} vs "
                         f"{self.b} {fmt(br.b)} (|difference| {fmt(br.diff)} > band {fmt(br.band)}, "
                         f"{self.kind} policy)")
        return lines


@dataclass
class RunVerdict:
    run: str
    checks: list[Check] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)   # runs not finished, epochs missing

    @property
    def status(self) -> str:
        states = {c.status for c in self.checks} | ({"incomplete"} if self.incomplete else set())
        return next((state for state in STATES if state in states), "not compared")

    def failures(self) -> list[str]:
        return [line for c in self.checks if c.status == "fail" for line in c.messages()]


@dataclass
class SweepResult:
    name: str
    sweep_dir: Path
    sweep: Sweep | None                     # fluxlenet.sweeps.Sweep: the sweep file, when known
    policy: Policy
    sides: list[str]                        # the side labels, in column order
    groups: dict[str, dict[str, list[RunFiles]]]   # run -> side -> its runs, one per seed
    verdicts: list[RunVerdict]
    published: dict[str, published_figures.Published | None]
    published_mismatch: dict[str, list[str]]        # run -> why the published figures do not apply
    notes: list[str]                        # said plainly: what was not run, what does not apply

    @property
    def status(self) -> str:
        states = {v.status for v in self.verdicts}
        return next((state for state in STATES if state in states), "not compared")

    @property
    def runs(self) -> list[RunFiles]:
        return [r for sides in self.groups.values() for runs in sides.values() for r in runs]

    def checks(self) -> list[Check]:
        return [c for v in self.verdicts for c in v.checks]


def fmt(x: float | None, digits: int = 6) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def describe_sample(sample: reproduction.Sample, digits: int = 4) -> str:
    if not sample.n:
        return "no figure"
    if sample.n == 1:
        return f"{fmt(sample.mean, digits)} (1 seed)"
    return f"mean {fmt(sample.mean, digits)} ± {fmt(sample.sd, 2)} sd, n={sample.n}"


def describe_figure(check: Check, f) -> str:
    """One line for one judged figure of a statistical check (published or seeds)."""
    where = f"{check.run} {check.seed_text}, {f.metric} at epoch {f.epoch}" + (" (final)" if f.headline else "")
    if isinstance(f, reproduction.DifferenceVerdict):
        band = "" if f.band is None else f" (|difference| {fmt(abs(f.difference), 3)} " \
            f"{'>' if f.verdict == reproduction.DIFFERENT else '<='} band {fmt(f.band, 3)})"
        return f"{where}: {check.a} {describe_sample(f.a)} vs {check.b} {describe_sample(f.b)}: {f.verdict}{band}"
    z = f"; {f.z:+.1f} sd" if f.z is not None and math.isfinite(f.z) else ""
    return f"{where}: published {fmt(f.published)} vs {check.a} {describe_sample(f.sample)}: {f.verdict} ({f.why}{z})"


def more_seeds(command: str | None, runs: list[RunFiles], min_seeds: int) -> str:
    """What gives enough seeds for a statistical verdict: the command that made the runs (their options
    included, so that it is not refused for other settings), with more seeds."""
    seeds = reproduction.seeds_needed([r.seed for r in runs], min_seeds)
    if command is None:  # no sweep file: `train` runs, or two run folders
        return (f"runs of seeds {seeds} give enough (a sweep with `--seeds {seeds}`, or `train --seed N` for each "
                f"into one --savepath)")
    return f"`{command} --seeds {seeds}` gives enough (finished runs are skipped)"


def _figure_frames(check: Check, items) -> None:
    """check.diffs and check.bands (index epoch, a column per metric) from judged figures."""
    rows: dict[int, dict] = {}
    bands: dict[int, dict] = {}
    for f in items:
        if f.epoch is None:
            continue
        if isinstance(f, reproduction.DifferenceVerdict):
            diff, band = f.difference, f.band
        else:
            diff = None if not f.sample.n else f.sample.mean - f.published
            band = None if f.interval is None else (f.interval[1] - f.interval[0]) / 2
        rows.setdefault(f.epoch, {})[f.metric] = math.nan if diff is None else diff
        bands.setdefault(f.epoch, {})[f.metric] = math.nan if band is None else band
    if rows:
        index = pd.Index(sorted(rows), name="epoch")
        check.diffs = pd.DataFrame.from_dict(rows, orient="index").reindex(index).astype(float)
        check.bands = pd.DataFrame.from_dict(bands, orient="index").reindex(index).astype(float)


def _statistical_status(check: Check, failed: str, min_seeds: int, runs: list[RunFiles], command: str | None) -> None:
    """A check's status from its headline figures; what the other figures show and what gives enough seeds, as notes."""
    headline = [f for f in check.figures if f.headline]
    states = {f.verdict for f in headline}
    check.status = ("fail" if failed in states else "inconclusive" if reproduction.INCONCLUSIVE in states
                    else "pass" if headline else "n/a")
    others = [f for f in check.figures if not f.headline and f.verdict != reproduction.INCONCLUSIVE]
    outside = [f for f in others if f.verdict == failed]
    if others:
        word = "not reproduced" if failed == reproduction.NOT_REPRODUCED else "different"
        shown = "; ".join(f"epoch {f.epoch} {f.metric}" + (f" {f.z:+.1f} sd" if getattr(f, "z", None) is not None
                                                          and math.isfinite(f.z) else "") for f in outside[:4])
        check.notes.append(f"per-epoch figures (they show where a gap lies; the final test accuracy decides): "
                           f"{len(outside)} of {len(others)} {word}" + (f": {shown}" if shown else "")
                           + ("; ..." if len(outside) > 4 else ""))
    if reproduction.INCONCLUSIVE in states:
        short = min((min(f.a.n, f.b.n) if isinstance(f, reproduction.DifferenceVerdict) else f.sample.n)
                    for f in headline)
        check.notes.append(f"inconclusive: {short} seed(s), at least {min_seeds} needed: "
                           + more_seeds(command, runs, min_seeds))


def describe_step_break(check: Check) -> str:
    br = check.step_break
    steps = check.steps
    before = steps[steps.index < br.index]
    agree = ""
    if len(before):
        worst = float(np.nanmax(before[["rel"] + (["checksum_rel"] if "checksum_rel" in before else [])].to_numpy()))
        agree = f"; steps 1-{br.index - 1} agree within {worst:.1e}"
    head = (f"float64 lockstep broke at step {br.index}" if check.kind == "float64"
            else f"step trace broke at step {br.index} ({check.kind} policy)")
    line = (f"{check.run} {check.seed_text}: {head}: {br.metric} {check.a} {br.a!r} vs {check.b} {br.b!r} "
            f"(relative difference {br.diff:.2e} > {br.band:.1e}{agree})")
    if check.kind == "float64":
        line += f": a semantic difference between {check.a} and {check.b}, not rounding"
    return line


# -- pairing and policies ------------------------------------------------------------------

def classify(a: RunFiles, b: RunFiles) -> tuple[str | None, str]:
    """The policy kind for a pair of runs, or (None, why they cannot be compared)."""
    sa, sb = a.semantic(), b.semantic()
    differ = [f"{k} {sa.get(k)!r} vs {sb.get(k)!r}" for k in sorted(set(sa) | set(sb))
              if k not in ("seed", "mode") and sa.get(k) != sb.get(k)]
    if differ:
        return None, "settings differ: " + ", ".join(differ)
    same_setup = (a.backend == b.backend and a.precision == b.precision
                  and a.config.get("device") == b.config.get("device"))
    if a.seed != b.seed or a.mode != b.mode:
        return "native", f"seed {a.seed} vs {b.seed}, mode {a.mode} vs {b.mode}"
    if same_setup:
        return "repeat", f"{a.backend} twice, same settings and seed"
    if a.mode == "native":
        return "native", "native runs: each backend uses its own RNG"
    if a.precision == b.precision == "float64":
        return "float64", "float64 lockstep"
    return "lockstep", "lockstep" + ("" if a.precision == b.precision else f", {a.precision} vs {b.precision}")


def _metrics(*frames: pd.DataFrame) -> list[str]:
    return [m for m in METRICS if all(m in f and f[m].notna().any() for f in frames)]


def compare_frames(check: Check, fa: pd.DataFrame, fb: pd.DataFrame, policy: Policy, first_epoch: int,
                   samples: dict | None = None) -> None:
    """Judge the epoch figures of frames fa and fb (index epoch) into `check`."""
    metrics = _metrics(fa, fb)
    epochs = sorted(e for e in set(fa.index) & set(fb.index) if e >= first_epoch)
    if not epochs or not metrics:
        check.notes.append("no epoch figures in common")
        return
    diffs = pd.DataFrame(index=pd.Index(epochs, name="epoch"), columns=metrics, dtype=float)
    bands = diffs.copy()
    for epoch in epochs:
        for metric in metrics:
            a, b = float(fa.at[epoch, metric]), float(fb.at[epoch, metric])
            split = metric.split("_")[0]
            band = policy.epoch_band(check.kind, metric, epoch, a, b, samples=(samples or {}).get(split))
            br = Break("epoch", epoch, metric, a, b, band)
            diffs.at[epoch, metric] = a - b
            bands.at[epoch, metric] = band
            if (br.diff > band or math.isinf(br.diff)) and check.first_break is None:  # NaN on one side: |d| inf, band NaN
                check.first_break = br
    check.diffs, check.bands = diffs, bands
    check.status = "fail" if check.first_break else "pass"


def compare_traces(check: Check, ta: pd.DataFrame, tb: pd.DataFrame, policy: Policy) -> None:
    steps = ta.index.intersection(tb.index).sort_values()
    if not len(steps):
        return
    df = pd.DataFrame({"a": ta.loss.reindex(steps), "b": tb.loss.reindex(steps)})
    df["rel"] = _relative(df.a, df.b)
    df["band"] = [policy.trace_band(check.kind, int(s)) for s in steps]
    judged = ["loss"]
    if "checksum" in ta and "checksum" in tb and ta.checksum.notna().any() and tb.checksum.notna().any():
        df["checksum_a"], df["checksum_b"] = ta.checksum.reindex(steps), tb.checksum.reindex(steps)
        df["checksum_rel"] = _relative(df.checksum_a, df.checksum_b)
        judged.append("checksum")
    check.steps = df
    for step, row in df.iterrows():
        if row.band is None or (isinstance(row.band, float) and math.isnan(row.band)):
            continue
        for metric in judged:
            a, b = (row.a, row.b) if metric == "loss" else (row.checksum_a, row.checksum_b)
            rel = row.rel if metric == "loss" else row.checksum_rel
            if rel > row.band:
                check.step_break = Break("step", int(step), metric, float(a), float(b), float(row.band), True)
                check.status = "fail"
                return


def _relative(a: pd.Series, b: pd.Series) -> pd.Series:
    scale = np.maximum(a.abs(), b.abs())
    rel = (a - b).abs() / scale.where(scale > 0, 1.0)
    rel[a.isna() != b.isna()] = math.inf
    return rel


def compare_pair(run: str, ra: RunFiles, rb: RunFiles, labels: tuple[str, str], policy: Policy,
                 command: str | None = None) -> Check:
    kind, why = classify(ra, rb)
    check = Check(run, [ra.seed] if ra.seed == rb.seed else [ra.seed, rb.seed], *labels, kind=kind)
    if kind is None:
        check.notes.append(f"not compared: {why}")
        return check
    first = 1 if kind == "native" else 0
    compare_frames(check, ra.log, rb.log, policy, first,
                   samples={s: ra.samples(s) for s in ("train", "test", "valid")})
    if check.diffs is not None:
        last = int(check.diffs.index.max())
        for label, r in zip(labels, (ra, rb)):
            if len(r.log) and int(r.log.index.max()) > last:
                check.notes.append(f"compared up to epoch {last}: {label} went on to epoch {int(r.log.index.max())}")
    if ra.trace is not None and rb.trace is not None:
        compare_traces(check, ra.trace, rb.trace, policy)
    elif kind == "float64":
        check.notes.append("no step traces on both sides: rerun with --trace-steps 200 for the step-by-step test")
    if kind == "repeat" and ra.config.get("threads") != rb.config.get("threads"):
        check.notes.append(f"threads {ra.config.get('threads')} vs {rb.config.get('threads')}: "
                           f"float32 sums may then differ in order")
    if kind == "native" and check.status != "n/a":
        # one seed a side: seed noise is unknown, so no difference can be called a failure
        if check.first_break is not None:
            br = check.first_break
            check.notes.append(f"outside the one-seed band from epoch {br.index} ({br.metric}: {check.a} "
                               f"{fmt(br.a)} vs {check.b} {fmt(br.b)}, band {fmt(br.band)}): seed noise or a "
                               f"difference")
            check.first_break = None
        check.status = "inconclusive"
        check.notes.append("inconclusive: one seed a side cannot tell seed noise from a difference: "
                           + more_seeds(command, [ra], policy.min_seeds))
    return check


def seed_stats(runs: list[RunFiles]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Mean and sd over seeds per epoch (epochs every seed reached), and the number of seeds."""
    logs = [r.log[[m for m in METRICS if m in r.log]].astype(float) for r in runs]
    epochs = sorted(set.intersection(*(set(log.index) for log in logs)))
    stacked = np.stack([log.loc[epochs].to_numpy() for log in logs])
    columns = logs[0].columns
    mean = pd.DataFrame(stacked.mean(axis=0), index=pd.Index(epochs, name="epoch"), columns=columns)
    sd = pd.DataFrame(stacked.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(stacked[0]),
                      index=mean.index, columns=columns)
    return mean, sd, len(runs)


def compare_seeds(run: str, runs_a: list[RunFiles], runs_b: list[RunFiles], labels: tuple[str, str],
                  policy: Policy, command: str | None = None) -> Check:
    """Native runs, several seeds a side: the means of every figure (from epoch 1), Welch's band (reproduction)."""
    check = Check(run, sorted({r.seed for r in runs_a + runs_b}), *labels, kind="seeds", figures=[])
    epochs = sorted(set.intersection(*(set(r.log.index) for r in runs_a + runs_b)) - {0})
    last = epochs[-1] if epochs else None
    for metric in _metrics(*(r.log for r in runs_a + runs_b)):
        for epoch in epochs:
            a = reproduction.sample_of(reproduction.figure_values(runs_a, metric, epoch)[1])
            b = reproduction.sample_of(reproduction.figure_values(runs_b, metric, epoch)[1])
            acc = metric.endswith("_acc")
            floor = policy.seeds_acc_floor if acc else policy.seeds_loss_floor * max(abs(a.mean or 0), abs(b.mean or 0))
            verdict, band = reproduction.judge_difference(a, b, policy.level, policy.min_seeds, floor)
            headline = metric == reproduction.HEADLINE_METRIC and epoch == last
            check.figures.append(reproduction.DifferenceVerdict(metric, epoch, a, b, band, verdict, headline))
    if not check.figures:
        check.notes.append("no epoch figures in common")
        return check
    _figure_frames(check, check.figures)
    _statistical_status(check, reproduction.DIFFERENT, policy.min_seeds, runs_a, command)
    check.notes.append(f"means over {len(runs_a)} and {len(runs_b)} seeds")
    return check


def compare_published(run: str, runs: list[RunFiles], label: str, pub: published_figures.Published,
                      policy: Policy, command: str | None = None) -> Check:
    """Our seeds against the published figures: a verdict per figure (parity.reproduction)."""
    check = Check(run, sorted(r.seed for r in runs), label, "published", kind="published")
    if not any(len(r.log) for r in runs):
        check.notes.append("no epoch figures logged yet")
        return check
    figures = reproduction.published_figures(pub)
    if not figures:
        check.notes.append("no published figures to compare with")
        return check
    check.figures = reproduction.judge_published(run, label, runs, figures, policy.level, policy.min_seeds)
    _figure_frames(check, check.figures)
    _statistical_status(check, reproduction.NOT_REPRODUCED, policy.min_seeds, runs, command)
    return check


# -- a sweep ---------------------------------------------------------------------------------

def judge(name, sweep_dir, sweep, policy, groups, sides, pairs, published_sides, notes, protocol_names: dict,
          pair_any_seed=False, commands: dict[str, str] | None = None) -> SweepResult:
    """Verdicts for runs grouped by run name and side (`groups`): each pair of sides in `pairs`, each side of
    `published_sides` against the published figures. `sweep` (its runs, with .run and .to_dict(), and
    .published) or None; `protocol_names`: the settings of a protocol, each with the name users write, in
    order (published.mismatches); `commands`: {run: the command that made its runs}, said where more seeds
    are needed."""
    verdicts, pubs, mismatch = [], {}, {}
    protocols = {c.run: c.to_dict() for c in sweep.runs} if sweep else {}
    for run, by_side in groups.items():
        verdict = RunVerdict(run)
        command = (commands or {}).get(run)
        for side, runs in by_side.items():
            for r in runs:
                if not r.finished:
                    state = r.status.get("status", "new")
                    reason = r.status.get("reason") or ""
                    verdict.incomplete.append(f"{side} seed {r.seed}: {state}" + (f" ({reason})" if reason else ""))
        for la, lb in pairs:
            runs_a, runs_b = by_side.get(la, []), by_side.get(lb, [])
            if runs_a and runs_b:
                verdict.checks += compare_sides(run, runs_a, runs_b, (la, lb), policy, pair_any_seed, command)
        pub = published_figures.find(sweep.published if sweep else None, run)
        pubs[run] = pub
        if pub is not None:
            first = next(iter(by_side.values()))[0]
            mismatch[run] = published_figures.mismatches(pub, first.config, protocols.get(run), protocol_names)
            if not mismatch[run]:
                for side in published_sides:
                    if by_side.get(side):
                        verdict.checks.append(compare_published(run, by_side[side], side, pub, policy, command))
        verdict.incomplete += [n for c in verdict.checks for n in c.notes if n.startswith("compared up to")]
        verdicts.append(verdict)
    if sweep and sweep.published:
        for reason in sorted({"; ".join(m) for m in mismatch.values() if m}):
            notes.append(f"Published figures ({sweep.published}): do not apply, not compared: {reason}")
        if not any(pubs.values()):
            notes.append(f"Published figures ({sweep.published}): none found for these runs")
    return SweepResult(name, Path(sweep_dir), sweep, policy, sides, groups, verdicts, pubs, mismatch, notes)


def compare_sides(run, runs_a, runs_b, labels, policy, pair_any_seed=False, command=None) -> list[Check]:
    by_a = {r.seed: r for r in runs_a}
    by_b = {r.seed: r for r in runs_b}
    if pair_any_seed:
        return [compare_pair(run, runs_a[0], runs_b[0], labels, policy)]
    common = sorted(set(by_a) & set(by_b))
    if not common:
        check = Check(run, sorted(set(by_a) | set(by_b)), *labels, kind=None)
        check.notes.append(f"not compared: no seed in common ({labels[0]}: {sorted(by_a)}, {labels[1]}: {sorted(by_b)})")
        return [check]
    kinds = {s: classify(by_a[s], by_b[s])[0] for s in common}
    native = [s for s in common if kinds[s] == "native"]
    checks = [compare_pair(run, by_a[s], by_b[s], labels, policy, command) for s in common
              if not (kinds[s] == "native" and len(native) >= 2)]
    if len(native) >= 2:
        checks.append(compare_seeds(run, [by_a[s] for s in native], [by_b[s] for s in native], labels, policy,
                                    command))
    return checks


__all__ = ["Break", "Check", "RunVerdict", "SweepResult", "classify", "judge"]
