"""Is the Julia side ready, and how to make it so. Never imports juliacall.

`import juliacall` resolves the Julia environment the first time: it may download Julia and the
Julia packages (minutes), so nothing on a path that does not run Flux may import it. This module
asks juliapkg's public API instead (`juliapkg.resolve(dry_run=True)`, then `juliapkg.executable()`
and `juliapkg.project()`, which no longer resolve once that said yes). Where juliapkg has no public
answer that leaves things as they are, it reads juliapkg's state: the paths of the project and of
its Julia installs before any resolve (`STATE`), a Julia that fits without installing one
(`find_julia(install=False)`), and juliapkg's compat parser.

- `julia_status()`  -> (ready, reason): fast (well under a second; it waits, as `import juliacall`
                     does, while another process holds juliapkg's resolve lock), no downloads;
- `setup_julia()`   the one-time set-up (`python -m fluxlenet setup-julia`, or `--backend auto` on
                     first use): downloads and precompiles in a child process, with a network check
                     first and a time limit; an automatic set-up that failed is recorded
                     (`earlier_setup_failure()`), so that it is not tried again on every command;
- `doctor_lines()`  versions of everything involved, for `python -m fluxlenet doctor`.

The Julia dependencies are declared in `fluxlenet/juliapkg.json`, the FluxLeNet Julia package among
them, developed from its path `fluxlenet/julia` (in a source checkout a link to `julia/`; in a wheel
the folder itself), so that Pkg precompiles it with its workload. Its sources (`julia_source_file()`)
are also `include`d where the Julia project lacks the package (see fluxlenet.backends.flux).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import socket
import subprocess
import sys
import threading
from pathlib import Path

SETUP_COMMAND = "python -m fluxlenet setup-julia"
JULIAPKG_JSON = Path(__file__).with_name("juliapkg.json")
PACKAGES_TEXT = "Flux 0.16, Optimisers 0.4, BSON 0.3, ProgressMeter 1"
HOSTS = ("pkg.julialang.org", "julialang-s3.julialang.org")  # the package server, Julia's downloads
SETUP_TIMEOUT_S = 3600.0


class JuliaSetupError(Exception):
    """The Julia side could not be set up; the message says why and what to do."""


def _setup_failure_file() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fluxlenet" / "julia-setup-failed.json"


def earlier_setup_failure() -> str | None:
    """What an earlier automatic set-up that failed said, with its date; None when there was none (or the
    set-up has succeeded since). `--backend auto` does not try again: `setup-julia` does."""
    try:
        doc = json.loads(_setup_failure_file().read_text(encoding="utf-8"))
        return f"the automatic Julia set-up of {doc['when']} failed ({doc['error']})"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_setup_failure(error: str) -> None:
    import time
    path = _setup_failure_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"), "error": error}), encoding="utf-8")
    except OSError:  # a read-only home: the next command tries again, no worse
        pass


def clear_setup_failure() -> None:
    with contextlib.suppress(OSError):
        _setup_failure_file().unlink()


# ------------------------------------------------------------------ where things are


def julia_source_dir() -> Path | None:
    """The FluxLeNet Julia package (the folder holding Project.toml and src/), or None.

    A wheel ships it as `fluxlenet/julia/`; a source checkout has it as `julia/` beside `fluxlenet/`.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "julia", here.parent / "julia"):
        if (candidate / "src" / "FluxLeNet.jl").is_file() and (candidate / "Project.toml").is_file():
            return candidate.resolve()  # fluxlenet/julia is a link to julia/ in a checkout
    return None


def julia_source_file() -> Path | None:
    folder = julia_source_dir()
    return None if folder is None else folder / "src" / "FluxLeNet.jl"


def julia_compat() -> str:
    """The Julia versions allowed: ours (juliapkg.json) and juliacall's, intersected."""
    specs = [_json_julia(JULIAPKG_JSON)]
    spec = importlib.util.find_spec("juliacall")  # finds, does not import
    if spec is not None and spec.origin:
        specs.append(_json_julia(Path(spec.origin).with_name("juliapkg.json")))
    specs = [s for s in specs if s]
    try:
        from juliapkg.compat import Compat
        compat = Compat.parse(specs[0])
        for s in specs[1:]:
            compat &= Compat.parse(s)
        return str(compat)
    except Exception:
        return " and ".join(specs)


