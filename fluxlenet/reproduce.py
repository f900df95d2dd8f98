"""Did a write-up reproduce? Judge a target's runs (fluxlenet.targets) against its published figures and
write one report.

`python -m fluxlenet reproduce TARGET` runs the target's sweeps with seeds (fluxlenet.cli), then
`write_report` writes into `<runs dir>/reproduce-<target>/`:

    report.md, report.html    the write-up's tables (Flux | PyTorch | published, with the seed spread), its
                              charts, a verdict per published figure and per conclusion, where a gap lies
    figures.csv               every published figure: our seeds' mean, sd, min, max, the interval, the verdict
    performance-<sweep>.png   final test accuracy per setting (the post's "performance comparison")
    time-<sweep>.png          seconds per epoch per setting (its "training time comparison")
    band-<sweep>.png          test accuracy and loss per epoch: our seeds' mean +- sd and min-max, the published line

The statistics and the rule are parity.reproduction's: a published figure is reproduced when it lies
in the prediction interval of one new run of ours. The verdict of the target: not reproduced when a
headline figure (a run's final test accuracy) is not reproduced or a conclusion does not hold;
inconclusive when one cannot be judged (too few seeds, runs missing, another protocol); reproduced
otherwise. Each framework that ran is judged; the target's verdict is the worse of them.
"""

from __future__ import annotations

import csv
import io
import math
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from parity import published as published_figures
from parity import reproduction
from parity.compare import BACKEND_NAMES, Check, SweepResult, fmt
from parity.policy import Policy
from parity.reproduction import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, ClaimVerdict,
                                 FigureVerdict, Sample)

from . import plots, render, summaries
from .config import ConfigError
from .fsutil import atomic_write_text
from .runs import RunFiles, compare_sweep
from .targets import Claim, Target

SIDES = ("flux", "torch")
BLOG_COLUMNS = {"train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds"}
GAP_METRICS = ("test_acc", "test_loss")
VERDICT_CLASS = {REPRODUCED: "pass", NOT_REPRODUCED: "fail", INCONCLUSIVE: "inconclusive"}


# -- published figures from a file -----------------------------------------------------------

