"""The plan of a command's runs, shared by the local and the Ray executor: settings -> tasks -> what
each run folder already holds -> the inputs checked -> what is not done, run -> a summary.

`cli` parses the arguments into settings and calls `execute`; `runner` (local processes) and
`ray_executor` (a Ray cluster) only run the tasks handed to them.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

from . import models, sweeps
from .config import BACKENDS, LENGTH, SEED_GROUP_FREE, ConfigError, RunConfig
from .rundir import Task
from .runlog import (CHECKPOINT_SETTINGS, FINAL_STATES, DamagedRun, RunFolder, check_checkpoint, damaged,
                     read_config_file, stored_config)

EXIT_FAILED, EXIT_USAGE = 1, 2  # execute's exit codes besides 0 (cli's docstring lists them all)
RAY_TIMEOUT_S = 60.0    # how long a --ray-address cluster has to answer


class NoJulia(Exception):
    """Flux was asked for explicitly and the Julia side is not ready."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) while runs were going: the message says what was saved."""


# -- settings -> tasks ---------------------------------------------------------------------

def sweep_configs(sweep: sweeps.Sweep, changes: dict, seeds: list[int] | None = None,
                  where: str = "") -> list[RunConfig]:
    """The validated runs of a sweep file with `changes` (the command line's settings), one per run and
    seed. A bad value is said with `where` ("--grid: "), or else in the sweep file's words and line when
    the file holds it."""
    configs = []
    for file_cfg in sweep.runs:
        cfg = file_cfg.replace(**changes)
        for seed in seeds or [cfg.seed]:
            try:
                configs.append(cfg.replace(seed=seed).validate())
            except ConfigError as e:
                if where:
                    raise ConfigError(f"{where}{e}") from None
                raise _in_sweep_file(e, file_cfg, sweep.path) from None
    return configs


def _in_sweep_file(error: ConfigError, file_cfg: RunConfig, path: Path) -> ConfigError:
    """An impossible value: when the sweep file holds it, name the file and the line."""
    try:
        file_cfg.validate()
        return error  # the file is fine: a command-line option is at fault
    except ConfigError:
        pass
    line = sweeps.line_of(path, error.key)
    return ConfigError(f"sweep file {path}: {error}" + (f" (line {line})" if line else ""), error.key)


def replay_variant_configs(target, configs: list[RunConfig]) -> list[RunConfig]:
    """Beside each replay run (the write-up's seed, its generator's draws), the same run in other arithmetic
    (target.replay_variants), in a sweep folder of its own: the pairs size the replay's band."""
    out = []
    for cfg in configs:
        if cfg.seed != target.replay_seed or cfg.rng != "julia" or cfg.mode != "lockstep":
            continue
        for variant, changes in target.replay_variants:
            changed = cfg.replace(**dict(changes))
            if changed != cfg:  # a run already in that arithmetic is no variant of itself
                out.append(changed.replace(sweep=target.variant_sweep(cfg.sweep, variant)).validate())
    return out


def choose_backends(requested: str, notes: list[str], configs: list[RunConfig], echo) -> list[str]:
    """The backends to run; what the user should know about the choice goes into `notes`, said
    once the inputs are known to be sound. `auto` sets Julia up on first use (set_up_julia_first)."""
    if requested == "torch":
        return ["torch"]
    from .julia_env import julia_status
    ready, reason = julia_status()
    if requested in ("flux", "both") and not ready:
        raise NoJulia(reason)
    if requested == "flux":
        return ["flux"]
    if requested == "both" or ready or set_up_julia_first(configs, echo, notes):
        return ["torch", "flux"]
    notes.append(f"NOTE: Flux was not run: {reason}")
    notes.append("NOTE: running PyTorch alone; its results are not a Flux comparison.")
    return ["torch"]


def set_up_julia_first(configs: list[RunConfig], echo, notes: list[str]) -> bool:
    """`--backend auto` where Julia is not set up: set it up now, once, as juliacall and PySR do on first
    import (minutes, about 1 GB), when the network is reachable and no earlier automatic set-up failed;
    True when Julia is then ready. Offline, or after a failure (`setup-julia` tries again), False, with
    a note of the failure."""
    from .julia_env import (SETUP_COMMAND, JuliaSetupError, earlier_setup_failure, network_reachable,
                            record_setup_failure, setup_julia)
    failed = earlier_setup_failure()
    if failed:
        notes.append(f"NOTE: {failed}; `{SETUP_COMMAND}` tries again")
        return False
    if not network_reachable(timeout_s=3.0)[0]:
        return False  # offline: PyTorch alone, with the usual note
    check_inputs(configs, echo)  # a mistake in the inputs is said before minutes of downloads
    echo("NOTE: the Flux backend needs Julia, not yet set up here: setting it up now, once (about 1 GB, "
         "several minutes; --backend torch runs PyTorch alone without it)")
    try:
        setup_julia(echo=echo)
        return True
    except JuliaSetupError as e:
        record_setup_failure(str(e))
        notes.append(f"NOTE: the automatic Julia set-up failed ({e}); `{SETUP_COMMAND}` tries again")
        return False


