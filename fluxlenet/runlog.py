"""The files of one backend run: RunFolder names each of them (config.json, checkpoint.json, status.json,
log.csv, trace.csv, console.log, error.txt, the checkpoints, the worker's lock) and writes the small
documents and reads every file back (DamagedRun, one line naming the file, for one that is not ours);
RunLog writes log.csv, console.log, trace.csv and the TensorBoard scalars in it.

Both backends hand their epoch figures to a RunLog, so a Flux run and a torch run leave
the same files. Every file is rewritten atomically (they are small), so a killed run
never leaves a half-written row.

Resuming: `truncate(epoch)` forgets the rows after the checkpoint a run resumes from,
and rebuilds the TensorBoard event files from the rows kept, so TensorBoard shows no
points of the killed attempt (their wall times become the rebuild's). console.log is a
transcript and keeps every line, the killed attempt's included, followed by the
"Resuming from the checkpoint of epoch N" line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError
from .fsutil import TMP_SUFFIX, atomic_write_json, atomic_write_text, read_json

LOG_COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc",
               "valid_loss", "valid_acc", "seconds", "lr", "status"]
# status.json "status": running -> finished | diverged | failed | interrupted
FINAL_STATES = ("finished", "diverged")
EVENTS_GLOB = "events.out.tfevents.*"


@dataclass(frozen=True)
class RunFolder:
    """One backend run's folder, <sweep folder>/<run>-seed<N>/<backend>/ (the sweep folder of a sweep:
    <runs>/<sweep>/; of train: its --savepath), and every path in it.

    config.json is written by the worker that runs the run (its settings when it takes the run, then the
    environment it runs in); the sweep process writes it only where no worker could: a worker that died
    before its first write (mark_run), a finished run whose config.json is gone (from checkpoint.json)."""
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    config_file = property(lambda self: self.path / "config.json")
    checkpoint_file = property(lambda self: self.path / CHECKPOINT_SETTINGS)  # the settings of the checkpoints
    status_file = property(lambda self: self.path / "status.json")
    log_file = property(lambda self: self.path / "log.csv")
    trace_file = property(lambda self: self.path / "trace.csv")
    console_file = property(lambda self: self.path / "console.log")
    error_file = property(lambda self: self.path / "error.txt")  # the traceback of a failed run
    lock_file = property(lambda self: self.path / ".worker.lock")
    torch_checkpoint = property(lambda self: self.path / "model.pt")

    @property
    def checkpoints(self) -> tuple[Path, ...]:
        """Where a checkpoint can be: model.pt (torch); model.bson and optimiser.bson (Flux, written by Julia)."""
        return (self.torch_checkpoint, self.path / "model.bson", self.path / "optimiser.bson")

    @property
    def markers(self) -> tuple[Path, ...]:
        """The files that make a folder a run's: its settings (config.json, checkpoint.json; one of them in
        a sound run) and, in a damaged one, log.csv or status.json."""
        return (self.config_file, self.checkpoint_file, self.log_file, self.status_file)

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.config_file, self.status_file, self.log_file, self.trace_file, self.console_file,
                self.error_file, self.checkpoint_file) + self.checkpoints

    def write_config(self, config: dict, **extra) -> None:
        """config.json: the validated RunConfig (`config`) plus what describes the run's environment, merged
        with what is there."""
        try:
            current = read_json(self.config_file) if self.config_file.exists() else {}
        except ValueError:
            current = {}
        atomic_write_json(self.config_file, {**current, "config": config, **extra})

    def write_checkpoint_settings(self, config: dict) -> None:
        atomic_write_json(self.checkpoint_file, {"config": config})

    def write_status(self, status: str, reason: str = "", **extra) -> None:
        atomic_write_json(self.status_file, {"status": status, "reason": reason, **extra})

    def write_error(self, text: str) -> None:
        atomic_write_text(self.error_file, text)

    # -- reading: DamagedRun (one line naming the file) for a file that is not one we wrote

    def read_log_rows(self) -> list[dict]:
        """Rows of log.csv as dicts of floats (epoch as int; empty cells as None); [] when absent. A column
        added by hand is kept as text (see extra_log_columns)."""
        path = self.log_file
        if not path.exists():
            return []
        rows = []
        for line, raw in _csv_rows(path, ["epoch"]):
            row = {key: value for key, value in raw.items() if key not in LOG_COLUMNS}
            for key in LOG_COLUMNS:
                value = raw.get(key, "")
                if key == "status":
                    row[key] = value
                elif key == "epoch":
                    row[key] = _number(path, line, key, value, int)
                else:
                    row[key] = _number(path, line, key, value) if value != "" else None
            if row["epoch"] < 0 or (rows and row["epoch"] <= rows[-1]["epoch"]):
                raise damaged(path, f"line {line}: epoch {row['epoch']} does not follow "
                                    f"{'epoch ' + str(rows[-1]['epoch']) if rows else 'the header'}")
            rows.append(row)
        return rows

    def extra_log_columns(self) -> list[str]:
        """The columns of log.csv that we do not write (added by hand), in their order. A resumed run
        keeps them, after ours, with empty cells in the rows it adds: nothing in the file is lost."""
        if not self.log_file.exists():
            return []
        header = next(csv.reader(_read_text(self.log_file).splitlines()), [])
        return [column for column in header if column not in LOG_COLUMNS]

    def read_trace_rows(self) -> list[dict]:
        """trace.csv as rows {step, loss, checksum}; [] when absent."""
        return read_trace_file(self.trace_file) if self.trace_file.exists() else []

    def read_status(self) -> dict:
        """status.json as a dict; {"status": "new"} when absent. An unreadable file (written
        by hand: ours are atomic) counts as an unfinished run, so a rerun resumes it."""
        path = self.status_file
        if not path.exists():
            return {"status": "new"}
        try:
            status = read_json(path)
            if isinstance(status, dict) and isinstance(status.get("status"), str):
                return status
        except (OSError, ValueError):
            pass
        return {"status": "unknown", "reason": f"{path} is unreadable"}

    def check_files(self) -> tuple[dict, list[dict]]:
        """status.json and log.csv, checked against each other (and trace.csv read): DamagedRun for a file
        that cannot be read, or a finished run whose log does not end where status.json says it did (a log
        cut short would report the wrong final figures)."""
        for path in self.files:
            if path.is_dir():
                raise damaged(path, "is a directory, not a file")
        status, rows = self.read_status(), self.read_log_rows()
        self.read_trace_rows()
        last = status.get("last_epoch")
        logged = rows[-1]["epoch"] if rows else None
        if status["status"] in FINAL_STATES and isinstance(last, int) and logged != last:
            ends = f"ends at epoch {logged}" if rows else "holds no epochs"
            raise damaged(self.log_file, f"{ends}, but status.json says the run {status['status']} at epoch "
                                         f"{last} (the file was cut short or edited)")
        return status, rows

    def existing_checkpoints(self) -> list[Path]:
        return [path for path in self.checkpoints if path.exists()]

    def read_settings(self) -> dict | None:
        """The settings the run was trained with: config.json's, cross-checked with checkpoint.json's (the
        sweep and the worker write both from one RunConfig), or checkpoint.json's alone when config.json is
        gone; None when it holds neither. DamagedRun when one cannot be read, when the two disagree on a
        setting that changes results, or when such a setting is in neither (it would read as its default)."""
        from .config import LENGTH, USER_NAMES, RunConfig
        stored = [(p, stored_config(p)) for p in (self.config_file, self.checkpoint_file) if p.exists()]
        if not stored:
            return None
        keys = [f.name for f in RunConfig.settings() if f.metadata["result"]]
        if len(stored) == 2:
            (path, a), (_, b) = stored
            # the length may differ: a run resumed for more epochs records them in config.json before its
            # next checkpoint
            differ = [f"{USER_NAMES.get(k, k)} {a[k]!r} vs {b[k]!r}" for k in keys
                      if k in a and k in b and a[k] != b[k] and k not in LENGTH]
            if differ:
                raise damaged(path, f"and {CHECKPOINT_SETTINGS} beside it disagree ({', '.join(differ)}: one was "
                                    f"edited), so the settings the run was trained with are unknown")
        settings = {**stored[-1][1], **stored[0][1]}  # config.json's where both say it
        missing = [USER_NAMES.get(k, k) for k in keys if k not in settings]
        if missing:
            where = " nor ".join(p.name for p, _ in stored)
            raise damaged(stored[0][0], f"{'neither ' if len(stored) == 2 else ''}{where} says the setting"
                                        f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}, so the run's "
                                        f"settings are unknown")
        return settings


def round4(x: float) -> float:
    """The post's round4: round(x, digits=4)."""
    return round(float(x), 4)


