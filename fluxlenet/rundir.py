"""Run-folder bookkeeping shared by the sweep process and the workers: who holds a run, its config.json.

- `lock_run` / `run_is_busy`: a worker holds an exclusive lock (flock, through filelock) on
  `<run dir>/.worker.lock` while it works on that run, so a rerun (or `parity`) can tell a live
  worker from a dead one: the kernel drops the lock with the process.
- `write_config`: config.json, the validated RunConfig plus what describes the run's environment,
  merged with what is there (the sweep process writes the settings and git commit; the worker adds
  versions, device and threads).

No torch, no juliacall: importable anywhere.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from filelock import FileLock, Timeout

from .fsutil import atomic_write_json, read_json

RUN_LOCK = ".worker.lock"
LOCK_WAIT_S = 60.0


def lock_run(run_dir: Path, wait_s: float = LOCK_WAIT_S) -> FileLock | None:
    """The lock of `run_dir`, held (`release()` it); None if another process kept it for `wait_s`.
    The lock file stays (preserve_lock_file: a flock on one inode, never a soft lock), as run_is_busy needs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / RUN_LOCK, preserve_lock_file=True)
    try:
        lock.acquire(timeout=wait_s, poll_interval=0.1)
    except Timeout:
        return None
    return lock


def run_is_busy(run_dir: Path) -> bool:
    """Whether a live process (a worker) holds `run_dir`'s lock now."""
    path = Path(run_dir) / RUN_LOCK
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


def write_config(run_dir: Path, config: dict, **extra) -> None:
    """config.json: the validated RunConfig plus what describes the run's environment."""
    path = run_dir / "config.json"
    try:
        current = read_json(path) if path.exists() else {}
    except ValueError:
        current = {}
    current.update({"config": config, **extra})
    atomic_write_json(path, current)