# -- what the run folders hold, and the inputs ----------------------------------------------

def check_existing(task: Task) -> str:
    """"new", "done" (finished or diverged: skip) or "resume". ConfigError if the folder holds a run
    with other settings (by config.json, or by checkpoint.json when config.json is gone); DamagedRun
    if a file of the run cannot be read, or a checkpoint's settings are unknown.

    A run of another length (epochs, steps) and the same settings otherwise goes on from its checkpoint
    to the new length (a finished run too: "resume"), unless RunConfig.length_problem says why not; a
    diverged run stays done, whatever the length."""
    run_dir, files = task.run_dir, RunFolder(task.run_dir)
    for folder in (run_dir.parent, run_dir):
        if folder.exists() and not folder.is_dir():
            raise damaged(folder, "is a file where the run folder should be", "move it away")
    settings = files.read_settings()
    if settings is not None:
        if task.cfg.differences(settings, ignore=LENGTH):  # the message names the length too, if it differs
            raise ConfigError(f"{run_dir} holds a run with other settings "
                              f"({', '.join(task.cfg.differences(settings))}); "
                              f"use another folder (--runs-dir; --savepath for train) or remove that one")
    else:
        leftovers = files.existing_checkpoints() + [p for p in [files.log_file] if p.exists()]
        if leftovers:
            name = leftovers[0].name
            raise damaged(run_dir, f"holds {name} but neither config.json nor {CHECKPOINT_SETTINGS}, so the "
                                   f"settings it was trained with are unknown",
                          f"move that folder away (or delete {name}) to start the run afresh")
        return "new"
    status, _ = files.check_files()
    stored = [p for p in (files.config_file, files.checkpoint_file) if p.exists()]
    trained = stored_config(stored[-1])  # checkpoint.json, the checkpoints' settings, when it is there
    if task.cfg.differences(trained) and status["status"] != "diverged":
        finished = status["status"] in FINAL_STATES
        ntrain = read_config_file(stored[0]).get("train_samples")  # config.json's, written by the worker
        ntrain = ntrain if isinstance(ntrain, int) and ntrain > 0 else None
        old = RunConfig.from_stored(trained)
        problem = task.cfg.length_problem(old, ntrain, bool(files.existing_checkpoints()), finished)
        if problem:
            raise ConfigError(f"{run_dir} {problem}")
        if finished and ntrain is not None and task.cfg.end_step(ntrain) == old.end_step(ntrain):
            return "done"  # the same length in other words (epochs or steps)
    elif status["status"] in FINAL_STATES:
        return "done"
    for path in files.existing_checkpoints():
        check_checkpoint(path)
    return "resume"


def check_seed_groups(tasks: list[Task]) -> None:
    """A seed group (the runs of one run name and backend, averaged as seeds) must hold runs that differ
    in the seed alone: ConfigError, before anything is written, when a task would join run folders of
    other settings (another --train-size, say) that this command does not itself run."""
    ours = {task.run_dir for task in tasks}
    for task in tasks:
        sweep_dir = task.run_dir.parent.parent
        if not sweep_dir.is_dir():
            continue
        pattern = re.compile(re.escape(task.cfg.run) + r"-seed(\d+)")
        differ = []
        for entry in sorted(sweep_dir.iterdir()):
            folder = entry / task.cfg.backend
            if not pattern.fullmatch(entry.name) or folder in ours or not folder.is_dir():
                continue
            try:
                stored = RunFolder(folder).read_settings()
            except ConfigError:  # unreadable or inconsistent settings: parity names that folder as damaged
                continue
            diff = task.cfg.differences(stored, ignore=SEED_GROUP_FREE) if stored else []
            if diff:
                differ.append((entry, diff))
        if differ:
            folders = ", ".join(str(entry) for entry, _ in differ[:3]) + (", ..." if len(differ) > 3 else "")
            raise ConfigError(f"{sweep_dir} holds {len(differ)} seed(s) of run {task.cfg.run} ({task.cfg.backend}) "
                              f"with other settings ({', '.join(differ[0][1])}); the seeds of a run must differ "
                              f"in the seed alone, or they would be averaged as seeds: use another folder "
                              f"(--runs-dir; --savepath for train), or move {folders} away")


