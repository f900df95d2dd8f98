"""Bad input: every user mistake gives one clear line and a non-zero exit code, before training,
and never a traceback.

The table BAD_INPUTS is the list of these cases and their messages; each runs
`python -m fluxlenet` in a subprocess, as a user would, and asserts the exit code, that
stderr is exactly one line holding the message, that nothing trained, that nothing was
written outside the runs folder and that a damaged run folder was left as it was.

The classes: the sweep file and its values (names that would become paths, values out of
bounds, a file that is not UTF-8 or not a file); the command's flags; the dataset folder
(damaged files, a directory where a file should be, files swapped or of another dataset);
the runs folder; damaged run folders (log.csv, trace.csv, config.json, model.pt) and
checkpoints trained with other settings.
"""

from __future__ import annotations

import fcntl
import gzip
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
    data: str | None = None                  # a data-dir problem: "missing", "truncated", "corrupt", "mismatch",
                                             # "directory", "swapped", "too-many"
    env: dict = field(default_factory=dict)
    setup: str | None = None                 # "other-settings", "locked", "file-in-the-way", "not-utf8", "dir.toml"
    edit: tuple[str, str] | None = None      # (old, new): a change to the sweep file's lines
    damage: str | None = None                # a finished run of the sweep in {tmp}/runs, damaged: see _damage


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
    Case("sweep file not UTF-8", sweep_args(), "sweep file {tmp}/bad.toml: not valid TOML: not UTF-8 text (byte 0xff "
         "on line 2)", setup="not-utf8"),
    Case("sweep file is a directory", ["sweep", "{tmp}/dir.toml", "--backend", "torch"],
         "sweep file {tmp}/dir.toml is a directory, not a file", setup="dir.toml"),
    Case("run name climbs out of the runs folder", sweep_args(),
         "sweep file {tmp}/bad.toml: run name '../../escape' must not start with a dot (a hidden folder, or a step "
         "up out of the runs folder) (line 8)", edit=('name = "A"', 'name = "../../escape"')),
    Case("run name with a slash", sweep_args(),
         "sweep file {tmp}/bad.toml: run name 'lr/1e-3' must not contain / or \\ (it becomes one folder, not a "
         "path) (line 10)", run='[[runs]]\nname = "lr/1e-3"'),
    Case("run name not printable", sweep_args(), "run name 'a\\tb' must be printable",
         edit=('name = "A"', 'name = "a\\tb"')),
    Case("epochs beyond the bound in the file", sweep_args(),
         "sweep file {tmp}/bad.toml: run 'A': epochs must be at most 100,000, not 99999999999999999999 (line 4)",
         edit=("epochs = 4", "epochs = 99999999999999999999")),
    Case("seed beyond the bound in the file", sweep_args(),
         "sweep file {tmp}/bad.toml: run 'A': seed must be at most 4,294,967,295, not 4294967296 (line 6)",
         line="seed = 4294967296"),
    Case("--epochs 0", sweep_args("--epochs", "0"),
         "argument --epochs: must be >= 1, got 0 (see python -m fluxlenet sweep --help)", prefix=SWEEP_ERR),
    Case("--train-size not a number", sweep_args("--train-size", "many"),
         "argument --train-size: expected a whole number, got 'many'", prefix=SWEEP_ERR),
    Case("--seeds negative", sweep_args("--seeds", "-1"),
         "argument --seeds: expected seeds >= 0 like 1,2,3, got '-1'", prefix=SWEEP_ERR),
    Case("unknown backend", sweep_args("--backend", "jax"), "argument --backend: invalid choice: 'jax'",
         prefix=SWEEP_ERR),
    Case("--seeds twice the same", sweep_args("--seeds", "0,0", "--jobs", "2"),
         "argument --seeds: seed 0 is given twice in '0,0'", prefix=SWEEP_ERR),
    Case("--runs-dir empty", ["sweep", "{sweep}", "--backend", "torch", "--runs-dir", ""],
         "argument --runs-dir: expected a folder, got an empty string", prefix=SWEEP_ERR),
    Case("--epochs and --steps", sweep_args("--epochs", "2", "--steps", "5"), "--epochs and --steps both given"),
    # -- executor flags that would change nothing where they are given: refused, not ignored ----------
    Case("--ray-address without --executor ray", sweep_args("--ray-address", "127.0.0.1:6379"),
         "--ray-address goes with --executor ray; without it the runs are processes of this machine"),
    Case("train: --ray-address without --executor ray", train_args("--ray-address", "127.0.0.1:6379"),
         "--ray-address goes with --executor ray"),
    Case("--ray-timeout without --executor ray", sweep_args("--ray-timeout", "5"),
         "--ray-timeout goes with --executor ray"),
    Case("--jobs with --executor ray", sweep_args("--executor", "ray", "--jobs", "2"),
         "--jobs goes with --executor local; under Ray the cluster runs as many at once as its CPUs take"),
    Case("--ray-timeout without --ray-address", sweep_args("--executor", "ray", "--ray-timeout", "5"),
         "--ray-timeout goes with --ray-address"),
    Case("--ray-timeout 0", sweep_args("--executor", "ray", "--ray-address", "127.0.0.1:1", "--ray-timeout", "0"),
         "argument --ray-timeout: must be a number > 0, got 0", prefix=SWEEP_ERR),
    # -- train flags ----------------------------------------------------------------------------------
    Case("train: negative learning rate", train_args("--eta", "-0.1"),
         "run 't': learning rate eta must be > 0, not -0.1"),
    Case("train: batch 0", train_args("--batchsize", "0"), "run 't': batchsize must be >= 1, not 0"),
    Case("train: checktime < 0", train_args("--checktime", "-1"),
         "run 't': checktime must be >= 0 (0: no checkpoints), not -1"),
    Case("train: a model for other data", train_args("--model", "cifar-cnn"),
         "model 'cifar-cnn' takes inputs of shape (3, 32, 32), the dataset has (1, 28, 28)"),
    Case("train: --epochs and --steps", train_args("--epochs", "2", "--steps", "5"),
         "--epochs and --steps both given; choose one"),
    Case("train: --savepath .", train_args("--savepath", "."), "--savepath . names no folder of its own"),
    Case("train: --savepath ..", train_args("--savepath", ".."), "--savepath .. names no folder of its own"),
    Case("train: --savepath ending in a hidden folder", train_args("--savepath", "{tmp}/.t"),
         "--savepath {tmp}/.t: the run is named after its last folder, and '.t' must not start with a dot"),
    Case("train: --savepath empty", train_args("--savepath", ""),
         "argument --savepath: expected a folder, got an empty string", prefix="python -m fluxlenet train: error: "),
    Case("train: epochs beyond the bound", train_args("--epochs", "1000000"),
         "run 't': epochs must be at most 100,000, not 1000000"),
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
         f"{{tmp}}/data/{LABELS}: has 59999 labels but {IMAGES} has 60000 images", data="mismatch"),
    Case("data file is a directory (not downloaded over)", sweep_args(),
         f"{{tmp}}/data/{IMAGES}: is a directory, not a file; move it away and put the file there",
         data="directory", env={"FLUXLENET_MIRROR": "http://127.0.0.1:9/"}),
    Case("data folder is a file", sweep_args("--data-dir", "{tmp}/file.txt"),
         "{tmp}/file.txt is a file, not a folder", setup="file-in-the-way"),
    Case("train and test files swapped by name", sweep_args(),
         f"{{tmp}}/data/{TRAIN[0]}: is Fashion-MNIST's {IMAGES} (known by its content), not its {TRAIN[0]}; "
         f"the files are swapped or misnamed", data="swapped"),
    Case("Fashion-MNIST files as --dataset mnist", sweep_args("--dataset", "mnist"),
         f"is Fashion-MNIST's {TRAIN[0]} (known by its content), not MNIST's; give --dataset fashion-mnist"),
    Case("a test set of training-set size (content unknown)", sweep_args(),
         f"{{tmp}}/data/{TRAIN[0]}: holds 60,000 samples, as many as the Fashion-MNIST training set, where its test "
         f"set has 10,000: the train and test files are swapped or misnamed", data="too-many"),
    Case("an input error after the backend is chosen: no NOTE first", sweep_args("--backend", "auto"),
         f"{{tmp}}/data/{IMAGES}: is truncated", data="truncated"),
    # -- the runs folder ------------------------------------------------------------------------------
    Case("runs folder under a file", ["sweep", "{sweep}", "--backend", "torch", "--runs-dir", "{tmp}/file.txt/sub"],
         "cannot write in {tmp}/file.txt/sub/bad (Not a directory: ", setup="file-in-the-way"),
    Case("runs folder in /proc", ["sweep", "{sweep}", "--backend", "torch", "--runs-dir", "/proc/fluxlenet-runs"],
         "cannot write in /proc/fluxlenet-runs/bad ("),  # root: no such file; others: permission denied
    Case("disk full (a write error)", sweep_args(),
         "cannot write in {tmp}/runs/bad (No space left on device: {tmp}/runs/bad/.write-test.",
         env={"FLUXLENET_FAULT": "enospc@*"}),
    Case("runs folder holds other settings", sweep_args(),
         "{tmp}/runs/bad/A-seed0/torch holds a run with other settings (batchsize 50 there, 100 now); ",
         setup="other-settings"),
    Case("another sweep running there", sweep_args(),
         "another sweep (pid {pid}) is running in {tmp}/runs/bad; wait for it to finish or use another --runs-dir",
         setup="locked"),
    # -- a run folder there, damaged or of other settings ---------------------------------------------
    Case("log.csv with a garbage line", sweep_args(),
         "{run}/log.csv: line 3 has 1 fields, the header 10; move the run folder {run} away", damage="log-garbage"),
    Case("log.csv not UTF-8", sweep_args(), "{run}/log.csv: line 2 is not UTF-8 text (byte 0xff); move the run "
         "folder {run} away", damage="log-not-utf8"),
    Case("log.csv epoch not a number", sweep_args(), "{run}/log.csv: line 4: epoch 'two' is not a whole number",
         damage="log-epoch-text"),
    Case("log.csv of a finished run cut short", sweep_args(),
         "{run}/log.csv: ends at epoch 0, but status.json says the run finished at epoch 4 (the file was cut short "
         "or edited); move the run folder {run} away", damage="log-truncated"),
    Case("trace.csv of an unfinished run damaged", sweep_args(),
         "{run}/trace.csv: line 3: loss 'x' is not a number; move the run folder {run} away", damage="trace-garbage"),
    Case("model.pt of an unfinished run corrupt", sweep_args(),
         "{run}/model.pt: is not a torch checkpoint (not a zip archive; cut short or overwritten); delete it to "
         "start that run afresh", damage="model-corrupt"),
    Case("config.json corrupt", sweep_args(),
         "{run}/config.json: is not a fluxlenet run config (JSON with the run's settings); move the run folder "
         "{run} away", damage="config-corrupt"),
    Case("config.json gone: the checkpoint's settings still refuse others", sweep_args("--epochs", "3"),
         "{run} holds a run with other settings (eta 0.0003 there, 0.001 now, epochs 4 there, 3 now); ",
         line="eta = 1e-3", damage="config-gone"),
    Case("config.json and checkpoint.json gone", sweep_args(),
         "{run}: holds model.pt but neither config.json nor checkpoint.json, so the settings it was trained with "
         "are unknown", damage="settings-gone"),
    Case("status.json is a directory", sweep_args(), "{run}/status.json: is a directory, not a file",
         damage="status-is-a-directory"),
    Case("a file where the run folder should be", sweep_args(),
         "{run}: is a file where the run folder should be; move it away", damage="folder-is-a-file"),
]


