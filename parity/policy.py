"""The tolerance policy: how far apart two runs' figures may be, by the kind of comparison.

Kinds of comparison (chosen per pair of runs by `parity.compare.classify`):

- repeat:    the same backend twice with the same settings and seed: identical figures expected.
- float64:   float64 lockstep runs of two backends (same weights, same batches): near machine
             precision. Step-trace losses relative difference <= exact_trace over the first
             exact_trace_steps steps, epoch figures exactly equal (log.csv keeps 4 digits, as the
             post printed them). A break is a semantic bug in one backend, not rounding.
- lockstep:  float32 lockstep runs of two backends (or two devices): float32 kernels sum in other
             orders, so the figures drift apart; the bands start tight and widen with the epoch
             (the step-trace band widens with the step).
- native:    each backend with its own RNG, one seed a side: a band that also covers the sampling
             noise of the test set (sigmas x sqrt(2 p (1 - p) / n)).
- seeds:     several seeds a side: means compared within sigmas x their standard error.
- published: our figures against the published ones (another RNG, Flux 0.12): as native.

Accuracy bands are in percentage points, loss bands relative to the larger of the two losses
unless named _abs. Native-like comparisons skip epoch 0 (the initial weights differ).
Override any value with `--tolerance key=value,...` or a TOML file of `key = value` lines.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from fluxlenet.config import ConfigError

KINDS = ("repeat", "float64", "lockstep", "native", "seeds", "published")


@dataclass
class Policy:
    # float32 lockstep: band at epoch e = start + per_epoch * e, at most max
    lockstep_acc: float = 0.01
    lockstep_acc_per_epoch: float = 0.5
    lockstep_acc_max: float = 2.0
    lockstep_loss_abs: float = 2e-4          # figures are rounded to 4 digits
    lockstep_loss_per_epoch: float = 0.03    # relative
    lockstep_loss_max: float = 0.15          # relative
    # float32 lockstep step traces: relative band at step s = start + per_step * (s - 1), at most max
    lockstep_trace: float = 1e-6
    lockstep_trace_per_step: float = 5e-5
    lockstep_trace_max: float = 0.05
    # float64 lockstep and repeats: epoch figures within these (0: exactly equal), traces within exact_trace
    exact_acc: float = 0.0
    exact_loss_abs: float = 0.0
    exact_trace: float = 1e-10
    exact_trace_steps: int = 200
    # native runs, one seed a side, and published figures
    native_acc: float = 1.5
    native_loss: float = 0.25                # relative
    sigmas: float = 3.0
    # several seeds a side: |mean_a - mean_b| <= max(sigmas * standard error, floor)
    seeds_acc_floor: float = 0.1
    seeds_loss_floor: float = 0.01           # relative

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, values: dict, where: str) -> "Policy":
        known = self.keys()
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{where}unknown tolerance {key!r}; known: {', '.join(known)}")
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}tolerance {key} must be a number, not {value!r}") from None
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{where}tolerance {key} must be a number >= 0, not {value}")
            changes[key] = int(value) if key == "exact_trace_steps" else value
        return dataclasses.replace(self, **changes)

    def with_overrides(self, text: str) -> "Policy":
        """`key=value,key=value` (the --tolerance option)."""
        values = {}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--tolerance: expected key=value, got {item!r}")
            values[key.strip()] = value.strip()
        return self.replace(values, "--tolerance: ")

    def with_file(self, path: str | Path) -> "Policy":
        """A TOML file of `key = value` lines (the --policy option)."""
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"policy file {path}: cannot be read: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"policy file {path}: not valid TOML: {e}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"policy file {path}: not valid TOML: not UTF-8 text") from None
        return self.replace(values, f"policy file {path}: ")

    # -- bands --------------------------------------------------------------------------
    def epoch_band(self, kind: str, metric: str, epoch: int, a: float, b: float,
                   samples: int | None = None, spread: float | None = None) -> float:
        """Largest allowed |a - b| for `metric` at `epoch`.

        samples: size of the split the figure was measured on (native sampling noise);
        spread: for "seeds", the standard error of the difference of the means; for
        "published", the sd over our seeds.
        """
        acc = metric.endswith("_acc")
        scale = max(abs(a), abs(b))
        if kind in ("repeat", "float64"):
            return self.exact_acc if acc else self.exact_loss_abs
        if kind == "lockstep":
            if acc:
                return min(self.lockstep_acc + self.lockstep_acc_per_epoch * epoch, self.lockstep_acc_max)
            return self.lockstep_loss_abs + min(self.lockstep_loss_per_epoch * epoch, self.lockstep_loss_max) * scale
        if kind == "seeds":
            floor = self.seeds_acc_floor if acc else self.seeds_loss_floor * scale
            return max(self.sigmas * (spread or 0.0), floor)
        # native and published: one sample of the other side's seed distribution
        band = self.native_acc if acc else self.native_loss * scale
        if acc and samples:
            p = min(max((a + b) / 200, 0.0), 1.0)
            band = max(band, self.sigmas * math.sqrt(2 * p * (1 - p) / samples) * 100)
        if spread:
            band = max(band, self.sigmas * spread)
        return band

    def trace_band(self, kind: str, step: int) -> float | None:
        """Largest allowed relative difference of a step-trace value; None: not judged."""
        if kind in ("repeat", "float64"):
            return self.exact_trace if step <= self.exact_trace_steps else None
        if kind == "lockstep":
            return min(self.lockstep_trace + self.lockstep_trace_per_step * (step - 1), self.lockstep_trace_max)
        return None

    def describe(self) -> list[tuple[str, str]]:
        """The policy in words: (kind, its bands), one per kind."""
        p = self
        lines = [
            f"repeat    (one backend twice, same settings and seed): epoch figures |d| <= {p.exact_acc:g} points, "
            f"loss |d| <= {p.exact_loss_abs:g}; step traces relative |d| <= {p.exact_trace:g} "
            f"(first {p.exact_trace_steps} steps)",
            f"float64   (lockstep, both float64): the same as repeat: near machine precision",
            f"lockstep  (float32, same weights and batches): accuracy |d| <= {p.lockstep_acc:g} + "
            f"{p.lockstep_acc_per_epoch:g} x epoch points (at most {p.lockstep_acc_max:g}); loss |d| <= "
            f"{p.lockstep_loss_abs:g} + min({p.lockstep_loss_per_epoch:g} x epoch, {p.lockstep_loss_max:g}) x loss; "
            f"step traces relative |d| <= {p.lockstep_trace:g} + {p.lockstep_trace_per_step:g} x (step - 1) "
            f"(at most {p.lockstep_trace_max:g})",
            f"native    (own RNGs, one seed a side; from epoch 1): accuracy |d| <= max({p.native_acc:g} points, "
            f"{p.sigmas:g} x test-set sampling sd); loss |d| <= {p.native_loss:g} x loss",
            f"seeds     (several seeds a side; from epoch 1): |mean d| <= max({p.sigmas:g} x standard error, "
            f"{p.seeds_acc_floor:g} points / {p.seeds_loss_floor:g} x loss)",
            f"published (against the write-up's figures; from epoch 1): as native, widened to {p.sigmas:g} x "
            f"our seed sd when there are several seeds",
        ]
        return [(line.split(" ", 1)[0], line) for line in lines]
