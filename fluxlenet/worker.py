"""One backend run, in its own `spawn`ed process.

juliacall and torch must never share a process (Julia's global LLVM symbols can bind
into the torch wheel), and a crash must not take the sweep with it. So the runner
starts `worker_main` with the spawn method, and this module imports neither torch nor
juliacall at the top: the Flux worker imports juliacall before anything else can
import torch.
"""

from __future__ import annotations

import os
import platform
import sys
import traceback
from pathlib import Path

from .fsutil import atomic_write_json, read_json


def backend_module(backend: str):
    if backend == "flux":
        from .backends import flux  # imports juliacall first thing
        return flux
    from .backends import torch_backend
    return torch_backend


def write_config(run_dir: Path, config: dict, **extra) -> None:
    """config.json: the validated RunConfig plus what describes the run's environment."""
    path = run_dir / "config.json"
    current = read_json(path) if path.exists() else {}
    current.update({"config": config, **extra})
    atomic_write_json(path, current)


def worker_main(backend: str, config: dict, run_dir: str) -> None:
    impl = backend_module(backend)
    from .config import RunConfig
    from .data import DataError, load_dataset
    from .runlog import RunLog

    cfg = RunConfig(**config)
    log = RunLog(run_dir)
    try:
        log.set_status("running", pid=os.getpid())
        data = load_dataset(cfg.dataset, cfg.data_dir, train_size=cfg.train_size, test_size=cfg.test_size,
                            valid_size=cfg.valid_size, seed=cfg.seed, download=False, progress=False)
        write_config(log.dir, cfg.to_dict(), versions=impl.versions(cfg), device=impl.device_name(cfg),
                     python=platform.python_version(), platform=platform.platform(),
                     train_samples=len(data.train_y), test_samples=len(data.test_y),
                     valid_samples=0 if data.valid_y is None else len(data.valid_y))
        status = impl.train(cfg, data, log)
        log.set_status(status, "a loss became NaN or infinite" if status == "diverged" else "")
    except KeyboardInterrupt:
        log.set_status("interrupted", "stopped by Ctrl-C")
        sys.exit(130)
    except DataError as e:
        log.set_status("failed", str(e))
        sys.exit(1)
    except BaseException as e:  # a crash of this run, reported as such; the sweep goes on
        reason = f"{type(e).__name__}: {e}".strip()
        (log.dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        log.say(f"Run failed: {reason.splitlines()[0] if reason else type(e).__name__}")
        log.set_status("failed", reason)
        sys.exit(1)
    finally:
        log.close()