def load_published_file(path: str | Path) -> dict[tuple[str, str], published_figures.Published]:
    """Figures to judge against instead of the shipped ones: {(sweep, run): Published}.

    A CSV like fluxlenet/reference/blog-2021-epoch-logs.csv: sweep, value (the run), epoch, and any of
    train_loss, train_acc, test_loss, test_acc, epoch_seconds; an empty cell is a figure not published.
    """
    where = f"--published {path}"
    try:
        table = pd.read_csv(path, dtype={"sweep": str, "value": str})
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ConfigError(f"{where}: cannot be read as CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in ("sweep", "value", "epoch") if c not in table]
    figures = [c for c in table.columns if c in BLOG_COLUMNS]
    if missing or not figures:
        raise ConfigError(f"{where}: needs the columns sweep, value, epoch and at least one of "
                          f"{', '.join(sorted(BLOG_COLUMNS))}"
                          + (f" (missing: {', '.join(missing)})" if missing else ""))
    for column in ["epoch"] + figures:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = table[column][values.isna() & table[column].notna()]
        if len(bad) or (column == "epoch" and (values.isna().any() or (values % 1 != 0).any())):
            shown = bad.iloc[0] if len(bad) else "an empty or fractional epoch"
            raise ConfigError(f"{where}: column {column} must hold numbers, not {shown!r}")
        table[column] = values
    table["epoch"] = table["epoch"].astype(int)
    out = {}
    for (sweep, run), rows in table.groupby(["sweep", "value"], sort=False):
        epochs = rows.rename(columns={"epoch_seconds": "seconds"}).set_index("epoch").sort_index()
        pub = published_figures.Published(source=str(path), experiment=sweep, setting=run, dataset=None,
                                          epochs=epochs[[c for c in ("train_loss", "train_acc", "test_loss",
                                                                     "test_acc", "seconds") if c in epochs]])
        if "seconds" in pub.epochs and pub.epochs.seconds.notna().any():
            pub.seconds_per_epoch = float(pub.epochs.seconds.dropna().median())
        out[(sweep, run)] = pub
    return out


# -- judging ---------------------------------------------------------------------------------

@dataclass
class RunJudgement:
    """One run of one sweep: its seeds per framework, the published figures and their verdicts."""
    sweep: str
    run: str
    pub: published_figures.Published | None
    mismatch: list[str]                          # why the published figures do not apply (empty: they apply)
    sides: dict[str, list[RunFiles]]             # framework -> its runs, one per seed
    figures: dict[str, list[FigureVerdict]]      # framework -> a verdict per published figure
    pair: list[Check]                            # Flux vs PyTorch (lockstep per seed, or native seeds)

    @property
    def label(self) -> str:
        return f"{self.sweep}/{self.run}"

    @property
    def applies(self) -> bool:
        return self.pub is not None and not self.mismatch

    def final_sample(self, side: str) -> Sample:
        """Our final test accuracy over seeds (the last epoch reached)."""
        return reproduction.sample_of(reproduction.figure_values(self.sides.get(side, []), "test_acc", None)[1])

    def headline(self, side: str) -> FigureVerdict | None:
        return next((f for f in self.figures.get(side, []) if f.headline), None)


@dataclass
class ClaimJudgement:
    claim: Claim
    published_ranking: list[tuple[str, float]]
    verdicts: dict[str, ClaimVerdict]            # framework -> verdict
    samples: dict[str, dict[str, Sample]]        # framework -> setting -> final test accuracy
    not_judged: str = ""                         # why the claim was not judged


@dataclass
class Reproduction:
    target: Target
    runs_dir: Path
    folder: Path
    policy: Policy
    sweeps: list[str]                            # the sweeps asked for
    results: dict[str, SweepResult]              # the sweeps that have runs
    judged: list[RunJudgement]
    claims: list[ClaimJudgement]
    sides: list[str]                             # the frameworks that ran
    planted: str | None                          # the --published file, when given
    verdicts: dict[str, tuple[str, list[str]]] = field(default_factory=dict)   # framework -> (verdict, reasons)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        states = {v for v, _ in self.verdicts.values()}
        return next((s for s in (NOT_REPRODUCED, INCONCLUSIVE, REPRODUCED) if s in states), INCONCLUSIVE)

    @property
    def not_run(self) -> list[str]:
        return [s for s in self.sweeps if s not in self.results]

    @property
    def left_out(self) -> list[str]:
        """The target's sweeps that --sweeps left out."""
        return [s for s in self.target.sweeps if s not in self.sweeps]

    @property
    def scope(self) -> str:
        return f" (sweeps {', '.join(self.sweeps)} only)" if self.left_out else ""

    def seeds_command(self) -> str:
        runs = [r for j in self.judged for rs in j.sides.values() for r in rs]
        seeds = reproduction.seeds_needed([r.seed for r in runs], self.policy.min_seeds)
        command = f"python -m fluxlenet reproduce {self.target.name}"
        if self.sweeps != list(self.target.sweeps):
            command += f" --sweeps {','.join(self.sweeps)}"
        if runs and runs[0].mode == "native":
            command += " --mode native"
        return f"`{command} --seeds {seeds}` (same other options; finished runs are skipped)"

    def summary(self) -> list[str]:
        lines = [f"Reproduction of {self.target.name} ({self.target.title}): {self.verdict.upper()}{self.scope}"]
        for side in SIDES:
            if side not in self.sides:
                lines.append(f"  {BACKEND_NAMES[side]}: not run")
                continue
            reasons = self.verdicts[side][1]
            lines.append(f"  {side_line(self, side)}")
            lines += [f"    - {r}" for r in reasons[:12]] + ([f"    - ... ({len(reasons) - 12} more)"]
                                                              if len(reasons) > 12 else [])
        lines.append("Rule: " + reproduction.rule_lines(self.policy.level, self.policy.min_seeds)[0])
        lines.append(f"Report: {self.files['markdown']}")
        lines.append(f"        {self.files['html']} (self-contained, opens from disk)")
        lines.append(f"        {self.files['figures']} (every published figure with its verdict)")
        return lines


def _frameworks(results: dict[str, SweepResult]) -> list[str]:
    present = {r.backend for result in results.values() for r in result.runs}
    return [s for s in SIDES if s in present] + sorted(present - set(SIDES))


def judge(target: Target, runs_dir: str | Path, policy: Policy, names: list[str] | None = None,
          planted: dict | None = None, planted_name: str | None = None) -> Reproduction:
    """Every published figure of the target's runs, judged per framework; the conclusions; the verdicts."""
    runs_dir = Path(runs_dir)
    names = names or list(target.sweeps)
    results = {}
    for name in names:
        if any((runs_dir / name).glob("*/*/config.json")):
            results[name] = compare_sweep(name, runs_dir, policy)
    if not results:
        raise ConfigError(f"no runs of `reproduce {target.name}` in {runs_dir} (sweeps {', '.join(names)}): run "
                          f"`python -m fluxlenet reproduce {target.name}` first, or give --runs-dir")
    sides = _frameworks(results)
    judged = []
    for name, result in results.items():
        for verdict in result.verdicts:
            run = verdict.run
            if planted is not None:
                pub, mismatch = planted.get((name, run)), []
            else:
                pub, mismatch = result.published.get(run), result.published_mismatch.get(run) or []
            by_side = {s: result.groups[run][s] for s in sides if result.groups[run].get(s)}
            figures = {}
            if pub is not None and not mismatch:
                wanted = reproduction.published_figures(pub)
                figures = {s: reproduction.judge_published(run, s, runs, wanted, policy.level, policy.min_seeds)
                           for s, runs in by_side.items()}
            judged.append(RunJudgement(name, run, pub, mismatch, by_side, figures,
                                       [c for c in verdict.checks if c.kind != "published"]))
    out = Reproduction(target, runs_dir, runs_dir / f"reproduce-{target.name}", policy, names, results, judged,
                       [], sides, planted_name)
    out.claims = [judge_claim(out, claim) for claim in target.claims if claim.sweep in names]
    out.verdicts = {side: side_verdict(out, side) for side in sides}
    return out


def judge_claim(rep: Reproduction, claim: Claim) -> ClaimJudgement:
    runs = [j for j in rep.judged if j.sweep == claim.sweep]
    published = [(j.run, j.pub.final_value("test_acc")) for j in runs if j.applies
                 and j.pub.final_value("test_acc") is not None]
    ranking = sorted(published, key=lambda item: item[1], reverse=True)
    samples = {side: {j.run: j.final_sample(side) for j in runs if side in j.sides} for side in rep.sides}
    if not runs:
        return ClaimJudgement(claim, ranking, {}, samples, f"sweep {claim.sweep} not run")
    missing = [c.run for c in rep.results[claim.sweep].sweep.runs if c.run not in {j.run for j in runs}]
    if missing:
        return ClaimJudgement(claim, ranking, {}, samples, f"not judged: not run yet: {', '.join(missing)}")
    if not all(j.applies for j in runs):
        why = next(("; ".join(j.mismatch) for j in runs if j.mismatch), "no published figures")
        return ClaimJudgement(claim, ranking, {}, samples, f"not judged: the runs are not the published protocol "
                                                           f"({why})")
    verdicts = {side: reproduction.judge_best(list(claim.claimed), samples[side], rep.policy.level,
                                              rep.policy.min_seeds) for side in rep.sides}
    return ClaimJudgement(claim, ranking, verdicts, samples)


def describe_headline(f: FigureVerdict) -> str:
    """A judged (not inconclusive) headline figure against our seeds' interval."""
    s = f.sample
    z = f"; {f.z:+.1f} sd" if f.z is not None and math.isfinite(f.z) else ""
    return (f"published {fmt(f.published, 4)} {'inside' if f.verdict == REPRODUCED else 'outside'} "
            f"{f.interval[0]:.2f}..{f.interval[1]:.2f} (mean {s.mean:.2f} ± {s.sd:.2f}, n={s.n}{z})")


def side_verdict(rep: Reproduction, side: str) -> tuple[str, list[str]]:
    """(verdict, reasons) of one framework: its headline figures and the conclusions."""
    states, reasons = set(), []
    short: dict[str, list[str]] = {}   # too few seeds: why -> the runs
    for j in rep.judged:
        if j.mismatch:
            states.add(INCONCLUSIVE)
            reason = f"the published figures do not apply: {'; '.join(j.mismatch)}"
            if reason not in reasons:
                reasons.append(reason)
            continue
        if j.pub is None:
            continue
        if side not in j.sides:
            states.add(INCONCLUSIVE)
            reasons.append(f"{j.label}: not run")
            continue
        f = j.headline(side)
        if f is None:
            continue   # no published final test accuracy: nothing decides
        states.add(f.verdict)
        if f.verdict == NOT_REPRODUCED:
            reasons.append(f"{j.label}, final test accuracy (epoch {f.epoch}): not reproduced: {describe_headline(f)}")
        elif f.verdict == INCONCLUSIVE:
            short.setdefault(f.why, []).append(j.label)
    for why, labels in short.items():
        reasons.append(f"final test accuracy of {', '.join(labels)}: inconclusive: {why}: {rep.seeds_command()} "
                       f"gives enough")
    for c in rep.claims:
        verdict = c.verdicts.get(side)
        if verdict is None:
            states.add(INCONCLUSIVE)
            reasons.append(f"conclusion '{c.claim.text}': {c.not_judged}")
        elif verdict.verdict == DOES_NOT_HOLD:
            states.add(NOT_REPRODUCED)
            reasons.append(f"conclusion '{c.claim.text}' does not hold: {verdict.why}")
        elif verdict.verdict == INCONCLUSIVE:
            states.add(INCONCLUSIVE)
            reasons.append(f"conclusion '{c.claim.text}': inconclusive: {verdict.why}")
    if rep.not_run:
        states.add(INCONCLUSIVE)
        reasons.append(f"sweeps not run yet: {', '.join(rep.not_run)}")
    verdict = next((s for s in (NOT_REPRODUCED, INCONCLUSIVE, REPRODUCED) if s in states), INCONCLUSIVE)
    if not states:
        reasons.append("no published figures to judge")
    return verdict, reasons


def side_line(rep: Reproduction, side: str) -> str:
    """'PyTorch: not reproduced (11 headline figures: ...; conclusions: ...)'."""
    return f"{BACKEND_NAMES[side]}: {rep.verdicts[side][0]} ({headline_count(rep, side)}; {claim_count(rep, side)})"


def headline_count(rep: Reproduction, side: str) -> str:
    verdicts = [j.headline(side).verdict for j in rep.judged if j.headline(side) is not None]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
                       if verdicts.count(v))
    return f"{len(verdicts)} headline figure{'s' if len(verdicts) != 1 else ''}" + (f": {counts}" if counts else "")