def epoch_line(epoch: int, train: dict, test: dict, valid: dict | None = None) -> str:
    """The post's line: `Epoch: 3   Train: (loss = 0.0829, acc = 97.515)   Test: (loss = 0.0717, acc = 97.75)`."""
    parts = [f"Epoch: {epoch}", f"Train: (loss = {train['loss']}, acc = {train['acc']})"]
    if valid is not None:
        parts.append(f"Valid: (loss = {valid['loss']}, acc = {valid['acc']})")
    parts.append(f"Test: (loss = {test['loss']}, acc = {test['acc']})")
    return "   ".join(parts)


class DamagedRun(ConfigError):
    """A file of a run folder that is not what it should be (edited, cut short, garbage): the
    message is one line naming the file, what is wrong and what to do."""


def damaged(path: Path, what: str, advice: str | None = None) -> DamagedRun:
    folder = path.parent
    advice = advice or f"move the run folder {folder} away (a rerun of its sweep then runs it afresh)"
    return DamagedRun(f"{path}: {what}; {advice}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise damaged(path, "is a directory, not a file") from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise damaged(path, f"line {line} is not UTF-8 text (byte 0x{e.object[e.start]:02x})") from None
    except OSError as e:
        raise damaged(path, f"cannot be read ({e.strerror or e})") from None


def _csv_rows(path: Path, required: list[str], torn_tail: bool = False):
    """(line number, {column: text}) for each data line of a CSV file we wrote; raises DamagedRun.
    torn_tail: a last line without its newline is a write cut short (trace.csv is appended to): skipped."""
    text = _read_text(path)
    lines = text.splitlines(keepends=True)
    if torn_tail and lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
        if header is None:
            return
        if any(column not in header for column in required):
            raise damaged(path, f"line 1 is not the header ({','.join(required)},...)")
        twice = next((c for c in header if header.count(c) > 1), None)
        if twice is not None:
            raise damaged(path, f"line 1 names the column {twice!r} twice")
        for values in reader:
            if not values:
                continue
            if len(values) != len(header):
                raise damaged(path, f"line {reader.line_num} has {len(values)} fields, the header {len(header)}")
            yield reader.line_num, dict(zip(header, (v.strip() for v in values)))
    except csv.Error as e:
        raise damaged(path, f"line {reader.line_num} is not CSV ({e})") from None


def _number(path: Path, line: int, column: str, text: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise damaged(path, f"line {line}: {column} {text[:40]!r} is not {what}") from None


TRACE_HEADER = "step,loss,checksum\n"


def _trace_line(row: dict) -> str:
    checksum = "" if row["checksum"] is None else repr(row["checksum"])
    return f"{row['step']},{row['loss']!r},{checksum}\n"


def read_trace_file(path: str | Path) -> list[dict]:
    """A trace.csv as rows {step, loss, checksum}; DamagedRun names a line that is not one we wrote."""
    path = Path(path)
    rows = []
    for line, raw in _csv_rows(path, ["step", "loss", "checksum"], torn_tail=True):
        step = _number(path, line, "step", raw["step"], int)
        if step < 1 or (rows and step <= rows[-1]["step"]):
            raise damaged(path, f"line {line}: step {step} does not follow "
                                f"{'step ' + str(rows[-1]['step']) if rows else 'the header'}")
        rows.append({"step": step, "loss": _number(path, line, "loss", raw["loss"]),
                     "checksum": _number(path, line, "checksum", raw["checksum"]) if raw["checksum"] else None})
    return rows


# -- checkpoints -------------------------------------------------------------------------
#
# checkpoint.json holds the settings of the checkpoints in its folder: a worker writes it before
# training, so a checkpoint (model.pt; model.bson and optimiser.bson for Flux) is never older
# than it. A resume compares it with the settings asked for, also when config.json is gone.

CHECKPOINT_SETTINGS = "checkpoint.json"


def read_config_file(path: str | Path) -> dict:
    """config.json or checkpoint.json as a dict whose "config" is a dict; DamagedRun when it is not."""
    path = Path(path)
    try:
        doc = json.loads(_read_text(path))
        if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
            return doc
    except ValueError:
        pass
    raise damaged(path, "is not a fluxlenet run config (JSON with the run's settings)")


def stored_config(path: str | Path) -> dict:
    """The RunConfig fields stored in config.json or checkpoint.json; DamagedRun when unreadable."""
    return read_config_file(path)["config"]


def check_checkpoint(path: Path) -> None:
    """A structural check of a checkpoint file, without torch or Julia: model.pt is a zip archive
    whose members pass their CRC; a .bson file is as long as its header says. Raises DamagedRun."""
    advice = f"delete it to start that run afresh (or move the run folder {path.parent} away)"
    if path.is_dir():
        raise damaged(path, "is a directory, not a checkpoint", advice)
    try:
        if path.suffix == ".pt":
            if not zipfile.is_zipfile(path):
                raise damaged(path, "is not a torch checkpoint (not a zip archive; cut short or overwritten)",
                              advice)
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                if bad is not None:
                    raise damaged(path, f"is corrupt (member {bad} fails its CRC check)", advice)
                if not any(name.endswith("data.pkl") for name in archive.namelist()):
                    raise damaged(path, "is not a torch checkpoint (no data.pkl inside)", advice)
        else:
            blob = path.read_bytes()
            if len(blob) < 5 or int.from_bytes(blob[:4], "little") != len(blob) or blob[-1] != 0:
                raise damaged(path, f"is not a BSON document ({len(blob)} bytes; cut short or overwritten)",
                              advice)
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise damaged(path, f"cannot be read as a checkpoint ({getattr(e, 'strerror', None) or e})", advice) from None


class RunLog:
    """Writer for one run directory (`runs/<sweep>/<run>/<backend>/`)."""

    def __init__(self, run_dir: str | Path, echo=None):
        self.dir = Path(run_dir)
        self.folder = RunFolder(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo or (lambda line: print(line, flush=True))  # workers' stdout may be a pipe
        self.rows = self.folder.read_log_rows()
        self.extra_columns = self.folder.extra_log_columns()
        console = self.folder.console_file  # a transcript: a damaged byte in it is kept as U+FFFD
        self.console = console.read_text(encoding="utf-8", errors="replace").splitlines() if console.exists() else []
        self.trace = self.folder.read_trace_rows()
        self._tb = None

    # -- console ---------------------------------------------------------------
    def say(self, line: str) -> None:
        """Print a line and keep it in console.log."""
        self.echo(line)
        self.console.append(line)
        atomic_write_text(self.folder.console_file, "\n".join(self.console) + "\n")

    # -- epochs ----------------------------------------------------------------
    def reset(self) -> None:
        """Start the run afresh: no rows, no console lines (a run killed before its first checkpoint)."""
        self.console = []
        self.truncate(-1)
        self.keep_trace(0)
        self.folder.console_file.unlink(missing_ok=True)

    def truncate(self, epoch: int) -> None:
        """Forget rows after `epoch` (resuming from a checkpoint taken at `epoch`), in log.csv
        and in TensorBoard."""
        self.rows = [r for r in self.rows if r["epoch"] <= epoch]
        self._write_csv()
        self._rebuild_events()

    def last_epoch(self) -> int | None:
        return self.rows[-1]["epoch"] if self.rows else None

    def record(self, epoch: int, train: dict, test: dict, valid: dict | None = None,
               seconds: float | None = None, lr: float | None = None) -> str:
        """Log one report: prints the post's line, appends to log.csv and TensorBoard.

        Returns the row status: "ok", or "diverged" when a loss is NaN or infinite.
        """
        losses = [train["loss"], test["loss"]] + ([valid["loss"]] if valid else [])
        status = "ok" if all(math.isfinite(x) for x in losses) else "diverged"
        row = {"epoch": epoch, "train_loss": train["loss"], "train_acc": train["acc"],
               "test_loss": test["loss"], "test_acc": test["acc"],
               "valid_loss": valid["loss"] if valid else None, "valid_acc": valid["acc"] if valid else None,
               "seconds": None if seconds is None else round(seconds, 3), "lr": lr, "status": status}
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        self._write_csv()
        self.say(epoch_line(epoch, train, test, valid))
        self._scalars(epoch, train, test, valid)
        return status

    def _write_csv(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS + self.extra_columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        atomic_write_text(self.folder.log_file, buf.getvalue())

    def _scalars(self, epoch, train, test, valid) -> None:
        if self._tb is None:
            # tensorboard's own writer: no torch import, so the Flux worker can use it too.
            from tensorboard.summary import Writer
            self._tb = Writer(str(self.dir))
        _add_scalars(self._tb, epoch, train, test, valid)
        self._tb.flush()

    def _rebuild_events(self) -> None:
        """Replace the event files by ones holding exactly self.rows (written aside, then moved in)."""
        self.close()
        old = sorted(self.dir.glob(EVENTS_GLOB))
        if not old and not self.rows:
            return
        staging = Path(tempfile.mkdtemp(prefix=".events.", suffix=TMP_SUFFIX, dir=self.dir))
        try:
            if self.rows:
                from tensorboard.summary import Writer
                writer = Writer(str(staging))
                for r in self.rows:
                    valid = None if r.get("valid_loss") is None else {"loss": r["valid_loss"], "acc": r["valid_acc"]}
                    _add_scalars(writer, r["epoch"], {"loss": r["train_loss"], "acc": r["train_acc"]},
                                 {"loss": r["test_loss"], "acc": r["test_acc"]}, valid)
                writer.close()
            for path in old:
                path.unlink()
            for path in staging.iterdir():
                os.replace(path, self.dir / path.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- step traces -----------------------------------------------------------
    def trace_step(self, step: int, loss: float, checksum: float | None = None) -> None:
        """One row of trace.csv (the loss and a parameter checksum at each of the first K optimiser
        steps), appended at once: a run stopped and resumed keeps the rows before its checkpoint
        (`keep_trace` drops the later ones first, so steps only grow here)."""
        row = {"step": int(step), "loss": float(loss), "checksum": None if checksum is None else float(checksum)}
        path = self.folder.trace_file
        with open(path, "a", encoding="utf-8") as f:
            f.write(("" if self.trace else TRACE_HEADER) + _trace_line(row))
        self.trace.append(row)

    def keep_trace(self, step: int) -> None:
        """Resuming from a checkpoint taken after `step` optimiser steps: forget the later rows."""
        self.trace = [r for r in self.trace if r["step"] <= step]
        path = self.folder.trace_file
        if self.trace:
            atomic_write_text(path, TRACE_HEADER + "".join(_trace_line(r) for r in self.trace))
        else:
            path.unlink(missing_ok=True)

    # -- status ----------------------------------------------------------------
    def set_status(self, status: str, reason: str = "", **extra) -> None:
        self.folder.write_status(status, reason, last_epoch=self.last_epoch(),
                                 updated=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)

    def close(self) -> None:
        if self._tb is not None:
            tb, self._tb = self._tb, None
            tb.close()


def _add_scalars(writer, epoch: int, train: dict, test: dict, valid: dict | None) -> None:
    for split, figures in (("train", train), ("test", test), ("valid", valid)):
        if figures is None:
            continue
        for name in ("loss", "acc"):
            value = figures[name]
            if value is not None and math.isfinite(value):
                writer.add_scalar(f"{split}/{name}", value, step=epoch)
