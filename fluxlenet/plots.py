"""The plots of the reports (PNG, matplotlib): curves per epoch with seed bands, Flux - PyTorch
differences, final accuracies, step traces; for a reproduction (fluxlenet.reproduce_report), the
write-up's performance and training time comparisons and our seed bands against the published line.
Each is written atomically and closed."""

from __future__ import annotations

import math
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from parity import reproduction
from parity.compare import BACKEND_NAMES, SweepResult, seed_stats

from .fsutil import atomic_path
from .reproduce import GAP_METRICS, SIDES, Reproduction, seconds_sample
from .runs import RunFiles
from .summaries import side_name


SIDE_COLOURS = {"flux": "#9558b2", "torch": "#ee4c2c"}   # Julia purple, PyTorch orange


PUBLISHED_COLOUR = "black"


def panel_grid(n: int, width: float = 3.8, height: float = 3.0, cols: int = 4):
    """A figure with one panel per run, at most `cols` a row."""
    import matplotlib.pyplot as plt
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, axes


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def seed_band(ax, runs, metric: str, colour: str, label: str, style: str = "-") -> None:
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


def zoom_on_training(ax, sides: dict, metrics: list[str], pub) -> bool:
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
    fig, axes = panel_grid(len(runs))
    valid_metric = split_metric.replace("test", "valid")
    budget = any(r.config.get("steps") for r in result.runs)
    for ax, run in zip(axes.flat, runs):
        for side in result.sides:
            side_runs = result.groups[run].get(side, [])
            colour = SIDE_COLOURS.get(side.split(" ")[0], None)
            seed_band(ax, side_runs, split_metric, colour, side_name(side))
            seed_band(ax, side_runs, valid_metric, colour, f"{side_name(side)} valid", "--")
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
        elif zoom_on_training(ax, result.groups[run], [split_metric, valid_metric], pub if applies else None):
            ax.set_xlabel(ax.get_xlabel() + " (epoch 0 below the axis)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=12)
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
                colour = SIDE_COLOURS.get(side)
                n = int(band.n.max())
                ax.plot(band.index, band["mean"], "-", color=colour, marker="o", markersize=3,
                        label=f"{BACKEND_NAMES.get(side, side)} mean of {n}")
                ax.fill_between(band.index, band["mean"] - band.sd, band["mean"] + band.sd, color=colour, alpha=0.3,
                                label="± sd")
                ax.fill_between(band.index, band["min"], band["max"], color=colour, alpha=0.12, label="min–max")
            for side, replay in j.replays.items():
                if metric in replay.log:
                    ax.plot(replay.log.index, replay.log[metric], "--", color=SIDE_COLOURS.get(side),
                            label=f"{BACKEND_NAMES.get(side, side)} replay (seed {rep.target.replay_seed})")
            if j.applies and j.pub.epochs is not None and metric in j.pub.epochs:
                ref = j.pub.epochs[metric].dropna()
                ax.plot(ref.index, ref.to_numpy(), ":", color=PUBLISHED_COLOUR, marker="s", markersize=3,
                        label="published")
            elif j.applies and j.pub.final_value(metric) is not None:
                last = max((int(r.log.index.max()) for rs in j.sides.values() for r in rs if len(r.log)), default=0)
                ax.plot([last], [j.pub.final_value(metric)], "*", color=PUBLISHED_COLOUR, markersize=12,
                        label="published (final)")
            ax.set_title(f"{j.run}: {metric.replace('_', ' ')}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric.replace("_", " ").replace("acc", "accuracy (%)"))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if metric.endswith("loss"):
                log_scale_if_positive(ax)
            elif zoom_on_training(ax, j.sides, [metric], j.pub if j.applies else None):
                ax.set_xlabel("epoch (epoch 0 below the axis)")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    title = f"{sweep}: our seeds per epoch (line: mean, dark: ± sd, light: min–max), published: black" + (
        f", dashed: the replay of the post's own run (seed {rep.target.replay_seed})" if rep.has_replay else "")
    fig.suptitle(textwrap.fill(title, int(9 * 3.8 * cols)), fontsize=11)
    return save_figure(fig, path)


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
                    ax.bar(x, value, width, color="lightgrey", edgecolor=PUBLISHED_COLOUR, hatch="//",
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
                   color=SIDE_COLOURS.get(column, "C0"),
                   label=name if name not in ax.get_legend_handles_labels()[1] else None)
            ax.plot([x] * sample.n, sample.values, "k.", markersize=4)
            ax.annotate(f"{sample.mean:.2f}" if what == "accuracy" else f"{sample.mean:.3g}", (x, sample.mean + sd),
                        ha="center", va="bottom", fontsize=7)
            values += [sample.mean - sd, sample.mean + sd, *sample.values]
    for side in SIDES:
        if side not in rep.sides:
            ax.bar([0], [0], 0, color=SIDE_COLOURS.get(side), label=f"{BACKEND_NAMES[side]}: not run")
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
    return save_figure(fig, path)
