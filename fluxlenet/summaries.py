"""What a sweep's report says in words and tables: its runs side by side, the checks, what ran where.

Rows for fluxlenet.render (tables are (header, rows) of strings); fluxlenet.report and
fluxlenet.reproduce_report assemble them into documents.
"""

from __future__ import annotations

import json
import math

import numpy as np

from parity.compare import BACKEND_NAMES, PUBLISHED_WORDS, STATUS_WORDS, SweepResult, fmt

from . import optim_spec
from .config import SWEEP_KEYS, USER_NAMES


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
