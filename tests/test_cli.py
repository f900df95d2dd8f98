"""Bad input: every user mistake gives one clear line and a non-zero exit code, before training,
and never a traceback.

The table BAD_INPUTS is the list of these cases and their messages; each runs
`python -m fluxlenet` in a subprocess, as a user would, and asserts the exit code, that
stderr is exactly one line holding the message, and that nothing trained.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fluxlenet.config import RunConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FASHION = SHARED / "fashion-mnist"
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {SHARED}")

USAGE = 2
ERR = "fluxlenet: error: "
SWEEP_ERR = "python -m fluxlenet sweep: error: "
TRAIN = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"

# A small sweep file; a case's bad line goes in as line 6 (in [base]) or as it says.
SWEEP = """description = "bad input"
[base]
batchsize = 100
epochs = 4
checktime = 2
{line}
[[runs]]
name = "A"
{run}"""


@dataclass
class Case:
    name: str
    args: list[str]                          # {tmp}: the test's folder, {sweep}: its sweep file, {data}: data dir
    message: str                             # the line on stderr holds this ({tmp} filled in)
    code: int = USAGE
    prefix: str = ERR                        # the line on stderr starts with this
    line: str = ""                           # a line for the sweep file's [base]
    run: str = ""                            # lines for its [[runs]] table
    data: str | None = None                  # a data-dir problem: "missing", "truncated", "corrupt", "mismatch"
    env: dict = field(default_factory=dict)
    setup: str | None = None                 # "other-settings", "locked", "file-in-the-way"
    edit: tuple[str, str] | None = None      # (old, new): a change to the sweep file's lines


def sweep_args(*extra):
    return ["sweep", "{sweep}", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", "{data}",
            "--train-size", "600", "--test-size", "200", "--runs-dir", "{tmp}/runs", *extra]


def train_args(*extra):
    return ["train", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", "{data}",
            "--train-size", "600", "--test-size", "200", "--savepath", "{tmp}/t", *extra]


BAD_INPUTS = [
    # -- the sweep ------------------------------------------------------------------------------------
    Case("unknown sweep", ["sweep", "nosuch", "--backend", "torch"],
         "unknown sweep 'nosuch'; built-in sweeps: baseline, "),
    Case("sweep file missing", ["sweep", "{tmp}/gone.toml", "--backend", "torch"],
         "sweep file {tmp}/gone.toml does not exist"),
    Case("sweep file not TOML", sweep_args(), "sweep file {tmp}/bad.toml: not valid TOML: ", line="eta = "),
    Case("unknown key, with its line", sweep_args(),
         "sweep file {tmp}/bad.toml: run 'A': unknown setting 'etaa'; known settings: ", line="etaa = 1e-3"),
    Case("wrong type, with its line", sweep_args(),
         "sweep file {tmp}/bad.toml: run 'A': epochs must be a number, not 'many' (line 4)",
         edit=("epochs = 4", 'epochs = "many"')),
    Case("negative learning rate in the file", sweep_args(),
         "sweep file {tmp}/bad.toml: run 'A': learning rate eta must be > 0, not -0.1 (line 6)", line="eta = -0.1"),
    Case("batch 0 in the file", sweep_args(),
         "sweep file {tmp}/bad.toml: run 'A': batchsize must be >= 1, not 0 (line 3)",
         edit=("batchsize = 100", "batchsize = 0")),
    Case("checktime < 0 in the file", sweep_args(),
         "sweep file {tmp}/bad.toml: run 'A': checktime must be >= 0 (0: no checkpoints), not -1 (line 5)",
         edit=("checktime = 2", "checktime = -1")),
    Case("unknown optimizer in the file", sweep_args(),
         "sweep file {tmp}/bad.toml: run 'A': unknown optimizer 'Adamm'; known: ", line='optimizer = "Adamm"'),
    Case("two runs with one name", sweep_args(), "sweep file {tmp}/bad.toml: two runs are named 'A'",
         run='[[runs]]\nname = "A"'),
    Case("--epochs 0", sweep_args("--epochs", "0"),
         "argument --epochs: must be >= 1, got 0 (see python -m fluxlenet sweep --help)", prefix=SWEEP_ERR),
    Case("--train-size not a number", sweep_args("--train-size", "many"),
         "argument --train-size: expected a whole number, got 'many'", prefix=SWEEP_ERR),
    Case("--seeds negative", sweep_args("--seeds", "-1"),
         "argument --seeds: expected seeds >= 0 like 1,2,3, got '-1'", prefix=SWEEP_ERR),
    Case("unknown backend", sweep_args("--backend", "jax"), "argument --backend: invalid choice: 'jax'",
         prefix=SWEEP_ERR),
    # -- train flags ----------------------------------------------------------------------------------
    Case("train: negative learning rate", train_args("--eta", "-0.1"),
         "run 't': learning rate eta must be > 0, not -0.1"),
    Case("train: batch 0", train_args("--batchsize", "0"), "run 't': batchsize must be >= 1, not 0"),
    Case("train: checktime < 0", train_args("--checktime", "-1"),
         "run 't': checktime must be >= 0 (0: no checkpoints), not -1"),
    Case("train: a model for other data", train_args("--model", "cifar-cnn"),
         "model 'cifar-cnn' takes inputs of shape (3, 32, 32), the dataset has (1, 28, 28)"),
    # -- the dataset folder ---------------------------------------------------------------------------
    Case("data file missing (and no download)", sweep_args(),
         f"could not download {IMAGES} (tried http://127.0.0.1:9/{IMAGES}; last error ", data="missing",
         env={"FLUXLENET_MIRROR": "http://127.0.0.1:9/"}),
    Case("data file truncated", sweep_args(),
         f"{{tmp}}/data/{IMAGES}: is truncated (the gzip stream ends early); delete it and run "
         f"`python -m fluxlenet data fetch --dataset fashion-mnist --data-dir {{tmp}}/data`, "
         f"or replace it with a good copy", data="truncated"),
    Case("data file corrupt", sweep_args(),
         f"{{tmp}}/data/{IMAGES}: is not an IDX images file (magic number ", data="corrupt"),
    Case("labels and images disagree", sweep_args(),
         f"{{tmp}}/data/{LABELS}: has 10000 labels but {IMAGES} has 60000 images", data="mismatch"),
    # -- the runs folder ------------------------------------------------------------------------------
    Case("runs folder under a file", ["sweep", "{sweep}", "--backend", "torch", "--runs-dir", "{tmp}/file.txt/sub"],
         "cannot write in {tmp}/file.txt/sub/bad (Not a directory: ", setup="file-in-the-way"),
    Case("runs folder in /proc", ["sweep", "{sweep}", "--backend", "torch", "--runs-dir", "/proc/fluxlenet-runs"],
         "cannot write in /proc/fluxlenet-runs/bad ("),  # root: no such file; others: permission denied
    Case("disk full (a write error)", sweep_args(),
         "cannot write in {tmp}/runs/bad (No space left on device: {tmp}/runs/bad/.write-test.",
         env={"FLUXLENET_FAULT": "enospc@*"}),
    Case("runs folder holds other settings", sweep_args(),
         "{tmp}/runs/bad/A-seed0/torch holds a run with other settings (epochs 9 there, 4 now); ",
         setup="other-settings"),
    Case("another sweep running there", sweep_args(),
         "another sweep (pid {pid}) is running in {tmp}/runs/bad; wait for it to finish or use another --runs-dir",
         setup="locked"),
]


def prepare(case: Case, tmp: Path):
    """Make the case's files; returns what must stay open while the command runs."""
    text = SWEEP.format(line=case.line, run=case.run)
    if case.edit:
        text = text.replace(*case.edit)
    (tmp / "bad.toml").write_text(text)
    data = FASHION
    if case.data:
        data = tmp / "data"
        data.mkdir()
        for name in (IMAGES, LABELS) + TRAIN:
            shutil.copy(FASHION / name, data / name)
        images = data / IMAGES
        if case.data == "missing":
            images.unlink()
        elif case.data == "truncated":
            images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
        elif case.data == "corrupt":
            images.write_bytes(os.urandom(4096))
        elif case.data == "mismatch":
            shutil.copy(FASHION / TRAIN[1], data / LABELS)
    keep = None
    if case.setup == "file-in-the-way":
        (tmp / "file.txt").write_text("not a folder\n")
    elif case.setup == "other-settings":
        run_dir = tmp / "runs" / "bad" / "A-seed0" / "torch"
        run_dir.mkdir(parents=True)
        cfg = RunConfig(sweep="bad", run="A", batchsize=100, epochs=9, checktime=2, dataset="fashion-mnist",
                        train_size=600, test_size=200)
        (run_dir / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
    elif case.setup == "locked":
        lock_dir = tmp / "runs" / "bad"
        lock_dir.mkdir(parents=True)
        keep = open(lock_dir / ".lock", "a+")
        fcntl.flock(keep, fcntl.LOCK_EX | fcntl.LOCK_NB)
        keep.write(f"{os.getpid()}\n")
        keep.flush()
    return data, keep


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_bad_input_gives_one_clear_line(case: Case, tmp_path: Path):
    data, keep = prepare(case, tmp_path)
    fill = {"tmp": str(tmp_path), "sweep": str(tmp_path / "bad.toml"), "data": str(data), "pid": str(os.getpid())}
    args = [a.format(**fill) for a in case.args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXLENET_")}
    try:
        out = subprocess.run([sys.executable, "-m", "fluxlenet", *args], capture_output=True, text=True,
                             timeout=300, cwd=tmp_path, env={**env, **case.env})
    finally:
        if keep is not None:
            keep.close()
    assert out.returncode == case.code, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(case.prefix), lines[0]
    assert case.message.format(**fill) in lines[0]
    assert "Epoch:" not in out.stdout  # said before any training
    assert not list(tmp_path.glob("**/log.csv"))


def test_the_line_of_a_bad_key_is_named(tmp_path):
    """The table checks the message; here, that the line number is the bad key's."""
    (tmp_path / "bad.toml").write_text(SWEEP.format(line="etaa = 1e-3", run=""))
    out = subprocess.run([sys.executable, "-m", "fluxlenet", "sweep", str(tmp_path / "bad.toml"), "--backend",
                          "torch"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == USAGE and out.stderr.rstrip().endswith("(line 6)"), out.stderr
    (tmp_path / "bad.toml").write_text(SWEEP.format(line="eta = ", run=""))
    out = subprocess.run([sys.executable, "-m", "fluxlenet", "sweep", str(tmp_path / "bad.toml"), "--backend",
                          "torch"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == USAGE and "line 6" in out.stderr, out.stderr


def test_cuda_asked_for_where_there_is_none(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = subprocess.run([sys.executable, "-m", "fluxlenet", *[a.format(tmp=tmp_path, data=FASHION) for a in
                                                             train_args("--device", "cuda")]],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == USAGE
    assert out.stderr == (f"{ERR}--device cuda: no CUDA device is available to torch here; "
                          f"use --device cpu\n")
