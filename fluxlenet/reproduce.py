"""Did a write-up reproduce? Judge a target's runs (fluxlenet.targets) against its published figures.

`python -m fluxlenet reproduce TARGET` runs the target's sweeps with seeds (fluxlenet.cli), then
`judge` gives a `Reproduction`: a verdict per published figure, per conclusion and per framework, and the
lines the terminal prints. fluxlenet.reproduce_report writes it into a report; the statistics behind the
verdicts are parity.reproduction and parity.replay.

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

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from parity import published as published_figures
from parity import reproduction
from parity.compare import BACKEND_NAMES, Check, SweepResult, fmt
from parity.policy import Policy
from parity import replay as replays
from parity.replay import NOT_REPLAYED, REPLAYED, Band, ReplayFigure, Standing
from parity.reproduction import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, ClaimVerdict,
                                 FigureVerdict, Sample)

from .config import ConfigError, rerun_options
from .runs import Damaged, RunFiles, compare_sweep, load_sweep_dir
from .targets import Claim, Target

SIDES = ("flux", "torch")
BLOG_COLUMNS = {"train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds"}
GAP_METRICS = ("test_acc", "test_loss")


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


def seconds_sample(runs: list[RunFiles]) -> Sample:
    return reproduction.sample_of({r.seed: r.seconds_per_epoch() for r in runs if r.seconds_per_epoch() is not None})


__all__ = ["INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED", "Reproduction", "judge", "load_published_file"]
