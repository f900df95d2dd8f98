"""Sweep files (TOML): a `[base]` table of settings and one `[[runs]]` table per run.

    description = "..."
    [base]
    batchsize = 32
    eta = 3e-4
    [[runs]]
    name = "ADAMW"                 # the swept value, as the write-up names it
    optimizer = "ADAMW_flux012"

Settings are RunConfig's, written as a user writes them (`lambda`, `momentum`).
The package ships the post's sweeps; a path to a user's own file works the same way.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .config import ALIASES, ConfigError, RunConfig, name_problem, normal_name

SWEEP_DIR = Path(__file__).parent / "sweep_files"
TOP_KEYS = {"description", "base", "runs", "published"}


@dataclass
class Sweep:
    name: str
    description: str
    runs: list[RunConfig]          # one per [[runs]] table, seed from the file or the default
    path: Path
    published: str | None = None   # the published experiment these runs reproduce (parity, reports)


def builtin_names() -> list[str]:
    return sorted(p.stem for p in SWEEP_DIR.glob("*.toml"))


def find(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if path.is_dir():
            raise ConfigError(f"sweep file {path} is a directory, not a file; give the .toml file inside it")
        if path.exists() and not path.is_file():
            raise ConfigError(f"sweep file {path} is not a regular file")
        if not path.is_file():
            raise ConfigError(f"sweep file {path} does not exist")
        return path
    builtin = SWEEP_DIR / f"{name_or_path}.toml"
    if not builtin.is_file():
        raise ConfigError(f"unknown sweep {name_or_path!r}; built-in sweeps: {', '.join(builtin_names())} "
                          f"(or give the path of a .toml sweep file)")
    return builtin


def load(name_or_path: str) -> Sweep:
    path = find(name_or_path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise ConfigError(f"sweep file {path}: not valid TOML: not UTF-8 text (byte 0x{e.object[e.start]:02x} "
                          f"on line {line})") from None
    except OSError as e:
        raise ConfigError(f"sweep file {path}: cannot be read: {e.strerror}") from None
    return from_document(doc, path, where=f"sweep file {path}: ")


def from_document(doc: dict, path: Path, where: str) -> Sweep:
    """The sweep of a parsed sweep file (`path` names it; errors start with `where`)."""
    sweep_name = normal_name(path.stem)
    problem = name_problem(sweep_name)
    if problem:
        raise ConfigError(f"{where}the sweep is named after the file, and {path.stem!r} {problem}; rename the file")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}unknown top-level key {sorted(unknown)[0]!r}; expected {', '.join(sorted(TOP_KEYS))}")
    base = doc.get("base", {})
    runs = doc.get("runs", [])

    def at(key):
        line = line_of(path, key) if path.is_file() else None
        return f" (line {line})" if line else ""
    if not isinstance(base, dict):
        raise ConfigError(f"{where}base must be a table of settings ([base]), not {_shown(base)}{at('base')}")
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise ConfigError(f"{where}needs at least one [[runs]] table" + (f", not runs = {_shown(runs)}{at('runs')}"
                                                                         if "runs" in doc else ""))
    for key in ("description", "published"):
        problem = _top_problem(key, doc.get(key))
        if problem:
            raise ConfigError(f"{where}{problem}{at(key)}", key)
    configs, names = [], set()
    for i, run in enumerate(runs, 1):
        run = dict(run)
        given = run.pop("name", f"run{i}")
        name = str(given) if isinstance(given, (int, float)) and not isinstance(given, bool) else given  # 1e-3
        name = normal_name(name)  # "café" composed or decomposed: one name
        problem = name_problem(name)
        if problem:
            line = line_of(path, "name", given) if path.is_file() else None
            raise ConfigError(f"{where}run name {name!r} {problem}" + (f" (line {line})" if line else ""))
        if name in names:
            raise ConfigError(f"{where}two runs are named {name!r}")
        names.add(name)
        try:
            cfg = RunConfig.from_dict({**base, **run}, where=f"{where}run {name!r}: ")
        except ConfigError as e:
            line = line_of(path, e.key) if path.is_file() else None
            raise ConfigError(f"{e} (line {line})" if line else str(e)) from None
        configs.append(cfg.replace(sweep=sweep_name, run=name))
    return Sweep(name=sweep_name, description=doc.get("description", ""), runs=configs, path=path,
                 published=doc.get("published"))


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _top_problem(key: str, value) -> str | None:
    """What is wrong with the top-level `description` or `published` of a sweep file, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{key} must be a string (text in quotes), not {_shown(value)}"
    if key == "published":
        from parity.published import results
        sources = sorted(set(results().source))
        source, _, experiment = value.partition("/")
        if source not in sources or not experiment:
            return (f"published must name published figures as \"<source>/<experiment>\" with a source of "
                    f"fluxlenet/reference/published-results.csv ({', '.join(sources)}), not {value!r}")
    return None