def claim_count(rep: Reproduction, side: str) -> str:
    verdicts = [c.verdicts[side].verdict if side in c.verdicts else INCONCLUSIVE for c in rep.claims]
    if not verdicts:
        return "no conclusions to judge"
    return "conclusions: " + ", ".join(f"{verdicts.count(v)} {v}" for v in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)
                                       if verdicts.count(v))


# -- tables ----------------------------------------------------------------------------------

def spread(sample: Sample, digits: int) -> str:
    """mean ± sd (min–max, n) of a sample."""
    if not sample.n:
        return "–"
    if sample.n == 1:
        return f"{sample.mean:.{digits}f} (n=1)"
    return f"{sample.mean:.{digits}f} ± {sample.sd:.{digits}f} ({sample.min:.{digits}f}–{sample.max:.{digits}f}, " \
           f"n={sample.n})"


def seconds_sample(runs: list[RunFiles]) -> Sample:
    return reproduction.sample_of({r.seed: r.seconds_per_epoch() for r in runs if r.seconds_per_epoch() is not None})


def post_table(rep: Reproduction, sweep: str) -> tuple[list[str], list[list[str]]]:
    """The write-up's table of a sweep: final test accuracy (best marked ★) and seconds per epoch per setting."""
    runs = [j for j in rep.judged if j.sweep == sweep]
    names = [BACKEND_NAMES.get(s, s) for s in SIDES]
    header = (["setting"] + [f"{n} test acc" for n in names] + ["published test acc"]
              + [f"verdict ({n})" for n in names] + [f"{n} s/epoch" for n in names] + ["published s/epoch"])
    best = {}
    for side in SIDES:
        means = {j.run: j.final_sample(side).mean for j in runs if side in j.sides and j.final_sample(side).n}
        best[side] = max(means, key=means.get) if means else None
    pubs = {j.run: j.pub.final_value("test_acc") for j in runs if j.applies and j.pub.final_value("test_acc")}
    best["published"] = max(pubs, key=pubs.get) if pubs else None
    rows = []
    for j in runs:
        star = {k: " ★" if v == j.run and len(runs) > 1 else "" for k, v in best.items()}
        row = [j.run]
        row += [spread(j.final_sample(s), 2) + star[s] if s in j.sides else "not run" for s in SIDES]
        if j.applies:
            value = j.pub.final_value("test_acc")
            row.append(f"{value:.2f}{star['published']}" if value is not None else "–")
        else:
            row.append("n/a" if j.pub is not None else "–")
        row += [j.headline(s).verdict if j.headline(s) else ("not run" if s not in j.sides else "–") for s in SIDES]
        row += [spread(seconds_sample(j.sides[s]), 1) if s in j.sides else "not run" for s in SIDES]
        row.append(fmt(j.pub.seconds_per_epoch, 3) if j.applies and j.pub.seconds_per_epoch else "–")
        rows.append(row)
    return header, rows


