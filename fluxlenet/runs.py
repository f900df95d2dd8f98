"""Reading run folders: `<runs dir>/<sweep>/<run>-seed<seed>/<backend>/` with config.json, log.csv,
status.json and, when the run traced its first steps, trace.csv; finding a sweep's runs and handing
them to parity to be judged (compare_sweep, compare_folders).

A run's name, seed and backend are read from its config.json, not from the folder names, so a
run folder copied elsewhere (or made by an older `fluxlenet train --savepath`, <savepath>/<backend>/)
reads the same.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from parity.compare import BACKEND_NAMES, BACKENDS, RunVerdict, SweepResult, judge
from parity.policy import Policy

from . import sweeps
from .config import (NOT_SEMANTIC, PROTOCOL_KEYS, SEED_GROUP_FREE, USER_NAMES, ConfigError, mixed_settings,
                     normal_name, rerun_options, result_settings)
from .runlog import (CHECKPOINT_SETTINGS, LOG_COLUMNS, DamagedRun, RunFolder, damaged, read_config_file,
                     read_trace_file)
from .rundir import check_origin, other_origin, run_is_busy

# the settings of a write-up's protocol, as published.mismatches names them
PROTOCOL_NAMES = {key: USER_NAMES.get(key, key) for key in PROTOCOL_KEYS}


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
    files = RunFolder(folder)
    path = files.config_file
    config = files.read_settings()  # cross-checked with checkpoint.json, which stands in for a lost config.json
    if config is None:
        present = [p.name for p in (files.log_file, files.status_file) if p.exists()]
        if present:
            raise damaged(path, f"is missing (the folder holds {' and '.join(present)}, and no {CHECKPOINT_SETTINGS}), "
                                f"so the run's settings are unknown")
        raise ConfigError(f"{folder} is not a run folder (no config.json)")
    doc = read_config_file(path) if path.exists() else {"config": config}
    config = dict(config)
    if not (isinstance(config.get("run"), str) and isinstance(config.get("backend"), str)
            and isinstance(config.get("seed", 0), int)):
        raise damaged(path, "does not say the run's name, seed and backend")
    meta = {k: v for k, v in doc.items() if k != "config"}
    status, rows = files.check_files()
    if status["status"] == "running" and not run_is_busy(folder):
        status = {**status, "status": "stopped",
                  "reason": "status.json says running, but no process holds the run: its sweep was stopped or "
                            "killed; run the sweep again to resume it"}
    log = pd.DataFrame(rows, columns=LOG_COLUMNS).set_index("epoch")
    trace = None
    if files.trace_file.exists():
        trace = read_trace(files.trace_file)
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


RUN_MARKERS = tuple(p.name for p in RunFolder(".").markers)
SETTINGS_FILES = RUN_MARKERS[:2]  # a sound run folder holds one of them


def run_depth(folder: str | Path) -> int | None:
    """How deep below `folder` its run folders (each with a config.json) are: 0, the folder is one;
    1, one run in its backends (<run>-seed<N>/); 2, a sweep folder (a `train --savepath` folder too);
    3, a runs folder; None: no runs."""
    folder = Path(folder)
    # 3 before 2: a runs folder of older versions holds sweeps (3) and, at 2, the runs of `train`, whose
    # layout was <savepath>/<backend>/ (depth 1) before train's runs were laid out as a sweep's
    for depth in (0, 1, 3, 2):
        if any(any(folder.glob("*/" * depth + name)) for name in SETTINGS_FILES):
            return depth
    return None


def load_sweep_dir(sweep_dir: str | Path, damaged_runs: list[Damaged] | None = None, depth: int = 2) -> list[RunFiles]:
    """Every run folder `depth` levels below `sweep_dir` (2: a sweep folder, any backend, any seed).
    A damaged run folder raises DamagedRun, or, when `damaged_runs` is a list, is put there and skipped."""
    pattern = "*/" * depth
    folders = sorted({p.parent for name in RUN_MARKERS for p in Path(sweep_dir).glob(pattern + name)})
    runs = []
    for folder in folders:
        try:
            runs.append(load_run(folder))
        except DamagedRun as e:
            if damaged_runs is None:
                raise
            damaged_runs.append(Damaged(folder, str(e)))
    return runs


# -- a sweep's runs, judged by parity ------------------------------------------------------------------

def _load_sweep_file(target: str) -> sweeps.Sweep | None:
    try:
        return sweeps.load(target)
    except ConfigError:
        if str(target).endswith(".toml"):
            raise
        return None


LOOKED_FOR = ("{0}/config.json (a run), {0}/<backend>/config.json (a run in its backends), "
              "{0}/<run>/<backend>/config.json (a sweep, or a `train --savepath` folder) or "
              "{0}/<sweep>/<run>/<backend>/config.json (a runs folder)")


def locate(target: str, runs_dir: str | Path) -> tuple[str, Path, sweeps.Sweep | None, int]:
    """(name, folder, sweep file, depth of its run folders below it: see runs.run_depth) for a sweep
    name or .toml path (its runs under runs_dir), a runs, sweep or run folder, or the name of a
    folder under runs_dir (`train` runs)."""
    path = Path(target)
    if not path.exists():  # a name ("café" composed or decomposed: its folder is in NFC)
        target = normal_name(str(target))
        path = Path(target)
    sweep = None
    if not (path.is_dir() and run_depth(path) is not None):
        sweep = _load_sweep_file(target)
        if sweep is not None:
            path = Path(runs_dir) / sweep.name
            if not path.is_dir():
                raise ConfigError(f"no runs of sweep {sweep.name!r} in {path}: run `python -m fluxlenet sweep "
                                  f"{target}` first, or give --runs-dir (or the path of a folder of runs)")
            theirs = other_origin(path, sweep)
            if theirs is not None:
                check_origin(path, sweep, f"give that file ({theirs}) or the folder {path} itself")
        elif len(path.parts) == 1 and (Path(runs_dir) / target).is_dir():
            path = Path(runs_dir) / target  # `train` runs: runs/train/
        elif not path.is_dir():
            raise ConfigError(f"{target!r} is not a sweep name (built-in: {', '.join(sweeps.builtin_names())}), "
                              f"a .toml sweep file, a folder, nor a folder in {runs_dir}; give one of those "
                              f"(the runs of a sweep are read under --runs-dir)")
    depth = run_depth(path)
    if depth is None:
        raise ConfigError(f"no runs in {path}: looked for " + LOOKED_FOR.format(path))
    if depth == 3:  # a runs folder: one sweep (or train run) in it is that one
        inside = sorted(p.name for p in path.iterdir() if p.is_dir() and run_depth(p) in (1, 2))
        if len(inside) != 1:
            raise ConfigError(f"{path} is a runs folder holding {', '.join(inside)}: give one of them, "
                              f"e.g. `{inside[0]} --runs-dir {path}`")
        path = path / inside[0]
        depth = run_depth(path)
    if depth == 2 and sweep is None:
        sweep = _load_sweep_file(path.name)
        if sweep is None and (path / f"{path.name}.toml").is_file():  # a sweep declared with --grid
            sweep = _load_sweep_file(str(path / f"{path.name}.toml"))
    name = path.name if depth else f"{path.parent.name}/{path.name}"
    return name, path, sweep, depth


def _runs_of(folder: Path, depth: int, damaged: list[Damaged]) -> list[RunFiles]:
    runs = load_sweep_dir(folder, damaged, depth)
    if not runs:
        if len(damaged) == 1:
            raise ConfigError(damaged[0].message)
        if damaged:
            raise ConfigError(f"all {len(damaged)} runs in {folder} are damaged; the first: {damaged[0].message}")
        raise ConfigError(f"no runs yet in {folder}: looked for " + LOOKED_FOR.format(folder))
    return runs


def _mark_damaged(result: "SweepResult", damaged: list[Damaged]) -> None:
    """A damaged run folder is left out of the comparison, said in a note and in its run's verdict."""
    for d in damaged:
        result.notes.append(f"left out, damaged: {d.message}")
        verdict = next((v for v in result.verdicts if v.run == d.run), None)
        if verdict is None:
            verdict = RunVerdict(d.run)
            result.verdicts.append(verdict)
            result.groups.setdefault(d.run, {})
        verdict.incomplete.append(f"{d.backend} seed {d.seed}: damaged run folder, left out (see the note)")


