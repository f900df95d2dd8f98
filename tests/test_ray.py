"""`--executor ray`: real small sweeps on a Ray cluster of this machine (skipped without Ray).

Ray is started inside a network namespace of the test's own (`unshare --net`, loopback only), so that
its processes talk over 127.0.0.1 alone. The storage test adds a worker node whose mount namespace
hides the runs folder under a tmpfs: a node that cannot see the run folders, as on a cluster without
shared storage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fluxlenet.runlog import RunFolder

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'fluxlenet[ray]'")

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "data" / "fashion-mnist"


def _can_make_namespaces() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", "ip link set lo up"], capture_output=True)
    return probe.returncode == 0


pytestmark = [
    pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {FASHION}"),
    pytest.mark.skipif(not _can_make_namespaces(), reason="needs unshare and ip (root) for a loopback-only network"),
]

SWEEP = """
description = "two small runs for the Ray tests"
[base]
model = "lenet5"
batchsize = 64
epochs = 2
checktime = 1
dataset = "fashion-mnist"
train_size = 256
test_size = 64
[[runs]]
name = "A"
eta = 1e-3
[[runs]]
name = "B"
eta = 3e-3
"""


def in_own_network(script: str, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "--net", "--mount", "sh", "-c", f"ip link set lo up && {script}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0",
                               "RAY_AUTH_MODE": "disabled", **(env or {})})  # a cluster of our own, loopback only


def sweep_command(sweep_file: Path, runs: Path, *extra: str) -> str:
    args = ["sweep", str(sweep_file), "--backend", "torch", "--data-dir", str(FASHION), "--runs-dir", str(runs), *extra]
    return " ".join([sys.executable, "-m", "fluxlenet", *args])


def figures(folder: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in RunFolder(folder).read_log_rows()]


def test_a_ray_sweep_gives_the_local_figures_and_a_killed_task_fails_alone(tmp_path):
    sweep_file = tmp_path / "two.toml"
    sweep_file.write_text(SWEEP)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    out = subprocess.run(sweep_command(sweep_file, local).split(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]

    # run B's worker is SIGKILLed after its epoch-1 checkpoint: B failed, A finished as on the local executor
    out = in_own_network(sweep_command(sweep_file, on_ray, "--executor", "ray"),
                         env={"FLUXLENET_FAULT": "B:kill@checkpoint1"})
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    a, b = (on_ray / "two" / f"{name}-seed0" / "torch" for name in ("A", "B"))
    assert RunFolder(a).read_status()["status"] == "finished"
    assert figures(a) == figures(local / "two" / "A-seed0" / "torch")
    status = RunFolder(b).read_status()
    assert status["status"] == "failed" and "SIGKILL" in status["reason"], status
    assert "Started a local Ray instance" in out.stderr + out.stdout

    # the rerun skips A and resumes B from its checkpoint: B's log equals the local one too (lockstep)
    out = in_own_network(sweep_command(sweep_file, on_ray, "--executor", "ray"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "A seed 0 [torch]: already done" in out.stdout
    assert "Resuming from the checkpoint of epoch 1" in (b / "console.log").read_text()
    assert figures(b) == figures(local / "two" / "B-seed0" / "torch")
    # one thread a run by default on both executors (a run's float32 figures depend on its threads)
    for folder in (a, b, local / "two" / "A-seed0" / "torch", local / "two" / "B-seed0" / "torch"):
        config = json.loads((folder / "config.json").read_text())
        assert config["config"]["threads"] == 1 and config["threads"] == {"torch": 1}, folder


def test_run_folders_that_a_node_cannot_see_stop_the_sweep_before_training(tmp_path):
    sweep_file = tmp_path / "two.toml"
    sweep_file.write_text(SWEEP)
    runs = tmp_path / "runs"
    runs.mkdir()
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")  # the venv's, unactivated
    script = (f"{ray} start --head --port=6399 --num-cpus=0 --include-dashboard=false >/dev/null 2>&1 && "
              f"unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs {runs} && "
              f"{ray} start --address=127.0.0.1:6399 --num-cpus=2 >/dev/null 2>&1' && "
              f"{sweep_command(sweep_file, runs, '--executor', 'ray', '--ray-address', '127.0.0.1:6399')}; "
              f"code=$?; {ray} stop --force >/dev/null 2>&1; exit $code")
    out = in_own_network(script)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("fluxlenet: error:")]
    assert len(errors) == 1 and "not visible from Ray node" in errors[0] and "--runs-dir" in errors[0], out.stderr
    assert not list(runs.rglob("log.csv")) and not list(runs.rglob(".ray-probe-*"))  # nothing trained, no probe left


def test_without_ray_the_executor_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
            "from fluxlenet.cli import main\n"
            f"sys.exit(main(['sweep', 'baseline', '--executor', 'ray', '--runs-dir', {str(tmp_path)!r}]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "fluxlenet: error: --executor ray needs Ray: pip install 'fluxlenet[ray]' (or pip install 'ray>=2.9')"]
    assert not any(tmp_path.iterdir())


SILENT_LISTENER = ("{python} -c 'import socket, time; s = socket.socket(); s.bind((\"127.0.0.1\", 6396)); s.listen(); "
                   "time.sleep(600)' >/dev/null 2>&1 & sleep 1; ").format(python=sys.executable)


def test_an_unreachable_ray_address_is_one_line_within_the_bound(tmp_path):
    sweep_file = tmp_path / "two.toml"
    sweep_file.write_text(SWEEP)
    runs = tmp_path / "runs"
    # nothing listens there: said at once
    out = in_own_network(sweep_command(sweep_file, runs, "--executor", "ray", "--ray-address", "127.0.0.1:6395"),
                         timeout=120)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [
        "fluxlenet: error: cannot reach the Ray cluster at 127.0.0.1:6395: Connection refused; start it with "
        "`python -m fluxlenet ray-node`, or check the address (HOST:PORT, the head's port 6379 by default)"]
    assert not runs.exists()  # before anything is written
    # something listens but no Ray answers (another service's port): Ray would wait for minutes; we wait 3 s
    started = time.monotonic()
    sweep = sweep_command(sweep_file, runs, "--executor", "ray", "--ray-address", "127.0.0.1:6396", "--ray-timeout", "3")
    out = in_own_network(f"{SILENT_LISTENER}{sweep}; code=$?; kill $!; exit $code", timeout=200)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert time.monotonic() - started < 100  # the bound, plus Ray's import in the probe process on a busy machine
    assert out.stderr.strip().splitlines() == [
        "fluxlenet: error: cannot reach the Ray cluster at 127.0.0.1:6396: no Ray answered within 3 s "
        "(--ray-timeout S waits longer); start it with `python -m fluxlenet ray-node`, or check the address "
        "(HOST:PORT, the head's port 6379 by default)"]
    assert not runs.exists()


def test_ctrl_c_while_waiting_for_ray_says_nothing_was_saved(tmp_path):
    sweep_file = tmp_path / "two.toml"
    sweep_file.write_text(SWEEP)
    script = SILENT_LISTENER + "exec " + sweep_command(sweep_file, tmp_path / "runs", "--executor", "ray",
                                                       "--ray-address", "127.0.0.1:6396", "--ray-timeout", "300")
    proc = subprocess.Popen(["unshare", "--net", "--mount", "sh", "-c", f"ip link set lo up && {script}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        time.sleep(8)  # the sweep process (sh exec'd it: this pid) waits for the cluster
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the listener too
    assert proc.returncode == 130, out + err
    assert err.strip().splitlines()[-1] == "fluxlenet: stopped.", err
    assert "saved" not in err and "Traceback" not in err
