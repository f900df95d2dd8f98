"""RunConfig: every setting of one backend run, validated once, JSON-ready for both backends."""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from dataclasses import dataclass, field

from . import models, optim_spec

BACKENDS = ("torch", "flux")
MODES = ("lockstep", "native")
RNGS = ("numpy", "julia")
PRECISIONS = ("float32", "float64")
DATASETS = ("mnist", "fashion-mnist", "cifar10", "mnist-t10k-split")
DEVICES = ("cpu", "cuda")

LENGTH = ("epochs", "steps")  # how long a run trains: a run on disk may go on to another (RunConfig.length_problem)
NAME_MAX = 100  # characters of a run or sweep name (a folder name, with "-seed<N>" after it)


class ConfigError(ValueError):
    """A user's setting that cannot run: one line, said before any training."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key  # the setting at fault, so a sweep file can point at its line


def normal_name(name):
    """A run or sweep name as it is kept: Unicode NFC, so that "café" typed composed or decomposed is one
    name (and one folder); anything but a string is left for name_problem to refuse."""
    return unicodedata.normalize("NFC", name) if isinstance(name, str) else name


def name_problem(name) -> str | None:
    """Why `name` cannot be a run or sweep name (one folder of the runs tree), or None when it can."""
    if not isinstance(name, str) or not name:
        return "is empty" if name == "" else "must be a string (text in quotes)"
    if name in (".", "..") or name.startswith("."):
        return "must not start with a dot (a hidden folder, or a step up out of the runs folder)"
    if "/" in name or "\\" in name:
        return "must not contain / or \\ (it becomes one folder, not a path)"
    if not name.isprintable() or name != name.strip():
        return "must be printable, without control characters or spaces at either end"
    if len(name) > NAME_MAX:
        return f"is longer than {NAME_MAX} characters"
    return None


def setting(default=None, *, factory=None, what: str | None = None, low=None, above=None, below=None, high=None,
            note: str = "", choices=None, cli: str | None = None, help: str = "", julia: bool = False,
            result: bool = True, protocol: bool | None = None, user_name: str | None = None, aliases=(),
            compared: bool | None = None, shown: bool | None = None):
    """A RunConfig field with what the rest of the package needs to know of it: one row of the settings table.
    Its type is the field's annotation (`int | None`: the value may be left out).

    what:        its name in messages (default: the name users write, see USER_NAMES)
    low, above:  its lower bound (>= low, or > above; `note` follows the bound in the message)
    below, high: its upper bound (< below, or <= high: high catches typos such as an extra digit at once,
                 instead of an overflow somewhere in a backend)
    choices:     a callable giving the allowed values (called when validating: models and rules are tables too)
    cli:         "run": an option of sweep, train and reproduce; "train": one of train's (the post's Args)
    julia:       handed to the Flux backend as it is (fluxlenet.backends.flux_layout.job_spec)
    result:      whether it changes a run's results (a rerun with another value is another run)
    protocol:    whether it is part of a write-up's protocol: published figures apply only to a run with the
                 write-up's value (PROTOCOL_KEYS); every setting with `result` must say (tests/test_config.py)
    user_name:   the name users write (sweep files, flags, messages, tables), where it is not the field's
    aliases:     other names users may write for it (ALIASES)
    compared:    whether two runs compared with each other must agree on it (default: `result`; NOT_SEMANTIC)
    shown:       whether tables show it when a sweep varies it (default: `protocol`; SWEEP_KEYS)
    """
    meta = {"what": what, "low": low, "above": above, "below": below, "high": high, "note": note,
            "choices": choices, "cli": cli, "help": help, "julia": julia, "result": result, "protocol": protocol,
            "user_name": user_name, "aliases": tuple(aliases), "compared": result if compared is None else compared,
            "shown": bool(protocol) if shown is None else shown}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    # where the run belongs (a name is one folder: see name_problem)
    sweep: str = setting("train", protocol=False, compared=False)
    run: str = setting("default", protocol=False, compared=False)
    backend: str = setting("torch", choices=lambda: BACKENDS, protocol=False, compared=False)
    # what is trained: the post's Args (conv_mnist.jl) and the rest of the protocol
    model: str = setting("lenet5", choices=lambda: models.MODELS, cli="train", help="see `list`", protocol=True)
    optimizer: str = setting("Adam", choices=lambda: optim_spec.OPTIMISERS, cli="train", help="see `list`",
                             protocol=True)
    eta: float = setting(3e-4, what="learning rate eta", above=0, cli="train", help="learning rate",
                         protocol=True, aliases=("η",))
    lambda_: float = setting(0.0, what="lambda", low=0, cli="train", protocol=True, user_name="lambda", aliases=("λ",),
                             help="L2 regularisation: Optimiser(WeightDecay(lambda), opt) when > 0")
    rho: float = setting(0.9, what="momentum", low=0, below=1, help="momentum of Momentum / Nesterov",
                       protocol=True, user_name="momentum")
    batchsize: int = setting(128, low=1, high=1_000_000, cli="train", julia=True, protocol=True)
    epochs: int = setting(10, low=1, high=100_000, julia=True, protocol=True, cli="run",
                          help="train N whole epochs (replaces a sweep's epochs and any step budget it sets)")
    steps: int | None = setting(None, low=1, high=1_000_000_000, cli="run", julia=True,
                                help="stop after N optimiser steps instead of whole epochs", protocol=True)
    seed: int = setting(0, low=0, high=2**32 - 1, cli="train", julia=True, protocol=False)
    infotime: int = setting(1, low=1, high=100_000, cli="train", julia=True, help="report every INFOTIME epochs",
                            protocol=False)
    checktime: int = setting(5, low=0, note=" (0: no checkpoints)", high=100_000, cli="train", julia=True,
                             help="checkpoint every CHECKTIME epochs, 0 for none", protocol=False)
    # the schedule: each backend receives the factor of every step (RunConfig.lr_factors)
    warmup_epochs: float = setting(0.0, low=0, high=100_000, protocol=True)
    milestones: list[int] = setting(factory=list, low=1, high=100_000, protocol=True)
    gamma: float = setting(0.1, above=0, protocol=True)
    # data
    dataset: str = setting("mnist", choices=lambda: DATASETS, cli="run",
                           help="mnist-t10k-split trains on the first 8,000 MNIST test images and tests on the "
                                "last 2,000", protocol=True)
    data_dir: str | None = setting(None, result=False, cli="run",
                                   help="folder with the dataset files (default: $FLUXLENET_DATA, else a user cache "
                                        "folder; missing files are downloaded)")
    train_size: int | None = setting(None, low=1, high=1_000_000_000, cli="run", help="use the first N training samples",
                                    protocol=True)
    test_size: int | None = setting(None, low=1, high=1_000_000_000, cli="run", help="use the first N test samples",
                                   protocol=True)
    # held out of the training set, balanced per class, fixed by the seed
    valid_size: int = setting(0, low=0, high=1_000_000_000, protocol=True)
    # how it runs
    mode: str = setting("lockstep", choices=lambda: MODES, cli="run", julia=True,
                        help="lockstep: both frameworks start from the same weights and see the same batches; "
                             "native: each uses its own RNG", protocol=False, shown=True)
    # Which generator draws the lockstep inputs: NumPy's (fluxlenet.init's own streams), or Julia's
    # MersenneTwister as the 2021 post drew them (Random.seed!(seed), Flux 0.12's glorot_uniform order, then
    # the in-place shuffles of its DataLoader): the post's runs are seed 42 of the "julia" scheme.
    rng: str = setting("numpy", choices=lambda: RNGS, cli="run",
                       help="the generator of the lockstep weights and batch order: numpy, or julia (Julia 1.10's "
                            "MersenneTwister as the post drew them: with seed 42 the post's own runs; the post's "
                            "sweeps baseline, batchsize, l2 and optimizer set julia and seed 42)",
                       protocol=False, shown=True)
    precision: str = setting("float32", choices=lambda: PRECISIONS, cli="run", julia=True,
                             help="float64: lockstep runs of the two frameworks agree to about 1e-16",
                             protocol=False, shown=True, compared=False)
    device: str = setting("cpu", choices=lambda: DEVICES, cli="run", result=False,
                          help="cuda: PyTorch on the GPU (Flux runs on the CPU)")
    threads: int | None = setting(None, low=1, high=4096, cli="run", result=False,
                                  help="threads of each backend run (default 1, whatever --jobs and the "
                                       "executor: a run's float32 figures depend on its threads)")
    trace_steps: int = setting(0, low=0, high=10_000_000, cli="run", julia=True, result=False,
                               help="record the loss at each of the first N optimiser steps (trace.csv)")
    # Flush subnormal floats to zero (FTZ/DAZ), in both frameworks. Off by default, as Julia and
    # torch are: it changes float32 results (slightly, then chaotically), but the moments of dead
    # units get stuck in the subnormals (0.9 x the smallest ones rounds back to them), and with L2
    # the weights too: steps get up to 3x slower.
    flush_subnormals: bool = setting(False, cli="run", julia=True,
                                     help="flush subnormal floats to zero in both frameworks: faster (the post's "
                                          "protocol 1.6x, its L2 = 1e-2 run 2.4x), slightly different float32 "
                                          "results (off by default, as in Julia and torch)", protocol=False)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def settings(cls, cli: str | None = None, julia: bool | None = None) -> list[dataclasses.Field]:
        """The rows of the settings table (the fields), those with the given `cli` group or `julia` flag."""
        return [f for f in dataclasses.fields(cls)
                if (cli is None or f.metadata["cli"] == cli) and (julia is None or f.metadata["julia"] == julia)]

    @classmethod
    def from_dict(cls, values: dict, where: str = "") -> "RunConfig":
        """Build from user-facing keys, with a clear error naming an unknown key or a bad type."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            name = ALIASES.get(key, key)
            if name not in fields:
                known = sorted(USER_NAMES.get(f, f) for f in fields)
                raise ConfigError(f"{where}unknown setting {key!r}; known settings: {', '.join(known)}", key)
            try:
                kwargs[name] = _coerce(fields[name], value, where)
            except ConfigError as e:
                raise ConfigError(str(e), key) from None
        return cls(**kwargs)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "RunConfig":
        """Raise ConfigError (naming the setting at fault in `key`) for impossible values; returns self."""
        for what, name in (("sweep name", self.sweep), ("run name", self.run)):
            problem = name_problem(name)
            if problem:
                raise ConfigError(f"{what} {name!r} {problem}", "name")
        if self.rng == "julia" and self.mode == "native":
            raise ConfigError(f"run {self.run!r}: rng 'julia' draws the lockstep inputs, and native mode draws none "
                              f"(each framework uses its own generator): use --mode lockstep, or --rng numpy", "rng")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            for item in value if isinstance(value, list) else [value]:
                problem = _bound_problem(f, item)
                if problem:
                    raise ConfigError(f"run {self.run!r}: {problem}", USER_NAMES.get(f.name, f.name))
        return self

    # -- what the backends receive ------------------------------------------------
    def optimiser_chain(self) -> list[dict]:
        return optim_spec.optimiser_chain(self.optimizer, self.eta, self.lambda_, self.rho)

    def schedule(self) -> dict:
        return {"warmup_epochs": self.warmup_epochs, "milestones": list(self.milestones), "gamma": self.gamma}

    def lr_factors(self, ntrain: int) -> list[float] | None:
        """The multiplier of eta for every optimiser step of the run (entry s for step s, counted over the
        whole run: optim_spec.lr_factor), or None for a run without a schedule. Both backends take these
        very numbers, so the schedule is written once."""
        if self.warmup_epochs == 0 and not self.milestones:
            return None
        spe, schedule = self.steps_per_epoch(ntrain), self.schedule()
        return [optim_spec.lr_factor(step, spe, **schedule) for step in range(self.end_step(ntrain))]

    def eval_batchsize(self) -> int | None:
        """The batch size of the evaluation passes: the post's (its `report` runs over its loaders, of batchsize)
        under the julia scheme, else None (each backend's own)."""
        return self.batchsize if self.rng == "julia" else None

    def layers(self) -> list[dict]:
        return models.get_model(self.model)["layers"]

    def steps_per_epoch(self, ntrain: int) -> int:
        """Batches per pass over the data; the last batch may be partial (60000 = 468*128 + 96)."""
        return -(-ntrain // self.batchsize)

    def total_epochs(self, ntrain: int) -> int:
        """Epochs to run: `epochs`, or as many as a `steps` budget needs (the last one cut short)."""
        if self.steps is None:
            return self.epochs
        return -(-self.steps // self.steps_per_epoch(ntrain))

    def steps_in_epoch(self, epoch: int, ntrain: int) -> int:
        """Optimiser steps taken in `epoch` (1-based): all batches, or what remains of the budget."""
        spe = self.steps_per_epoch(ntrain)
        if self.steps is None:
            return spe
        return max(0, min(spe, self.steps - (epoch - 1) * spe))

    def semantic_dict(self) -> dict:
        """The settings that change the result; a rerun with other values here is another run."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["result"]}

    @classmethod
    def from_stored(cls, stored: dict) -> "RunConfig":
        """The RunConfig of a run on disk (config.json, checkpoint.json); fields this version lacks are ignored."""
        names = set(cls.field_names())
        return cls(**{k: v for k, v in stored.items() if k in names})

    def differences(self, stored: dict, ignore: tuple[str, ...] = ()) -> list[str]:
        """'KEY <stored> there, <ours> now' for each setting that changes the result and differs between
        `stored` (the RunConfig fields of a run on disk; fields this version lacks are ignored) and self,
        but those in `ignore` (LENGTH: see length_problem)."""
        there = result_settings(stored)
        return [f"{USER_NAMES.get(k, k)} {there[k]!r} there, {v!r} now" for k, v in self.semantic_dict().items()
                if there[k] != v and k not in ignore]

    # -- another length for a run on disk --------------------------------------------
    def length(self) -> str:
        return f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}" if self.steps is None else f"{self.steps} steps"

    def end_step(self, ntrain: int) -> int:
        """The optimiser steps of the whole run."""
        return self.steps if self.steps is not None else self.epochs * self.steps_per_epoch(ntrain)

    def length_problem(self, trained: "RunConfig", ntrain: int | None, checkpointed: bool,
                       finished: bool) -> str | None:
        """Why a run folder trained with `trained`, whose settings differ from self's in the length
        alone (epochs, steps), cannot go on to self's length; None when it can. The text follows the
        folder's name.

        A run goes on from its checkpoint to a longer end exactly as it would have trained straight
        through (in lockstep mode figure for figure): the schedule (optim_spec.lr_factor) and the
        batch order (init.epoch_permutation) depend on the step and the epoch, never on the run's
        length. That holds when every checkpoint lies at a whole epoch, which is so unless the old step
        budget ends inside an epoch, and when none lies beyond the new end: a shorter end is refused (a
        checkpoint may lie at the old end). Without checkpoints an unfinished run starts afresh anyway;
        a finished one has nothing to go on from. `ntrain` None (not known yet): what needs it is left
        to the worker, which knows it."""
        advice = "use another folder (--runs-dir; --savepath for train) or remove that one"
        if not checkpointed:
            if finished:
                return (f"holds a finished run of {trained.length()} without a checkpoint to go on from "
                        f"(checktime 0), so it cannot be trained to {self.length()}; {advice}")
            return None
        if ntrain is None:
            if trained.steps is None and self.steps is None and self.epochs < trained.epochs:
                return self._shorter(trained)
            return None
        spe = self.steps_per_epoch(ntrain)
        if trained.steps is not None and trained.steps % spe:
            return (f"holds checkpoints of a run of {trained.length()}, which ends inside an epoch ({spe} steps "
                    f"each), so it cannot go on to {self.length()}; {advice}")
        if self.end_step(ntrain) < trained.end_step(ntrain):
            return self._shorter(trained)
        return None

    def _shorter(self, trained: "RunConfig") -> str:
        return (f"holds a run of {trained.length()}, longer than the {self.length()} asked for; ask for "
                f"{trained.length()} or more (it goes on from its checkpoint), or use another folder "
                f"(--runs-dir; --savepath for train)")


# A seed group: the runs of one run name and backend that are averaged as seeds. They may differ in
# the seed alone (and in what does not change results: threads, device, data_dir, trace_steps).
SEED_GROUP_FREE = ("seed", "sweep", "run", "backend")


def result_settings(stored: dict) -> dict:
    """The settings that change the result of a run stored as `stored` (config.json's "config")."""
    return RunConfig.from_stored(stored).semantic_dict()


def mixed_settings(configs: list[tuple[int, dict]]) -> list[str]:
    """'KEY A (seeds 0,1) vs B (seed 2)' for each setting that changes results and differs between the
    (seed, stored settings) of one seed group; [] when they differ in the seed alone."""
    import json
    settings = [(seed, result_settings(c)) for seed, c in configs]
    out = []
    for key in settings[0][1] if settings else ():
        if key in SEED_GROUP_FREE:
            continue
        by_value: dict[str, tuple[object, list[int]]] = {}
        for seed, values in settings:
            by_value.setdefault(json.dumps(values[key], sort_keys=True), (values[key], []))[1].append(seed)
        if len(by_value) > 1:
            out.append(f"{USER_NAMES.get(key, key)} " + " vs ".join(
                f"{value!r} (seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, sorted(seeds)))})"
                for value, seeds in by_value.values()))
    return out


# What the settings table says of its settings, as the rest of the package reads it (field names, in table order).
_SETTINGS = dataclasses.fields(RunConfig)
USER_NAMES = {f.name: f.metadata["user_name"] for f in _SETTINGS if f.metadata["user_name"]}  # where they differ
ALIASES = {name: f.name for f in _SETTINGS for name in (f.metadata["user_name"], *f.metadata["aliases"]) if name}
PROTOCOL_KEYS = tuple(f.name for f in _SETTINGS if f.metadata["protocol"])  # a run differing in one: another experiment
SWEEP_KEYS = tuple(f.name for f in _SETTINGS if f.metadata["shown"])  # what a sweep's tables name when it varies them
NOT_SEMANTIC = tuple(f.name for f in _SETTINGS if not f.metadata["compared"])  # may differ between "the same run"
# the options of `sweep` and `reproduce` that a run can have been given beyond its sweep file: those that change
# results, and where the data is
RERUN_OPTIONS = tuple(f.name for f in _SETTINGS if f.metadata["cli"] == "run" and f.metadata["result"]) + ("data_dir",)


def rerun_options(ran: dict, declared: dict) -> str:
    """The command-line options (" --train-size 200 ...") that give runs the settings `ran` has where its
    sweep file says `declared`: advice to rerun with more seeds must name a command that is not refused
    (another --train-size would be refused: the seeds of a run differ in the seed alone)."""
    import shlex
    options = []
    for key in RERUN_OPTIONS:
        value = ran.get(key)
        flag = "--" + key.replace("_", "-")
        if key == "epochs":
            if ran.get("steps") is None and (declared.get("steps") is not None or value != declared.get("epochs")):
                options.append(f"{flag} {value}")  # whole epochs, also where the file sets a step budget
        elif key == "data_dir":
            if value:
                options.append(f"{flag} {shlex.quote(str(value))}")
        elif value == declared.get(key, getattr(RunConfig(), key)) or value is None or value is False:
            continue
        else:
            options.append(flag if value is True else f"{flag} {shlex.quote(str(value))}")
    return "".join(" " + option for option in options)


_KINDS = {"float": float, "int": int, "bool": bool, "str": str, "list[int]": list}


def _kind(f: dataclasses.Field) -> tuple[type, bool]:
    """(type, whether None is allowed) of a RunConfig field, from its annotation."""
    parts = [p.strip() for p in str(f.type).split("|")]
    return _KINDS[parts[0]], "None" in parts


def _bound_problem(f: dataclasses.Field, value) -> str | None:
    """What is wrong with `value` for the setting `f` (its choices and bounds), or None."""
    m = f.metadata
    label = m["what"] or USER_NAMES.get(f.name, f.name)
    if value is None:
        return None
    if m["choices"] is not None and value not in m["choices"]():
        return f"unknown {label} {value!r}; known: {', '.join(m['choices']())}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{label} must be finite, not {value}"
    if m["low"] is not None and m["below"] is not None and not m["low"] <= value < m["below"]:
        return f"{label} must be in [{m['low']}, {m['below']}), not {value}"
    if m["above"] is not None and not value > m["above"]:
        return f"{label} must be > {m['above']}, not {value}"
    if m["low"] is not None and not value >= m["low"]:
        return f"{label} must be >= {m['low']}{m['note']}, not {value}"
    if m["high"] is not None and not value <= m["high"]:
        return f"{label} must be at most {m['high']:,}, not {value}"
    return None


def _coerce(f: dataclasses.Field, value, where: str):
    """Type-check one TOML/CLI value against the RunConfig field `f`."""
    kind, optional = _kind(f)
    user_name = USER_NAMES.get(f.name, f.name)
    if value is None and optional:
        return None
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where}{user_name} must be a list of whole numbers, not {value!r}")
        return list(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}{user_name} must be a string, not {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}{user_name} must be true or false, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}{user_name} must be a number, not {value!r}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}{user_name} must be a whole number, not {value!r}")
        return int(value)
    return float(value)