def _group(runs: list[RunFiles], label_of) -> dict[str, dict[str, list[RunFiles]]]:
    groups: dict[str, dict[str, list[RunFiles]]] = {}
    for r in runs:
        groups.setdefault(r.run, {}).setdefault(label_of(r), []).append(r)
    for sides in groups.values():
        for runs_ in sides.values():
            runs_.sort(key=lambda r: r.seed)
    return groups


def _order(groups: dict, sweep: sweeps.Sweep | None) -> dict:
    names = [c.run for c in sweep.runs] if sweep else []
    ordered = [n for n in names if n in groups] + sorted(n for n in groups if n not in names)
    return {n: groups[n] for n in ordered}


def compare_sweep(target: str, runs_dir: str | Path = "runs", policy: Policy | None = None,
                  against: str | Path | None = None) -> SweepResult:
    """Compare Flux with PyTorch (or each backend with its twin under `against`) and with the published figures."""
    policy = policy or Policy()
    name, sweep_dir, sweep, depth = locate(target, runs_dir)
    damaged: list[Damaged] = []
    runs = _runs_of(sweep_dir, depth, damaged)
    notes = []
    if against is None:
        groups = _order(_group(runs, lambda r: r.backend), sweep)
        present = {r.backend for r in runs}
        sides = list(BACKENDS) + sorted(present - set(BACKENDS))   # a backend not run is a column "not run"
        pairs = [("flux", "torch")]
        for backend in BACKENDS:
            if backend not in present:
                notes.append(f"{BACKEND_NAMES[backend]}: not run (no {backend} run folders in {sweep_dir})"
                             + ("; Julia not available here" if backend == "flux" and not julia_found() else ""))
        published_sides = [b for b in sides if b in present]
    else:
        other_dir = Path(against) / name if depth == 2 and not run_depth(against) == 2 else Path(against)
        if not other_dir.is_dir() or run_depth(other_dir) != depth:
            raise ConfigError(f"no runs of {name!r} in {other_dir} (--against {against}): looked for "
                              + LOOKED_FOR.format(other_dir))
        _not_one_folder(sweep_dir, other_dir, against)
        other = _runs_of(other_dir, depth, damaged)
        here, there = str(runs_dir), str(against)
        groups = _group(runs, lambda r: f"{r.backend} ({here})")
        for run_name, by_side in _group(other, lambda r: f"{r.backend} ({there})").items():
            groups.setdefault(run_name, {}).update(by_side)
        groups = _order(groups, sweep)
        backends = sorted({r.backend for r in runs} | {r.backend for r in other})
        pairs = [(f"{b} ({here})", f"{b} ({there})") for b in backends]
        sides = [s for pair in pairs for s in pair]
        published_sides = [p[0] for p in pairs]
    check_seed_groups(groups)
    result = judge(name, sweep_dir, sweep, policy, groups, sides, pairs, published_sides, notes, PROTOCOL_NAMES,
                   commands=rerun_commands(sweep, sweep_dir, groups))
    _mark_damaged(result, damaged)
    return result


