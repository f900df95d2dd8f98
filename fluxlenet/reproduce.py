"""Did a write-up reproduce? Judge a target's runs (fluxlenet.targets) against its published figures and
write one report.

`python -m fluxlenet reproduce TARGET` runs the target's sweeps with seeds (fluxlenet.cli), then
`write_report` writes into `<runs dir>/reproduce-<target>/`:

    report.md, report.html    the verdicts, the replay of the write-up's own runs, the write-up's tables
                              (Flux | PyTorch | published, with the seed spread), its charts, a verdict per
                              published figure and per conclusion, where a gap lies
    replay.csv                every published figure beside each framework's replay, the band, the verdict
    figures.csv               every published figure: our seeds' mean, sd, min, max, the interval, the verdict
    performance-<sweep>.png   final test accuracy per setting (the post's "performance comparison")
    time-<sweep>.png          seconds per epoch per setting (its "training time comparison")
    band-<sweep>.png          test accuracy and loss per epoch: our seeds' mean +- sd and min-max, the
                              replays, the published line

Two questions, answered apart. Where the write-up's generator is known (the post: Julia's MersenneTwister,
seed 42; `Target.replay_seed`), our run of that seed with those draws is its own run again: does each
published figure lie within the band that arithmetic alone opens between same-seed runs (parity.replay)?
That replay verdict comes first and sets the exit code. Then, about the distribution: do the published
figures lie in the prediction interval of one new run of our other seeds (parity.reproduction), and where
does the write-up's seed stand among them (typical, lucky, unlucky)? Not reproduced when a headline
figure (a run's final test accuracy) is not reproduced or a conclusion does not hold; inconclusive when
one cannot be judged (too few seeds, runs missing, another protocol); reproduced otherwise. Each
framework that ran is judged; a verdict over frameworks is the worse of them.
"""

from __future__ import annotations

import csv
import io
import math
import shlex
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
from parity import replay as replays
from parity.replay import NOT_REPLAYED, REPLAYED, Band, ReplayFigure, Standing
from parity.reproduction import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, ClaimVerdict,
                                 FigureVerdict, Sample)