def _json_julia(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("julia")
    except (OSError, ValueError):
        return None


def juliacall_environment(threads: int) -> None:
    """How juliacall starts Julia in this process: set before `import juliacall`.

    `threads` Julia threads, and Julia's signal handling on: with more than one thread and it off,
    Julia's GC safepoints (SIGSEGV) reach Python's handlers and the worker dies of SIGSEGV (seen on
    Julia 1.10 with 2 threads; PythonCall's FAQ says the same).
    """
    os.environ["PYTHON_JULIACALL_THREADS"] = str(int(threads))
    os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] = "yes"


def pythoncall_wanted() -> str | None:
    """The PythonCall.jl version that the installed juliacall pins (its juliapkg.json), e.g. "0.9.37"."""
    spec = importlib.util.find_spec("juliacall")  # finds, does not import
    if spec is None or not spec.origin:
        return None
    try:
        packages = json.loads(Path(spec.origin).with_name("juliapkg.json").read_text(encoding="utf-8"))["packages"]
        return packages["PythonCall"]["version"].lstrip("=~^ ")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def read_manifest(project: str | os.PathLike) -> dict:
    """The manifest Julia reads for `project` (a version-specific Manifest-v1.10.toml first, then
    JuliaManifest.toml, Manifest.toml), parsed; {} when there is none."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    folder = Path(project)
    candidates = sorted(folder.glob("*Manifest-v*.toml"), reverse=True) + \
        [folder / "JuliaManifest.toml", folder / "Manifest.toml"]
    for path in candidates:
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return {}


def manifest_version(project: str | os.PathLike, package: str) -> str | None:
    """The version of `package` in a Julia project's manifest (any manifest format), or None."""
    doc = read_manifest(project)
    entries = doc.get("deps", doc)  # format 2.0 keeps packages under [deps], format 1.0 at the top
    entry = entries.get(package) if isinstance(entries, dict) else None
    if isinstance(entry, list) and entry and isinstance(entry[0], dict):
        return entry[0].get("version")
    return None


def pythoncall_mismatch(project: str | os.PathLike) -> str | None:
    """Why juliacall cannot start with `project`'s PythonCall.jl, or None when they fit (or we cannot tell).

    juliacall pins PythonCall exactly; with another one in the project, `import juliacall` fails inside
    Julia ("'juliacall' module already exists"), far from the cause.
    """
    wanted, found = pythoncall_wanted(), manifest_version(project, "PythonCall")
    if not wanted or not found or wanted == found:
        return None
    try:
        have = importlib.metadata.version("juliacall")
    except importlib.metadata.PackageNotFoundError:
        have = "?"
    return (f"juliacall {have} needs PythonCall.jl {wanted}, but the Julia project {project} has PythonCall "
            f"{found}: `pip install 'juliacall=={found}'` to match it, or update PythonCall there "
            f"(`julia --project={project} -e 'using Pkg; Pkg.add(name=\"PythonCall\", version=\"{wanted}\")'`)")
# ------------------------------------------------------------------ status