def check_seed_groups(groups: dict[str, dict[str, list[RunFiles]]]) -> None:
    """ConfigError (one line naming the run, its folders and the settings) when the seeds of a run and
    backend, which are averaged as seeds, differ in more than the seed: nothing is summarised or judged."""
    for run, by_side in groups.items():
        for runs in by_side.values():
            mixed = mixed_settings([(r.seed, r.config) for r in runs])
            if not mixed:
                continue
            first = result_settings(runs[0].config)
            other = [r for r in runs if any(result_settings(r.config)[k] != v for k, v in first.items()
                                            if k not in SEED_GROUP_FREE)]
            folders = ", ".join(str(r.dir) for r in other[:3]) + (", ..." if len(other) > 3 else "")
            raise ConfigError(f"run {run} ({runs[0].backend}) in {runs[0].dir.parent.parent} mixes settings over "
                              f"its seeds ({'; '.join(mixed)}): a run's seeds must differ in the seed alone, so "
                              f"they are neither averaged nor judged; move the run folders of one setting away "
                              f"(such as {folders}) or into another runs folder")


def compare_folders(dir_a: str | Path, dir_b: str | Path, policy: Policy | None = None) -> SweepResult:
    """Compare two run folders (`<run>/<backend>/`) directly."""
    policy = policy or Policy()
    _not_one_folder(Path(dir_a), Path(dir_b), dir_b)
    ra, rb = load_run(dir_a), load_run(dir_b)
    la, lb = (ra.backend, rb.backend) if ra.backend != rb.backend else (f"{ra.backend} ({dir_a})", f"{rb.backend} ({dir_b})")
    groups = {ra.run: {la: [ra], lb: [rb]}}
    # two folders of one run: pair them whatever their seeds
    return judge(f"{dir_a} vs {dir_b}", Path(dir_a), None, policy, groups, [la, lb], [(la, lb)], [], [],
                 PROTOCOL_NAMES, pair_any_seed=True)


def _not_one_folder(here: Path, there: Path, against) -> None:
    """Both sides of --against in one folder would pass every run, compared with itself: one line."""
    if here.resolve() == there.resolve():
        raise ConfigError(f"--against {against}: both sides are one folder ({here}), so every run would be "
                          f"compared with itself; give the runs folder of another attempt")


def rerun_commands(sweep: sweeps.Sweep | None, sweep_dir: Path, groups: dict) -> dict[str, str]:
    """{run: the command that made its runs}, said where more seeds are needed: the sweep with the options
    the runs had beyond the sweep file (a command with more seeds is then not refused for other settings)."""
    if sweep is None:
        return {}
    builtin = sweep.path.resolve().parent == sweeps.SWEEP_DIR.resolve()
    base = f"python -m fluxlenet sweep {sweep.name if builtin else shlex.quote(str(sweep.path))}"
    runs_dir = Path(sweep_dir).parent
    runs_dir_option = "" if runs_dir == Path("runs") else f" --runs-dir {shlex.quote(str(runs_dir))}"
    protocols = {c.run: c.to_dict() for c in sweep.runs}
    return {run: base + rerun_options(next(iter(by_side.values()))[0].config, protocols.get(run, {}))
            + runs_dir_option for run, by_side in groups.items() if by_side}


def julia_found() -> bool:
    """Whether Flux runs can start here: Julia set up for the Flux backend (juliapkg's or PATH's)."""
    from .julia_env import julia_status
    return julia_status()[0]