def claim_rows(rep: Reproduction) -> tuple[list[str], list[list[str]]]:
    header = ["the write-up's conclusion", "published ranking"] + \
        [f"{BACKEND_NAMES.get(s, s)}: ranking by mean, verdict" for s in SIDES]
    rows = []
    for c in rep.claims:
        row = [c.claim.text, " > ".join(f"{run} {value:.2f}" for run, value in c.published_ranking) or "–"]
        for side in SIDES:
            if side not in rep.sides:
                row.append("not run")
                continue
            samples = c.samples.get(side, {})
            ranked = sorted((run for run in samples if samples[run].n), key=lambda r: samples[r].mean, reverse=True)
            ranking = " > ".join(f"{run} {samples[run].mean:.2f}" for run in ranked) or "–"
            verdict = c.verdicts.get(side)
            row.append(f"{ranking}: {verdict.verdict} ({verdict.why})" if verdict else f"{ranking}: {c.not_judged}")
        rows.append(row)
    return header, rows


def grid_rows(rep: Reproduction, side: str, metric: str) -> tuple[list[str], list[list[str]]] | None:
    """A verdict per published figure of one metric: a row per run, a column per epoch; each cell the
    distance (published − our mean) / our sd, ✗ when not reproduced, ? when inconclusive."""
    items = {j.label: {f.figure.epoch: f for f in j.figures.get(side, []) if f.metric == metric} for j in rep.judged}
    items = {label: cells for label, cells in items.items() if cells}
    if not items:
        return None
    epochs = sorted({e for cells in items.values() for e in cells}, key=lambda e: -1 if e is None else e)
    header = ["run"] + ["final" if e is None else str(e) for e in epochs]
    rows = []
    for label, cells in items.items():
        row = [label]
        for e in epochs:
            f = cells.get(e)
            if f is None:
                row.append("–")
                continue
            z = f"{f.z:+.1f}" if f.z is not None and math.isfinite(f.z) else ("±∞" if f.z is not None else "")
            mark = {REPRODUCED: "", NOT_REPRODUCED: " ✗", INCONCLUSIVE: " ?"}[f.verdict]
            row.append((z + mark).strip() or "?")
        rows.append(row)
    return header, rows


