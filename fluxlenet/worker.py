"""Backend runs in spawned processes: one run per process (`worker_main`), or one run after
another in a process that stays (`serve`: a Flux worker keeps Julia loaded and compiled).

juliacall and torch must never share a process (Julia's global LLVM symbols can bind
into the torch wheel), and a crash must not take the sweep with it. So the runner
starts workers with the spawn method, and this module imports neither torch nor
juliacall at the top: the Flux worker imports juliacall before anything else can
import torch, after setting how Julia starts (threads, signal handling).

What a worker guarantees, whatever happens to it:

- it never outlives the sweep process: on Linux the kernel SIGKILLs it when its parent
  dies (PR_SET_PDEATHSIG), elsewhere a thread watches the parent pid;
- it holds the lock of the run it is on (fluxlenet.rundir), so a rerun can tell a live
  worker from a dead one (the kernel drops the lock with the process);
- Ctrl-C is the sweep process's business: workers ignore SIGINT, and the sweep asks
  them to stop with SIGTERM, which ends the current run as "interrupted" and the worker;
- any exception (Python or Julia) ends the run as "failed" with the reason in
  status.json, console.log and error.txt (the traceback); a serving worker then takes
  the next run. A death without a word (os.abort, a segfault, SIGKILL) is recorded by
  the sweep process, which starts a fresh worker for the runs left.
"""

from __future__ import annotations

import functools
import subprocess
import os
import platform
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from . import faults
from .fsutil import remove_temporaries
from .rundir import lock_run
from .runlog import RunFolder

JOBS_ENV = "FLUXLENET_JOBS"  # set by the sweep process: how many runs go at once
EXIT_INTERRUPTED = 130
_PR_SET_PDEATHSIG = 1
_stop_requested = False


def backend_module(backend: str):
    if backend == "flux":
        from .backends import flux  # imports juliacall first thing
        return flux
    from .backends import torch_backend
    return torch_backend


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _claim_checkpoints(run_dir: Path, cfg, ntrain: int, previous: str) -> None:
    """Record the run's settings in checkpoint.json before any checkpoint is written (the sweep
    process has already refused a folder whose checkpoints were trained with other settings;
    this is the last line of that defence). Checkpoints of another length go on to this run's
    length where RunConfig.length_problem allows it; checkpoint.json then records the new one.
    `previous`: the run's status before this worker took it."""
    from .config import LENGTH, ConfigError, RunConfig
    from .runlog import FINAL_STATES, stored_config
    folder = RunFolder(run_dir)
    path = folder.checkpoint_file
    if path.exists():
        stored = stored_config(path)
        if cfg.differences(stored, ignore=LENGTH):
            raise ConfigError(f"{run_dir} holds checkpoints trained with other settings "
                              f"({', '.join(cfg.differences(stored))}); use another folder or remove that one")
        if cfg.differences(stored):
            problem = cfg.length_problem(RunConfig.from_stored(stored), ntrain, bool(folder.existing_checkpoints()),
                                         previous in FINAL_STATES)
            if problem:
                raise ConfigError(f"{run_dir} {problem}")
    folder.write_checkpoint_settings(cfg.to_dict())


def _die_with_parent(parent_pid: int) -> None:
    """Make sure this process ends when the sweep process does (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before prctl took effect
                    os.kill(os.getpid(), signal.SIGKILL)
                return
        except (OSError, AttributeError):
            pass

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, name="fluxlenet parent watch", daemon=True).start()


def _on_sigterm(signum, frame):
    global _stop_requested
    _stop_requested = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop request is enough
    raise KeyboardInterrupt


def _thread_lock_for_tqdm() -> None:
    """tqdm's default lock is a multiprocessing semaphore: a worker killed by SIGKILL would leave
    the resource tracker to warn about a "leaked semaphore". One process, one thread lock."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    tqdm.set_lock(threading.RLock())


def parallel_jobs() -> int:
    """How many runs the sweep runs at once (1 when not told)."""
    try:
        return max(1, int(os.environ.get(JOBS_ENV, "1")))
    except ValueError:
        return 1


def _console_echo(config: dict, backend: str):
    """With runs in parallel, each printed line starts with its run (console.log keeps it plain)."""
    if parallel_jobs() <= 1:
        return None
    prefix = f"[{config.get('run')} seed {config.get('seed')} {backend}]"
    return lambda line: print(f"{prefix} {line}", flush=True)


