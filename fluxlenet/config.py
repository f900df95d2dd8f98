"""RunConfig: every setting of one backend run, validated once, JSON-ready for both backends."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from . import models, optim_spec

BACKENDS = ("torch", "flux")
MODES = ("lockstep", "native")
PRECISIONS = ("float32", "float64")
DATASETS = ("mnist", "fashion-mnist", "cifar10", "mnist-t10k-split")
DEVICES = ("cpu", "cuda")

# Upper bounds of the whole-number settings: far beyond any real run, low enough that a typo
# (an extra digit, 1e20) is said at once instead of overflowing somewhere in a backend.
LIMITS = {"epochs": 100_000, "steps": 1_000_000_000, "batchsize": 1_000_000, "infotime": 100_000,
          "checktime": 100_000, "seed": 2**32 - 1, "train_size": 1_000_000_000, "test_size": 1_000_000_000,
          "valid_size": 1_000_000_000, "trace_steps": 10_000_000, "threads": 4096, "milestones": 100_000}
NAME_MAX = 100  # characters of a run or sweep name (a folder name, with "-seed<N>" after it)


class ConfigError(ValueError):
    """A user's setting that cannot run: one line, said before any training."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key  # the setting at fault, so a sweep file can point at its line


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


@dataclass
class RunConfig:
    # where the run belongs
    sweep: str = "train"
    run: str = "default"
    backend: str = "torch"
    # what is trained: the post's Args (conv_mnist.jl) and the rest of the protocol
    model: str = "lenet5"
    optimizer: str = "Adam"
    eta: float = 3e-4
    lambda_: float = 0.0
    rho: float = 0.9                 # momentum of Momentum / Nesterov
    batchsize: int = 128
    epochs: int = 10
    steps: int | None = None         # a budget of optimiser steps instead of whole epochs
    seed: int = 0
    infotime: int = 1
    checktime: int = 5
    warmup_epochs: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    # data
    dataset: str = "mnist"
    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    valid_size: int = 0              # held out of the training set, balanced per class, fixed by the seed
    # how it runs
    mode: str = "lockstep"
    precision: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    trace_steps: int = 0
    # Flush subnormal floats to zero (FTZ/DAZ), in both frameworks. Off by default, as Julia and
    # torch are: it changes float32 results (slightly, then chaotically), but the moments of dead
    # units get stuck in the subnormals (0.9 x the smallest ones rounds back to them), and with L2
    # the weights too: steps get up to 3x slower.
    flush_subnormals: bool = False

    # names as users write them (TOML / CLI) -> field names
    ALIASES = {"lambda": "lambda_", "λ": "lambda_", "η": "eta", "momentum": "rho"}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict, where: str = "") -> "RunConfig":
        """Build from user-facing keys, with a clear error naming an unknown key or a bad type."""
        names = cls.field_names()
        kwargs = {}
        for key, value in values.items():
            name = cls.ALIASES.get(key, key)
            if name not in names:
                known = sorted(set(names) - {"lambda_"} | {"lambda"})
                raise ConfigError(f"{where}unknown setting {key!r}; known settings: {', '.join(known)}", key)
            try:
                kwargs[name] = _coerce(name, value, where)
            except ConfigError as e:
                raise ConfigError(str(e), key) from None
        return cls(**kwargs)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "RunConfig":
        """Raise ConfigError for impossible values; returns self."""
        def need(ok, message):
            if not ok:
                raise ConfigError(f"run {self.run!r}: {message}")

        for what, name in (("sweep name", self.sweep), ("run name", self.run)):
            problem = name_problem(name)
            if problem:
                raise ConfigError(f"{what} {name!r} {problem}")
        need(self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        need(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        need(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        need(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        need(self.model in models.MODELS, f"unknown model {self.model!r}; known: {', '.join(models.MODELS)}")
        need(self.optimizer in optim_spec.OPTIMISERS,
             f"unknown optimizer {self.optimizer!r}; known: {', '.join(optim_spec.OPTIMISERS)}")
        need(math.isfinite(self.eta) and self.eta > 0, f"learning rate eta must be > 0, not {self.eta}")
        need(math.isfinite(self.lambda_) and self.lambda_ >= 0, f"lambda must be >= 0, not {self.lambda_}")
        need(0 <= self.rho < 1, f"momentum must be in [0, 1), not {self.rho}")
        need(self.batchsize >= 1, f"batchsize must be >= 1, not {self.batchsize}")
        need(self.epochs >= 1, f"epochs must be >= 1, not {self.epochs}")
        need(self.steps is None or self.steps >= 1, f"steps must be >= 1, not {self.steps}")
        need(self.infotime >= 1, f"infotime must be >= 1, not {self.infotime}")
        need(self.checktime >= 0, f"checktime must be >= 0 (0: no checkpoints), not {self.checktime}")
        need(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, not {self.warmup_epochs}")
        need(self.gamma > 0, f"gamma must be > 0, not {self.gamma}")
        need(all(m >= 1 for m in self.milestones), f"milestones must be epochs >= 1, not {self.milestones}")
        need(self.seed >= 0, f"seed must be >= 0, not {self.seed}")
        need(self.train_size is None or self.train_size >= 1, f"train_size must be >= 1, not {self.train_size}")
        need(self.test_size is None or self.test_size >= 1, f"test_size must be >= 1, not {self.test_size}")
        need(self.valid_size >= 0, f"valid_size must be >= 0, not {self.valid_size}")
        need(self.trace_steps >= 0, f"trace_steps must be >= 0, not {self.trace_steps}")
        need(self.threads is None or self.threads >= 1, f"threads must be >= 1, not {self.threads}")
        need(all(math.isfinite(x) for x in (self.rho, self.warmup_epochs, self.gamma)),
             "momentum, warmup_epochs and gamma must be finite numbers")
        for key, limit in LIMITS.items():
            values = getattr(self, key)
            for value in values if isinstance(values, list) else [values]:
                need(value is None or value <= limit, f"{key} must be at most {limit:,}, not {value}")
        need(self.warmup_epochs <= LIMITS["epochs"], f"warmup_epochs must be at most {LIMITS['epochs']:,}, "
                                                     f"not {self.warmup_epochs}")
        return self

    # -- what the backends receive ------------------------------------------------
    def optimiser_chain(self) -> list[dict]:
        return optim_spec.optimiser_chain(self.optimizer, self.eta, self.lambda_, self.rho)

    def schedule(self) -> dict:
        return {"warmup_epochs": self.warmup_epochs, "milestones": list(self.milestones), "gamma": self.gamma}

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
        d = self.to_dict()
        for key in ("data_dir", "device", "threads", "trace_steps"):
            d.pop(key)
        return d

    def differences(self, stored: dict) -> list[str]:
        """'KEY <stored> there, <ours> now' for each setting that changes the result and differs between
        `stored` (the RunConfig fields of a run on disk; fields this version lacks are ignored) and self."""
        names = set(self.field_names())
        there = RunConfig(**{k: v for k, v in stored.items() if k in names}).semantic_dict()
        return [f"{k} {there[k]!r} there, {v!r} now" for k, v in self.semantic_dict().items() if there[k] != v]


def _coerce(name: str, value, where: str):
    """Type-check one TOML/CLI value against the RunConfig field `name`."""
    kinds = {"eta": float, "lambda_": float, "rho": float, "gamma": float, "warmup_epochs": float,
             "batchsize": int, "epochs": int, "steps": int, "seed": int, "infotime": int, "checktime": int,
             "train_size": int, "test_size": int, "valid_size": int, "threads": int, "trace_steps": int,
             "flush_subnormals": bool}
    user_name = {"lambda_": "lambda", "rho": "momentum"}.get(name, name)
    if name == "milestones":
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where}{user_name} must be a list of whole epochs, not {value!r}")
        return list(value)
    kind = kinds.get(name)
    if kind is None:
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}{user_name} must be a string, not {value!r}")
        return value
    if value is None and name in ("steps", "train_size", "test_size", "threads"):
        return None
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
