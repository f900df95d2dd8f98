"""Sweeps on a Ray cluster (`sweep NAME --executor ray [--ray-address ADDRESS]`).

Each backend run is a Ray task that reserves its threads as CPUs and runs the run exactly as the local
executor does: in a spawned worker process of its own (fluxlenet.worker.worker_main), so torch and
juliacall never share a process and a crash takes only that run. Flux runs go only to nodes that
declare the custom resource JULIA_RESOURCE (`python -m fluxlenet ray-node` starts such a node where
Julia is set up). Under Ray each Flux run starts its own Julia (the local executor's workers keep it).

Run folders and data must be on storage every node sees: a probe task on every node reads a file
written here and writes one back, before any training. Everything else is the local executor's: the
sweep lock and the skipping/resuming decided before this (fluxlenet.plan), config.json written by the run's worker, the status a
worker records or, when it died without a word, "failed" with how it died; Ctrl-C cancels the tasks
(their workers record "interrupted") and the command says how to resume.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import socket
from pathlib import Path

from .config import ConfigError
from .runner import (STOP_WAIT_S, Task, default_threads, finish_task, mark_run, raise_interrupt, start_tasks,
                     wait_until_free)
from .runlog import FINAL_STATES, RunFolder
from .worker import JOBS_ENV, worker_main

JULIA_RESOURCE = "fluxlenet_julia"
INSTALL_HINT = "pip install 'fluxlenet[ray]'"


class RayError(ConfigError):
    """The Ray cluster cannot take this sweep (not installed, unreachable, storage, no Julia node)."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayError(f"--executor ray needs Ray: {INSTALL_HINT} (or pip install 'ray>=2.9')") from None
    return ray


IMPORT_WAIT_S = 120.0  # how long the probe process may take to import Ray, before its connection is timed


def _address_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of HOST:PORT or ray://HOST:PORT; None for the forms Ray resolves itself ("auto")."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _probe_connection(address: str, conn) -> None:
    """In a process of its own: can a Ray driver connect to `address`? Says "imported" once Ray is
    loaded, then None (connected) or the first line of the error. Ray's own lines go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import logging
    ray = import_ray()
    conn.send("imported")
    try:
        ray.init(address=address, log_to_driver=False, include_dashboard=False, logging_level=logging.ERROR)
        ray.shutdown()
        conn.send(None)
    except Exception as e:
        text = str(e).strip()
        conn.send(text.splitlines()[0] if text else type(e).__name__)


def check_reachable(address: str, timeout_s: float) -> None:
    """One line (RayError), within about `timeout_s`, when no Ray cluster answers at `address`: Ray itself
    retries for minutes without a word. Before anything is read or written.

    First a plain TCP connection (nothing listens, no route: said at once), then a Ray driver connecting in
    a process of its own (a port that is not a Ray cluster's: Ray's connection blocks, so it is timed there)."""
    where = f"cannot reach the Ray cluster at {address}"
    hint = "start it with `python -m fluxlenet ray-node`, or check the address (HOST:PORT, the head's port 6379 by default)"
    host_port = _address_host_port(address)
    if host_port is not None:
        try:
            socket.create_connection(host_port, timeout=timeout_s).close()
        except socket.timeout:
            raise RayError(f"{where}: no answer within {timeout_s:g} s; {hint}") from None
        except OSError as e:
            raise RayError(f"{where}: {e.strerror or e}; {hint}") from None
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_probe_connection, args=(address, child), daemon=True)
    proc.start()
    child.close()
    answer = "no answer"
    try:
        if conn.poll(IMPORT_WAIT_S) and conn.recv() == "imported" and conn.poll(timeout_s):
            answer = conn.recv()
    except EOFError:
        proc.join()
        answer = f"a Ray driver could not be started here (exit code {proc.exitcode})"
    finally:
        proc.join(5 if answer is None else 0)  # a probe that connected shuts down by itself
        if proc.is_alive():
            proc.kill()
            proc.join()
        conn.close()
    if answer == "no answer":
        raise RayError(f"{where}: no Ray answered within {timeout_s:g} s (--ray-timeout S waits longer); {hint}")
    if answer is not None:
        raise RayError(f"{where}: {answer}")


def run_in_worker(backend: str, config: dict, run_dir: str) -> int:
    """The body of a Ray task: the run in a spawned worker process, as the local executor runs it.
    Returns the worker's exit code; a cancelled task (ray.cancel) stops its worker with SIGTERM, so the
    worker records the run as interrupted."""
    os.environ[JOBS_ENV] = "2"  # lines labelled with their run, no progress bars (Ray gathers the output)
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=worker_main, args=(backend, config, run_dir, os.getpid()))
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc.start()
    finally:
        signal.signal(signal.SIGINT, old)
    try:
        proc.join()
    except KeyboardInterrupt:  # ray.cancel
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(STOP_WAIT_S)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return proc.exitcode


def probe_storage(folder: str, token: str, data_dirs: list[str]) -> dict:
    """A probe task on one node: can it read what the driver wrote in `folder`, write back, see the data?"""
    here = {"node": socket.gethostname(), "read": False, "wrote": False, "missing_data": []}
    try:
        here["read"] = (Path(folder) / f".ray-probe-{token}").read_text() == token
        (Path(folder) / f".ray-probe-{token}-{secrets.token_hex(4)}").write_text(token)
        here["wrote"] = True
    except OSError:
        pass
    here["missing_data"] = [d for d in data_dirs if not Path(d).is_dir()]
    return here


def check_storage(ray, folder: Path, data_dirs: list[str]) -> None:
    """Every alive node must see the run folders (both ways) and the data; else one line, before training."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    token = secrets.token_hex(8)
    marker = folder / f".ray-probe-{token}"
    marker.write_text(token)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(num_cpus=0)(probe_storage)
        answers = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                           .remote(str(folder), token, data_dirs) for n in nodes])
        written = len(list(folder.glob(f".ray-probe-{token}-*")))
    finally:
        for path in folder.glob(f".ray-probe-{token}*"):
            path.unlink(missing_ok=True)
    for node, answer in zip(nodes, answers):
        where = f"Ray node {answer['node']} ({node.get('NodeManagerAddress')})"
        if not answer["read"]:
            raise RayError(f"the run folders in {folder} are not visible from {where}: put --runs-dir on storage "
                           "that every node of the cluster mounts at the same path")
        if answer["missing_data"]:
            raise RayError(f"the data folder {answer['missing_data'][0]} is not visible from {where}: use a "
                           "--data-dir on storage that every node mounts at the same path")
    if written < len(nodes):
        raise RayError(f"a Ray node cannot write in {folder}: put --runs-dir on storage every node can write")


