"""Fault injection for the robustness tests: nothing happens unless FLUXLENET_FAULT is set.

The tests kill, crash and starve real sweeps at exact points with it; no user needs it.

    FLUXLENET_FAULT="RULE[,RULE...]"      RULE = [RUN:]ACTION@POINT

    ACTION   raise       raise RuntimeError in the worker (a Python or Julia error)
             abort       os.abort(): the worker dies without a word (like a segfault)
             kill        SIGKILL the worker alone
             killsweep   SIGKILL the sweep process, then the worker (kill -9 of the whole job)
             killparent  SIGKILL the sweep process only: the orphaned worker must stop by itself
             enospc      atomic writes fail with "No space left on device" (POINT is then a
                         file name such as model.pt or log.csv, or * for every file)
    POINT    start          the worker has started, before its data is loaded and training starts
             epochN         the report of epoch N (0: before training) has been logged, and epoch N's
                            checkpoint, if it has one, is not written yet (epochs without a report,
                            with infotime > 1, fire nothing)
             checkpointN    the checkpoint of epoch N has been saved (model.pt; model.bson and
                            optimiser.bson for Flux): a rerun goes on from epoch N
             stepN          before optimiser step N (counted from 1 over the run); torch runs only
    Both backends fire epochN and checkpointN at the same moments of the post's loop.
    RUN      only in the run of that name (the sweep file's `name`)

e.g. FLUXLENET_FAULT="NADAM:abort@epoch2" or FLUXLENET_FAULT="enospc@model.pt".
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "FLUXLENET_FAULT"
ACTIONS = ("raise", "abort", "kill", "killsweep", "killparent", "enospc")


def _parse(text: str) -> list[tuple[str | None, str, str]]:
    rules = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        run, _, rule = item.rpartition(":")
        action, _, point = rule.partition("@")
        if action not in ACTIONS or not point:
            raise ValueError(f"{ENV}: bad rule {item!r}; expected [RUN:]ACTION@POINT, ACTION one of {ACTIONS}")
        rules.append((run or None, action, point))
    return rules


RULES = _parse(os.environ.get(ENV, ""))


def point(where: str, n: int | None, run: str) -> None:
    """Called by the workers at `where` (start, epoch, checkpoint, step) number `n`."""
    name = where if n is None else f"{where}{n}"
    for rule_run, action, rule_point in RULES:
        if rule_point != name or action == "enospc" or rule_run not in (None, run):
            continue
        if action == "raise":
            raise RuntimeError(f"fault injected by {ENV} at {name}")
        if action == "abort":
            os.abort()
        if action in ("killsweep", "killparent"):
            os.kill(os.getppid(), signal.SIGKILL)
        if action in ("kill", "killsweep"):
            os.kill(os.getpid(), signal.SIGKILL)


def check_write(path: os.PathLike) -> None:
    """Called by fsutil.atomic_path before it commits `path`: a simulated full disk."""
    for _, action, rule_point in RULES:
        if action == "enospc" and rule_point in ("*", os.path.basename(path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
