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
- native:    each backend with its own RNG, one seed a side: inconclusive, never a failure (one seed
             a side cannot tell seed noise from a difference); the differences are shown against a
             band that covers the sampling noise of the test set (sigmas x sqrt(2 p (1 - p) / n)).
- seeds:     several seeds a side (native mode): the means compared with Welch's interval at
             `level`, at least a floor (parity.reproduction); inconclusive below min_seeds seeds.
- published: our seeds against the published figures: the prediction interval of one new run
             at `level` (parity.reproduction); inconclusive below min_seeds seeds.

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

KINDS = ("repeat", "float64", "lockstep", "native", "seeds", "published", "replay")


class PolicyError(ValueError):
    """A tolerance that cannot be used (an unknown key, a bad value, an unreadable file): one line."""


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
    # several seeds a side: |mean_a - mean_b| <= max(Welch band at `level`, floor)
    seeds_acc_floor: float = 0.1
    seeds_loss_floor: float = 0.01           # relative
    # statistical verdicts (seeds, published): the level of the intervals, the seeds they need
    level: float = 0.99
    min_seeds: int = 3
    # replays of a write-up's own seed: band = max(1e-4, replay_k x RMS of same-seed arithmetic differences)
    replay_k: float = 3.0

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, values: dict, where: str) -> "Policy":
        known = self.keys()
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise PolicyError(f"{where}unknown tolerance {key!r}; known: {', '.join(known)}")
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise PolicyError(f"{where}tolerance {key} must be a number, not {value!r}") from None
            if not math.isfinite(value) or value < 0:
                raise PolicyError(f"{where}tolerance {key} must be a number >= 0, not {value}")
            if key == "level" and not 0.5 <= value < 1:
                raise PolicyError(f"{where}tolerance level must be at least 0.5 and below 1 (e.g. 0.99), not {value:g}")
            if key == "min_seeds" and (value < 2 or value != int(value)):
                raise PolicyError(f"{where}tolerance min_seeds must be a whole number >= 2 (an sd needs two "
                                  f"seeds), not {value:g}")
            changes[key] = int(value) if key in ("exact_trace_steps", "min_seeds") else value
        return dataclasses.replace(self, **changes)

    def with_overrides(self, text: str) -> "Policy":
        """`key=value,key=value` (the --tolerance option)."""
        values = {}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise PolicyError(f"--tolerance: expected key=value, got {item!r}")
            values[key.strip()] = value.strip()
        return self.replace(values, "--tolerance: ")

    def with_file(self, path: str | Path) -> "Policy":
        """A TOML file of `key = value` lines (the --policy option)."""
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except OSError as e:
            raise PolicyError(f"policy file {path}: cannot be read: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(f"policy file {path}: not valid TOML: {e}") from None
        except UnicodeDecodeError:
            raise PolicyError(f"policy file {path}: not valid TOML: not UTF-8 text") from None
        return self.replace(values, f"policy file {path}: ")

    # -- bands --------------------------------------------------------------------------
    def epoch_band(self, kind: str, metric: str, epoch: int, a: float, b: float,
                   samples: int | None = None) -> float:
        """Largest allowed |a - b| for `metric` at `epoch` of one pair of runs (repeat, float64, lockstep, native).

        samples: size of the split the figure was measured on (native sampling noise). Several seeds
        and the published figures are judged by parity.reproduction, not by a band.
        """
        acc = metric.endswith("_acc")
        scale = max(abs(a), abs(b))
        if kind in ("repeat", "float64"):
            return self.exact_acc if acc else self.exact_loss_abs
        if kind == "lockstep":
            if acc:
                return min(self.lockstep_acc + self.lockstep_acc_per_epoch * epoch, self.lockstep_acc_max)
            return self.lockstep_loss_abs + min(self.lockstep_loss_per_epoch * epoch, self.lockstep_loss_max) * scale
        # native, one seed a side: one sample of the other side's seed distribution
        band = self.native_acc if acc else self.native_loss * scale
        if acc and samples:
            p = min(max((a + b) / 200, 0.0), 1.0)
            band = max(band, self.sigmas * math.sqrt(2 * p * (1 - p) / samples) * 100)
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
        q = 1 - (1 - p.level) / 2
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
            f"native    (own RNGs, one seed a side; from epoch 1): inconclusive, never a failure (seed noise "
            f"is unknown with one seed; run --mode native --seeds with at least {p.min_seeds} seeds); differences "
            f"shown against accuracy |d| <= max({p.native_acc:g} points, {p.sigmas:g} x test-set sampling sd), "
            f"loss |d| <= {p.native_loss:g} x loss",
            f"seeds     (native, several seeds a side; from epoch 1): consistent when |mean d| <= max(t({q:.4g}, "
            f"Welch df) x sqrt(sd1^2/n1 + sd2^2/n2), {p.seeds_acc_floor:g} points / {p.seeds_loss_floor:g} x loss); "
            f"inconclusive below {p.min_seeds} seeds a side; the final test accuracy decides",
            f"published (our seeds against the write-up's figures): reproduced when the published figure lies in "
            f"mean +- t({q:.4g}, n-1) x sd x sqrt(1+1/n) (where one new run of ours falls with probability "
            f"{p.level:g}); inconclusive below {p.min_seeds} seeds; the final test accuracy decides, the other "
            f"figures show where a gap lies (about {100 * (1 - p.level):.2g} in 100 of them fall outside by chance)",
            f"replay    (our run of the write-up's own seed and draws against its figures): replayed when |published "
            f"- replay| <= max(1e-4, {p.replay_k:g} x RMS of the differences between our same-seed runs that differ "
            f"only in arithmetic), per metric and epoch; the final test accuracy decides",
        ]
        return [(line.split(" ", 1)[0], line) for line in lines]
