"""The parity result as text: the table `python -m fluxlenet parity` prints, and step traces side by side."""

from __future__ import annotations

import math

from .compare import PUBLISHED_WORDS, STATUS_WORDS, Check, SweepResult, fmt


def check_word(check: Check) -> str:
    return PUBLISHED_WORDS[check.status] if check.kind == "published" else STATUS_WORDS[check.status]


def _epochs(check: Check) -> str:
    if check.diffs is None or check.diffs.empty:
        return "-"
    return f"{int(check.diffs.index.min())}-{int(check.diffs.index.max())}"


def _max(check: Check, metric: str, digits: int) -> str:
    value = check.max_abs(metric)
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if math.isfinite(value) else "NaN" if math.isnan(value) else "inf"


def result_lines(result: SweepResult) -> list[str]:
    sweep = result.sweep
    head = f"Parity of {result.name}" + (f" ({result.sweep_dir})" if result.sweep_dir.name == result.name else "")
    if sweep and sweep.published:
        head += f", published figures: {sweep.published}"
    lines = [head]
    lines += [f"NOTE: {n}" for n in result.notes]
    lines.append("")
    width = max([20] + [len(f"{c.a} vs {c.b}") for c in result.checks()])
    run_width = max([10] + [len(v.run) for v in result.verdicts])
    lines.append(f"{'run':<{run_width}} {'seed':<6} {'compared':<{width}} {'policy':<9} {'epochs':>6} "
                 f"{'max|d| test acc':>15} {'max|d| test loss':>16} {'steps':>5}  verdict")
    for verdict in result.verdicts:
        if not verdict.checks:
            lines.append(f"{verdict.run:<{run_width}} {'-':<6} {'(nothing to compare)':<{width}}")
        for check in verdict.checks:
            compared = f"{check.a} vs {check.b}"
            steps = "-" if check.steps is None else str(len(check.steps))
            lines.append(f"{check.run:<{run_width}} {','.join(map(str, check.seeds)):<6} {compared:<{width}} "
                         f"{check.kind or '-':<9} {_epochs(check):>6} {_max(check, 'test_acc', 2):>15} "
                         f"{_max(check, 'test_loss', 4):>16} {steps:>5}  {check_word(check)}")
    lines.append("")
    lines.append("Verdicts:")
    for verdict in result.verdicts:
        lines.append(f"  {verdict.run:<{run_width}} {STATUS_WORDS[verdict.status]}")
        for message in verdict.failures():
            lines.append(f"      {message}")
        for item in verdict.incomplete:
            lines.append(f"      incomplete: {item}")
        for check in verdict.checks:
            for note in check.notes:
                if not note.startswith("compared up to"):
                    lines.append(f"      note ({check.a} vs {check.b}): {note}")
    failed = sum(v.status == "fail" for v in result.verdicts)
    lines.append(f"Sweep {result.name}: {STATUS_WORDS[result.status]}"
                 + (f" ({failed} of {len(result.verdicts)} runs failed)" if failed else ""))
    lines.append("")
    used = {c.kind for c in result.checks()}
    lines.append("Tolerance policy (* used here; override with --tolerance key=value,... or --policy FILE.toml):")
    lines += [f"{'*' if kind in used else ' '} {line}" for kind, line in result.policy.describe()]
    lines.append(f"  keys: {', '.join(result.policy.keys())}")
    return lines


def step_lines(result: SweepResult, limit: int | None = None) -> list[str]:
    """The first `limit` step-trace losses of each pair side by side (loss before each step's update)."""
    lines = []
    for verdict in result.verdicts:
        for check in verdict.checks:
            if check.steps is None:
                continue
            double = check.kind in ("float64", "repeat")
            digits = 17 if double else 9
            width = digits + 7
            lines.append("")
            lines.append(f"Step trace of {check.run} {check.seed_text}: {check.a} vs {check.b} ({check.kind} policy; "
                         f"the loss of each batch before that step's update)")
            lines.append(f"{'step':>5} {check.a[:width]:>{width}} {check.b[:width]:>{width}} {'relative':>9} "
                         f"{'band':>8}")
            steps = check.steps if limit is None else check.steps.head(limit)
            for step, row in steps.iterrows():
                band = "-" if row.band is None or (isinstance(row.band, float) and math.isnan(row.band)) \
                    else f"{row.band:.1e}"
                mark = "  <- first break" if check.step_break is not None and check.step_break.index == step else ""
                lines.append(f"{step:>5} {row.a:>{width}.{digits}g} {row.b:>{width}.{digits}g} {row.rel:>9.1e} "
                             f"{band:>8}{mark}")
    traced = {(r.run, r.seed, r.backend) for r in result.runs if r.trace is not None}
    if not lines:
        if traced:
            lines.append("")
            lines.append("Step traces: only one side recorded them; nothing to set side by side:")
            for r in result.runs:
                if r.trace is not None:
                    head = r.trace.loss.head(limit or len(r.trace))
                    lines.append(f"  {r.run} seed {r.seed} [{r.backend}]: " + " ".join(fmt(x, 9) for x in head))
        else:
            lines.append("")
            lines.append("Step traces: none recorded (run the sweep with --trace-steps K).")
    return lines
