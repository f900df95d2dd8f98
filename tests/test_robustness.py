"""Nothing lost: real sweeps (small sizes, real Fashion-MNIST) killed, crashed, interrupted, starved.

Every test drives `python -m fluxlenet sweep` in subprocesses, as a user would. Exact kill
points come from the fault-injection hook FLUXLENET_FAULT (fluxlenet/faults.py): the worker
SIGKILLs the sweep process and itself at that point, a real `kill -9` of the whole job with
no timing luck involved. Other tests kill or interrupt the sweep from outside, at whatever
moment the polling sees.

In lockstep mode on the CPU a resumed run's log.csv must equal an uninterrupted run's figure
for figure, every column but `seconds` (wall time).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fluxlenet import faults
from fluxlenet.config import RunConfig
from fluxlenet.fsutil import atomic_path, atomic_write_json, atomic_write_text
from fluxlenet.plan import check_existing
from fluxlenet.rundir import Task, run_is_busy
from fluxlenet.runlog import LOG_COLUMNS, DamagedRun, RunFolder, RunLog, check_checkpoint

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FASHION = SHARED / "fashion-mnist"
needs_data = pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {SHARED}")

SIZES = ["--dataset", "fashion-mnist", "--data-dir", str(FASHION), "--train-size", "600", "--test-size", "200"]
# 600 samples / batch 100 = 6 steps an epoch; 4 epochs; a checkpoint at epochs 2 and 4; every step traced
BASE = {"model": "lenet5", "optimizer": "Adam", "eta": 3e-4, "batchsize": 100, "epochs": 4, "checktime": 2,
        "threads": 1, "trace_steps": 24}
RUNS = {"A": {}, "B": {"batchsize": 150, "optimizer": "NAdam"}}
FIGURES = [c for c in LOG_COLUMNS if c != "seconds"]


def write_sweep(folder: Path, name: str, runs: dict, **base) -> Path:
    lines = ['description = "robustness tests"', "[base]"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in {**BASE, **base}.items()]
    for run, values in runs.items():
        lines += ["[[runs]]", f'name = "{run}"'] + [f"{k} = {v!r}".replace("'", '"') for k, v in values.items()]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def command(sweep: Path, runs_dir: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "fluxlenet", "sweep", str(sweep), "--backend", "torch", *SIZES,
            "--runs-dir", str(runs_dir), *map(str, extra)]


def environment(fault: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FLUXLENET_FAULT"}
    env["PYTHONUNBUFFERED"] = "1"
    if fault:
        env["FLUXLENET_FAULT"] = fault
    return env


def sweep(sweep_file: Path, runs_dir: Path, fault: str | None = None, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(command(sweep_file, runs_dir, *extra), capture_output=True, text=True, timeout=600,
                          env=environment(fault), cwd=runs_dir.parent)


def folder(runs_dir: Path, sweep_file: Path, run: str) -> Path:
    return runs_dir / sweep_file.stem / f"{run}-seed0" / "torch"


def figures(run_dir: Path) -> list[dict]:
    return [{k: row[k] for k in FIGURES} for row in RunFolder(run_dir).read_log_rows()]


def epochs(run_dir: Path) -> list[int]:
    return [row["epoch"] for row in RunFolder(run_dir).read_log_rows()]


def no_traceback(out: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr


def wait_for(condition, timeout=300.0, proc=None):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the sweep ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def tensorboard_steps(run_dir: Path, tag: str = "train/loss") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [event.step for event in acc.Tensors(tag)]  # tensorboard.summary writes tensor summaries


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted lockstep sweep of runs A and B: the figures every resumed run must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    runs_dir = tmp / "runs"
    sweep_file = write_sweep(tmp, "ref", RUNS)
    out = sweep(sweep_file, runs_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    result = {run: figures(folder(runs_dir, sweep_file, run)) for run in RUNS}
    result["A trace"] = RunFolder(folder(runs_dir, sweep_file, "A")).read_trace_rows()
    assert [r["epoch"] for r in result["A"]] == [0, 1, 2, 3, 4]
    assert [r["step"] for r in result["A trace"]] == list(range(1, 25))
    assert result["A"] != result["B"]
    return result


@needs_data
def test_sigkill_at_every_point_then_rerun_gives_the_uninterrupted_log(tmp_path, reference):
    """One run killed (kill -9 of sweep and worker) at eight points in turn, each attempt resuming
    the last: its log.csv ends equal to the uninterrupted run's, with no duplicated epoch."""
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "kills", {"A": {}})
    run_dir = folder(runs_dir, sweep_file, "A")
    # (kill point, epochs in log.csv after the kill)
    plan = [
        ("start", []),                   # before report(0): nothing logged
        ("epoch0", [0]),                 # report(0) done, no checkpoint: the next attempt starts afresh
        ("step9", [0, 1]),               # mid-epoch 2, before the first checkpoint
        ("checkpoint2", [0, 1, 2]),      # right after a checkpoint
        ("epoch3", [0, 1, 2, 3]),        # epoch 3 logged, the next attempt resumes from epoch 2
        ("step21", [0, 1, 2, 3]),        # mid-epoch 4 (epoch 3 logged again, not twice)
        ("epoch4", [0, 1, 2, 3, 4]),     # the last epoch logged, its checkpoint not yet saved
        ("checkpoint4", [0, 1, 2, 3, 4]),  # the final checkpoint saved, status not yet "finished"
    ]
    for point, logged in plan:
        out = sweep(sweep_file, runs_dir, f"killsweep@{point}")
        assert out.returncode == -signal.SIGKILL, (point, out.stdout, out.stderr)
        assert epochs(run_dir) == logged, point
        # trace.csv holds every step done so far, and the next attempt keeps those before its checkpoint
        traced = [r["step"] for r in RunFolder(run_dir).read_trace_rows()]
        assert traced == list(range(1, len(traced) + 1)), point
        assert RunFolder(run_dir).read_status()["status"] == "running", point
        assert not run_is_busy(run_dir), point  # the worker died with the sweep
    out = sweep(sweep_file, runs_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    no_traceback(out)
    assert RunFolder(run_dir).read_status()["status"] == "finished"
    assert figures(run_dir) == reference["A"]
    assert RunFolder(run_dir).read_trace_rows() == reference["A trace"]  # every step, to the last bit
    console = (run_dir / "console.log").read_text()
    assert console.count("Resuming from the checkpoint of epoch 2") == 4
    assert console.count("Resuming from the checkpoint of epoch 4") == 1
    # TensorBoard holds each epoch once: the killed attempts' points were dropped at each resume
    assert tensorboard_steps(run_dir) == [0, 1, 2, 3, 4]
    assert not list(run_dir.glob(".*.tmp"))


@needs_data
def test_kill_of_the_sweep_process_between_runs(tmp_path, reference):
    """`kill -9` of the sweep process (from outside) once run A is finished: the worker of run B, if
    started, dies with it; the rerun skips A untouched and completes B."""
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "between", RUNS)
    a, b = folder(runs_dir, sweep_file, "A"), folder(runs_dir, sweep_file, "B")
    proc = subprocess.Popen(command(sweep_file, runs_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=environment(), cwd=tmp_path)
    try:
        wait_for(lambda: RunFolder(a).read_status()["status"] == "finished", proc=proc)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    a_log = (a / "log.csv").read_bytes()
    a_stamp = (a / "log.csv").stat().st_mtime_ns
    out = sweep(sweep_file, runs_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"--- A seed 0 [torch]: already done in {a}, skipped" in out.stdout
    assert (a / "log.csv").read_bytes() == a_log and (a / "log.csv").stat().st_mtime_ns == a_stamp
    assert figures(a) == reference["A"] and figures(b) == reference["B"]
    assert RunFolder(b).read_status()["status"] == "finished"


@needs_data
def test_an_orphaned_worker_stops_when_the_sweep_is_killed(tmp_path, reference):
    """Only the sweep process is killed (at the end of epoch 3): its worker must not go on writing
    into the run folder; a rerun resumes and gets the uninterrupted figures."""
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "orphan", {"A": {}})
    run_dir = folder(runs_dir, sweep_file, "A")
    out = sweep(sweep_file, runs_dir, "killparent@epoch3")
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr
    pid = RunFolder(run_dir).read_status()["pid"]
    wait_for(lambda: not run_is_busy(run_dir), timeout=10)  # the kernel dropped the worker's lock: it is gone
    state = Path(f"/proc/{pid}/stat")
    assert not state.exists() or state.read_text().split(")")[-1].split()[0] in ("Z", "X")
    assert epochs(run_dir) == [0, 1, 2, 3]
    time.sleep(1.0)
    assert epochs(run_dir) == [0, 1, 2, 3] and RunFolder(run_dir).read_status()["status"] == "running"
    out = sweep(sweep_file, runs_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert figures(run_dir) == reference["A"]


@needs_data
def test_external_sigkill_mid_epoch_then_resume(tmp_path, reference):
    """`kill -9` of the sweep process at whatever moment epoch 3 is under way (checkpoint of epoch 2
    saved): the rerun resumes from it and reproduces the figures."""
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "midepoch", {"A": {}})
    run_dir = folder(runs_dir, sweep_file, "A")
    proc = subprocess.Popen(command(sweep_file, runs_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=environment(), cwd=tmp_path)
    try:
        wait_for(lambda: 2 in epochs(run_dir) and (run_dir / "model.pt").exists(), proc=proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_for(lambda: not run_is_busy(run_dir), timeout=10)
    out = sweep(sweep_file, runs_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert figures(run_dir) == reference["A"]


@needs_data
def test_native_mode_resumes_the_shuffle_rng(tmp_path):
    """Native mode draws its batch order from torch's RNG: the checkpoint's RNG state makes a resumed
    run equal to an uninterrupted one too."""
    sweep_file = write_sweep(tmp_path, "native", {"A": {}}, mode="native")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert sweep(sweep_file, whole).returncode == 0
    out = sweep(sweep_file, killed, "killsweep@epoch4")
    assert out.returncode == -signal.SIGKILL
    assert sweep(sweep_file, killed).returncode == 0
    assert figures(folder(killed, sweep_file, "A")) == figures(folder(whole, sweep_file, "A"))
    assert [r["epoch"] for r in figures(folder(whole, sweep_file, "A"))] == [0, 1, 2, 3, 4]


def ctrl_c_after_epoch_1(sweep_file, runs_dir, cwd, run_dir) -> tuple[str, str]:
    """The sweep, stopped with Ctrl-C (SIGINT to its process group) once `run_dir` has logged epoch 1;
    its (stdout, stderr), after checking it exited with 130."""
    proc = subprocess.Popen(command(sweep_file, runs_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=environment(), cwd=cwd, start_new_session=True)
    try:
        wait_for(lambda: 1 in epochs(run_dir), proc=proc)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stdout + stderr
    return stdout, stderr


@needs_data
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, reference):
    """SIGINT to the sweep's process group, as a terminal's Ctrl-C: exit 130, the resume hint,
    the run `interrupted`, no traceback; the same command again completes with equal logs."""
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "ctrlc", RUNS)
    a, b = folder(runs_dir, sweep_file, "A"), folder(runs_dir, sweep_file, "B")
    stdout, stderr = ctrl_c_after_epoch_1(sweep_file, runs_dir, tmp_path, a)
    # what was saved, as it is: A's epoch-2 checkpoint if A got that far, nothing otherwise
    saved = ("stopped. 1 run(s) have a checkpoint to go on from; run the same command again to resume (1 run(s) "
             "without one start from the beginning)." if (a / "model.pt").exists() else
             "stopped. No run finished or has a checkpoint to go on from; run the same command again to start them.")
    assert saved in stderr, stderr
    assert "Traceback" not in stdout + stderr
    assert RunFolder(a).read_status()["status"] == "interrupted"
    assert RunFolder(b).read_status()["status"] == "new"  # never started
    assert "Run stopped; run the same command again" in (a / "console.log").read_text()
    out = sweep(sweep_file, runs_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert figures(a) == reference["A"] and figures(b) == reference["B"]


@needs_data
def test_ctrl_c_before_any_checkpoint_does_not_say_anything_was_saved(tmp_path):
    """No checkpoints (checktime 0), 40 epochs: stopped after epoch 1, nothing can be resumed, and the
    command says so instead of "checkpoints are saved"."""
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "unsaved", {"A": {}}, epochs=40, checktime=0, trace_steps=0)
    a = folder(runs_dir, sweep_file, "A")
    stdout, stderr = ctrl_c_after_epoch_1(sweep_file, runs_dir, tmp_path, a)
    assert stderr.strip().splitlines()[-1] == ("fluxlenet: stopped. No run finished or has a checkpoint to go on "
                                               "from; run the same command again to start them."), stderr
    assert "saved" not in stderr and RunFolder(a).read_status()["status"] == "interrupted"
    assert not (a / "model.pt").exists()


@needs_data
def test_crashed_workers_fail_their_run_and_the_sweep_goes_on(tmp_path):
    """A worker that raises (as a Julia error would) and one that dies without a word (os.abort)
    each leave their run `failed` with the reason; run C finishes; the summary and exit code 1
    follow. The same command again retries the failed runs and skips the finished one."""
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "crash", {"A": {}, "B": {}, "C": {}}, epochs=2)
    a, b, c = (folder(runs_dir, sweep_file, r) for r in "ABC")
    out = sweep(sweep_file, runs_dir, "A:raise@epoch1,B:abort@step3")
    assert out.returncode == 1, out.stdout + out.stderr
    no_traceback(out)
    status = RunFolder(a).read_status()
    assert (status["status"], status["reason"]) == ("failed", "RuntimeError: fault injected by FLUXLENET_FAULT at epoch1")
    assert "Run failed: RuntimeError: fault injected" in (a / "console.log").read_text()
    assert "Traceback" in (a / "error.txt").read_text()
    assert RunFolder(b).read_status()["status"] == "failed"
    assert RunFolder(b).read_status()["reason"] == "the worker process was killed by SIGABRT (exit code -6)"
    assert "Run failed: the worker process was killed by SIGABRT" in (b / "console.log").read_text()
    assert RunFolder(c).read_status()["status"] == "finished"
    assert "--- A seed 0 [torch] failed: RuntimeError: fault injected" in out.stdout
    assert "--- B seed 0 [torch] failed: the worker process was killed by SIGABRT" in out.stdout
    summary = out.stdout[out.stdout.index("\nrun "):]
    for run, state in (("A", "failed"), ("B", "failed"), ("C", "finished")):
        assert re.search(rf"^{run} +0 torch +{state} ", summary, re.M), summary
    assert "2 run(s) did not finish" in out.stdout

    again = sweep(sweep_file, runs_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "--- C seed 0 [torch]: already done" in again.stdout
    assert all(RunFolder(f).read_status()["status"] == "finished" for f in (a, b, c))
    assert figures(a) == figures(c)  # same settings: the retried runs give the same figures
    assert figures(b) == figures(c)
    assert not (a / "error.txt").exists()  # the failed attempt's traceback went with it


@needs_data
def test_a_nan_loss_marks_the_run_diverged_and_the_sweep_goes_on(tmp_path):
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "diverge", {"huge": {"eta": 1e8}, "fine": {}}, epochs=2)
    huge, fine = folder(runs_dir, sweep_file, "huge"), folder(runs_dir, sweep_file, "fine")
    out = sweep(sweep_file, runs_dir)
    assert out.returncode == 0, out.stdout + out.stderr  # a diverged run is a result
    assert RunFolder(huge).read_status()["status"] == "diverged"
    assert RunFolder(huge).read_log_rows()[-1]["status"] == "diverged"
    assert RunFolder(fine).read_status()["status"] == "finished"
    assert "--- huge seed 0 [torch] diverged" in out.stdout
    again = sweep(sweep_file, runs_dir)
    assert again.returncode == 0 and again.stdout.count("already done") == 2


@needs_data
def test_a_full_disk_fails_the_run_with_the_reason(tmp_path):
    """The checkpoint write fails with ENOSPC (injected in fsutil.atomic_path, where every file of a
    run is committed): the run is `failed` with the reason, no half-written model.pt or temporary
    file remains, the sweep ends with its summary and exit code 1."""
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "enospc", {"A": {}}, epochs=2)
    run_dir = folder(runs_dir, sweep_file, "A")
    out = sweep(sweep_file, runs_dir, "enospc@model.pt")
    assert out.returncode == 1, out.stdout + out.stderr
    no_traceback(out)
    status = RunFolder(run_dir).read_status()
    reason = f"OSError: [Errno 28] No space left on device: '{run_dir / 'model.pt'}'"
    assert (status["status"], status["reason"]) == ("failed", reason)
    assert f"Run failed: {reason}" in (run_dir / "console.log").read_text()
    assert f"--- A seed 0 [torch] failed: {reason}" in out.stdout
    assert epochs(run_dir) == [0, 1, 2] and not (run_dir / "model.pt").exists()
    assert not list(run_dir.glob(".*.tmp"))
    assert "\nrun " in out.stdout and "1 run(s) did not finish" in out.stdout


@needs_data
def test_a_really_full_disk(tmp_path):
    """The same on a 256 KiB tmpfs (needs root and mount; skipped elsewhere): LeNet-5's checkpoint
    with its Adam state (~530 KB) cannot be written."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        sweep_file = write_sweep(tmp_path, "tiny", {"A": {}}, epochs=2)
        runs_dir = mnt / "runs"
        out = sweep(sweep_file, runs_dir)
        run_dir = folder(runs_dir, sweep_file, "A")
        assert out.returncode == 1, out.stdout + out.stderr
        no_traceback(out)
        status = RunFolder(run_dir).read_status()
        assert status["status"] == "failed", status
        assert status["reason"] == f"OSError: [Errno 28] No space left on device: '{run_dir / 'model.pt'}'"
        assert epochs(run_dir) == [0, 1, 2]
        assert not (run_dir / "model.pt").exists() and not list(run_dir.glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@needs_data
def test_a_second_sweep_on_the_same_runs_stops_with_a_clear_message(tmp_path):
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "twice", {"A": {}}, epochs=2)
    run_dir = folder(runs_dir, sweep_file, "A")
    first = subprocess.Popen(command(sweep_file, runs_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=environment(), cwd=tmp_path)
    try:
        wait_for(lambda: RunFolder(run_dir).read_status()["status"] == "running", proc=first)
        second = sweep(sweep_file, runs_dir)
        assert second.returncode == 2
        assert second.stderr == (f"fluxlenet: error: another sweep (pid {first.pid}) is running in "
                                 f"{runs_dir / 'twice'}; wait for it to finish or use another --runs-dir\n")
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stdout + stderr
    assert RunFolder(run_dir).read_status()["status"] == "finished" and epochs(run_dir) == [0, 1, 2]


@needs_data
def test_a_damaged_run_folder_blocks_neither_the_sweep_nor_parity_nor_report(tmp_path):
    """Run A's log.csv gets a garbage line: a rerun names the file in one line and leaves A as it is,
    runs B (whose folder was removed) and prints the summary with A marked; parity and report go on
    with B and mark A."""
    runs_dir = tmp_path / "runs"
    sweep_file = write_sweep(tmp_path, "damaged", {"A": {}, "B": {}}, epochs=2)
    assert sweep(sweep_file, runs_dir).returncode == 0
    a, b = folder(runs_dir, sweep_file, "A"), folder(runs_dir, sweep_file, "B")
    lines = (a / "log.csv").read_text().splitlines(keepends=True)
    (a / "log.csv").write_text("".join(lines[:2] + ["0.5,garbage\n"] + lines[2:]))
    damaged_files = {p.name: p.read_bytes() for p in a.iterdir() if p.is_file()}
    shutil.rmtree(b.parent)
    out = sweep(sweep_file, runs_dir)
    no_traceback(out)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr == (f"fluxlenet: error: {a}/log.csv: line 3 has 2 fields, the header 10; move the run folder "
                          f"{a} away (a rerun of its sweep then runs it afresh)\n")
    summary = out.stdout[out.stdout.index("\nrun "):]
    assert re.search(r"^A +0 torch +damaged ", summary, re.M) and re.search(r"^B +0 torch +finished +2 ", summary, re.M)
    assert RunFolder(b).read_status()["status"] == "finished"
    assert {p.name: p.read_bytes() for p in a.iterdir() if p.is_file()} == damaged_files  # left as it was

    for command_ in (["parity", "damaged"], ["report", "damaged"]):
        done = subprocess.run([sys.executable, "-m", "fluxlenet", *command_, "--runs-dir", str(runs_dir)],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        no_traceback(done)
        assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
        assert f"NOTE: left out, damaged: {a}/log.csv: line 3 has 2 fields" in done.stdout
    assert "B " in (runs_dir / "damaged" / "report.md").read_text()
    # the same command, once the damaged folder is moved away, redoes run A
    shutil.move(a.parent, tmp_path / "A-damaged")
    out = sweep(sweep_file, runs_dir)
    assert out.returncode == 0 and RunFolder(a).read_status()["status"] == "finished", out.stdout + out.stderr


@needs_data
def test_a_checkpoint_keeps_its_settings_when_config_json_is_gone(tmp_path):
    """The issue's case: a finished 2-epoch `train` run, config.json deleted, rerun with another --eta
    and --epochs 3: refused as when config.json is there (checkpoint.json holds the settings)."""
    train = [sys.executable, "-m", "fluxlenet", "train", "--backend", "torch", *SIZES, "--batchsize", "100",
             "--checktime", "1", "--savepath", str(tmp_path / "t")]
    run_dir = tmp_path / "t" / "t-seed0" / "torch"  # train lays its run out as a sweep's
    done = subprocess.run([*train, "--epochs", "2"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run_dir / "checkpoint.json").is_file()
    (run_dir / "config.json").unlink()
    log = (run_dir / "log.csv").read_bytes()
    done = subprocess.run([*train, "--epochs", "3", "--eta", "1e-3"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == (
        f"fluxlenet: error: {run_dir} holds a run with other settings (eta 0.0003 there, 0.001 now, epochs 2 there, "
        f"3 now); use another folder (--runs-dir; --savepath for train) or remove that one\n"), done.stderr
    assert (run_dir / "log.csv").read_bytes() == log and "Epoch:" not in done.stdout
    # the same settings: the finished run is found finished
    done = subprocess.run([*train, "--epochs", "2"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and "already done" in done.stdout, done.stdout + done.stderr


# -- the pieces, without a sweep ------------------------------------------------------------------------

def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "log.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a ro")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_an_unreadable_status_resumes_the_run(tmp_path):
    cfg = RunConfig(run="A").validate()
    RunFolder(tmp_path).write_config(cfg.to_dict())
    (tmp_path / "status.json").write_text('{"status": "fini')  # not ours: ours are atomic
    assert RunFolder(tmp_path).read_status()["status"] == "unknown"
    assert check_existing(Task(cfg, tmp_path)) == "resume"
    atomic_write_json(tmp_path / "status.json", {"status": "finished"})
    assert check_existing(Task(cfg, tmp_path)) == "done"


def test_truncate_drops_the_killed_attempts_rows_from_log_and_tensorboard(tmp_path):
    log = RunLog(tmp_path, echo=lambda line: None)
    for epoch in range(4):
        log.record(epoch, {"loss": 1.0 / (epoch + 1), "acc": 10.0 * epoch}, {"loss": 1.0, "acc": 5.0})
    log.close()
    resumed = RunLog(tmp_path, echo=lambda line: None)  # a new worker, resuming from epoch 1
    resumed.truncate(1)
    resumed.record(2, {"loss": 0.3, "acc": 30.0}, {"loss": 0.9, "acc": 6.0})
    resumed.close()
    assert [r["epoch"] for r in RunFolder(tmp_path).read_log_rows()] == [0, 1, 2]
    assert tensorboard_steps(tmp_path) == [0, 1, 2]
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoints_are_checked_by_structure_without_torch_or_julia(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.arange(1000.0)}, "epoch": 2}, path)
    blob = path.read_bytes()
    check_checkpoint(path)
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DamagedRun, match="model.pt: is not a torch checkpoint .*; delete it to start that run afresh"):
        check_checkpoint(path)
    at = blob.index(b"\x00\x00\x80?")  # 1.0 in the tensor's bytes: a bit flipped on the disk
    path.write_bytes(blob[:at] + b"\x01" + blob[at + 1:])
    with pytest.raises(DamagedRun, match="fails its CRC check"):
        check_checkpoint(path)
    bson = tmp_path / "optimiser.bson"
    document = (12).to_bytes(4, "little") + b"\x10a\x00" + (7).to_bytes(4, "little") + b"\x00"  # {a: 7}
    bson.write_bytes(document)
    check_checkpoint(bson)
    bson.write_bytes(document[:-3])
    with pytest.raises(DamagedRun, match="optimiser.bson: is not a BSON document"):
        check_checkpoint(bson)


def test_fault_rules_are_checked():
    assert faults._parse("NADAM:abort@epoch2, enospc@model.pt") == [("NADAM", "abort", "epoch2"),
                                                                    (None, "enospc", "model.pt")]
    with pytest.raises(ValueError, match="bad rule"):
        faults._parse("explode@epoch1")


def test_a_run_lock_waits_for_its_holder_and_is_seen_by_readers(tmp_path):
    from fluxlenet.rundir import lock_run
    run_dir = tmp_path / "run"
    held = lock_run(run_dir)
    assert held is not None and run_is_busy(run_dir)
    started = time.monotonic()
    assert lock_run(run_dir, wait_s=0.3) is None  # another holder: given up after wait_s
    assert 0.3 <= time.monotonic() - started < 5
    held.release()
    assert (run_dir / ".worker.lock").exists() and not run_is_busy(run_dir)
    again = lock_run(run_dir, wait_s=0.3)
    assert again is not None and run_is_busy(run_dir)
    again.release()