from . import plots, render, summaries
from .config import ConfigError, rerun_options
from .fsutil import atomic_write_text
from .runs import Damaged, RunFiles, compare_sweep, load_sweep_dir
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
    # the replay (targets with a known generator): each framework's run of the write-up's own seed and draws,
    # left out of `sides` (the other seeds); the same-seed runs that differ only in arithmetic; the verdicts
    replays: dict[str, RunFiles] = field(default_factory=dict)
    variants: list[RunFiles] = field(default_factory=list)
    replay: dict[str, list[ReplayFigure]] = field(default_factory=dict)      # framework -> per published figure
    standings: dict[str, list[Standing]] = field(default_factory=dict)       # framework -> test acc per epoch

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

    def replay_headline(self, side: str) -> ReplayFigure | None:
        return next((f for f in self.replay.get(side, []) if f.figure.headline), None)

    def final_standing(self, side: str) -> Standing | None:
        return self.standings[side][-1] if self.standings.get(side) else None


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
    band: Band | None = None                     # the replay's band (None: the target has no replay)
    replay_verdicts: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    variant_notes: list[str] = field(default_factory=list)   # same-seed variant runs left out, and why

    @property
    def has_replay(self) -> bool:
        return any(j.replays for j in self.judged)

    @property
    def replay_verdict(self) -> str:
        states = {v for v, _ in self.replay_verdicts.values()}
        return next((s for s in (NOT_REPLAYED, INCONCLUSIVE, REPLAYED) if s in states), INCONCLUSIVE)

    @property
    def exit_verdict(self) -> str:
        """What the exit code says: whether the write-up's own runs replay where it has a replay, else whether
        its figures lie in our seeds' spread."""
        if self.has_replay:
            return {REPLAYED: REPRODUCED, NOT_REPLAYED: NOT_REPRODUCED}.get(self.replay_verdict, INCONCLUSIVE)
        return self.verdict
    unmatched: list[str] = field(default_factory=list)   # rows of the --published file that match no run

    def notes(self) -> list[str]:
        """What the terminal says beside the verdicts: run folders left out as damaged, published rows
        that match no run."""
        notes = [n for result in self.results.values() for n in result.notes if n.startswith("left out, damaged: ")]
        if self.unmatched:
            notes.append(f"--published {self.planted}: {len(self.unmatched)} row(s) match no run here and are not "
                         f"judged: {', '.join(self.unmatched)}")
        return notes

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
        first = next((j for j in self.judged if any(j.sides.values())), None)
        if first is not None:  # the options the runs had: with others the command would be refused
            sweep = self.results[first.sweep].sweep
            declared = next((c.to_dict() for c in (sweep.runs if sweep else []) if c.run == first.run), {})
            command += rerun_options(next(r for rs in first.sides.values() for r in rs).config, declared)
        if self.runs_dir != Path("runs"):
            command += f" --runs-dir {shlex.quote(str(self.runs_dir))}"
        return f"`{command} --seeds {seeds}`"

    def summary(self) -> list[str]:
        lines = []
        if self.has_replay:
            seed = self.target.replay_seed
            lines.append(f"Reproduction of {self.target.name} ({self.target.title}){self.scope}")
            lines.append(f"Do the write-up's own runs replay (seed {seed}, its generator's draws)? "
                         f"{self.replay_verdict.upper()}")
            for side in SIDES:
                lines.append(f"  {replay_side_line(self, side)}")
                reasons = self.replay_verdicts.get(side, (None, []))[1]
                lines += [f"    - {r}" for r in reasons[:12]] + ([f"    - ... ({len(reasons) - 12} more)"]
                                                                  if len(reasons) > 12 else [])
            lines.append(f"Is seed {seed} a typical draw (its final test accuracy among our other seeds)?")
            lines += [f"  {standing_line(self, side)}" for side in SIDES if side in self.sides]
            lines.append(f"Do the published figures lie in our other seeds' spread (a question about the seeds' "
                         f"distribution, not about the post's own run)? {self.verdict.upper()}")
        else:
            lines.append(f"Reproduction of {self.target.name} ({self.target.title}): {self.verdict.upper()}"
                         f"{self.scope}")
        for side in SIDES:
            if side not in self.sides:
                lines.append(f"  {BACKEND_NAMES[side]}: not run")
                continue
            reasons = self.verdicts[side][1]
            lines.append(f"  {side_line(self, side)}")
            lines += [f"    - {r}" for r in reasons[:12]] + ([f"    - ... ({len(reasons) - 12} more)"]
                                                              if len(reasons) > 12 else [])
        if self.has_replay:
            lines += ["Rule: " + line for line in replays.rule_lines(self.policy.replay_k, self.policy.level,
                                                                     self.policy.min_seeds, self.target.replay_seed)]
            lines.append(f"      {self.band.describe()}")
        lines += [f"NOTE: {note}" for note in self.notes()]
        lines.append("Rule: " + reproduction.rule_lines(self.policy.level, self.policy.min_seeds)[0])
        lines.append(f"Report: {self.files['markdown']}")
        lines.append(f"        {self.files['html']} (self-contained, opens from disk)")
        lines.append(f"        {self.files['figures']} (every published figure with its verdict)")
        if "replay" in self.files:
            lines.append(f"        {self.files['replay']} (every published figure beside the replays)")
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
        if any((runs_dir / name).glob("*/*/config.json")) or any((runs_dir / name).glob("*/*/checkpoint.json")):
            results[name] = compare_sweep(name, runs_dir, policy)
    if not results:
        raise ConfigError(f"no runs of `reproduce {target.name}` in {runs_dir} (sweeps {', '.join(names)}): run "
                          f"`python -m fluxlenet reproduce {target.name}` first, or give --runs-dir")
    sides = _frameworks(results)
    variants, variant_notes = load_variants(target, runs_dir, names)
    judged = []
    for name, result in results.items():
        for verdict in result.verdicts:
            run = verdict.run
            if planted is not None:
                pub, mismatch = planted.get((name, run)), []
            else:
                pub, mismatch = result.published.get(run), result.published_mismatch.get(run) or []
            by_side = {s: result.groups[run][s] for s in sides if result.groups[run].get(s)}
            # the replay seed's runs are the write-up's own run again: judged against it, not pooled as a seed
            own = {s: r for s, runs in by_side.items() for r in runs if is_replay(target, r)}
            by_side = {s: [r for r in runs if r is not own.get(s)] for s, runs in by_side.items()}
            figures = {}
            if pub is not None and not mismatch:
                wanted = reproduction.published_figures(pub)
                figures = {s: reproduction.judge_published(run, s, runs, wanted, policy.level, policy.min_seeds)
                           for s, runs in by_side.items()}
            same_draws = [v for v in variants.get((name, run), [])
                          if any(v.semantic() == r.semantic() for r in own.values())]
            variant_notes += [f"{v.dir}: left out of the band (its settings differ from the replay's beyond "
                              f"arithmetic)" for v in variants.get((name, run), []) if v not in same_draws]
            judged.append(RunJudgement(name, run, pub, mismatch, by_side, figures,
                                       [c for c in verdict.checks if c.kind != "published"], own, same_draws))
    out = Reproduction(target, runs_dir, runs_dir / f"reproduce-{target.name}", policy, names, results, judged,
                       [], sides, planted_name, variant_notes=variant_notes)
    if out.has_replay:
        judge_replays(out)
    if planted is not None:  # rows of sweeps left out by --sweeps or not run yet are said as such elsewhere
        ran = {(j.sweep, j.run) for j in judged}
        out.unmatched = [f"{sweep}/{run}" for sweep, run in planted if (sweep, run) not in ran
                         and (sweep in results or sweep not in target.sweeps)]
    out.claims = [judge_claim(out, claim) for claim in target.claims if claim.sweep in names]
    out.verdicts = {side: side_verdict(out, side) for side in sides}
    return out