def run_tasks_ray(tasks: list[Task], folder: Path, address: str | None = None, echo=print) -> dict[str, list[Task]]:
    """Run every task on the Ray cluster at `address` (None: a Ray instance of this machine); returns the
    tasks grouped by final status, like fluxlenet.runner.run_tasks."""
    ray = import_ray()
    if not tasks:
        return {}
    try:
        ray.init(address=address, log_to_driver=True, include_dashboard=False,
                 **({} if address else {"num_cpus": os.cpu_count() or 1}))
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayError(f"cannot reach the Ray cluster at {address or 'this machine'}: "
                       f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    try:
        return _run(ray, tasks, folder, echo)
    finally:
        ray.shutdown()


def _run(ray, tasks: list[Task], folder: Path, echo) -> dict[str, list[Task]]:
    resources = ray.cluster_resources()
    if any(t.cfg.backend == "flux" for t in tasks) and not resources.get(JULIA_RESOURCE):
        raise RayError(f"no node of the Ray cluster declares Julia ready (resource {JULIA_RESOURCE}): start "
                       "nodes where `python -m fluxlenet setup-julia` ran with `python -m fluxlenet ray-node`")
    too_big = [t for t in tasks if (t.cfg.threads or 1) > resources.get("CPU", 0)]
    if too_big:
        raise RayError(f"{too_big[0].label} asks for {too_big[0].cfg.threads} threads, more than the cluster's "
                       f"{resources.get('CPU', 0):g} CPUs; use --threads N with N <= that")
    from .data import dataset_dir
    data_dirs = sorted({str(Path(dataset_dir(t.cfg.dataset, t.cfg.data_dir)).resolve()) for t in tasks})
    check_storage(ray, folder, data_dirs)
    wait_until_free(tasks, echo)

    remote = ray.remote(run_in_worker)
    pending: dict = {}
    for task, cfg in start_tasks(tasks, echo, default_threads):
        options = {"num_cpus": cfg.threads, "max_retries": 0}
        if cfg.backend == "flux":
            options["resources"] = {JULIA_RESOURCE: 1}
        pending[remote.options(**options).remote(cfg.backend, cfg.to_dict(), str(task.run_dir))] = task
    results: dict[str, list[Task]] = {}
    failed_to_start = [t for t in tasks if t not in pending.values()]
    if failed_to_start:
        results["failed"] = failed_to_start
    old_term = signal.signal(signal.SIGTERM, raise_interrupt)  # a scheduler's SIGTERM is a Ctrl-C
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)  # a timeout: Ctrl-C gets through
            if not done:
                continue
            task = pending.pop(done[0])
            try:
                code = ray.get(done[0])
            except Exception as e:  # the task itself was lost (its node died): the run did not finish
                code = None
                if RunFolder(task.run_dir).read_status()["status"] not in FINAL_STATES + ("failed", "interrupted"):
                    mark_run(task, "failed", f"its Ray task was lost ({type(e).__name__})", echo)
            results.setdefault(finish_task(task, code, echo), []).append(task)
    except KeyboardInterrupt:
        echo(f"\nStopping {len(pending)} Ray task(s): their runs save their state ...")
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=STOP_WAIT_S + 5)
        for task in pending.values():
            if RunFolder(task.run_dir).read_status()["status"] not in FINAL_STATES + ("failed", "interrupted"):
                mark_run(task, "interrupted", "stopped by Ctrl-C (its Ray task was cancelled)", echo)
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
    return results