def gap_rows(rep: Reproduction) -> tuple[list[str], list[list[str]]]:
    """The test figures where the published value lies outside every seed of ours, by how many sd."""
    header = ["run", "framework", "figure", "epoch", "ours: mean ± sd (min–max, n)", "published",
              "(published − mean) / sd", "verdict"]
    rows = []
    for j in rep.judged:
        for side, figures in j.figures.items():
            for f in figures:
                if f.metric in GAP_METRICS and f.outside_range:
                    digits = 2 if f.metric.endswith("acc") else 4
                    z = f"{f.z:+.1f}" if f.z is not None and math.isfinite(f.z) else "–"
                    rows.append([j.label, BACKEND_NAMES.get(side, side), f.metric.replace("_", " "), str(f.epoch),
                                 spread(f.sample, digits), f"{f.published:.{digits}f}", z, f.verdict])
    return header, rows


def direction_rows(rep: Reproduction) -> tuple[list[str], list[list[str]]]:
    """Per run and framework: on how many trained epochs the published figure lies above our mean."""
    header = ["run", "framework"] + [f"{m.replace('_', ' ')}: published above our mean, median (published − mean) / sd"
                                     for m in GAP_METRICS]
    rows = []
    for j in rep.judged:
        for side, figures in j.figures.items():
            row = [j.label, BACKEND_NAMES.get(side, side)]
            for metric in GAP_METRICS:
                trained = [f for f in figures if f.metric == metric and f.epoch and f.sample.n]
                zs = [f.z for f in trained if f.z is not None and math.isfinite(f.z)]
                above = sum(f.published > f.sample.mean for f in trained)
                row.append(f"{above} of {len(trained)} epochs" + (f", {float(np.median(zs)):+.1f} sd" if zs else "")
                           if trained else "–")
            rows.append(row)
    return header, rows


def framework_gap(rep: Reproduction) -> tuple[list[str], list[list[str]], str] | None:
    """Where both frameworks ran: the final test accuracy gap to the published figure in each, and whether
    Flux and PyTorch agree with each other (the lockstep or seeds checks)."""
    both = [j for j in rep.judged if all(s in j.sides for s in SIDES)]
    if not both:
        return None
    header = ["run", "published − Flux mean", "published − PyTorch mean", "Flux vs PyTorch"]
    rows, agree = [], []
    for j in both:
        gaps = []
        for side in SIDES:
            sample = j.final_sample(side)
            value = j.pub.final_value("test_acc") if j.applies else None
            gaps.append(f"{value - sample.mean:+.2f}" if value is not None and sample.n else "–")
        states = {c.status for c in j.pair}
        status = next((s for s in ("fail", "inconclusive", "pass") if s in states), "not compared")
        agree.append(status)
        kinds = ", ".join(sorted({c.kind for c in j.pair if c.kind}))
        rows.append([j.label] + gaps + [f"{ {'fail': 'differ', 'pass': 'agree'}.get(status, status)} ({kinds})"])
    if all(s == "pass" for s in agree):
        text = ("Flux and PyTorch agree on every run (the checks in the last column), so a gap between these runs "
                "and the post is the same in both: not a framework difference, but a difference from the 2021 setup "
                "below (or the post's one draw).")
    elif "fail" in agree:
        text = ("Flux and PyTorch differ on some runs: there the gap to the post is partly a framework difference; "
                "see `python -m fluxlenet parity SWEEP`.")
    else:
        text = ("Whether Flux and PyTorch agree could not be told on every run (native mode needs at least "
                f"{rep.policy.min_seeds} seeds a side).")
    return header, rows, text


def setup_rows(rep: Reproduction) -> tuple[list[str], list[list[str]]]:
    runs = [r for j in rep.judged for rs in j.sides.values() for r in rs]
    flux = [r for r in runs if r.backend == "flux"]

    def version(name):
        return ", ".join(sorted({str(r.meta.get("versions", {}).get(name)) for r in flux})) or None
    mismatches = sorted({m for j in rep.judged for m in j.mismatch})
    data = sorted({f"{r.config.get('dataset')} {r.samples('train') or r.config.get('train_size') or 'all'} / "
                   f"{r.samples('test') or r.config.get('test_size') or 'all'}" for r in runs})
    full = all(r.config.get("dataset") == "mnist" and r.samples("train") == 60000 and r.samples("test") == 10000
               for r in runs)
    seeds = sorted({r.seed for r in runs})
    modes = sorted({r.mode for r in runs})
    devices = sorted({str(r.meta.get("device")) for r in runs})
    same = {
        "julia": f"no: Julia {version('julia')} here" if flux else "no: Flux was not run here (Julia not set up)",
        "flux": f"no: Flux {version('Flux')} here" if flux else "no: not run; PyTorch only",
        "data": "yes" if full else f"no: {', '.join(data)} images (train / test)",
        "protocol": ("taken as given (--published)" if rep.planted else
                     "yes" if not mismatches else "no: " + "; ".join(mismatches)),
        "draws": f"the scheme yes, the draws no: seeds {', '.join(map(str, seeds))} ({', '.join(modes)} mode) "
                 f"instead of the write-up's one draw",
        "hardware": f"no: {', '.join(devices)} (timings are not comparable)",
        "assumed": "assumed (the write-up does not say)",
    }
    header = ["setting", "the write-up", "this project", "reproduced here?"]
    return header, [[name, then, here, same[key]] for name, then, here, key in rep.target.setup]


