"""Run a sweep: one spawned worker per backend run, finished runs skipped, a summary at the end."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, RunConfig
from .fsutil import read_json
from .runlog import FINAL_STATES, read_status
from .worker import worker_main, write_config


@dataclass
class Task:
    cfg: RunConfig
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.cfg.run} seed {self.cfg.seed} [{self.cfg.backend}]"


def run_id(cfg: RunConfig) -> str:
    return f"{cfg.run}-seed{cfg.seed}"


def run_dir(runs_dir: Path, cfg: RunConfig) -> Path:
    return Path(runs_dir) / cfg.sweep / run_id(cfg) / cfg.backend


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def check_existing(task: Task) -> str:
    """"new", "done" (finished or diverged: skip) or "resume"; ConfigError if the folder holds another run."""
    config_path = task.run_dir / "config.json"
    if not config_path.exists():
        return "new"
    try:
        stored = RunConfig(**read_json(config_path)["config"]).semantic_dict()
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{config_path} is not a fluxlenet run config; move it away or use another --runs-dir")
    wanted = task.cfg.semantic_dict()
    if stored != wanted:
        diff = ", ".join(f"{k} {stored.get(k)!r} there, {v!r} now" for k, v in wanted.items() if stored.get(k) != v)
        raise ConfigError(f"{task.run_dir} holds a run with other settings ({diff}); "
                          f"use another --runs-dir or remove that folder")
    return "done" if read_status(task.run_dir)["status"] in FINAL_STATES else "resume"


class SweepLock:
    """One sweep at a time per sweep folder: a second one stops with a clear message."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / ".lock"

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise ConfigError(f"another sweep is running in {self.path.parent}; wait for it to finish "
                              f"or use another --runs-dir") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def run_tasks(tasks: list[Task], jobs: int = 1, echo=print) -> dict[str, list[Task]]:
    """Run every task in spawned workers, `jobs` at a time; returns tasks grouped by final status."""
    ctx = multiprocessing.get_context("spawn")
    cores = os.cpu_count() or 1
    pending = list(tasks)
    running: list[tuple[multiprocessing.Process, Task]] = []
    results: dict[str, list[Task]] = {}
    commit = git_commit()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                task = pending.pop(0)
                cfg = task.cfg if task.cfg.threads else task.cfg.replace(threads=max(1, cores // jobs))
                write_config(task.run_dir, cfg.to_dict(), git_commit=commit)
                echo(f"--- {task.label}: {task.run_dir}")
                proc = ctx.Process(target=worker_main, args=(cfg.backend, cfg.to_dict(), str(task.run_dir)),
                                   name=f"fluxlenet {task.label}")
                proc.start()
                running.append((proc, task))
            for proc, task in list(running):
                if proc.is_alive():
                    continue
                proc.join()
                running.remove((proc, task))
                status = read_status(task.run_dir)
                if status["status"] not in FINAL_STATES + ("failed", "interrupted"):
                    # the worker died without a word (os.abort, a segfault, SIGKILL)
                    reason = f"the worker process died (exit code {proc.exitcode})"
                    _mark_failed(task.run_dir, reason)
                    status = {"status": "failed", "reason": reason}
                if status["status"] == "failed":
                    echo(f"--- {task.label} failed: {status.get('reason', '')}")
                results.setdefault(status["status"], []).append(task)
            time.sleep(0.05)
    except KeyboardInterrupt:
        for proc, task in running:
            proc.join(timeout=30)  # the worker got the same SIGINT and records "interrupted"
            if proc.is_alive():
                proc.terminate()
        raise
    return results


def _mark_failed(folder: Path, reason: str) -> None:
    from .runlog import RunLog
    log = RunLog(folder, echo=lambda line: None)
    log.say(f"Run failed: {reason}")
    log.set_status("failed", reason)