def check_train_folder(savepath: Path) -> None:
    """ConfigError when `savepath` holds a run in `train`'s old layout (<savepath>/<backend>/, before runs
    of `train` were laid out as a sweep's): a new run beside it would hide it from parity and report."""
    for backend in BACKENDS:
        old = RunFolder(savepath / backend)
        if not any(p.exists() for p in old.markers):
            continue
        try:
            settings = old.read_settings() or {}
        except ConfigError:
            settings = {}
        run_id = f"{settings.get('run', '<run>')}-seed{settings.get('seed', '<N>')}"
        raise ConfigError(f"{savepath} holds a run in the old layout of `train` ({old.path}/); runs of train "
                          f"now go in <savepath>/<run>-seed<N>/<backend>/: move it to {savepath / run_id}/{backend}/, "
                          f"or give another --savepath")


def restore_config(task: Task) -> bool:
    """A finished run whose config.json is gone gets it back from checkpoint.json (which holds the same
    settings); True when it was restored."""
    files = RunFolder(task.run_dir)
    if files.config_file.exists() or not files.checkpoint_file.is_file():
        return False
    files.write_config(stored_config(files.checkpoint_file), restored_from=CHECKPOINT_SETTINGS)
    return True


def check_inputs(configs: list[RunConfig], echo) -> None:
    """Everything that can be said before training: data present and sound, models fit, device there."""
    from . import data
    for cfg in configs:  # before any loading or download: a CIFAR model on MNIST is one line, at once
        try:
            models.check_model(cfg.model, data.INPUT_SHAPE[cfg.dataset])
        except models.SpecError as e:
            raise ConfigError(f"{e} (dataset {cfg.dataset})") from None
    seen = set()
    for cfg in configs:
        key = (cfg.dataset, cfg.data_dir, cfg.train_size, cfg.test_size, cfg.valid_size, cfg.seed)
        if key in seen:
            continue
        seen.add(key)
        dataset = data.load_dataset(cfg.dataset, cfg.data_dir, train_size=cfg.train_size, test_size=cfg.test_size,
                                    valid_size=cfg.valid_size, seed=cfg.seed, download=True, progress=True)
        for model in {c.model for c in configs if c.dataset == cfg.dataset}:
            try:
                models.check_model(model, dataset.input_shape, dataset.nclasses)
            except models.SpecError as e:
                raise ConfigError(str(e)) from None
    if any(cfg.device == "cuda" for cfg in configs):
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available to torch here; use --device cpu")


# -- running them ---------------------------------------------------------------------------