def is_replay(target: Target, run: RunFiles) -> bool:
    """A run of the write-up's own seed with its generator's draws (the sweeps' rng scheme)."""
    return (target.replay_seed is not None and run.seed == target.replay_seed and run.mode == "lockstep"
            and run.config.get("rng") == "julia")


def load_variants(target: Target, runs_dir: Path, names: list[str]) -> tuple[dict, list[str]]:
    """{(sweep, run): the replay seed's runs of the target's variant sweeps}, and notes on damaged ones."""
    out, damaged = {}, []
    for name in names:
        for variant, _ in target.replay_variants:
            found: list[Damaged] = []
            for run in load_sweep_dir(runs_dir / target.variant_sweep(name, variant), found):
                if is_replay(target, run):
                    out.setdefault((name, run.run), []).append(run)
            damaged += [f"{d.dir}: damaged, left out of the band: {d.message}" for d in found]
    return out, damaged


def judge_replays(rep: Reproduction) -> None:
    """The band from every same-seed pair, then each replay against its published figures and each
    replay seed among the other seeds; the replay verdict per framework."""
    rep.band = replays.estimate_band([list(j.replays.values()) + j.variants for j in rep.judged],
                                     reproduction.FIGURE_METRICS, k=rep.policy.replay_k)
    for j in rep.judged:
        if not j.applies:
            continue
        wanted = reproduction.published_figures(j.pub)
        for side in j.sides:
            replay = j.replays.get(side)
            j.replay[side] = replays.judge_replay(replay, wanted, rep.band)
            if replay is not None:
                epochs = sorted(int(e) for e in replay.log.index)
                found = [replays.standing(replay, j.sides[side], "test_acc", e, rep.policy.level,
                                          rep.policy.min_seeds) for e in epochs]
                j.standings[side] = [s for s in found if s is not None]
    rep.replay_verdicts = {side: replay_side_verdict(rep, side) for side in rep.sides}


