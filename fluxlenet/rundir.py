"""Run-folder bookkeeping shared by the sweep process and the workers: where a run's folder is, who holds
a run, which sweep file a sweep folder belongs to (runlog.RunFolder names the files inside a run).

- `Task` / `run_dir`: a run lives in <sweep folder>/<run>-seed<N>/<backend>/, for a sweep
  (<runs dir>/<sweep>/) and for `train` (--savepath, a sweep folder of one run) alike.
- `lock_run` / `run_is_busy`: a worker holds an exclusive lock (flock, through filelock) on
  `<run dir>/.worker.lock` while it works on that run, so a rerun (or `parity`) can tell a live
  worker from a dead one: the kernel drops the lock with the process.

No torch, no juliacall: importable anywhere.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from .config import RunConfig
from .fsutil import atomic_write_json, read_json
from .runlog import RunFolder

LOCK_WAIT_S = 60.0


@dataclass
class Task:
    """A run to do: its settings (validated) and its folder."""
    cfg: RunConfig
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.cfg.run} seed {self.cfg.seed} [{self.cfg.backend}]"


def run_id(cfg: RunConfig) -> str:
    return f"{cfg.run}-seed{cfg.seed}"


def run_dir(sweep_dir: Path, cfg: RunConfig) -> Path:
    """The one layout of a run's folder: <sweep folder>/<run>-seed<N>/<backend>/."""
    return Path(sweep_dir) / run_id(cfg) / cfg.backend


def lock_run(run_dir: Path, wait_s: float = LOCK_WAIT_S) -> FileLock | None:
    """The lock of `run_dir`, held (`release()` it); None if another process kept it for `wait_s`.
    The lock file stays (preserve_lock_file: a flock on one inode, never a soft lock), as run_is_busy needs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(RunFolder(run_dir).lock_file, preserve_lock_file=True)
    try:
        lock.acquire(timeout=wait_s, poll_interval=0.1)
    except Timeout:
        return None
    return lock


def run_is_busy(run_dir: Path) -> bool:
    """Whether a live process (a worker) holds `run_dir`'s lock now."""
    path = RunFolder(run_dir).lock_file
    try:
        f = open(path)  # read-only: a reader of someone else's runs may not write there
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


# -- which sweep file a sweep folder belongs to ---------------------------------------------------------
#
# A sweep folder is named after its sweep file, so two files of one name in different folders (or a
# file named like a built-in sweep) would share it, and their runs would mix. A sweep records its file
# in the folder's .sweep; another file of that name is refused while the recorded one is still there and
# declares other runs (a copy of the file, or the file moved, is the same sweep).

SWEEP_ORIGIN = ".sweep"


def _origin_path(sweep) -> Path:
    return Path(sweep.path).resolve()


def recorded_origin(folder: Path) -> Path | None:
    try:
        doc = read_json(Path(folder) / SWEEP_ORIGIN)
        return Path(doc["sweep_file"]) if isinstance(doc, dict) and isinstance(doc.get("sweep_file"), str) else None
    except (OSError, ValueError):
        return None


def other_origin(folder: Path, sweep) -> Path | None:
    """The sweep file whose runs `folder` holds when that is another sweep than `sweep` (same name, other
    runs declared), else None."""
    from .config import ConfigError
    from .sweeps import load
    theirs = recorded_origin(folder)
    if theirs is None or not theirs.is_file() or theirs == _origin_path(sweep):
        return None
    try:
        other = load(str(theirs))
    except ConfigError:  # no longer a sweep file: not a sweep whose runs could mix with these
        return None
    # the same runs: the same settings that change results (trace_steps, threads, ... may differ)
    same = [c.semantic_dict() for c in other.runs] == [c.semantic_dict() for c in sweep.runs]
    return None if same else theirs


def describe_origin(path: Path) -> str:
    from .sweeps import SWEEP_DIR
    return f"the built-in sweep {path.stem}" if path.parent == SWEEP_DIR.resolve() else f"the sweep file {path}"


def check_origin(folder: Path, sweep, advice: str) -> None:
    """ConfigError when `folder` holds the runs of another sweep file of the same name."""
    from .config import ConfigError
    theirs = other_origin(folder, sweep)
    if theirs is not None:
        raise ConfigError(f"{folder} holds the runs of {describe_origin(theirs)}, and "
                          f"{describe_origin(_origin_path(sweep))} has the same name but other runs; {advice}")


def record_origin(folder: Path, sweep) -> None:
    """Record `sweep`'s file as the folder's, unless the one recorded is still there (it declares the same
    runs, or check_origin had refused this sweep): a copy of it run from elsewhere rewrites nothing."""
    recorded = recorded_origin(folder)
    if recorded is None or not recorded.is_file():
        atomic_write_json(Path(folder) / SWEEP_ORIGIN, {"sweep_file": str(_origin_path(sweep))})
