"""Reading run folders: `<runs dir>/<sweep>/<run>-seed<seed>/<backend>/` with config.json, log.csv,
status.json and, when the run traced its first steps, trace.csv.

A run's name, seed and backend are read from its config.json, not from the folder names, so a
run folder copied elsewhere (or made by `fluxlenet train --savepath`) reads the same.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fluxlenet.config import NOT_SEMANTIC, ConfigError
from fluxlenet.runlog import (LOG_COLUMNS, DamagedRun, check_run_files, damaged, read_config_file,
                              read_trace_file)
from fluxlenet.rundir import run_is_busy


@dataclass
class RunFiles:
    dir: Path
    config: dict           # the RunConfig fields
    meta: dict             # the rest of config.json: versions, device, git_commit, python, *_samples
    status: dict           # status.json
    log: pd.DataFrame      # index epoch; train/test(/valid) loss and acc, seconds, lr, status
    trace: pd.DataFrame | None   # index step: loss, checksum (before the update of that step)

    @property
    def run(self) -> str:
        return str(self.config.get("run"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def backend(self) -> str:
        return str(self.config.get("backend"))

    @property
    def precision(self) -> str:
        return str(self.config.get("precision", "float32"))

    @property
    def mode(self) -> str:
        return str(self.config.get("mode", "lockstep"))

    @property
    def finished(self) -> bool:
        return self.status.get("status") in ("finished", "diverged")

    def samples(self, split: str) -> int | None:
        value = self.meta.get(f"{split}_samples")
        return int(value) if value else None

    def semantic(self) -> dict:
        return {k: v for k, v in self.config.items() if k not in NOT_SEMANTIC}

    def seconds_per_epoch(self) -> float | None:
        """Median seconds of the trained epochs (the median keeps Julia's compile time in epoch 1 out)."""
        seconds = self.log["seconds"].dropna() if "seconds" in self.log else pd.Series(dtype=float)
        return float(seconds.median()) if len(seconds) else None


def load_run(folder: str | Path) -> RunFiles:
    """One backend run's files; DamagedRun (a ConfigError: one line naming the file and what to do)
    when one of them cannot be read, ConfigError when the folder is no run folder at all."""
    folder = Path(folder)
    path = folder / "config.json"
    if not path.exists():
        present = [name for name in ("log.csv", "status.json") if (folder / name).exists()]
        if present:
            raise damaged(path, f"is missing (the folder holds {' and '.join(present)}), so the run's settings "
                                f"are unknown")
        raise ConfigError(f"{folder} is not a run folder (no config.json)")
    doc = read_config_file(path)
    config = dict(doc["config"])
    if not (isinstance(config.get("run"), str) and isinstance(config.get("backend"), str)
            and isinstance(config.get("seed", 0), int)):
        raise damaged(path, "does not say the run's name, seed and backend")
    meta = {k: v for k, v in doc.items() if k != "config"}
    status, rows = check_run_files(folder)
    if status["status"] == "running" and not run_is_busy(folder):
        status = {**status, "status": "stopped",
                  "reason": "status.json says running, but no process holds the run: its sweep was stopped or "
                            "killed; run the sweep again to resume it"}
    log = pd.DataFrame(rows, columns=LOG_COLUMNS).set_index("epoch")
    trace = None
    if (folder / "trace.csv").exists():
        trace = read_trace(folder / "trace.csv")
    return RunFiles(dir=folder, config=config, meta=meta, status=status, log=log, trace=trace)


def read_trace(path: Path) -> pd.DataFrame:
    """trace.csv as a frame indexed by step, parsed by Python's float: float64 traces compare to the last digit."""
    rows = [{**row, "checksum": math.nan if row["checksum"] is None else row["checksum"]}
            for row in read_trace_file(path)]
    return pd.DataFrame(rows, columns=["step", "loss", "checksum"]).set_index("step")


@dataclass
class Damaged:
    """A run folder that cannot be read, and where it sits in the sweep (from its folder names)."""
    dir: Path
    message: str

    @property
    def backend(self) -> str:
        return self.dir.name

    @property
    def run(self) -> str:
        match = re.fullmatch(r"(.+)-seed(\d+)", self.dir.parent.name)
        return match.group(1) if match else self.dir.parent.name

    @property
    def seed(self) -> str:
        match = re.fullmatch(r"(.+)-seed(\d+)", self.dir.parent.name)
        return match.group(2) if match else "?"


def run_depth(folder: str | Path) -> int | None:
    """How deep below `folder` its run folders (each with a config.json) are: 0, the folder is one;
    1, a run of several backends (`train --savepath`); 2, a sweep folder; 3, a runs folder; None: no runs."""
    folder = Path(folder)
    for depth in (0, 1, 3, 2):  # a runs folder holds sweeps (3) and, at 2, the runs of `train`
        if any(folder.glob("*/" * depth + "config.json")):
            return depth
    return None


def load_sweep_dir(sweep_dir: str | Path, damaged_runs: list[Damaged] | None = None, depth: int = 2) -> list[RunFiles]:
    """Every run folder `depth` levels below `sweep_dir` (2: a sweep folder, any backend, any seed).
    A damaged run folder raises DamagedRun, or, when `damaged_runs` is a list, is put there and skipped."""
    pattern = "*/" * depth
    folders = sorted({p.parent for name in ("config.json", "log.csv", "status.json")
                      for p in Path(sweep_dir).glob(pattern + name)})
    runs = []
    for folder in folders:
        try:
            runs.append(load_run(folder))
        except DamagedRun as e:
            if damaged_runs is None:
                raise
            damaged_runs.append(Damaged(folder, str(e)))
    return runs