def replay_side_verdict(rep: Reproduction, side: str) -> tuple[str, list[str]]:
    """(verdict, reasons) of one framework's replay: its headline figures decide."""
    states, reasons = set(), []
    for j in rep.judged:
        if not j.applies:
            continue
        f = j.replay_headline(side)
        if f is None:
            states.add(INCONCLUSIVE)
            reasons.append(f"{j.label}: no replay run (seed {rep.target.replay_seed}) in {BACKEND_NAMES[side]}")
            continue
        states.add(f.verdict)
        if f.verdict != REPLAYED:
            reasons.append(f"{j.label}, final test accuracy (epoch {f.epoch}): {f.verdict}: "
                           + (f"published {fmt(f.figure.value, 4)}, replay {fmt(f.value, 4)} ({f.why})"
                              if f.value is not None else f.why))
    if not states:
        return INCONCLUSIVE, ["no published figures to replay"]
    return next(s for s in (NOT_REPLAYED, INCONCLUSIVE, REPLAYED) if s in states), reasons


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
                       f"gives enough (finished runs are skipped)")
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


def replay_side_line(rep: Reproduction, side: str) -> str:
    """'PyTorch: replayed (11 headline figures: 11 replayed; every figure: 430 replayed, 10 not replayed)'."""
    name = BACKEND_NAMES[side]
    if side not in rep.sides:
        other = BACKEND_NAMES[next(s for s in SIDES if s != side)]
        why = " (Julia not set up)" if side == "flux" else ""
        return f"{name}: not run{why}: the replay is {other}'s alone"
    heads = [j.replay_headline(side).verdict for j in rep.judged if j.replay_headline(side) is not None]
    every = [f.verdict for j in rep.judged for f in j.replay.get(side, [])]

    def counts(verdicts):
        return ", ".join(f"{verdicts.count(v)} {v}" for v in (REPLAYED, NOT_REPLAYED, INCONCLUSIVE)
                         if verdicts.count(v))
    return (f"{name}: {rep.replay_verdicts[side][0]} ({len(heads)} headline figure{'s' if len(heads) != 1 else ''}: "
            f"{counts(heads) or 'none'}; "
            f"every published figure: {counts(every) or 'none'})")


