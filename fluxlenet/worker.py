"""One backend run, in its own `spawn`ed process.

juliacall and torch must never share a process (Julia's global LLVM symbols can bind
into the torch wheel), and a crash must not take the sweep with it. So the runner
starts `worker_main` with the spawn method, and this module imports neither torch nor
juliacall at the top: the Flux worker imports juliacall before anything else can
import torch.

What a worker guarantees, whatever happens to it:

- it never outlives the sweep process: on Linux the kernel SIGKILLs it when its parent
  dies (PR_SET_PDEATHSIG), elsewhere a thread watches the parent pid;
- it holds an exclusive lock on `<run dir>/.worker.lock` while it runs, so a rerun can
  tell a live worker from a dead one (the kernel drops the lock with the process);
- Ctrl-C is the sweep process's business: workers ignore SIGINT, and the sweep asks
  them to stop with SIGTERM, which ends the run as "interrupted";
- any exception (Python or Julia) ends the run as "failed" with the reason in
  status.json, console.log and error.txt (the traceback); a death without a word
  (os.abort, a segfault, SIGKILL) is recorded by the sweep process.
"""

from __future__ import annotations

import fcntl
import os
import platform
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from . import faults
from .fsutil import atomic_write_json, atomic_write_text, read_json, remove_temporaries

RUN_LOCK = ".worker.lock"
JOBS_ENV = "FLUXLENET_JOBS"  # set by the sweep process: how many runs go at once
LOCK_WAIT_S = 60.0
EXIT_INTERRUPTED = 130
_PR_SET_PDEATHSIG = 1
_stop_requested = False


def backend_module(backend: str):
    if backend == "flux":
        from .backends import flux  # imports juliacall first thing
        return flux
    from .backends import torch_backend
    return torch_backend


def write_config(run_dir: Path, config: dict, **extra) -> None:
    """config.json: the validated RunConfig plus what describes the run's environment."""
    path = run_dir / "config.json"
    try:
        current = read_json(path) if path.exists() else {}
    except ValueError:
        current = {}
    current.update({"config": config, **extra})
    atomic_write_json(path, current)


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


def lock_run(run_dir: Path, wait_s: float = LOCK_WAIT_S):
    """The open lock file of `run_dir`, locked; None if another process kept it for `wait_s`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / RUN_LOCK, "a+")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() >= deadline:
                f.close()
                return None
            time.sleep(0.1)


def run_is_busy(run_dir: Path) -> bool:
    """Whether a live process (a worker) holds `run_dir`'s lock now."""
    path = Path(run_dir) / RUN_LOCK
    if not path.exists():
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


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


def worker_main(backend: str, config: dict, run_dir: str, parent_pid: int | None = None) -> None:
    _die_with_parent(parent_pid or os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    run_dir = Path(run_dir)
    label = f"{config.get('run')} seed {config.get('seed')} [{backend}]"
    lock = log = None
    try:
        lock = lock_run(run_dir)
        if lock is None:
            print(f"fluxlenet: {label}: another process still writes in {run_dir}; not started",
                  file=sys.stderr)
            sys.exit(1)
        remove_temporaries(run_dir)
        (run_dir / "error.txt").unlink(missing_ok=True)  # from an earlier failed attempt
        from .runlog import RunLog
        log = RunLog(run_dir, echo=_console_echo(config, backend))
        log.set_status("running", pid=os.getpid())
        if backend == "flux":  # before juliacall is imported: Julia's threads are fixed when it starts
            from .julia_env import juliacall_environment
            juliacall_environment(config.get("threads") or os.cpu_count() or 1)
        impl = backend_module(backend)
        # Julia's signal handling (on, for its threads) takes SIGTERM in a thread of its own and exits
        # with a backtrace; unblocked here it comes to this thread, whose handler stops the run cleanly.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
        from .config import RunConfig
        from .data import load_dataset
        cfg = RunConfig(**config)
        faults.point("start", None, cfg.run)
        _thread_lock_for_tqdm()
        data = load_dataset(cfg.dataset, cfg.data_dir, train_size=cfg.train_size, test_size=cfg.test_size,
                            valid_size=cfg.valid_size, seed=cfg.seed, download=False, progress=False)
        write_config(log.dir, cfg.to_dict(), versions=impl.versions(cfg), device=impl.device_name(cfg),
                     threads=impl.threads_used(cfg),
                     python=platform.python_version(), platform=platform.platform(),
                     train_samples=len(data.train_y), test_samples=len(data.test_y),
                     valid_samples=0 if data.valid_y is None else len(data.valid_y))
        status = impl.train(cfg, data, log)
        log.set_status(status, "a loss became NaN or infinite" if status == "diverged" else "")
    except SystemExit:
        raise
    except BaseException as e:  # a crash of this run, reported as such; the sweep goes on
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if lock is None:  # the folder is not ours: write nothing there
            sys.exit(EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else 1)
        sys.exit(_record_end(e, log, run_dir, label))
    finally:
        try:
            if log is not None:
                log.close()
        except Exception:
            pass
        if lock is not None:
            lock.close()


def _record_end(e: BaseException, log, run_dir: Path, label: str) -> int:
    """Record why the run stopped (interrupted or failed); returns the exit code."""
    from .data import DataError
    text = f"{type(e).__name__}: {e}".strip()
    # Julia turns a signal into an InterruptException, which reaches Python as a JuliaError.
    if _stop_requested or isinstance(e, KeyboardInterrupt) or "InterruptException" in text[:2000]:
        state, code = "interrupted", EXIT_INTERRUPTED
        reason = "stopped by Ctrl-C or SIGTERM"
        line = "Run stopped; run the same command again to resume from the last checkpoint"
    else:
        state, code = "failed", 1
        reason = str(e) if isinstance(e, DataError) else text
        first = reason.splitlines()[0] if reason else type(e).__name__
        line = f"Run failed: {first}"
        try:
            atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        except OSError:
            pass
    if log is not None:
        try:
            log.say(line)
        except OSError:
            pass  # printed already; console.log could not take it
    try:
        if log is None:
            atomic_write_json(run_dir / "status.json", {"status": state, "reason": reason})
        else:
            log.set_status(state, reason)
    except OSError as w:  # a full disk, say: tell the terminal at least
        print(f"fluxlenet: {label}: {line} (could not record it in {run_dir}: {w.strerror or w})",
              file=sys.stderr)
    return code
