"""Reading run folders: `<runs dir>/<sweep>/<run>-seed<seed>/<backend>/` with config.json, log.csv,
status.json and, when the run traced its first steps, trace.csv.

A run's name, seed and backend are read from its config.json, not from the folder names, so a
run folder copied elsewhere (or made by `fluxlenet train --savepath`) reads the same.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fluxlenet.config import ConfigError
from fluxlenet.runlog import LOG_COLUMNS, read_log_rows, read_status

# Settings that may differ between two runs that are still "the same run".
NOT_SEMANTIC = ("sweep", "run", "backend", "precision", "device", "threads", "data_dir", "trace_steps")


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
    folder = Path(folder)
    path = folder / "config.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        config = dict(doc["config"])
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a run folder (no config.json)") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} is not a fluxlenet run config") from None
    meta = {k: v for k, v in doc.items() if k != "config"}
    rows = read_log_rows(folder)
    log = pd.DataFrame(rows, columns=LOG_COLUMNS).set_index("epoch")
    trace = None
    if (folder / "trace.csv").exists():
        trace = read_trace(folder / "trace.csv")
    return RunFiles(dir=folder, config=config, meta=meta, status=read_status(folder), log=log, trace=trace)


def read_trace(path: Path) -> pd.DataFrame:
    """trace.csv as a frame indexed by step, parsed by Python's float: float64 traces compare to the last digit."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for raw in csv.DictReader(f):
                checksum = raw.get("checksum") or ""
                rows.append({"step": int(raw["step"]), "loss": float(raw["loss"]),
                             "checksum": float(checksum) if checksum else math.nan})
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a step trace (columns step,loss,checksum): {e}") from None
    return pd.DataFrame(rows, columns=["step", "loss", "checksum"]).set_index("step")


def load_sweep_dir(sweep_dir: str | Path) -> list[RunFiles]:
    """Every run folder of a sweep folder, any backend, any seed."""
    return [load_run(p.parent) for p in sorted(Path(sweep_dir).glob("*/*/config.json"))]
