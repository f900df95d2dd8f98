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
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fluxlenet import sweeps
from fluxlenet.config import (SEED_GROUP_FREE, ConfigError, mixed_settings, normal_name, rerun_options,
                              result_settings)
from fluxlenet.rundir import check_origin, other_origin

from . import published as published_figures
from . import reproduction
from .policy import Policy
from .runs import Damaged, RunFiles, load_run, load_sweep_dir, run_depth

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
    sweep: sweeps.Sweep | None
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
        return f"runs of seeds {seeds} give enough (a sweep with `--seeds {seeds}`: `train` runs one seed a folder)"
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

def _load_sweep_file(target: str) -> sweeps.Sweep | None:
    try:
        return sweeps.load(target)
    except ConfigError:
        if str(target).endswith(".toml"):
            raise
        return None


LOOKED_FOR = ("{0}/config.json (a run), {0}/<backend>/config.json (a `train --savepath` run), "
              "{0}/<run>/<backend>/config.json (a sweep) or {0}/<sweep>/<run>/<backend>/config.json (a runs folder)")


def locate(target: str, runs_dir: str | Path) -> tuple[str, Path, sweeps.Sweep | None, int]:
    """(name, folder, sweep file, depth of its run folders below it: see runs.run_depth) for a sweep
    name or .toml path (its runs under runs_dir), a runs, sweep or run folder, or the name of a
    folder under runs_dir (`train` runs)."""
    path = Path(target)
    if not path.exists():  # a name ("café" composed or decomposed: its folder is in NFC)
        target = normal_name(str(target))
        path = Path(target)
    sweep = None
    if not (path.is_dir() and run_depth(path) is not None):
        sweep = _load_sweep_file(target)
        if sweep is not None:
            path = Path(runs_dir) / sweep.name
            if not path.is_dir():
                raise ConfigError(f"no runs of sweep {sweep.name!r} in {path}: run `python -m fluxlenet sweep "
                                  f"{target}` first, or give --runs-dir (or the path of a folder of runs)")
            theirs = other_origin(path, sweep)
            if theirs is not None:
                check_origin(path, sweep, f"give that file ({theirs}) or the folder {path} itself")
        elif len(path.parts) == 1 and (Path(runs_dir) / target).is_dir():
            path = Path(runs_dir) / target  # `train` runs: runs/train/<backend>/
        elif not path.is_dir():
            raise ConfigError(f"{target!r} is not a sweep name (built-in: {', '.join(sweeps.builtin_names())}), "
                              f"a .toml sweep file, a folder, nor a folder in {runs_dir}; give one of those "
                              f"(the runs of a sweep are read under --runs-dir)")
    depth = run_depth(path)
    if depth is None:
        raise ConfigError(f"no runs in {path}: looked for " + LOOKED_FOR.format(path))
    if depth == 3:  # a runs folder: one sweep (or train run) in it is that one
        inside = sorted(p.name for p in path.iterdir() if p.is_dir() and run_depth(p) in (1, 2))
        if len(inside) != 1:
            raise ConfigError(f"{path} is a runs folder holding {', '.join(inside)}: give one of them, "
                              f"e.g. `{inside[0]} --runs-dir {path}`")
        path = path / inside[0]
        depth = run_depth(path)
    if depth == 2 and sweep is None:
        sweep = _load_sweep_file(path.name)
        if sweep is None and (path / f"{path.name}.toml").is_file():  # a sweep declared with --grid
            sweep = _load_sweep_file(str(path / f"{path.name}.toml"))
    name = path.name if depth else f"{path.parent.name}/{path.name}"
    return name, path, sweep, depth


def _runs_of(folder: Path, depth: int, damaged: list[Damaged]) -> list[RunFiles]:
    runs = load_sweep_dir(folder, damaged, depth)
    if not runs:
        if len(damaged) == 1:
            raise ConfigError(damaged[0].message)
        if damaged:
            raise ConfigError(f"all {len(damaged)} runs in {folder} are damaged; the first: {damaged[0].message}")
        raise ConfigError(f"no runs yet in {folder}: looked for " + LOOKED_FOR.format(folder))
    return runs


def _mark_damaged(result: "SweepResult", damaged: list[Damaged]) -> None:
    """A damaged run folder is left out of the comparison, said in a note and in its run's verdict."""
    for d in damaged:
        result.notes.append(f"left out, damaged: {d.message}")
        verdict = next((v for v in result.verdicts if v.run == d.run), None)
        if verdict is None:
            verdict = RunVerdict(d.run)
            result.verdicts.append(verdict)
            result.groups.setdefault(d.run, {})
        verdict.incomplete.append(f"{d.backend} seed {d.seed}: damaged run folder, left out (see the note)")


def _group(runs: list[RunFiles], label_of) -> dict[str, dict[str, list[RunFiles]]]:
    groups: dict[str, dict[str, list[RunFiles]]] = {}
    for r in runs:
        groups.setdefault(r.run, {}).setdefault(label_of(r), []).append(r)
    for sides in groups.values():
        for runs_ in sides.values():
            runs_.sort(key=lambda r: r.seed)
    return groups


def _order(groups: dict, sweep: sweeps.Sweep | None) -> dict:
    names = [c.run for c in sweep.runs] if sweep else []
    ordered = [n for n in names if n in groups] + sorted(n for n in groups if n not in names)
    return {n: groups[n] for n in ordered}


