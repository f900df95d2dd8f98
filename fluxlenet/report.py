"""Side-by-side report of a sweep: Flux, PyTorch and the published figures.

`python -m fluxlenet report SWEEP` writes into the sweep's run folder (`runs/<sweep>/`):

    report.md                 tables and notes, the plots linked beside it
    report.html               the same, self-contained (plots embedded as data URIs): opens from disk
    test-accuracy.png         test accuracy per epoch, one panel per swept value
    test-loss.png             test loss per epoch, one panel per swept value
    framework-difference.png  Flux - PyTorch per epoch with the tolerance band (and each - published)
    final-accuracy.png        final test accuracy per swept value, seed spread when there are several seeds
    step-trace.png            the first K step losses and their relative difference (runs with --trace-steps)

The report is built once as a list of blocks (heading, paragraph, list, table, image) and
written twice, as Markdown and as HTML.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import time
import warnings
from pathlib import Path

import numpy as np

from parity import compare_sweep
from parity.compare import BACKEND_NAMES, PUBLISHED_WORDS, SweepResult, fmt, seed_stats
from parity.policy import Policy

from . import optim_spec
from .config import ConfigError
from .fsutil import atomic_path, atomic_write_text, check_writable

SIDE_COLOURS = {"flux": "#9558b2", "torch": "#ee4c2c"}   # Julia purple, PyTorch orange
PUBLISHED_COLOUR = "black"
SWEEP_KEYS = ("model", "optimizer", "eta", "lambda_", "rho", "batchsize", "epochs", "steps", "warmup_epochs",
              "milestones", "gamma", "dataset", "train_size", "test_size", "valid_size", "mode", "precision")
USER_NAMES = {"lambda_": "lambda", "rho": "momentum"}
STATUS_WORDS = {"pass": "pass", "fail": "FAIL", "incomplete": "incomplete", "not compared": "not compared",
                "n/a": "n/a", "inconclusive": "inconclusive"}


# -- building blocks ------------------------------------------------------------------------

def side_name(side: str) -> str:
    return BACKEND_NAMES.get(side, side)


def swept_keys(result: SweepResult) -> list[str]:
    """The settings that differ between the runs of the sweep (what the sweep varies)."""
    configs = [c.to_dict() for c in result.sweep.runs] if result.sweep else \
        [runs[0].config for sides in result.groups.values() for runs in sides.values()]
    return [k for k in SWEEP_KEYS if len({json.dumps(c.get(k)) for c in configs}) > 1]


def final_figures(runs) -> dict:
    """Mean (and sd, n) over seeds of each seed's last logged figures, and its seconds per epoch."""
    out = {"n": len(runs)}
    for metric in ("test_acc", "test_loss", "valid_acc", "valid_loss"):
        values = [float(r.log[metric].iloc[-1]) for r in runs if len(r.log) and metric in r.log
                  and r.log[metric].notna().any()]
        if values:
            out[metric] = float(np.mean(values))
            out[metric + "_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    seconds = [s for s in (r.seconds_per_epoch() for r in runs) if s is not None]
    out["seconds"] = float(np.median(seconds)) if seconds else None
    out["epochs"] = max((int(r.log.index.max()) for r in runs if len(r.log)), default=None)
    return out


def with_sd(figures: dict, metric: str, digits: int) -> str:
    value = figures.get(metric)
    if value is None:
        return "–"
    sd = figures.get(metric + "_sd")
    return f"{value:.{digits}f} ± {sd:.{digits}f} (n={figures['n']})" if sd is not None else f"{value:.{digits}f}"


def signed(a: float | None, b: float | None, digits: int) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return "–"
    return f"{a - b:+.{digits}f}"


def summary_rows(result: SweepResult, sides: list[str]) -> tuple[list[str], list[list[str]]]:
    """One row per swept value: final test accuracy and loss per side and published, differences, verdict, speed."""
    keys = swept_keys(result)
    key_label = ", ".join(USER_NAMES.get(k, k) for k in keys) or "run"
    has_valid = any("valid_acc" in r.log and r.log["valid_acc"].notna().any() for r in result.runs)
    names = [side_name(s) for s in sides]
    pair = len(sides) == 2
    header = [f"value ({key_label})"] + [f"{n} test acc" for n in names] + ["published test acc"]
    header += [f"{names[0]} − {names[1]}"] if pair else []
    header += [f"− published ({' / '.join(names)})"]
    header += [f"{n} test loss" for n in names] + ["published test loss"]
    header += [f"{names[0]} − {names[1]} (loss)"] if pair else []
    header += [f"{n} valid acc" for n in names] if has_valid else []
    header += ["verdict", f"s/epoch ({' / '.join(names)} / published)"]
    rows = []
    for verdict in result.verdicts:
        run = verdict.run
        figs = {s: final_figures(result.groups[run][s]) if result.groups[run].get(s) else {} for s in sides}
        pub = result.published.get(run)
        applies = pub is not None and not result.published_mismatch.get(run)
        pub_acc = pub.final_value("test_acc") if applies else None
        pub_loss = pub.final_value("test_loss") if applies else None
        pub_text = "n/a" if pub is not None and not applies else "–"

        def cell(side, metric, digits):
            return with_sd(figs[side], metric, digits) if figs[side] else "not run"
        row = [run] + [cell(s, "test_acc", 2) for s in sides]
        row.append(f"{pub_acc:.2f}" if pub_acc is not None else pub_text)
        row += [signed(figs[sides[0]].get("test_acc"), figs[sides[1]].get("test_acc"), 2)] if pair else []
        row.append(" / ".join(signed(figs[s].get("test_acc"), pub_acc, 2) for s in sides))
        row += [cell(s, "test_loss", 4) for s in sides]
        row.append(f"{pub_loss:.4f}" if pub_loss is not None else pub_text)
        row += [signed(figs[sides[0]].get("test_loss"), figs[sides[1]].get("test_loss"), 4)] if pair else []
        row += [cell(s, "valid_acc", 2) for s in sides] if has_valid else []
        row.append(STATUS_WORDS[verdict.status])
        speeds = [fmt(figs[s].get("seconds"), 3) if figs[s] else "–" for s in sides]
        speeds.append(fmt(pub.seconds_per_epoch, 3) if applies and pub.seconds_per_epoch else pub_text)
        row.append(" / ".join(speeds))
        rows.append(row)
    return header, rows


def _figure(x: float | None, digits: int) -> str:
    return "NaN" if x is not None and math.isnan(x) else fmt(x, digits)


def check_rows(result: SweepResult) -> tuple[list[str], list[list[str]]]:
    header = ["run", "seeds", "compared", "policy", "epochs", "max |d| test acc", "max |d| test loss",
              "steps traced", "verdict", "first break / note"]
    rows = []
    for check in result.checks():
        epochs = "–" if check.diffs is None else f"{int(check.diffs.index.min())}–{int(check.diffs.index.max())}"
        acc, loss = check.max_abs("test_acc"), check.max_abs("test_loss")
        why = "; ".join(check.messages()) or "; ".join(check.notes)
        rows.append([check.run, ",".join(map(str, check.seeds)), f"{side_name(check.a)} vs {side_name(check.b)}",
                     check.kind or "–", epochs, _figure(acc, 3), _figure(loss, 3),
                     "–" if check.steps is None else str(len(check.steps)),
                     PUBLISHED_WORDS[check.status] if check.kind == "published" else STATUS_WORDS[check.status], why])
    return header, rows


def environment_rows(result: SweepResult) -> tuple[list[str], list[list[str]]]:
    header = ["side", "versions", "device", "precision / mode", "python", "platform", "git commit"]
    rows = []
    for side in result.sides:
        runs = [r for sides in result.groups.values() for r in sides.get(side, [])]
        if not runs:
            rows.append([side_name(side), "not run"] + ["–"] * (len(header) - 2))
            continue

        def distinct(values):
            return ", ".join(sorted({str(v) for v in values if v not in (None, "")})) or "–"
        versions = distinct(", ".join(f"{k} {v}" for k, v in sorted(r.meta.get("versions", {}).items()))
                            for r in runs)
        rows.append([side_name(side), versions, distinct(r.meta.get("device") for r in runs),
                     distinct(f"{r.precision} / {r.mode}" for r in runs), distinct(r.meta.get("python") for r in runs),
                     distinct(r.meta.get("platform") for r in runs),
                     distinct((r.meta.get("git_commit") or "")[:12] for r in runs)])
    return header, rows


def what_ran(result: SweepResult) -> list[str]:
    """Plain sentences: what ran on which data, what did not run, what does not apply."""
    lines = []
    for side in result.sides:
        runs = [r for sides in result.groups.values() for r in sides.get(side, [])]
        if not runs:
            continue  # said in result.notes
        cfg = runs[0].config
        seeds = sorted({r.seed for r in runs})
        done = sum(r.finished for r in runs)
        data = f"{cfg.get('dataset')}, {runs[0].samples('train') or cfg.get('train_size') or 'all'} training / " \
               f"{runs[0].samples('test') or cfg.get('test_size') or 'all'} test samples"
        if runs[0].samples("valid"):
            data += f" / {runs[0].samples('valid')} validation"
        lines.append(f"{side_name(side)}: {len(runs)} run folders ({done} finished), seed"
                     f"{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}; {data}; "
                     f"{cfg.get('precision')}, {cfg.get('mode')} mode.")
        unfinished = [r for r in runs if not r.finished]
        for r in unfinished:
            reason = r.status.get("reason") or ""
            lines.append(f"{side_name(side)} {r.run} seed {r.seed}: {r.status.get('status', 'new')}"
                         + (f" ({reason})" if reason else "") + ".")
    for note in result.notes:
        lines.append(note if note.endswith(".") else note + ".")
    budgets = sorted({r.config.get("steps") for r in result.runs if r.config.get("steps")})
    for steps in budgets:
        r = next(r for r in result.runs if r.config.get("steps") == steps)
        per_epoch = math.ceil((r.samples("train") or 1) / int(r.config.get("batchsize", 1)))
        lines.append(f"These runs used a budget of {steps} optimiser steps (steps = {steps}), not whole epochs: "
                     f"{per_epoch} steps make an epoch here, so the last reported epoch "
                     f"({math.ceil(steps / per_epoch)}) is where the budget ran out; the final figures are "
                     f"those after {steps} steps.")
    return lines


def published_notes(result: SweepResult) -> list[str]:
    """Where the published figures are explained by a semantic detail, and what each optimiser means here."""
    lines = []
    for run, pub in result.published.items():
        if pub is None:
            continue
        for note in dict.fromkeys(pub.notes):
            lines.append(f"{run}: {note}")
    optimisers = sorted({r.config.get("optimizer") for r in result.runs if r.config.get("optimizer")})
    for name in optimisers:
        if name in ("AdamW", "AdaBelief"):
            lines.append(f"optimiser `{name}`: {optim_spec.OPTIMISERS.get(name, '')}")
    twins = [n for pub in result.published.values() if pub is not None for n in pub.notes if "optimizer/ADAMW" in n]
    if twins or any(r.config.get("optimizer") == "ADAMW_flux012" for r in result.runs):
        lines.append("The post's ADAMW log equals its L2 = 1e-6 log because Flux 0.12's `ADAMW(eta, beta, decay=0)` "
                     "had no decay by default: with `WeightDecay(1e-6)` before it, it is `ADAM` with L2 = 1e-6. "
                     "This project runs it as `ADAMW_flux012` to reproduce that; the current `AdamW` has a decay.")
    if any(r.config.get("optimizer") == "AdaBelief_flux012" for r in result.runs):
        lines.append("The post's AdaBelief is Flux 0.12's: no bias correction and no epsilon inside s "
                     "(`AdaBelief_flux012`); the current Optimisers.jl `AdaBelief` differs in its first steps.")
    return lines


# -- plots --------------------------------------------------------------------------------

def _grid(n: int, width: float = 3.8, height: float = 3.0, cols: int = 4):
    """A figure with one panel per run, at most `cols` a row."""
    import matplotlib.pyplot as plt
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, axes


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _curve(ax, runs, metric: str, colour: str, label: str, style: str = "-") -> None:
    runs = [r for r in runs if metric in r.log and r.log[metric].notna().any()]
    if not runs:
        return
    if len(runs) == 1:
        series = runs[0].log[metric].astype(float)
        ax.plot(series.index, series.to_numpy(), style, color=colour, marker="o", markersize=3, label=label)
        return
    mean, sd, n = seed_stats(runs)
    ax.plot(mean.index, mean[metric], style, color=colour, marker="o", markersize=3, label=f"{label} (mean of {n})")
    ax.fill_between(mean.index, mean[metric] - sd[metric], mean[metric] + sd[metric], color=colour, alpha=0.2)


def _zoom_on_training(ax, sides: dict, metrics: list[str], pub) -> bool:
    """Accuracy axes span the trained epochs, so that the initial weights' ~10% does not flatten the
    curves near 99%. Returns whether it zoomed (epoch 0 is then below the axis)."""
    logs = [r.log for runs in sides.values() for r in runs if len(r.log)]
    if not logs or max(int(log.index.max()) for log in logs) < 3:
        return False
    values = [v for log in logs for m in metrics if m in log for v in log.loc[log.index >= 1, m].dropna()]
    if pub is not None and pub.epochs is not None:
        values += list(pub.epochs.test_acc[pub.epochs.index >= 1])
    start = [v for log in logs for m in metrics if m in log and 0 in log.index for v in log.loc[[0], m].dropna()]
    low, high = min(values), max(values)
    if not start or low - min(start) < 2 * (high - low):
        return False  # still far from saturation: the whole range says more
    pad = max(0.1, 0.08 * (high - low))
    ax.set_ylim(low - pad, min(100.0, high + pad) + pad / 2)
    return True


def log_scale_if_positive(ax) -> None:
    """Losses on a log scale: from 2.3 at the initial weights down to a few hundredths, which a linear
    axis flattens onto zero."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):   # 0.05 and 2.3, not 5 x 10^-2 and 2.3 x 10^0
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"
    if ax.dataLim.y0 > 0:   # the data, not the view limits (their margin can reach below zero)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
        ax.set_ylabel(ax.get_ylabel() + " (log scale)")


def plot_curves(result: SweepResult, split_metric: str, title: str, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator
    runs = list(result.groups)
    fig, axes = _grid(len(runs))
    valid_metric = split_metric.replace("test", "valid")
    budget = any(r.config.get("steps") for r in result.runs)
    for ax, run in zip(axes.flat, runs):
        for side in result.sides:
            side_runs = result.groups[run].get(side, [])
            colour = SIDE_COLOURS.get(side.split(" ")[0], None)
            _curve(ax, side_runs, split_metric, colour, side_name(side))
            _curve(ax, side_runs, valid_metric, colour, f"{side_name(side)} valid", "--")
        pub = result.published.get(run)
        applies = pub is not None and not result.published_mismatch.get(run)
        if applies:
            if pub.epochs is not None and split_metric in pub.epochs:
                ref = pub.epochs[split_metric]
                ax.plot(ref.index, ref.to_numpy(), ":", color=PUBLISHED_COLOUR, marker="s", markersize=3,
                        label="published")
            elif split_metric in pub.final:
                value, epoch = pub.final[split_metric]
                last = max((int(r.log.index.max()) for s in result.groups[run].values() for r in s if len(r.log)),
                           default=0)
                ax.plot([epoch if epoch is not None else last], [value], "*", color=PUBLISHED_COLOUR, markersize=12,
                        label="published (final)")
        for side in result.sides:
            if not any(side in sides for sides in result.groups.values()):
                ax.plot([], [], color=SIDE_COLOURS.get(side), label=f"{side_name(side)}: not run")
        if pub is not None and result.published_mismatch.get(run):
            ax.plot([], [], ":", color=PUBLISHED_COLOUR, label="published: does not apply")
        ax.set_title(f"{run}", fontsize=11)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (last cut short by the step budget)" if budget else "epoch")
        ax.set_ylabel(split_metric.replace("_", " ").replace("acc", "accuracy (%)"))
        if split_metric.endswith("loss"):
            log_scale_if_positive(ax)
        elif _zoom_on_training(ax, result.groups[run], [split_metric, valid_metric], pub if applies else None):
            ax.set_xlabel(ax.get_xlabel() + " (epoch 0 below the axis)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def plot_differences(result: SweepResult, path: Path) -> Path | None:
    """a - b per epoch for every check that has figures: the frameworks (with their band), and each - published."""
    checks = {run: [c for c in v.checks if c.diffs is not None] for run, v in
              ((v.run, v) for v in result.verdicts)}
    runs = [run for run, cs in checks.items() if cs]
    if not runs:
        return None
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    cols = min(4, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(3.8 * cols, 2.6 * 2 * rows), squeeze=False)
    for i, run in enumerate(runs):
        r, c = divmod(i, cols)
        for row, metric in ((2 * r, "test_acc"), (2 * r + 1, "test_loss")):
            ax = axes[row][c]
            banded = False
            for check in checks[run]:
                if metric not in check.diffs:
                    continue
                pair = check.b != "published"
                label = f"{side_name(check.a)} − {side_name(check.b)}"
                if len(check.seeds) == 1 and pair:
                    label += f" (seed {check.seeds[0]})"
                series = check.diffs[metric]
                ax.plot(series.index, series.to_numpy(), "-" if pair else "--", marker="o", markersize=3,
                        label=label, color=SIDE_COLOURS.get(check.a.split(" ")[0]) if not pair else None)
                if pair and not banded:
                    band = check.bands[metric].astype(float)
                    ax.fill_between(band.index, -band.to_numpy(), band.to_numpy(), color="grey", alpha=0.2,
                                    label=f"{check.kind} band")
                    banded = True
            ax.axhline(0, color="black", linewidth=0.6)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{run}: {metric.replace('_', ' ')}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    for r in range(2 * rows):
        for c in range(cols):
            if (r // 2) * cols + c >= len(runs):
                axes[r][c].axis("off")
    fig.suptitle("Differences per epoch (points of accuracy, loss)", fontsize=12)
    return _save(fig, path)


def plot_final_bars(result: SweepResult, path: Path) -> Path:
    import matplotlib.pyplot as plt
    runs = list(result.groups)
    columns = list(result.sides) + ["published"]
    width = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(runs) + 2), 4.2))
    values = []
    for j, column in enumerate(columns):
        for i, run in enumerate(runs):
            x = i + (j - (len(columns) - 1) / 2) * width
            if column == "published":
                pub = result.published.get(run)
                value = pub.final_value("test_acc") if pub and not result.published_mismatch.get(run) else None
                if value is not None:
                    ax.bar(x, value, width, color="lightgrey", edgecolor=PUBLISHED_COLOUR, hatch="//",
                           label="published" if "published" not in ax.get_legend_handles_labels()[1] else None)
                    ax.annotate(f"{value:.2f}", (x, value), ha="center", va="bottom", fontsize=7)
                    values.append(value)
                continue
            side_runs = [r for r in result.groups[run].get(column, []) if len(r.log)]
            finals = [float(r.log["test_acc"].iloc[-1]) for r in side_runs]
            if not finals:
                continue
            mean = float(np.mean(finals))
            sd = float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0
            name = side_name(column)
            ax.bar(x, mean, width, yerr=sd if len(finals) > 1 else None, capsize=3,
                   color=SIDE_COLOURS.get(column.split(" ")[0], "C0"),
                   label=name if name not in ax.get_legend_handles_labels()[1] else None)
            if len(finals) > 1:
                ax.plot([x] * len(finals), finals, "k.", markersize=4)
            ax.annotate(f"{mean:.2f}", (x, mean + sd), ha="center", va="bottom", fontsize=7)
            values += [mean - sd, mean + sd] + finals
    ylabel = "final test accuracy (%)"
    if values:
        low, high = min(values), max(values)
        pad = max(0.5, 0.15 * (high - low))
        if high - low < 10:  # close figures (near 99%): zoom in, and say that the axis does not start at 0
            ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad) + 0.1 * pad)
            ylabel += ", axis cut"
        else:
            ax.set_ylim(0, min(100.0, high + pad) + 0.1 * pad)
    for side in result.sides:
        if not any(side in sides for sides in result.groups.values()):
            ax.bar([0], [0], 0, color=SIDE_COLOURS.get(side), label=f"{side_name(side)}: not run")
    if any(result.published_mismatch.get(run) for run in runs):
        ax.bar([0], [0], 0, color="lightgrey", edgecolor=PUBLISHED_COLOUR, hatch="//", label="published: does not apply")
    ax.set_xticks(range(len(runs)), runs)
    ax.set_ylabel(ylabel)
    seeds = max((len(s) for sides in result.groups.values() for s in sides.values()), default=1)
    ax.set_title("Final test accuracy" + (" (mean, bars: sd over seeds, dots: seeds)" if seeds > 1 else ""),
                 fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_traces(result: SweepResult, path: Path) -> Path | None:
    traced = {run: [r for s in sides.values() for r in s if r.trace is not None] for run, sides in result.groups.items()}
    runs = [run for run, rs in traced.items() if rs]
    if not runs:
        return None
    import matplotlib.pyplot as plt
    pairs = {v.run: [c for c in v.checks if c.steps is not None] for v in result.verdicts}
    has_pairs = any(pairs.get(run) for run in runs)
    cols = min(4, len(runs))
    fig, axes = plt.subplots(2 if has_pairs else 1, cols, figsize=(3.8 * cols, 3.0 * (2 if has_pairs else 1)),
                             squeeze=False)
    for i, run in enumerate(runs[:cols]):
        ax = axes[0][i]
        for r in traced[run]:
            label = f"{side_name(r.backend)} seed {r.seed}"
            ax.plot(r.trace.index, r.trace.loss.to_numpy(), "-", color=SIDE_COLOURS.get(r.backend), label=label,
                    linewidth=1)
        ax.set_title(f"{run}: loss per step", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if has_pairs:
            ax = axes[1][i]
            for check in pairs.get(run, []):
                rel = check.steps.rel.clip(lower=1e-17)
                ax.semilogy(check.steps.index, rel.to_numpy(), label=f"seed {check.seeds[0]}: relative |d| loss")
                band = check.steps.band.astype(float)
                ax.semilogy(band.index, band.to_numpy(), "k--", linewidth=0.8, label=f"{check.kind} band")
            ax.set_title(f"{run}: relative difference", fontsize=10)
            ax.set_ylabel("relative |d| (0 drawn at 1e-17)", fontsize=8)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    if len(runs) > cols:
        fig.suptitle(f"Step traces (first {cols} of {len(runs)} runs)", fontsize=11)
    return _save(fig, path)


def make_plots(result: SweepResult, folder: Path) -> dict[str, Path]:
    import matplotlib
    matplotlib.use("Agg")
    with warnings.catch_warnings():
        # a run name in a script the font lacks (CJK, say) is drawn as boxes; matplotlib would also
        # print a warning with a source line for every such glyph
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        return _make_plots(result, folder)


def _make_plots(result: SweepResult, folder: Path) -> dict[str, Path]:
    name = result.name
    plots = {"test accuracy per epoch": plot_curves(result, "test_acc", f"{name}: test accuracy per epoch",
                                                    folder / "test-accuracy.png"),
             "test loss per epoch": plot_curves(result, "test_loss", f"{name}: test loss per epoch",
                                                folder / "test-loss.png")}
    diff = plot_differences(result, folder / "framework-difference.png")
    if diff:
        plots["differences per epoch"] = diff
    plots["final test accuracy"] = plot_final_bars(result, folder / "final-accuracy.png")
    trace = plot_traces(result, folder / "step-trace.png")
    if trace:
        plots["step traces"] = trace
    for optional in (folder / "framework-difference.png", folder / "step-trace.png"):
        if optional not in plots.values():
            optional.unlink(missing_ok=True)  # left by an earlier report of this folder
    return plots


# -- the document -------------------------------------------------------------------------

def build_blocks(result: SweepResult, plots: dict[str, Path]) -> list[tuple]:
    sweep = result.sweep
    blocks: list[tuple] = [("h1", f"fluxlenet report: sweep `{result.name}`")]
    if sweep and sweep.description:
        blocks.append(("p", sweep.description))
    meta = f"Runs from `{result.sweep_dir}`, report written {time.strftime('%Y-%m-%d %H:%M')}."
    if sweep and sweep.published:
        meta += f" Published figures: `{sweep.published}` (shipped in fluxlenet/reference)."
    blocks.append(("p", meta))
    failures = [m for v in result.verdicts for m in v.failures()]
    blocks.append(("verdict", result.status, f"Parity verdict: {STATUS_WORDS[result.status]}"))
    if failures:
        blocks.append(("ul", failures))

    blocks.append(("h2", "What was run, and what was not"))
    blocks.append(("ul", what_ran(result)))

    blocks.append(("h2", "Final figures"))
    header, rows = summary_rows(result, result.sides)
    blocks.append(("table", header, rows))
    blocks.append(("p", "Final = the last logged epoch (mean ± sd over seeds when there are several). Differences "
                        "are in accuracy points and loss. s/epoch: median seconds per trained epoch (the first Flux "
                        "epoch includes Julia's compilation; the post's first epoch took 41 s for that reason)."))

    notes = published_notes(result)
    if notes:
        blocks.append(("h2", "Notes on the published figures and the optimisers"))
        blocks.append(("ul", notes))

    blocks.append(("h2", "Plots"))
    if "differences per epoch" not in plots:
        blocks.append(("p", "No plot of differences: there is no second framework to compare with, and no "
                            "published figures that apply."))
    for title, path in plots.items():
        blocks.append(("img", path, title))

    blocks.append(("h2", "Parity checks"))
    header, rows = check_rows(result)
    if rows:
        blocks.append(("table", header, rows))
    else:
        blocks.append(("p", "Nothing was compared: only one framework ran and the published figures do not apply."))
    incomplete = [f"{v.run}: {item}" for v in result.verdicts for item in v.incomplete]
    if incomplete:
        blocks.append(("p", "Incomplete:"))
        blocks.append(("ul", incomplete))
    blocks += trace_blocks(result)

    blocks.append(("h2", "Tolerance policy"))
    blocks.append(("p", "Override with `python -m fluxlenet parity SWEEP --tolerance key=value,...` or "
                        "`--policy FILE.toml` (the keys: " + ", ".join(Policy.keys()) + ")."))
    used = {c.kind for c in result.checks()}
    blocks.append(("ul", [line + (" (used here)" if kind in used else "") for kind, line in result.policy.describe()]))

    blocks.append(("h2", "Environment"))
    header, rows = environment_rows(result)
    blocks.append(("table", header, rows))
    return blocks


def trace_blocks(result: SweepResult, limit: int = 10) -> list[tuple]:
    checks = [c for c in result.checks() if c.steps is not None]
    if not checks:
        return []
    blocks = [("h3", f"Step traces: the first {limit} losses side by side"),
              ("p", "The loss of each batch before that step's update, as trace.csv holds it (`--trace-steps K`); "
                    "the whole traces are in step-trace.png and `python -m fluxlenet parity SWEEP --steps`.")]
    tables = []
    for check in checks:
        digits = 17 if check.kind in ("float64", "repeat") else 9
        broke = check.step_break.index if check.step_break is not None else None
        rows = [[str(step), f"{row.a:.{digits}g}", f"{row.b:.{digits}g}", f"{row.rel:.1e}",
                 ("–" if row.band is None or (isinstance(row.band, float) and math.isnan(row.band))
                  else f"{row.band:.1e}") + (" ← first break" if step == broke else "")]
                for step, row in check.steps.head(limit).iterrows()]
        tables.append((f"{check.run} {check.seed_text} ({check.kind} policy)",
                       ["step", side_name(check.a), side_name(check.b), "relative |d|", "band"], rows))
    blocks.append(("tables", tables))
    broken = [line for check in checks if check.step_break is not None for line in check.messages()[:1]]
    if broken:
        blocks.append(("ul", broken))
    return blocks


def _inline_md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(blocks: list[tuple], folder: Path) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "verdict":
            out.append(f"**{block[2]}**")
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(_inline_md(h) for h in header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_inline_md(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "tables":
            for caption, header, rows in block[1]:
                out.append(caption)
                out.append(to_markdown([("table", header, rows)], folder).strip())
        elif kind == "img":
            out.append(f"![{block[2]}]({Path(block[1]).relative_to(folder)})")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1180px; padding: 0 16px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; white-space: nowrap; }
.tables { display: flex; flex-wrap: wrap; gap: 0 18px; } .tables p { margin: 0.6em 0 0; }
code { background: #f3f3f3; padding: 0 3px; }
img { max-width: 100%; border: 1px solid #eee; margin: 6px 0 18px; display: block; }
.verdict { font-size: 1.2em; font-weight: bold; padding: 6px 10px; display: inline-block; border-radius: 4px; }
.pass { background: #e3f5e1; color: #1d6b1d; } .fail { background: #fbe3e3; color: #a11; }
.incomplete, .not-compared, .inconclusive { background: #fff4d6; color: #7a5a00; }
td.pass, td.fail, td.incomplete, td.not-compared, td.inconclusive { font-weight: bold; white-space: nowrap; }
td.muted { color: #777; font-style: italic; white-space: nowrap; }
"""


NUMERIC = re.compile(r"[0-9.,+\-−–/±()=\sena]*")
STATE_CLASSES = {"pass": "pass", "FAIL": "fail", "incomplete": "incomplete", "not compared": "not-compared",
                 "inconclusive": "inconclusive", "reproduced": "pass", "NOT REPRODUCED": "fail",
                 "not reproduced": "fail", "holds": "pass", "does not hold": "fail", "consistent": "pass",
                 "different": "fail",
                 "not run": "muted", "n/a": "muted num"}


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            state = STATE_CLASSES.get(cell) or ("num" if NUMERIC.fullmatch(cell) else "")
            cells.append(f"<td class=\"{state}\">{_inline_html(cell)}</td>" if state else f"<td>{_inline_html(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def to_html(blocks: list[tuple], title: str) -> str:
    out = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{html.escape(title)}</title>",
           f"<style>{CSS}</style>\n</head>\n<body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline_html(block[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "verdict":
            out.append(f"<p class=\"verdict {block[1].replace(' ', '-')}\">{_inline_html(block[2])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            out.append(_html_table(block[1], block[2]))
        elif kind == "tables":
            out.append("<div class=\"tables\">" + "".join(
                f"<div><p>{_inline_html(caption)}</p>{_html_table(header, rows)}</div>"
                for caption, header, rows in block[1]) + "</div>")
        elif kind == "img":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode("ascii")
            out.append(f"<h3>{_inline_html(block[2].capitalize())}</h3>"
                       f"<img alt=\"{html.escape(block[2])}\" src=\"data:image/png;base64,{data}\">")
    out.append("</body>\n</html>\n")
    return "\n".join(out)


def write_report(target: str, runs_dir: str | Path = "runs", policy: Policy | None = None) -> dict:
    """Compare the sweep's runs and write report.md, report.html and the plots into its run folder."""
    result = compare_sweep(target, runs_dir, policy)
    folder = result.sweep_dir
    try:
        check_writable(folder)
    except OSError as e:
        raise ConfigError(f"cannot write the report into {folder} ({e.strerror or e}); the report goes beside "
                          f"the runs: copy that folder somewhere writable and report on the copy") from None
    plots = make_plots(result, folder)
    blocks = build_blocks(result, plots)
    atomic_write_text(folder / "report.md", to_markdown(blocks, folder))
    atomic_write_text(folder / "report.html", to_html(blocks, f"fluxlenet report: {result.name}"))
    return {"result": result, "markdown": folder / "report.md", "html": folder / "report.html", **plots}


__all__ = ["write_report", "make_plots", "build_blocks"]