GRID_MAX_RUNS = 1000  # runs a --grid may span without --max-runs: a typo's huge product is said at once
# RunConfig fields a grid cannot vary: each run's place, which the grid and the command decide
NOT_AXES = {"name": "runs are named after their values", "run": "runs are named after their values",
            "sweep": "the sweep is named by --name", "backend": "the frameworks are chosen by --backend"}


def _grid_value(text: str):
    """A --grid value typed as a sweep file would type it: 3e-4 a float, 32 an int, true a bool, [1,2] a
    list, else text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_values(text: str) -> list[str]:
    """V1,V2,... split at the commas outside brackets and quotes: milestones=[1,2],[3] is two lists."""
    values, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth <= 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    return values + [current.strip()]


def grid_axes(pairs: list[str]) -> dict[str, list[str]]:
    """The axes of `--grid KEY=V1,V2 ...`: key -> the values as written; ConfigError for a malformed pair,
    a key given twice (under any of its names) or one that is not a setting a grid can vary."""
    axes: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        key = key.strip()
        texts = split_values(values)
        if not sep or not key or not all(texts):
            raise ConfigError(f"--grid expects KEY=VALUE[,VALUE...] (e.g. eta=1e-3,3e-4), got {pair!r}")
        if key in NOT_AXES:
            raise ConfigError(f"--grid: {key!r} is not a setting a grid can vary ({NOT_AXES[key]})")
        same = [k for k in axes if ALIASES.get(k, k) == ALIASES.get(key, key)]
        if same:
            named = f"{key!r} twice" if same[0] == key else f"{same[0]!r} and {key!r}, one setting"
            raise ConfigError(f"--grid names {named}; give all its values at once: {key}=a,b")
        axes[key] = texts
    return axes


def grid_document(pairs: list[str], base: Sweep | None = None,
                  max_runs: int = GRID_MAX_RUNS) -> tuple[dict, list[str]]:
    """The sweep file of `sweep --grid KEY=V1,V2 ...` and notes for the user: every combination of the
    values, over each run of `base` (or over the defaults), each run named after its values
    (`eta=1e-3_batchsize=32`), or numbered (run1, ..., zero-padded to one width) when such a name
    cannot be a folder name.
    Counted first: more than `max_runs` runs is refused before any is built."""
    axes = grid_axes(pairs)
    if base is None:
        base_table, base_runs = {}, [{}]
    else:
        with open(base.path, "rb") as f:
            doc = tomllib.load(f)
        base_table, base_runs = doc.get("base", {}), doc.get("runs", [{}])
    counts = [len(texts) for texts in axes.values()]
    total = math.prod(counts) * len(base_runs)
    if total > max_runs:
        shown = " x ".join(f"{n:,}" for n in counts) + (f" x the {len(base_runs)} runs of {base.name}"
                                                        if len(base_runs) > 1 else "")
        raise ConfigError(f"--grid spans {total:,} runs ({shown}), more than {max_runs:,}; give fewer values, "
                          f"or --max-runs {total} to run them all")
    combos = [[]]
    for key, texts in axes.items():
        combos = [combo + [(key, text)] for combo in combos for text in texts]
    runs = []
    for run in base_runs:
        for combo in combos:
            label = "_".join(f"{key}={text}" for key, text in combo)
            name = f"{run['name']}_{label}" if len(base_runs) > 1 and "name" in run else label
            runs.append({**run, **{key: _grid_value(text) for key, text in combo}, "name": name})
    notes = []
    bad = next((r["name"] for r in runs if name_problem(r["name"])), None)
    if bad is not None:
        width = len(str(len(runs)))
        for i, run in enumerate(runs, 1):
            run["name"] = f"run{i:0{width}d}"
        shown = bad if len(bad) <= 60 else bad[:57] + "..."
        notes.append(f"NOTE: --grid: a run name from the values ({shown!r}) {name_problem(bad)}; the runs are "
                     f"numbered {runs[0]['name']} to {runs[-1]['name']} instead")
    described = " x ".join(f"{key} in {{{', '.join(texts)}}}" for key, texts in axes.items())
    return {"description": f"--grid {described}" + (f" over the sweep {base.name}" if base else ""),
            "base": base_table, "runs": runs}, notes


def line_of(path: Path, key: str | None, value=None) -> int | None:
    """The first line of the file that sets `key` (to `value`, when given), to point the user at it."""
    if not key:
        return None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.split("=", 1)[0].strip().strip('"') == key and "=" in line:
            if value is None or _value_of(line) == value:
                return number
    return None


def _value_of(line: str):
    try:
        return next(iter(tomllib.loads(line).values()))
    except (tomllib.TOMLDecodeError, StopIteration):
        return None