def compare_sweep(target: str, runs_dir: str | Path = "runs", policy: Policy | None = None,
                  against: str | Path | None = None) -> SweepResult:
    """Compare Flux with PyTorch (or each backend with its twin under `against`) and with the published figures."""
    policy = policy or Policy()
    name, sweep_dir, sweep, depth = locate(target, runs_dir)
    damaged: list[Damaged] = []
    runs = _runs_of(sweep_dir, depth, damaged)
    notes = []
    if against is None:
        groups = _order(_group(runs, lambda r: r.backend), sweep)
        present = {r.backend for r in runs}
        sides = list(BACKENDS) + sorted(present - set(BACKENDS))   # a backend not run is a column "not run"
        pairs = [("flux", "torch")]
        for backend in BACKENDS:
            if backend not in present:
                notes.append(f"{BACKEND_NAMES[backend]}: not run (no {backend} run folders in {sweep_dir})"
                             + ("; Julia not available here" if backend == "flux" and not julia_found() else ""))
        published_sides = [b for b in sides if b in present]
    else:
        other_dir = Path(against) / name if depth == 2 and not run_depth(against) == 2 else Path(against)
        if not other_dir.is_dir() or run_depth(other_dir) != depth:
            raise ConfigError(f"no runs of {name!r} in {other_dir} (--against {against}): looked for "
                              + LOOKED_FOR.format(other_dir))
        _not_one_folder(sweep_dir, other_dir, against)
        other = _runs_of(other_dir, depth, damaged)
        here, there = str(runs_dir), str(against)
        groups = _group(runs, lambda r: f"{r.backend} ({here})")
        for run_name, by_side in _group(other, lambda r: f"{r.backend} ({there})").items():
            groups.setdefault(run_name, {}).update(by_side)
        groups = _order(groups, sweep)
        backends = sorted({r.backend for r in runs} | {r.backend for r in other})
        pairs = [(f"{b} ({here})", f"{b} ({there})") for b in backends]
        sides = [s for pair in pairs for s in pair]
        published_sides = [p[0] for p in pairs]
    check_seed_groups(groups)
    result = _judge(name, sweep_dir, sweep, policy, groups, sides, pairs, published_sides, notes)
    _mark_damaged(result, damaged)
    return result


def check_seed_groups(groups: dict[str, dict[str, list[RunFiles]]]) -> None:
    """ConfigError (one line naming the run, its folders and the settings) when the seeds of a run and
    backend, which are averaged as seeds, differ in more than the seed: nothing is summarised or judged."""
    for run, by_side in groups.items():
        for runs in by_side.values():
            mixed = mixed_settings([(r.seed, r.config) for r in runs])
            if not mixed:
                continue
            first = result_settings(runs[0].config)
            other = [r for r in runs if any(result_settings(r.config)[k] != v for k, v in first.items()
                                            if k not in SEED_GROUP_FREE)]
            folders = ", ".join(str(r.dir) for r in other[:3]) + (", ..." if len(other) > 3 else "")
            raise ConfigError(f"run {run} ({runs[0].backend}) in {runs[0].dir.parent.parent} mixes settings over "
                              f"its seeds ({'; '.join(mixed)}): a run's seeds must differ in the seed alone, so "
                              f"they are neither averaged nor judged; move the run folders of one setting away "
                              f"(such as {folders}) or into another runs folder")


def compare_folders(dir_a: str | Path, dir_b: str | Path, policy: Policy | None = None) -> SweepResult:
    """Compare two run folders (`<run>/<backend>/`) directly."""
    policy = policy or Policy()
    _not_one_folder(Path(dir_a), Path(dir_b), dir_b)
    ra, rb = load_run(dir_a), load_run(dir_b)
    la, lb = (ra.backend, rb.backend) if ra.backend != rb.backend else (f"{ra.backend} ({dir_a})", f"{rb.backend} ({dir_b})")
    groups = {ra.run: {la: [ra], lb: [rb]}}
    # two folders of one run: pair them whatever their seeds
    return _judge(f"{dir_a} vs {dir_b}", Path(dir_a), None, policy, groups, [la, lb], [(la, lb)], [], [],
                  pair_any_seed=True)


def _not_one_folder(here: Path, there: Path, against) -> None:
    """Both sides of --against in one folder would pass every run, compared with itself: one line."""
    if here.resolve() == there.resolve():
        raise ConfigError(f"--against {against}: both sides are one folder ({here}), so every run would be "
                          f"compared with itself; give the runs folder of another attempt")


def _judge(name, sweep_dir, sweep, policy, groups, sides, pairs, published_sides, notes,
           pair_any_seed=False) -> SweepResult:
    verdicts, pubs, mismatch = [], {}, {}
    protocols = {c.run: c.to_dict() for c in sweep.runs} if sweep else {}
    base = None
    if sweep:
        builtin = sweep.path.resolve().parent == sweeps.SWEEP_DIR.resolve()
        base = f"python -m fluxlenet sweep {sweep.name if builtin else shlex.quote(str(sweep.path))}"
        runs_dir = Path(sweep_dir).parent
        runs_dir_option = "" if runs_dir == Path("runs") else f" --runs-dir {shlex.quote(str(runs_dir))}"
    for run, by_side in groups.items():
        verdict = RunVerdict(run)
        command = None
        if base:  # the options the runs had beyond the sweep file: a command with more seeds is then not refused
            ran = next(iter(by_side.values()))[0].config
            command = base + rerun_options(ran, protocols.get(run, {})) + runs_dir_option
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
            mismatch[run] = published_figures.mismatches(pub, first.config, protocols.get(run))
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


def julia_found() -> bool:
    """Whether Flux runs can start here: Julia set up for the Flux backend (juliapkg's or PATH's)."""
    from fluxlenet.julia_env import julia_status
    return julia_status()[0]


__all__ = ["Break", "Check", "RunVerdict", "SweepResult", "classify", "compare_sweep", "compare_folders"]