# -- plots -----------------------------------------------------------------------------------

def epoch_bands(runs: list[RunFiles], metric: str) -> pd.DataFrame:
    """Per epoch over seeds: mean, sd, min, max, n (each epoch from the seeds that reached it)."""
    epochs = sorted({int(e) for r in runs for e in r.log.index if metric in r.log})
    rows = {}
    for epoch in epochs:
        s = reproduction.sample_of(reproduction.figure_values(runs, metric, epoch)[1])
        if s.n:
            rows[epoch] = {"mean": s.mean, "sd": s.sd if s.sd is not None else 0.0, "min": s.min, "max": s.max,
                           "n": s.n}
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_bands(rep: Reproduction, sweep: str, path: Path) -> Path:
    """Test accuracy and loss per epoch: each framework's seed band (mean ± sd, min–max), the published line."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    runs = [j for j in rep.judged if j.sweep == sweep]
    cols = len(runs)
    fig, axes = plt.subplots(2, cols, figsize=(3.8 * cols, 6.2), squeeze=False)
    for col, j in enumerate(runs):
        for row, metric in enumerate(GAP_METRICS):
            ax = axes[row][col]
            for side, side_runs in j.sides.items():
                band = epoch_bands(side_runs, metric)
                if band.empty:
                    continue
                colour = plots.SIDE_COLOURS.get(side)
                n = int(band.n.max())
                ax.plot(band.index, band["mean"], "-", color=colour, marker="o", markersize=3,
                        label=f"{BACKEND_NAMES.get(side, side)} mean of {n}")
                ax.fill_between(band.index, band["mean"] - band.sd, band["mean"] + band.sd, color=colour, alpha=0.3,
                                label="± sd")
                ax.fill_between(band.index, band["min"], band["max"], color=colour, alpha=0.12, label="min–max")
            if j.applies and j.pub.epochs is not None and metric in j.pub.epochs:
                ref = j.pub.epochs[metric].dropna()
                ax.plot(ref.index, ref.to_numpy(), ":", color=plots.PUBLISHED_COLOUR, marker="s", markersize=3,
                        label="published")
            elif j.applies and j.pub.final_value(metric) is not None:
                last = max((int(r.log.index.max()) for rs in j.sides.values() for r in rs if len(r.log)), default=0)
                ax.plot([last], [j.pub.final_value(metric)], "*", color=plots.PUBLISHED_COLOUR, markersize=12,
                        label="published (final)")
            ax.set_title(f"{j.run}: {metric.replace('_', ' ')}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric.replace("_", " ").replace("acc", "accuracy (%)"))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if metric.endswith("loss"):
                plots.log_scale_if_positive(ax)
            elif plots.zoom_on_training(ax, j.sides, [metric], j.pub if j.applies else None):
                ax.set_xlabel("epoch (epoch 0 below the axis)")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    title = f"{sweep}: our seeds per epoch (line: mean, dark: ± sd, light: min–max), published: black"
    fig.suptitle(textwrap.fill(title, int(9 * 3.8 * cols)), fontsize=11)
    return plots.save_figure(fig, path)


def plot_comparison(rep: Reproduction, sweep: str, what: str, path: Path) -> Path:
    """The post's "performance comparison" (final test accuracy) or "training time comparison" (seconds per
    epoch) of a sweep: Flux | PyTorch | published per setting; bars the mean, whiskers the sd, dots the seeds."""
    import matplotlib.pyplot as plt
    runs = [j for j in rep.judged if j.sweep == sweep]
    columns = list(SIDES) + ["published"]
    width = 0.8 / len(columns)
    width_in = max(6.0, 1.8 * len(runs) + 2)
    fig, ax = plt.subplots(figsize=(width_in, 4.2))
    values = []
    for k, column in enumerate(columns):
        for i, j in enumerate(runs):
            x = i + (k - (len(columns) - 1) / 2) * width
            if column == "published":
                value = None
                if j.applies:
                    value = j.pub.final_value("test_acc") if what == "accuracy" else j.pub.seconds_per_epoch
                if value is not None:
                    ax.bar(x, value, width, color="lightgrey", edgecolor=plots.PUBLISHED_COLOUR, hatch="//",
                           label="published" if "published" not in ax.get_legend_handles_labels()[1] else None)
                    ax.annotate(f"{value:.2f}" if what == "accuracy" else f"{value:.3g}", (x, value), ha="center",
                                va="bottom", fontsize=7)
                    values.append(value)
                continue
            if column not in j.sides:
                continue
            sample = j.final_sample(column) if what == "accuracy" else seconds_sample(j.sides[column])
            if not sample.n:
                continue
            sd = sample.sd or 0.0
            name = BACKEND_NAMES.get(column, column)
            ax.bar(x, sample.mean, width, yerr=sd if sample.n > 1 else None, capsize=3,
                   color=plots.SIDE_COLOURS.get(column, "C0"),
                   label=name if name not in ax.get_legend_handles_labels()[1] else None)
            ax.plot([x] * sample.n, sample.values, "k.", markersize=4)
            ax.annotate(f"{sample.mean:.2f}" if what == "accuracy" else f"{sample.mean:.3g}", (x, sample.mean + sd),
                        ha="center", va="bottom", fontsize=7)
            values += [sample.mean - sd, sample.mean + sd, *sample.values]
    for side in SIDES:
        if side not in rep.sides:
            ax.bar([0], [0], 0, color=plots.SIDE_COLOURS.get(side), label=f"{BACKEND_NAMES[side]}: not run")
    ylabel = "final test accuracy (%)" if what == "accuracy" else "seconds per epoch (median of a run)"
    if values and what == "accuracy":
        low, high = min(values), max(values)
        pad = max(0.5, 0.15 * (high - low))
        if high - low < 10:  # near 99%: zoom in, and say that the axis does not start at 0
            ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad) + 0.1 * pad)
            ylabel += ", axis cut"
    ax.set_xticks(range(len(runs)), [j.run for j in runs])
    ax.set_ylabel(ylabel)
    title = f"{sweep}: {'performance' if what == 'accuracy' else 'training time'} comparison (bars: mean, " \
            f"whiskers: sd, dots: seeds)"
    ax.set_title(textwrap.fill(title, int(9 * width_in)), fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return plots.save_figure(fig, path)


# -- the document ----------------------------------------------------------------------------

FIGURE_COLUMNS = ["sweep", "run", "framework", "metric", "epoch", "headline", "published", "n", "mean", "sd", "min",
                  "max", "interval_low", "interval_high", "z", "verdict", "why"]


def figures_csv(rep: Reproduction) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIGURE_COLUMNS)
    for j in rep.judged:
        for side, figures in j.figures.items():
            for f in figures:
                s = f.sample
                low, high = f.interval or (None, None)
                writer.writerow([j.sweep, j.run, side, f.metric, "" if f.epoch is None else f.epoch, f.headline,
                                 f.published, s.n] + ["" if v is None else repr(float(v)) for v in
                                                      (s.mean, s.sd, s.min, s.max, low, high, f.z)]
                                + [f.verdict, f.why])
    return out.getvalue()


def build_blocks(rep: Reproduction, plots: dict[str, dict[str, Path]]) -> list[tuple]:
    target = rep.target
    blocks: list[tuple] = [("h1", f"Reproduction: {target.title}")]
    source = f"judged against `{rep.planted}` (--published), taken to apply to these runs" if rep.planted else \
        "judged against the published figures shipped in fluxlenet/reference"
    blocks.append(("p", f"`python -m fluxlenet reproduce {target.name}`: runs from `{rep.runs_dir}`, {source}; "
                        f"report written {time.strftime('%Y-%m-%d %H:%M')}."))
    blocks.append(("verdict", VERDICT_CLASS[rep.verdict], f"Reproduced? {rep.verdict}{rep.scope}"))
    lines = []
    for side in SIDES:
        if side not in rep.sides:
            lines.append(f"{BACKEND_NAMES[side]}: not run.")
            continue
        reasons = rep.verdicts[side][1]
        lines.append(side_line(rep, side) + (": " + "; ".join(reasons) if reasons else "."))
    blocks.append(("ul", lines))

    blocks.append(("h2", "The rule"))
    headlines = sum(1 for j in rep.judged if j.applies)
    chance = (f" Judged at {rep.policy.level:g} each, {headlines} headline figures of a write-up that reproduces "
              f"exactly still show one outside {100 * (1 - rep.policy.level ** headlines):.0f}% of the time: "
              f"read how many sd out it is." if headlines > 1 else "")
    blocks.append(("ul", reproduction.rule_lines(rep.policy.level, rep.policy.min_seeds) + [
        "The write-up reproduced when, in every framework that ran, every headline figure is reproduced and every "
        "conclusion holds; not reproduced when a headline figure is not or a conclusion does not hold; "
        "inconclusive otherwise (too few seeds, runs missing, another protocol)." + chance,
        "Change the level or the seeds needed with `--tolerance level=0.999,min_seeds=5` (or `--policy FILE.toml`).",
        "Exit code: 0 reproduced, 1 not reproduced, 4 inconclusive."]))

    blocks.append(("h2", "What was run"))
    ran = [f"Left out with --sweeps: {', '.join(rep.left_out)}."] if rep.left_out else []
    for name in rep.sweeps:
        if name not in rep.results:
            ran.append(f"{name}: not run yet.")
            continue
        ran += [f"{name}: {line}" for line in summaries.what_ran(rep.results[name])
                if not (rep.planted and line.startswith("Published figures ("))]  # the shipped ones: not used
    blocks.append(("ul", list(dict.fromkeys(ran))))

    blocks.append(("h2", "The write-up's tables"))
    blocks.append(("p", "Final test accuracy (the last epoch) and seconds per epoch (each run's median epoch) per "
                        "setting: mean ± sd (min–max, n seeds); ★ the best setting of each column; the verdict is the "
                        "final test accuracy's."))
    for name in rep.sweeps:
        if name not in rep.results:
            continue
        result = rep.results[name]
        blocks.append(("h3", f"{name}: {result.sweep.description.splitlines()[0] if result.sweep else name}"))
        header, rows = post_table(rep, name)
        blocks.append(("table", header, rows))
        for title, path in plots.get(name, {}).items():
            if title != "band":
                blocks.append(("img", path, f"{name}: {title}"))
    notes = [] if rep.planted else [n for name in rep.results for n in summaries.published_notes(rep.results[name])]
    if notes:
        blocks.append(("ul", list(dict.fromkeys(notes))))

    if rep.claims:
        blocks.append(("h2", "The write-up's conclusions"))
        header, rows = claim_rows(rep)
        blocks.append(("table", header, rows))

    blocks.append(("h2", "Every published figure"))
    blocks.append(("p", "Each cell: (published − our mean) / our sd at that epoch, for one framework; ✗ not "
                        "reproduced (outside the prediction interval), ? inconclusive, no mark: reproduced. The "
                        "numbers behind every cell (mean, sd, min, max, interval) are in "
                        f"`{rep.files['figures'].name}`."))
    any_grid = False
    for side in SIDES:
        for metric in reproduction.FIGURE_METRICS:
            grid = grid_rows(rep, side, metric)
            if grid:
                any_grid = True
                blocks.append(("h3", f"{BACKEND_NAMES.get(side, side)}: {metric.replace('_', ' ')}"))
                blocks.append(("table", *grid))
    if not any_grid:
        blocks.append(("p", "No published figure was judged: " + "; ".join(
            dict.fromkeys(r for _, reasons in rep.verdicts.values() for r in reasons)) + "."))

    blocks.append(("h2", "Where the gap is"))
    for name in rep.sweeps:
        if "band" in plots.get(name, {}):
            blocks.append(("img", plots[name]["band"], f"{name}: seed bands per epoch"))
    header, rows = direction_rows(rep)
    if rows:
        blocks.append(("p", "On how many trained epochs the published figure lies above our mean (a post above "
                            "our mean at every epoch is one draw above ours throughout, not noise at one epoch):"))
        blocks.append(("table", header, rows))
    header, rows = gap_rows(rep)
    blocks.append(("p", "The test figures where the published value lies outside all of our seeds (min–max), by "
                        "how many sd of ours:" if rows else
                        "No published test figure lies outside the range of our seeds."))
    if rows:
        blocks.append(("table", header, rows))
    both = framework_gap(rep)
    if both:
        header, rows, text = both
        blocks.append(("h3", "Is the gap the same in Flux and PyTorch?"))
        blocks.append(("table", header, rows))
        blocks.append(("p", text))
    else:
        blocks.append(("p", "Only one framework ran, so whether the gap is the same in Flux and PyTorch cannot be "
                            "told here: run with Julia set up (`python -m fluxlenet setup-julia`)."))
    if rep.target.setup:
        blocks.append(("h3", "The write-up's setup: what these runs reproduced and what they could not"))
        header, rows = setup_rows(rep)
        blocks.append(("table", header, rows))

    blocks.append(("h2", "Tolerance policy"))
    blocks.append(("ul", [line for _, line in rep.policy.describe()] + ["keys: " + ", ".join(Policy.keys())]))
    blocks.append(("h2", "Environment"))
    env = {}
    for result in rep.results.values():
        header, rows = summaries.environment_rows(result)
        for row in rows:
            if row[1] != "not run" or row[0] not in env:
                env[row[0]] = row
    blocks.append(("table", header, list(env.values())))
    return blocks


def write_report(target: Target, runs_dir: str | Path = "runs", policy: Policy | None = None,
                 names: list[str] | None = None, planted_file: str | Path | None = None) -> Reproduction:
    """Judge the target's runs and write report.md, report.html, figures.csv and the plots."""
    import matplotlib
    matplotlib.use("Agg")
    planted = load_published_file(planted_file) if planted_file else None
    rep = judge(target, runs_dir, policy or Policy(), names, planted, str(planted_file) if planted_file else None)
    folder = rep.folder
    folder.mkdir(parents=True, exist_ok=True)
    rep.files = {"markdown": folder / "report.md", "html": folder / "report.html", "figures": folder / "figures.csv"}
    plots = {}
    for name in rep.results:
        plots[name] = {"performance comparison": plot_comparison(rep, name, "accuracy",
                                                                 folder / f"performance-{name}.png"),
                       "training time comparison": plot_comparison(rep, name, "time", folder / f"time-{name}.png"),
                       "band": plot_bands(rep, name, folder / f"band-{name}.png")}
    blocks = build_blocks(rep, plots)
    atomic_write_text(rep.files["figures"], figures_csv(rep))
    atomic_write_text(rep.files["markdown"], render.to_markdown(blocks, folder))
    atomic_write_text(rep.files["html"], render.to_html(blocks, f"Reproduction: {target.title}"))
    return rep


__all__ = ["INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED", "Reproduction", "judge", "load_published_file",
           "write_report"]
