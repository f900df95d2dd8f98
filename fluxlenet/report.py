"""Side-by-side report of a sweep: Flux, PyTorch and the published figures.

`python -m fluxlenet report SWEEP` writes into the sweep's run folder (`runs/<sweep>/`):

    report.md                 tables and notes, the plots linked beside it
    report.html               the same, self-contained (plots embedded as data URIs): opens from disk
    test-accuracy.png         test accuracy per epoch, one panel per swept value
    test-loss.png             test loss per epoch, one panel per swept value
    framework-difference.png  Flux - PyTorch per epoch with the tolerance band (and each - published)
    final-accuracy.png        final test accuracy per swept value, seed spread when there are several seeds
    step-trace.png            the first K step losses and their relative difference (runs with --trace-steps)

The words and tables come from fluxlenet.summaries, the plots from fluxlenet.plots; the document is
built once as blocks and written as Markdown and HTML by fluxlenet.render.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from parity.compare import SweepResult
from parity.policy import Policy

from .config import ConfigError
from .fsutil import atomic_write_text, check_writable
from .plots import make_plots
from .render import to_html, to_markdown
from .runs import compare_sweep
from .summaries import STATUS_WORDS, check_rows, environment_rows, published_notes, side_name, summary_rows, what_ran


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