def standing_line(rep: Reproduction, side: str) -> str:
    """'PyTorch: typical in 9 of 11 runs, lucky in 2 (baseline z +2.3, rank 1 of 5; ...)'."""
    found = [(j, j.final_standing(side)) for j in rep.judged if j.final_standing(side) is not None]
    if not found:
        return f"{BACKEND_NAMES[side]}: no replay run to place"
    verdicts = [s.verdict for _, s in found]
    counts = ", ".join(f"{verdicts.count(v)} {v}" if i else f"{v} in {verdicts.count(v)} of {len(found)} runs"
                       for i, v in enumerate(v for v in (replays.TYPICAL, replays.LUCKY, replays.UNLUCKY, INCONCLUSIVE)
                                             if verdicts.count(v)))
    unusual = [f"{j.label} z {s.z:+.1f}, rank {s.rank} of {s.of}" for j, s in found
               if s.verdict in (replays.LUCKY, replays.UNLUCKY) and s.z is not None]
    others = sorted({r.seed for j, _ in found for r in j.sides.get(side, [])})
    return (f"{BACKEND_NAMES[side]} (seeds {','.join(map(str, others)) or 'none'} beside it): {counts}"
            + (f" ({'; '.join(unusual)})" if unusual else ""))


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
    replayed = sorted({r.seed for j in rep.judged for r in j.replays.values()})
    modes = sorted({r.mode for r in runs})
    devices = sorted({str(r.meta.get("device")) for r in runs})
    same = {
        "julia": f"no: Julia {version('julia')} here" if flux else "no: Flux was not run here (Julia not set up)",
        "flux": f"no: Flux {version('Flux')} here" if flux else "no: not run; PyTorch only",
        "data": "yes" if full else f"no: {', '.join(data)} images (train / test)",
        "protocol": ("taken as given (--published)" if rep.planted else
                     "yes" if not mismatches else "no: " + "; ".join(mismatches)),
        "draws": (f"yes: seed {replayed[0]} replays the write-up's draws; seeds {', '.join(map(str, seeds)) or 'none'} "
                  f"are other draws of its scheme" if replayed else
                  f"the scheme yes, the draws no: seeds {', '.join(map(str, seeds))} ({', '.join(modes)} mode) "
                  f"instead of the write-up's one draw"),
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
            for side, replay in j.replays.items():
                if metric in replay.log:
                    ax.plot(replay.log.index, replay.log[metric], "--", color=plots.SIDE_COLOURS.get(side),
                            label=f"{BACKEND_NAMES.get(side, side)} replay (seed {rep.target.replay_seed})")
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
    title = f"{sweep}: our seeds per epoch (line: mean, dark: ± sd, light: min–max), published: black" + (
        f", dashed: the replay of the post's own run (seed {rep.target.replay_seed})" if rep.has_replay else "")
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


def csv_text(header: list[str], rows) -> str:
    """A CSV document; None is an empty cell, a float its repr (every digit)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([("" if v is None else repr(v) if isinstance(v, float) else v) for v in row] for row in rows)
    return out.getvalue()


def figures_csv(rep: Reproduction) -> str:
    return csv_text(FIGURE_COLUMNS, (
        [j.sweep, j.run, side, f.metric, f.epoch, f.headline, f.published, f.sample.n]
        + [None if v is None else float(v) for v in (f.sample.mean, f.sample.sd, f.sample.min, f.sample.max,
                                                     *(f.interval or (None, None)), f.z)]
        + [f.verdict, f.why]
        for j in rep.judged for side, figures in j.figures.items() for f in figures))


REPLAY_CLASS = {REPLAYED: "pass", NOT_REPLAYED: "fail", INCONCLUSIVE: "inconclusive"}
REPLAY_COLUMNS = ["sweep", "run", "framework", "metric", "epoch", "headline", "published", "replay", "difference",
                  "band", "verdict", "why"]


def replay_csv(rep: Reproduction) -> str:
    """Every published figure beside each framework's replay of it."""
    return csv_text(REPLAY_COLUMNS, (
        [j.sweep, j.run, side, f.figure.metric, f.epoch, f.figure.headline, f.figure.value]
        + [None if v is None else float(v) for v in (f.value, f.difference, f.band)] + [f.verdict, f.why]
        for j in rep.judged for side, figures in j.replay.items() for f in figures))


def seeds_side(rep: Reproduction) -> str:
    """The framework whose other seeds the replay tables show: PyTorch where it ran."""
    return "torch" if "torch" in rep.sides else rep.sides[0]


def replay_final_rows(rep: Reproduction) -> tuple[list[str], list[list[str]]]:
    """A row per run at its final epoch: published, each replay, the band, the other seeds, the seed's rank."""
    seed, side = rep.target.replay_seed, seeds_side(rep)
    header = (["run", "epoch", "published test acc"] + [f"{BACKEND_NAMES[s]} replay" for s in SIDES]
              + ["band ±", "verdict (Flux / PyTorch)", f"{BACKEND_NAMES[side]} other seeds: mean ± sd (n)",
                 f"seed {seed}: z, rank ({BACKEND_NAMES[side]})"])
    rows = []
    for j in rep.judged:
        heads = {s: j.replay_headline(s) for s in SIDES}
        head = next((f for f in heads.values() if f is not None), None)
        if head is None:
            continue
        st = j.final_standing(side)
        rows.append([j.label, str(head.epoch), fmt(head.figure.value, 4)]
                    + [fmt(heads[s].value, 4) if heads[s] is not None and heads[s].value is not None else
                       ("not run" if s not in rep.sides else "–") for s in SIDES]
                    + [fmt(head.band, 3) if head.band is not None else "–",
                       " / ".join(heads[s].verdict if heads[s] else "–" for s in SIDES),
                       f"{st.others.mean:.2f} ± {st.others.sd:.2f} (n={st.others.n})" if st and st.others.n > 1
                       else "–",
                       f"{st.z:+.1f}, {st.rank} of {st.of}" if st and st.z is not None and math.isfinite(st.z)
                       else (f"rank {st.rank} of {st.of}" if st else "–")])
    return header, rows


def replay_epoch_rows(rep: Reproduction, j: RunJudgement) -> tuple[list[str], list[list[str]]]:
    """One run's test accuracy per epoch: published, each replay, the band, the other seeds, the seed's z."""
    side = seeds_side(rep)
    header = (["epoch", "published"] + [f"{BACKEND_NAMES[s]} replay" for s in SIDES]
              + ["band ±", f"{BACKEND_NAMES[side]} other seeds: mean ± sd", f"seed {rep.target.replay_seed}: z"])
    by_epoch = {s: {f.epoch: f for f in j.replay.get(s, []) if f.figure.metric == "test_acc"} for s in SIDES}
    standings = {st.epoch: st for st in j.standings.get(side, [])}
    epochs = sorted({e for cells in by_epoch.values() for e in cells if e is not None})
    rows = []
    for e in epochs:
        cells = {s: by_epoch[s].get(e) for s in SIDES}
        any_cell = next(c for c in cells.values() if c is not None)
        st = standings.get(e)
        mark = {REPLAYED: "", NOT_REPLAYED: " ✗", INCONCLUSIVE: " ?"}
        rows.append([str(e), fmt(any_cell.figure.value, 4)]
                    + [fmt(cells[s].value, 4) + mark[cells[s].verdict] if cells[s] and cells[s].value is not None
                       else "–" for s in SIDES]
                    + [fmt(any_cell.band, 3) if any_cell.band is not None else "–",
                       f"{st.others.mean:.2f} ± {st.others.sd:.2f}" if st and st.others.n > 1 else "–",
                       f"{st.z:+.1f}" if st and st.z is not None and math.isfinite(st.z) else "–"])
    return header, rows


def band_rows(band: Band) -> tuple[list[str], list[list[str]]]:
    metrics = [m for m in ("test_acc", "test_loss", "train_acc", "train_loss") if any(k[0] == m for k in band.widths)]
    epochs = sorted({e for _, e in band.widths})
    header = ["epoch"] + [f"{m.replace('_', ' ')} ± (pairs)" for m in metrics]
    rows = [[str(e)] + [f"{band.widths[(m, e)]:.4g} ({band.counts[(m, e)]})" if (m, e) in band.widths else "–"
                        for m in metrics] for e in epochs]
    return header, rows


def replay_blocks(rep: Reproduction) -> list[tuple]:
    seed = rep.target.replay_seed
    blocks: list[tuple] = [("h2", f"The post's own runs, replayed (seed {seed})")]
    blocks.append(("p", f"The post drew everything random from one Julia MersenneTwister seeded with {seed}: the "
                        f"initial weights, then the batch order. Our runs of seed {seed} use the same draws "
                        f"(computed in Python, handed to both frameworks), so they are the post's runs again, "
                        f"differing only in arithmetic. Each published figure is set beside them; the band is how "
                        f"far same-seed runs lie apart when only their arithmetic differs. Every figure with its "
                        f"verdict: `{rep.files['replay'].name}`."))
    if "flux" not in rep.sides:
        blocks.append(("p", "Flux was not run here (Julia not set up): the replay below is PyTorch's alone."))
    blocks.append(("ul", replays.rule_lines(rep.policy.replay_k, rep.policy.level, rep.policy.min_seeds, seed)
                   + [rep.band.describe() + "."] + rep.variant_notes))
    blocks.append(("h3", "Every run at its final epoch"))
    blocks.append(("table", *replay_final_rows(rep)))
    header, rows = band_rows(rep.band)
    blocks.append(("h3", "The band per epoch"))
    blocks.append(("p", "Half-width of the band per figure and epoch, with the number of same-seed differences "
                        "behind it:" if rows else "No same-seed pair was run, so there is no band: every replay "
                                                  "figure is inconclusive."))
    if rows:
        blocks.append(("table", header, rows))
    blocks.append(("h3", "Test accuracy per epoch, run by run"))
    blocks.append(("p", "✗ outside the band, ? inconclusive; the other seeds are the same scheme's other draws."))
    tables = [(j.label, *replay_epoch_rows(rep, j)) for j in rep.judged]
    blocks.append(("tables", [t for t in tables if t[2]]))
    return blocks


def build_blocks(rep: Reproduction, plots: dict[str, dict[str, Path]]) -> list[tuple]:
    target = rep.target
    blocks: list[tuple] = [("h1", f"Reproduction: {target.title}")]
    source = f"judged against `{rep.planted}` (--published), taken to apply to these runs" if rep.planted else \
        "judged against the published figures shipped in fluxlenet/reference"
    blocks.append(("p", f"`python -m fluxlenet reproduce {target.name}`: runs from `{rep.runs_dir}`, {source}; "
                        f"report written {time.strftime('%Y-%m-%d %H:%M')}."))
    if rep.has_replay:
        seed = target.replay_seed
        blocks.append(("verdict", REPLAY_CLASS[rep.replay_verdict],
                       f"Do the post's own runs replay (seed {seed}, its draws)? {rep.replay_verdict}{rep.scope}"))
        blocks.append(("ul", [replay_side_line(rep, side) + (": " + "; ".join(reasons) if reasons else ".")
                              for side in SIDES for reasons in [rep.replay_verdicts.get(side, (None, []))[1]]]))
        blocks.append(("p", f"Is seed {seed} a typical draw? " + "; ".join(
            standing_line(rep, side) for side in SIDES if side in rep.sides) + "."))
    question = ("Do the published figures lie in our other seeds' spread (a question about the seeds' "
                "distribution, not about the post's own run)?" if rep.has_replay else "Reproduced?")
    blocks.append(("verdict", VERDICT_CLASS[rep.verdict], f"{question} {rep.verdict}{rep.scope}"))
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
        "Exit code: " + ("by the replay: 0 replayed, 1 not replayed, 4 inconclusive." if rep.has_replay else
                         "0 reproduced, 1 not reproduced, 4 inconclusive.")]))

    if rep.has_replay:
        blocks += replay_blocks(rep)

    blocks.append(("h2", "What was run"))
    ran = [f"Left out with --sweeps: {', '.join(rep.left_out)}."] if rep.left_out else []
    for name in rep.sweeps:
        if name not in rep.results:
            ran.append(f"{name}: not run yet.")
            continue
        ran += [f"{name}: {line}" for line in summaries.what_ran(rep.results[name])
                if not (rep.planted and line.startswith("Published figures ("))]  # the shipped ones: not used
    if rep.unmatched:
        ran.append(next(n for n in rep.notes() if n.startswith("--published")) + ".")
    blocks.append(("ul", list(dict.fromkeys(ran))))

    blocks.append(("h2", "The write-up's tables"))
    replay_note = (f" Seed {target.replay_seed} is not among them: it is the post's own run again, set beside the "
                   f"published figures above." if rep.has_replay else "")
    blocks.append(("p", "Final test accuracy (the last epoch) and seconds per epoch (each run's median epoch) per "
                        "setting: mean ± sd (min–max, n seeds); ★ the best setting of each column; the verdict is the "
                        "final test accuracy's." + replay_note))
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
    if rep.has_replay:
        rep.files["replay"] = folder / "replay.csv"
    plots = {}
    for name in rep.results:
        plots[name] = {"performance comparison": plot_comparison(rep, name, "accuracy",
                                                                 folder / f"performance-{name}.png"),
                       "training time comparison": plot_comparison(rep, name, "time", folder / f"time-{name}.png"),
                       "band": plot_bands(rep, name, folder / f"band-{name}.png")}
    blocks = build_blocks(rep, plots)
    atomic_write_text(rep.files["figures"], figures_csv(rep))
    if rep.has_replay:
        atomic_write_text(rep.files["replay"], replay_csv(rep))
    atomic_write_text(rep.files["markdown"], render.to_markdown(blocks, folder))
    atomic_write_text(rep.files["html"], render.to_html(blocks, f"Reproduction: {target.title}"))
    return rep


__all__ = ["INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED", "Reproduction", "judge", "load_published_file",
           "write_report"]