def julia_status() -> tuple[bool, str]:
    """(ready, reason): can a Flux run start now without downloading anything?

    Asks juliapkg whether the environment is resolved for the dependency files found now
    (`juliapkg.resolve(dry_run=True)`: what `import juliacall` checks first; no network) and whether
    its manifest holds the Flux backend's packages. The reason names Julia and the set-up command
    when not ready.
    """
    source = julia_source_dir()
    if source is None:
        return False, ("the Julia sources of the Flux backend (FluxLeNet.jl) are missing from this installation; "
                       f"reinstall fluxlenet, then run `{SETUP_COMMAND}`")
    try:
        import juliapkg
        from juliapkg.state import STATE
    except Exception as e:  # juliacall (and with it juliapkg) is a dependency, but may be broken
        return False, (f"Julia support is not installed ({type(e).__name__}: {e}); "
                       f"`pip install 'juliacall>=0.9.37,<0.10'`, then run `{SETUP_COMMAND}`")

    exe, project = os.environ.get("PYTHON_JULIACALL_EXE"), os.environ.get("PYTHON_JULIACALL_PROJECT")
    if exe and project:  # juliacall then uses this Julia and project as they are
        if os.path.exists(project):
            mismatch = pythoncall_mismatch(project)
            if mismatch:
                return False, mismatch
            return True, f"Julia at {exe} with the project {project} (PYTHON_JULIACALL_EXE/PROJECT)"
        return False, (f"the Julia project PYTHON_JULIACALL_PROJECT={project} does not exist; "
                       f"unset it and run `{SETUP_COMMAND}`")

    compat = julia_compat()
    quiet = contextlib.redirect_stdout(io.StringIO())  # juliapkg logs with print()
    try:
        with quiet:
            resolved = juliapkg.resolve(dry_run=True)
    except Exception:
        resolved = False
    project = juliapkg.project() if resolved else STATE.get("project") or ""  # resolved: no resolve again
    if resolved and _has_our_packages(project):
        mismatch = pythoncall_mismatch(project)
        if mismatch:
            return False, f"{mismatch}; or run `{SETUP_COMMAND}` to re-resolve the environment"
        version = read_manifest(project).get("julia_version")  # Pkg records the Julia it resolved with
        julia = f"Julia {version}" if version else "Julia"
        return True, f"{julia} with {PACKAGES_TEXT} is set up ({juliapkg.executable()})"

    julia = _find_julia(compat, STATE)
    recorded = bool(manifest_version(project, "Flux"))
    if julia is None:
        other = _find_julia("", STATE)
        found = f" (Julia {other[1]} at {other[0]} does not fit)" if other else ""
        return False, (f"Julia ({compat}) is not installed{found}, and the Flux backend needs it: run "
                       f"`{SETUP_COMMAND}` once (it downloads Julia and {PACKAGES_TEXT}, about 1 GB, several "
                       "minutes), or install Julia 1.10 (https://julialang.org/downloads) and then run it")
    exe, version = julia
    if recorded:
        return False, (f"Julia {version} is at {exe}, but the Julia environment of the Flux backend "
                       f"({project}) is out of date: run `{SETUP_COMMAND}` (a few minutes)")
    return False, (f"Julia {version} is at {exe}, but the Julia packages of the Flux backend ({PACKAGES_TEXT}) "
                   f"are not set up: run `{SETUP_COMMAND}` once (several minutes)")


def _has_our_packages(project: str) -> bool:
    """Whether the resolved project holds the Flux backend's packages (our juliapkg.json was part of it)."""
    return all(manifest_version(project, name) for name in ("Flux", "Optimisers", "BSON", "ProgressMeter"))


def _find_julia(compat: str, STATE) -> tuple[str, str] | None:
    """(executable, version) of an installed Julia that fits, without installing or printing."""
    try:
        from juliapkg.compat import Compat
        from juliapkg.find_julia import find_julia
        with contextlib.redirect_stdout(io.StringIO()):
            exe, version = find_julia(Compat.parse(compat) if compat else None, prefix=STATE.get("install"),
                                      install=False)
        return str(exe), str(version)
    except Exception:
        return None


# ------------------------------------------------------------------ set-up

_SETUP_SCRIPT = """
import juliacall  # resolves the environment: downloads Julia and the packages if needed, precompiles
from fluxlenet.backends.flux import fluxlenet_module, julia_versions
fluxlenet_module()
v = julia_versions()
print(f"Julia {v['julia']}, Flux {v['Flux']}, Optimisers {v['Optimisers']}, BSON {v['BSON']}: FluxLeNet loads.")
"""


def network_reachable(hosts=HOSTS, port: int = 443, timeout_s: float = 5.0) -> tuple[bool, str]:
    """Can we open a TCP connection to any of `hosts`? Bounded by `timeout_s` even when DNS hangs."""
    result: list = []

    def probe():
        errors = []
        for host in hosts:
            try:
                with socket.create_connection((host, port), timeout=timeout_s):
                    result.append((True, host))
                    return
            except OSError as e:
                errors.append(f"{host}: {e.strerror or e}")
        result.append((False, "; ".join(errors)))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s * len(hosts) + 1.0)
    if not result:
        return False, f"no answer from {', '.join(hosts)} within {timeout_s * len(hosts):.0f} s"
    return result[0]