def execute(configs: list[RunConfig], backends: list[str], folder_of, lock_dirs: list[Path], echo,
            announce: list[str], *, executor: str = "local", jobs: int = 1, ray_address: str | None = None,
            ray_timeout: float | None = None, prepare=None, extra: list[tuple[RunConfig, list[str]]] = (),
            sweeps_of: dict | None = None) -> int:
    """Check the run folders and the inputs, call `prepare` (a sweep file to write, say), say `announce`
    and run what is not done: each of `configs` in every one of `backends`, then each (config, its backends)
    of `extra`.

    The seeds of a run must differ in the seed alone (check_seed_groups). sweeps_of: {sweep folder: its
    Sweep}, so that two sweep files of one name do not share a folder (rundir.check_origin). A damaged
    run folder is named in one `error:` line and left as it is; the other runs go on (exit code 2 at the
    end). Ctrl-C while runs go raises Interrupted, saying what was saved."""
    from . import runner
    from .rundir import check_origin, record_origin
    if executor == "ray":
        from .ray_executor import check_reachable, import_ray
        import_ray()  # without Ray: how to install it, before anything is read or written
        if ray_address is not None:
            check_reachable(ray_address, ray_timeout or RAY_TIMEOUT_S)
    tasks = []
    for cfg, its_backends in [(cfg, backends) for cfg in configs] + list(extra):
        for backend in its_backends:
            c = cfg.replace(backend=backend)
            tasks.append(Task(c, folder_of(c)))
    configs = configs + [cfg for cfg, _ in extra]
    for folder, sweep in (sweeps_of or {}).items():  # reads only, as the next: a refused command writes nothing
        check_origin(folder, sweep, "rename one of the files, or give this one another --runs-dir")
    check_seed_groups(tasks)
    with contextlib.ExitStack() as locks:
        for lock_dir in lock_dirs:  # first: an unwritable runs folder is said before any data is read
            locks.enter_context(runner.SweepLock(lock_dir))
        for folder, sweep in (sweeps_of or {}).items():  # again under the lock
            check_origin(folder, sweep, "rename one of the files, or give this one another --runs-dir")
        states, damaged = [], {}
        for task in tasks:
            try:
                states.append(check_existing(task))
            except DamagedRun as e:
                states.append("damaged")
                damaged[task.run_dir] = str(e)
        check_inputs(configs, echo)
        if prepare is not None:
            prepare()
        for folder, sweep in (sweeps_of or {}).items():  # after the input checks: a refused command records nothing
            record_origin(folder, sweep)
        for line in announce:
            echo(line)
        for error in damaged.values():
            print(f"fluxlenet: error: {error}", file=sys.stderr, flush=True)
        todo = []
        for task, state in zip(tasks, states):
            if state == "done":
                restored = restore_config(task)
                echo(f"--- {task.label}: already done in {task.run_dir}, skipped"
                     + (" (config.json restored from checkpoint.json)" if restored else ""))
            elif state == "damaged":
                echo(f"--- {task.label}: {task.run_dir} is damaged (see the error), left as it is")
            else:
                todo.append(task)
        try:
            if executor == "ray":
                from .ray_executor import run_tasks_ray
                results = run_tasks_ray(todo, lock_dirs[0], address=ray_address, echo=echo)
            else:
                results = runner.run_tasks(todo, jobs=jobs, echo=echo)
        except KeyboardInterrupt:
            raise Interrupted(saved_note(todo)) from None
    print_summary(tasks, echo, damaged)
    failed = len(results.get("failed", [])) + len(results.get("interrupted", []))
    if failed:
        echo(f"{failed} run(s) did not finish: the reason is in status.json and console.log (error.txt: the "
             f"traceback) of their folders; run the same command again to retry them.")
    if damaged:
        echo(f"{len(damaged)} run folder(s) damaged and left as they are: move them away (said on stderr), "
             f"then run the same command again to redo those runs.")
        return EXIT_USAGE
    return EXIT_FAILED if failed else 0


def saved_note(tasks) -> str:
    """What an interrupted command leaves of the runs it was to run, in one sentence."""
    finished = [t for t in tasks if RunFolder(t.run_dir).read_status()["status"] in FINAL_STATES]
    resumable = [t for t in tasks if t not in finished and RunFolder(t.run_dir).existing_checkpoints()]
    if not finished and not resumable:
        return "No run finished or has a checkpoint to go on from; run the same command again to start them."
    parts = ([f"{len(finished)} run(s) finished"] if finished else []) + (
        [f"{len(resumable)} run(s) have a checkpoint to go on from"] if resumable else [])
    rest = len(tasks) - len(finished) - len(resumable)
    return (f"{' and '.join(parts)}; run the same command again to resume"
            + (f" ({rest} run(s) without one start from the beginning)." if rest else "."))


def print_summary(tasks, echo, damaged=()) -> None:
    echo("")
    valid = any(task.cfg.valid_size for task in tasks)  # a held-out split: its accuracy too
    echo(f"{'run':<14} {'seed':>4} {'backend':<7} {'status':<11} {'epoch':>5} {'train acc':>9} "
         + (f"{'valid acc':>9} " if valid else "") + f"{'test acc':>8} {'test loss':>9} {'s/epoch':>7}  folder")
    for task in tasks:
        try:
            status, rows = RunFolder(task.run_dir).check_files()
            status = "damaged" if task.run_dir in damaged else status["status"]
        except DamagedRun:
            status, rows = "damaged", []
        last = rows[-1] if rows else {}
        secs = [r["seconds"] for r in rows if r.get("seconds") is not None]

        def fmt(value, spec):
            return format(value, spec) if value is not None else "-"
        echo(f"{task.cfg.run:<14} {task.cfg.seed:>4} {task.cfg.backend:<7} {status:<11} "
             f"{fmt(last.get('epoch'), 'd'):>5} {fmt(last.get('train_acc'), '.2f'):>9} "
             + (f"{fmt(last.get('valid_acc'), '.2f'):>9} " if valid else "")
             + f"{fmt(last.get('test_acc'), '.2f'):>8} {fmt(last.get('test_loss'), '.4f'):>9} "
             f"{fmt(sum(secs) / len(secs) if secs else None, '.1f'):>7}  {task.run_dir}")