def _damage(run: Path, kind: str) -> None:
    """Damage the finished run copied to `run`, as an editor, a full disk or a user would."""
    log = run / "log.csv"
    lines = log.read_text().splitlines(keepends=True)
    status = json.loads((run / "status.json").read_text())
    unfinished = {**status, "status": "running"}  # its sweep was killed: no worker holds it
    if kind == "log-garbage":
        log.write_text("".join(lines[:2] + ["garbage\n"] + lines[2:]))
    elif kind == "log-not-utf8":
        log.write_bytes(lines[0].encode() + b"\xff" + "".join(lines[1:]).encode())
    elif kind == "log-epoch-text":
        log.write_text("".join(lines[:3] + [lines[3].replace("2,", "two,", 1)] + lines[4:]))
    elif kind == "log-truncated":
        log.write_text("".join(lines[:2]))
    elif kind == "trace-garbage":
        (run / "status.json").write_text(json.dumps(unfinished))
        trace = (run / "trace.csv").read_text().splitlines(keepends=True)
        (run / "trace.csv").write_text("".join(trace[:2] + ["3,x,1.0\n"] + trace[3:]))
    elif kind == "model-corrupt":
        (run / "status.json").write_text(json.dumps(unfinished))
        (run / "model.pt").write_bytes((run / "model.pt").read_bytes()[:1000])
    elif kind == "config-corrupt":
        (run / "config.json").write_text('{"config": {"run": "A",')
    elif kind == "config-gone":
        (run / "config.json").unlink()
    elif kind == "settings-gone":
        (run / "config.json").unlink()
        (run / "checkpoint.json").unlink()
    elif kind == "status-is-a-directory":
        (run / "status.json").unlink()
        (run / "status.json").mkdir()
    elif kind == "folder-is-a-file":
        shutil.rmtree(run)
        run.write_text("not a run folder\n")
    else:
        raise ValueError(kind)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The sweep file of the table with no bad line, run to its end (4 epochs of 600 samples, traced)."""
    tmp = tmp_path_factory.mktemp("finished")
    (tmp / "bad.toml").write_text(SWEEP.format(line="trace_steps = 12", run=""))
    args = [a.format(sweep=tmp / "bad.toml", data=FASHION, tmp=tmp) for a in sweep_args()]
    out = subprocess.run([sys.executable, "-m", "fluxlenet", *args], capture_output=True, text=True, timeout=600,
                         cwd=tmp)
    assert out.returncode == 0, out.stdout + out.stderr
    return tmp / "runs"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with the bytes of its files (None for folders)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def prepare(case: Case, tmp: Path, case_runs: Path | None = None):
    """Make the case's files (case_runs: a finished runs folder to copy, for `damage`); returns the
    data folder and what must stay open while the command runs."""
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
        elif case.data == "mismatch":  # a good IDX file of one label less
            labels = gzip.decompress((FASHION / LABELS).read_bytes())
            (data / LABELS).write_bytes(gzip.compress(labels[:4] + (59999).to_bytes(4, "big") + labels[8:-1], 1))
        elif case.data == "directory":
            images.unlink()
            images.mkdir()
            (images / "x").write_text("a folder where the file should be\n")
        elif case.data == "swapped":
            for train_name, test_name in zip((IMAGES, LABELS), TRAIN):
                shutil.copy(FASHION / train_name, data / test_name)
                shutil.copy(FASHION / test_name, data / train_name)
        elif case.data == "too-many":  # the training files, one sample changed, as the test files: no known content
            for train_name, test_name in zip((IMAGES, LABELS), TRAIN):
                raw = bytearray(gzip.decompress((FASHION / train_name).read_bytes()))
                raw[-1] = (raw[-1] + 1) % 10
                (data / test_name).write_bytes(bytes(raw))  # uncompressed under the .gz name: read as such
    keep = None
    if case.damage:
        shutil.copytree(case_runs, tmp / "runs")
        # the copy holds the runs of this case's bad.toml (the fixture's file is another one of the same name)
        (tmp / "runs" / "bad" / ".sweep").write_text(json.dumps({"sweep_file": str((tmp / "bad.toml").resolve())}))
        _damage(tmp / "runs" / "bad" / "A-seed0" / "torch", case.damage)
    if case.setup == "file-in-the-way":
        (tmp / "file.txt").write_text("not a folder\n")
    elif case.setup == "not-utf8":
        (tmp / "bad.toml").write_bytes(text.replace("[base]", "# \udcff\n[base]").encode(errors="surrogateescape"))
    elif case.setup == "dir.toml":
        (tmp / "dir.toml").mkdir()
    elif case.setup == "other-settings":
        run_dir = tmp / "runs" / "bad" / "A-seed0" / "torch"
        run_dir.mkdir(parents=True)
        cfg = RunConfig(sweep="bad", run="A", batchsize=50, epochs=4, checktime=2, dataset="fashion-mnist",
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
def test_bad_input_gives_one_clear_line(case: Case, tmp_path: Path, request):
    data, keep = prepare(case, tmp_path, request.getfixturevalue("finished_run") if case.damage else None)
    run = tmp_path / "runs" / "bad" / "A-seed0" / "torch"
    fill = {"tmp": str(tmp_path), "sweep": str(tmp_path / "bad.toml"), "data": str(data), "pid": str(os.getpid()),
            "run": str(run)}
    before = snapshot(tmp_path)
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
    assert "NOTE: Flux" not in out.stdout  # validated first, then announced
    after = snapshot(tmp_path)
    written = [p for p in after if p not in before or after[p] != before[p]]
    assert all(p.split("/")[0] in ("runs", "t") for p in written), written  # only in the runs folder
    if case.damage:  # a damaged run is left as it is, for the user to look at
        assert [p for p in written if p.startswith("runs/bad/A-seed0")] == [], written
    else:
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