def _start_process(backend: str, parent_pid: int | None, threads: int | None) -> None:
    """What every worker process does first."""
    _die_with_parent(parent_pid or os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if backend == "flux":  # before juliacall is imported: Julia's threads are fixed when it starts
        from .julia_env import juliacall_environment
        juliacall_environment(threads or os.cpu_count() or 1)
    _thread_lock_for_tqdm()


@functools.lru_cache(maxsize=1)
def _dataset(name, data_dir, train_size, test_size, valid_size, seed):
    """The run's data; a serving worker keeps the last set (the runs of a sweep mostly share it)."""
    from .data import load_dataset
    return load_dataset(name, data_dir, train_size=train_size, test_size=test_size, valid_size=valid_size,
                        seed=seed, download=False, progress=False)


def run_one(backend: str, config: dict, run_dir: str) -> int:
    """One run in this process; returns the worker's exit code (0 finished or diverged, 1 failed,
    130 interrupted). Backends must not change the dataset's arrays: a serving worker reuses them."""
    if _stop_requested:
        return EXIT_INTERRUPTED
    signal.signal(signal.SIGTERM, _on_sigterm)
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    label = f"{config.get('run')} seed {config.get('seed')} [{backend}]"
    lock = log = None
    try:
        lock = lock_run(run_dir)
        if lock is None:
            print(f"fluxlenet: {label}: another process still writes in {run_dir}; not started",
                  file=sys.stderr)
            return 1
        remove_temporaries(run_dir)
        folder.write_config(config, git_commit=git_commit())  # this process alone writes config.json
        folder.error_file.unlink(missing_ok=True)  # from an earlier failed attempt
        from .runlog import RunLog
        previous = folder.read_status()["status"]
        log = RunLog(run_dir, echo=_console_echo(config, backend))
        log.set_status("running", pid=os.getpid())
        impl = backend_module(backend)
        # Julia's signal handling (on, for its threads) takes SIGTERM in a thread of its own and exits
        # with a backtrace; unblocked here it comes to this thread, whose handler stops the run cleanly.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
        from .config import RunConfig
        cfg = RunConfig(**config)
        faults.point("start", None, cfg.run)
        data = _dataset(cfg.dataset, cfg.data_dir, cfg.train_size, cfg.test_size, cfg.valid_size, cfg.seed)
        _claim_checkpoints(run_dir, cfg, len(data.train_y), previous)
        folder.write_config(cfg.to_dict(), versions=impl.versions(cfg), device=impl.device_name(cfg),
                            threads=impl.threads_used(cfg),
                            python=platform.python_version(), platform=platform.platform(),
                            train_samples=len(data.train_y), test_samples=len(data.test_y),
                            valid_samples=0 if data.valid_y is None else len(data.valid_y))
        progress = parallel_jobs() <= 1 and sys.stderr.isatty()  # no bars for runs in parallel
        status = impl.train(cfg, data, log, progress=progress)
        log.set_status(status, "a loss became NaN or infinite" if status == "diverged" else "", pid=os.getpid())
        return 0
    except BaseException as e:  # a crash of this run, reported as such; the sweep goes on
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if lock is None:  # the folder is not ours: write nothing there
            return EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else 1
        return _record_end(e, log, run_dir, label)
    finally:
        try:
            if log is not None:
                log.close()
        except Exception:
            pass
        if lock is not None:
            lock.release()


def worker_main(backend: str, config: dict, run_dir: str, parent_pid: int | None = None) -> None:
    """A process for one run (the torch backend: its settings are process-wide, FTZ per pool thread)."""
    _start_process(backend, parent_pid, config.get("threads"))
    sys.exit(run_one(backend, config, run_dir))


def serve(backend: str, conn, parent_pid: int | None = None, threads: int | None = None) -> None:
    """A process for many runs, handed over `conn` one at a time as (config, run_dir): each is answered
    with run_one's exit code. It ends on None or a closed pipe, and after a run that was stopped."""
    _start_process(backend, parent_pid, threads)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if job is None:
            return
        code = run_one(backend, *job)
        if code == EXIT_INTERRUPTED:
            sys.exit(code)
        conn.send(code)


def _record_end(e: BaseException, log, run_dir: Path, label: str) -> int:
    """Record why the run stopped (interrupted or failed); returns the exit code."""
    from .config import ConfigError
    from .data import DataError
    text = f"{type(e).__name__}: {e}".strip()
    # Julia turns a signal into an InterruptException, which reaches Python as a JuliaError.
    if _stop_requested or isinstance(e, KeyboardInterrupt) or "InterruptException" in text[:2000]:
        state, code = "interrupted", EXIT_INTERRUPTED
        reason = "stopped by Ctrl-C or SIGTERM"
        line = "Run stopped; run the same command again to resume from the last checkpoint"
    else:
        state, code = "failed", 1
        reason = str(e) if isinstance(e, (DataError, ConfigError)) else text  # ours: one line that says it all
        first = reason.splitlines()[0] if reason else type(e).__name__
        line = f"Run failed: {first}"
        try:
            RunFolder(run_dir).write_error(traceback.format_exc())
        except OSError:
            pass
    if log is not None:
        try:
            log.say(line)
        except OSError:
            pass  # printed already; console.log could not take it
    try:
        if log is None:
            RunFolder(run_dir).write_status(state, reason)
        else:
            log.set_status(state, reason, pid=os.getpid())
    except OSError as w:  # a full disk, say: tell the terminal at least
        print(f"fluxlenet: {label}: {line} (could not record it in {run_dir}: {w.strerror or w})",
              file=sys.stderr)
    return code