def setup_julia(echo=print, timeout_s: float = SETUP_TIMEOUT_S) -> None:
    """Download (if needed) and precompile Julia and the Flux backend's packages; raises JuliaSetupError.

    Says first what it will fetch and where; checks the network before any download (so an offline
    machine gets a clear message at once, not a hang); then resolves in a child process whose
    output (juliapkg's and Pkg's progress) goes straight to the terminal, killed after `timeout_s`.
    """
    from juliapkg.state import STATE

    compat = julia_compat()
    julia = _find_julia(compat, STATE)
    ready, reason = julia_status()
    depot = os.environ.get("JULIA_DEPOT_PATH", "").split(os.pathsep)[0] or os.path.join(Path.home(), ".julia")
    echo("Setting up Julia for the Flux backend.")
    if julia:
        echo(f"  Julia: {julia[1]} at {julia[0]}")
    else:
        echo(f"  Julia: none found for {compat}; juliapkg downloads the latest such release "
             f"(about 150 MB) into {STATE.get('install')}")
    echo(f"  Julia packages: {PACKAGES_TEXT} and their dependencies (several hundred MB) into the "
         f"Julia depot {depot}, in the environment {STATE.get('project')}, then precompiled.")
    echo("  The first time this takes several minutes; later runs start in seconds.")
    if not ready:
        ok, why = network_reachable()
        if not ok:
            if julia is None:
                raise JuliaSetupError(
                    f"no network ({why}), and there is no Julia here to work offline with: the Flux backend needs "
                    f"Julia ({compat}) and {PACKAGES_TEXT}. Run `{SETUP_COMMAND}` where the network is reachable, "
                    "or install Julia 1.10 yourself; meanwhile the PyTorch backend runs alone (--backend torch).")
            echo(f"WARNING: no network ({why}); trying with what the Julia depot already holds.")
    source = julia_source_file()
    if source is None:
        raise JuliaSetupError(reason)
    echo(f"  FluxLeNet sources: {source.parent.parent}")
    try:
        proc = subprocess.run([sys.executable, "-c", _SETUP_SCRIPT], timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise JuliaSetupError(f"the Julia set-up did not finish within {timeout_s:.0f} s (a stalled download?); "
                              f"run `{SETUP_COMMAND}` again") from None
    if proc.returncode != 0:
        raise JuliaSetupError(f"the Julia set-up failed (exit code {proc.returncode}); the messages above say why. "
                              "The PyTorch backend still runs alone (--backend torch).")
    ready, reason = julia_status()
    if not ready:
        raise JuliaSetupError(f"the set-up ran, but Julia is still not ready: {reason}")
    clear_setup_failure()
    echo(f"Julia is ready: {reason}")


# ------------------------------------------------------------------ doctor

_VERSIONS_SCRIPT = """
import json
from fluxlenet.backends.flux import julia_versions
print("FLUXLENET-VERSIONS " + json.dumps(julia_versions()))
"""


def doctor_lines(timeout_s: float = 300.0) -> list[str]:
    """What `python -m fluxlenet doctor` prints: versions of Python, the Python packages, Julia and Flux."""
    lines = [f"Python {platform.python_version()} ({sys.executable}) on {platform.platform()}"]
    for dist in ("fluxlenet", "numpy", "torch", "tensorboard", "juliacall", "juliapkg"):
        try:
            lines.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{dist}: not installed")
    source = julia_source_dir()
    lines.append(f"FluxLeNet Julia sources: {source if source else 'missing'}")
    ready, reason = julia_status()
    if not ready:
        lines.append(f"Julia: not available: {reason}")
        return lines
    lines.append(f"Julia: {reason}")
    try:  # in a child: importing juliacall here would load Julia into this process
        proc = subprocess.run([sys.executable, "-c", _VERSIONS_SCRIPT], capture_output=True, text=True,
                              timeout=timeout_s)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("FLUXLENET-VERSIONS ")]
        if proc.returncode == 0 and found:
            v = json.loads(found[-1].split(" ", 1)[1])
            lines.append(f"Julia {v['julia']}, Flux {v['Flux']}, Optimisers {v['Optimisers']}, BSON {v['BSON']}")
        else:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            lines.append(f"Julia: set up, but loading FluxLeNet failed: {tail}")
    except subprocess.TimeoutExpired:
        lines.append(f"Julia: set up, but loading FluxLeNet took longer than {timeout_s:.0f} s")
    return lines
