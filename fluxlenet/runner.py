"""Run a sweep in spawned workers (a process per torch run; Flux workers that keep Julia loaded and
take runs one after another), finished runs skipped, a summary at the end.

Nothing is lost, whatever stops a sweep:

- SIGKILL of the sweep at any moment: its workers die with it (see fluxlenet.worker), every
  file is written atomically, and the same command again skips finished and diverged runs
  and resumes the others from their last checkpoint (a run with none starts afresh);
- a worker that raises, aborts or is killed leaves its run `failed` with the reason, and the
  sweep goes on with the other runs (a rerun retries the failed ones);
- Ctrl-C (or SIGTERM) of the sweep: running workers are asked to stop (SIGTERM), record
  `interrupted`, and the command says how to resume; a second Ctrl-C kills them at once;
- one sweep at a time per sweep folder (SweepLock), and one process at a time per run
  folder (the worker's lock): a rerun waits for a dying worker of a killed sweep.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, RunConfig
from .fsutil import check_writable
from .rundir import Task, run_is_busy
from .runlog import FINAL_STATES, RunFolder
from .worker import JOBS_ENV, serve, worker_main

STOP_WAIT_S = 60.0   # after Ctrl-C, how long running workers get to record their state
BUSY_WAIT_S = 60.0   # how long a rerun waits for a worker of a killed sweep to go


class SweepLock:
    """One sweep at a time per sweep folder: a second one stops with a clear message.

    Entering also checks that the folder can be created and written (one clear line,
    before any training, for a runs directory under a file, a read-only place or a full disk).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / ".lock"

    def __enter__(self):
        try:
            check_writable(self.folder)
            self.file = open(self.path, "a+")
        except OSError as e:
            where = e.filename or self.folder
            raise ConfigError(f"cannot write in {self.folder} ({e.strerror or e}: {where}); "
                              f"choose a folder that can be written, with free space") from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip()
            self.file.close()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise ConfigError(f"another sweep{who} is running in {self.folder}; wait for it to finish "
                              f"or use another --runs-dir") from None
        with contextlib.suppress(OSError):
            self.file.truncate(0)
            self.file.write(f"{os.getpid()}\n")
            self.file.flush()
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(OSError):
            self.file.truncate(0)
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def wait_until_free(tasks: list[Task], echo) -> None:
    """Wait for workers of a killed sweep, still alive a moment, to leave their run folders."""
    deadline = time.monotonic() + BUSY_WAIT_S
    for task in tasks:
        said = False
        while run_is_busy(task.run_dir):
            if not said:
                pid = RunFolder(task.run_dir).read_status().get("pid")
                echo(f"--- {task.label}: waiting for an earlier worker{f' (pid {pid})' if pid else ''} "
                     f"to leave {task.run_dir}")
                said = True
            if time.monotonic() > deadline:
                raise ConfigError(f"{task.run_dir} is still in use by another process; stop it, "
                                  f"then run the same command again")
            time.sleep(0.1)


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the worker process was killed by {name} (exit code {exitcode})"
    return f"the worker process died without recording why (exit code {exitcode})"


