"""Parity: compare Flux and PyTorch run logs (and the published figures) epoch by epoch.

    from parity import compare_sweep, Policy
    result = compare_sweep("optimizer", runs_dir="runs")   # flux vs torch vs published
    result.status                                          # pass | fail | incomplete | not compared
    for verdict in result.verdicts: print(verdict.run, verdict.status, verdict.failures())

- parity.runs: reading run folders (config.json, log.csv, status.json, trace.csv)
- parity.policy: the tolerance policy, by kind of comparison (repeat, float64, lockstep, native,
  seeds, published), and its overrides
- parity.published: the published figures shipped in fluxlenet/reference, and when they apply
- parity.compare: pairing, per-epoch and per-step differences, verdicts
- parity.reproduction: seed statistics and the statistical verdicts (prediction intervals against the
  published figures, Welch between frameworks, "X is the best setting")
- parity.table: the text `python -m fluxlenet parity SWEEP` prints
"""

from .compare import Check, RunVerdict, SweepResult, classify, compare_folders, compare_sweep
from .policy import Policy
from .runs import RunFiles, load_run, load_sweep_dir

__all__ = ["Check", "Policy", "RunFiles", "RunVerdict", "SweepResult", "classify", "compare_folders",
           "compare_sweep", "load_run", "load_sweep_dir"]
