"""The report of a reproduction: its tables, figures.csv and replay.csv, and the document built from them.

`write_report` judges a target's runs (fluxlenet.reproduce) and writes into `<runs dir>/reproduce-<target>/`:

    report.md, report.html    the verdicts, the replay of the write-up's own runs, the write-up's tables
                              (Flux | PyTorch | published, with the seed spread), its charts, a verdict per
                              published figure and per conclusion, where a gap lies
    replay.csv                every published figure beside each framework's replay, the band, the verdict
    figures.csv               every published figure: our seeds' mean, sd, min, max, the interval, the verdict
    performance-<sweep>.png   final test accuracy per setting (the post's "performance comparison")
    time-<sweep>.png          seconds per epoch per setting (its "training time comparison")
    band-<sweep>.png          test accuracy and loss per epoch: our seeds' mean +- sd and min-max, the
                              replays, the published line
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import numpy as np

from parity import reproduction
from parity.compare import BACKEND_NAMES, fmt
from parity.policy import Policy
from parity import replay as replays
from parity.replay import NOT_REPLAYED, REPLAYED, Band
from parity.reproduction import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Sample

from . import render, summaries
from .fsutil import atomic_write_text
from .plots import plot_bands, plot_comparison
from .reproduce import (GAP_METRICS, SIDES, Reproduction, RunJudgement, judge, load_published_file, replay_side_line,
                        seconds_sample, side_line, standing_line)
from .targets import Target

VERDICT_CLASS = {REPRODUCED: "pass", NOT_REPRODUCED: "fail", INCONCLUSIVE: "inconclusive"}


# -- tables ----------------------------------------------------------------------------------

def spread(sample: Sample, digits: int) -> str:
    """mean ± sd (min–max, n) of a sample."""
    if not sample.n:
        return "–"
    if sample.n == 1:
        return f"{sample.mean:.{digits}f} (n=1)"
    return f"{sample.mean:.{digits}f} ± {sample.sd:.{digits}f} ({sample.min:.{digits}f}–{sample.max:.{digits}f}, " \
           f"n={sample.n})"


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


__all__ = ["build_blocks", "figures_csv", "replay_csv", "write_report"]