def _ignoring_sigint(start) -> None:
    """Start a worker that ignores Ctrl-C from birth (the disposition is inherited): the sweep stops it."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        start()
    finally:
        signal.signal(signal.SIGINT, old)


def _start(ctx, task: Task, cfg: RunConfig) -> multiprocessing.Process:
    proc = ctx.Process(target=worker_main, args=(cfg.backend, cfg.to_dict(), str(task.run_dir), os.getpid()),
                       name=f"fluxlenet {task.label}", daemon=True)  # stopped if the sweep exits
    _ignoring_sigint(proc.start)
    return proc


@dataclass
class ServingWorker:
    """A worker process that takes runs one after another (fluxlenet.worker.serve): a Flux worker
    starts Julia, loads FluxLeNet and compiles the loop once for all the runs it is given."""
    backend: str
    threads: int
    proc: multiprocessing.Process
    conn: multiprocessing.connection.Connection

    @classmethod
    def start(cls, ctx, backend: str, threads: int) -> ServingWorker:
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(backend, child, os.getpid(), threads),
                           name=f"fluxlenet {backend} worker", daemon=True)
        _ignoring_sigint(proc.start)
        child.close()
        return cls(backend, threads, proc, conn)

    def give(self, task: Task, cfg: RunConfig) -> None:
        self.conn.send((cfg.to_dict(), str(task.run_dir)))

    def answer(self) -> int | None:
        """The exit code of the run it was given, once over; None before, or if it died instead."""
        if not self.conn.poll():
            return None
        try:
            return int(self.conn.recv())
        except (EOFError, OSError):
            return None

    def close(self, wait_s: float = 10.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.conn.close()
        self.proc.join(wait_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _serving_worker(idle: list[ServingWorker], ctx, cfg: RunConfig, echo) -> ServingWorker:
    """An idle worker for `cfg`'s backend with its threads (Julia's are fixed at start), else a new one."""
    for worker in idle:
        if worker.backend == cfg.backend and worker.threads == cfg.threads and worker.proc.is_alive():
            idle.remove(worker)
            return worker
    echo(f"--- starting a {cfg.backend} worker ({cfg.threads} thread{'s' if cfg.threads != 1 else ''}); "
         "it takes the runs one after another")
    return ServingWorker.start(ctx, cfg.backend, cfg.threads)


SERVED_BACKENDS = ("flux",)  # torch runs keep a process each: FTZ is a per-thread flag of torch's pool threads


def run_tasks(tasks: list[Task], jobs: int = 1, echo=print,
              served: tuple[str, ...] = SERVED_BACKENDS) -> dict[str, list[Task]]:
    """Run every task in spawned workers, `jobs` at a time; returns tasks grouped by final status.

    Runs of a backend in `served` go to workers that stay (`ServingWorker`); the others get a process each.
    """
    ctx = multiprocessing.get_context("spawn")
    pending = list(tasks)
    running: list[tuple[multiprocessing.Process, Task, ServingWorker | None]] = []
    idle: list[ServingWorker] = []
    results: dict[str, list[Task]] = {}
    wait_until_free(tasks, echo)
    os.environ[JOBS_ENV] = str(jobs)  # inherited by the workers: labelled lines, no progress bars when > 1
    old_term = signal.signal(signal.SIGTERM, raise_interrupt)  # a scheduler's SIGTERM is a Ctrl-C

    def finish(task: Task, exitcode: int | None) -> None:
        results.setdefault(finish_task(task, exitcode, echo), []).append(task)

    try:
        while pending or running:
            while pending and len(running) < jobs:
                task = pending.pop(0)
                started = start_tasks([task], echo, default_threads)
                if not started:
                    results.setdefault("failed", []).append(task)
                    continue
                cfg = started[0][1]
                if cfg.backend in served:
                    worker = _serving_worker(idle, ctx, cfg, echo)
                    worker.give(task, cfg)
                    running.append((worker.proc, task, worker))
                else:
                    running.append((_start(ctx, task, cfg), task, None))
            if running:
                waitables = [proc.sentinel for proc, _, _ in running] + [w.conn for _, _, w in running if w]
                multiprocessing.connection.wait(waitables, timeout=1.0)
            for entry in list(running):
                proc, task, worker = entry
                code = worker.answer() if worker is not None else None
                if code is not None:
                    running.remove(entry)
                    idle.append(worker)
                    finish(task, code)
                    continue
                if proc.is_alive():
                    continue
                proc.join()
                running.remove(entry)
                if worker is not None:
                    worker.conn.close()
                finish(task, proc.exitcode)
            while len(idle) > jobs:  # idle workers hold memory (a Julia each): keep at most one per slot
                idle.pop(0).close()
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(running, echo)
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
        for worker in idle:
            worker.close()
    return results


def default_threads(cfg: RunConfig) -> int:
    """The threads of a run not given --threads: 1, whatever the executor, --jobs or the machine's cores.
    A run's float32 figures depend on its threads (the order of the sums), so its log must not depend on
    how it was scheduled: a sweep run with --jobs 1 or 2, locally or under Ray, or resumed under another
    --jobs, gives the same figures. Faster lone runs: --threads N (recorded in config.json)."""
    return 1


def start_tasks(tasks: list[Task], echo, threads_of) -> list[tuple[Task, RunConfig]]:
    """Before a task is handed to a worker: its settings, with the threads it gets (the worker records them
    in config.json). Returns the (task, config) pairs to run; a folder that cannot be written fails its task
    here."""
    ready = []
    for task in tasks:
        cfg = task.cfg if task.cfg.threads else task.cfg.replace(threads=threads_of(task.cfg))
        echo(f"--- {task.label}: {task.run_dir}")
        try:
            check_writable(task.run_dir)
        except OSError as e:
            reason = f"cannot write {e.filename or task.run_dir}: {e.strerror or e}"
            mark_run(task, "failed", reason, echo)
            echo(f"--- {task.label} failed: {reason}")
            continue
        ready.append((task, cfg))
    return ready


def finish_task(task: Task, exitcode: int | None, echo) -> str:
    """The final status of a task whose worker is gone: recorded by the worker, or "failed" with the
    way it died (os.abort, a segfault, SIGKILL, a full disk) when it could not say."""
    status = RunFolder(task.run_dir).read_status()
    if status["status"] not in FINAL_STATES + ("failed", "interrupted"):
        status = {"status": "failed", "reason": _death_reason(exitcode)}
        mark_run(task, "failed", status["reason"], echo)
    if status["status"] in ("failed", "interrupted", "diverged"):
        echo(f"--- {task.label} {status['status']}: {status.get('reason', '')}")
    return status["status"]


def _stop(running: list[tuple[multiprocessing.Process, Task, ServingWorker | None]], echo) -> None:
    """Ask running workers to record their state and stop; a second Ctrl-C kills them."""
    if running:
        echo(f"\nStopping {len(running)} running run(s): saving their state (Ctrl-C again to kill them at once) ...")
    for proc, _, _ in running:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + STOP_WAIT_S
        for proc, _, _ in running:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass
    for proc, task, _ in running:
        if proc.is_alive():
            proc.kill()
            proc.join()
        if RunFolder(task.run_dir).read_status()["status"] not in FINAL_STATES + ("failed", "interrupted"):
            mark_run(task, "interrupted", f"stopped by Ctrl-C ({_death_reason(proc.exitcode)})", echo)


def mark_run(task: Task, status: str, reason: str, echo) -> None:
    """Record a run's end for a worker that could not (it died, or never started); the run's settings too
    when it died before it wrote them."""
    from .runlog import RunLog
    try:
        log = RunLog(task.run_dir, echo=lambda line: None)
        if not log.folder.config_file.exists():
            log.folder.write_config(task.cfg.to_dict())
        log.say(f"Run {status}: {reason}")
        log.set_status(status, reason)
    except (OSError, ValueError) as e:
        echo(f"--- could not record the state of {task.run_dir}: {getattr(e, 'strerror', None) or e}")
