"""Parity: compare Flux and PyTorch run logs (and the published figures) epoch by epoch.

    from fluxlenet.runs import compare_sweep               # reads the run folders, hands them to parity
    result = compare_sweep("optimizer", runs_dir="runs")   # flux vs torch vs published
    result.status                                          # pass | fail | incomplete | not compared
    for verdict in result.verdicts: print(verdict.run, verdict.status, verdict.failures())

- parity.policy: the tolerance policy, by kind of comparison (repeat, float64, lockstep, native,
  seeds, published, replay), and its overrides
- parity.published: the published figures shipped in fluxlenet/reference, and when they apply
- parity.compare: pairing, per-epoch and per-step differences, verdicts
- parity.reproduction: seed statistics and the statistical verdicts (prediction intervals against the
  published figures, Welch between frameworks, "X is the best setting")
- parity.replay: the write-up's own runs replayed: the band that arithmetic alone opens between
  same-seed runs, the replay verdicts, where the replay seed stands among the other seeds
- parity.table: the text `python -m fluxlenet parity SWEEP` prints

parity imports nothing of fluxlenet (tests/test_imports.py): fluxlenet reads the run folders
(fluxlenet.runs) and the settings table (which settings make a protocol) and hands them over.
"""

from .compare import Check, RunVerdict, SweepResult, classify, judge
from .policy import Policy, PolicyError

__all__ = ["Check", "Policy", "PolicyError", "RunVerdict", "SweepResult", "classify", "judge"]
