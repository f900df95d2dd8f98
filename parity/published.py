"""The published figures (shipped in fluxlenet/reference) and when they apply to a run.

A sweep file names what it reproduces as `published = "<source>/<experiment>"`; a run's
figures are the rows of that source and experiment whose setting is the run's name
(`lenet-99-post/optimizer` + run `NADAM`), or, for sources whose experiments are the runs
themselves (the variants report), the rows whose experiment is the run's name, or a row
without figures that describes the whole experiment (the CIFAR curves). The
post's epoch-by-epoch logs come from blog-2021-epoch-logs.csv (sweep == experiment,
value == run name).

Published figures apply only to a run of the same protocol: same dataset, the full data
sets, and the sweep file's epochs, batch size, learning rate, lambda, optimiser and model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from importlib import resources

import pandas as pd

# published-results.csv names datasets as the write-ups do
DATASET_NAMES = {"MNIST": "mnist", "Fashion-MNIST": "fashion-mnist", "CIFAR-10": "cifar10"}

# What a source fixes whatever a sweep file says: the post trained on the whole of MNIST, at a constant
# learning rate (a sweep file that names its figures but adds a warm-up is another experiment).
SOURCE_PROTOCOL = {
    "lenet-99-post": {"dataset": "mnist", "model": "lenet5", "eta": 3e-4, "epochs": 10, "steps": None,
                      "train_size": None, "test_size": None, "valid_size": 0, "warmup_epochs": 0.0,
                      "milestones": []},
}


@functools.lru_cache(maxsize=1)
def blog_logs() -> pd.DataFrame:
    """Every epoch line of the 2021 post: sweep, value, epoch, train/test loss and acc, epoch_seconds."""
    with resources.files("fluxlenet.reference").joinpath("blog-2021-epoch-logs.csv").open("r") as f:
        return pd.read_csv(f, dtype={"sweep": str, "value": str})


@functools.lru_cache(maxsize=1)
def results() -> pd.DataFrame:
    """Final figures of the three write-ups: source, dataset, model, experiment, setting, metric, value, notes."""
    with resources.files("fluxlenet.reference").joinpath("published-results.csv").open("r") as f:
        return pd.read_csv(f, dtype=str, keep_default_na=False)


@dataclass
class Published:
    source: str
    experiment: str
    setting: str                          # the run name it was matched by
    dataset: str | None                   # as RunConfig names it (mnist, cifar10)
    epochs: pd.DataFrame | None = None    # index epoch: train_loss, train_acc, test_loss, test_acc, seconds
    final: dict = field(default_factory=dict)   # metric -> (value, epoch or None for "the last")
    seconds_per_epoch: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.source}/{self.experiment}/{self.setting}"

    def final_value(self, metric: str) -> float | None:
        if self.epochs is not None and metric in self.epochs:
            return float(self.epochs[metric].iloc[-1])
        value = self.final.get(metric)
        return value[0] if value else None


def find(published: str | None, run: str) -> Published | None:
    """The published figures for run `run` of a sweep with `published = "<source>/<experiment>"`."""
    if not published:
        return None
    source, _, experiment = published.partition("/")
    table = results()
    of_experiment = table[(table.source == source) & (table.experiment == experiment)]
    rows = of_experiment[of_experiment.setting == run]
    if rows.empty:  # sources whose experiments are the runs (the variants report, the CIFAR final run)
        rows = table[(table.source == source) & (table.experiment == run)]
    if rows.empty:  # a study described for all its runs at once (the CIFAR curves)
        rows = of_experiment[of_experiment.value == ""]
    blog = blog_logs()
    logs = blog[(blog.sweep == experiment) & (blog.value == run)] if source == "lenet-99-post" else blog.iloc[:0]
    if rows.empty and logs.empty:
        return None
    dataset = rows.dataset.iloc[0] if not rows.empty else "MNIST"
    pub = Published(source=source, experiment=experiment, setting=run, dataset=DATASET_NAMES.get(dataset, dataset))
    for _, row in rows.iterrows():
        if row.notes:
            pub.notes.append(row.notes)
        if row.value == "":
            if row.metric.endswith("_curve"):
                pub.notes.append(f"published as a {row.metric.replace('_', ' ')} only (no figures): "
                                 f"{row.setting}")
            continue
        value = float(row.value)
        if row.metric == "seconds_per_epoch":
            pub.seconds_per_epoch = value
        elif "_epoch" in row.metric:
            metric, _, epoch = row.metric.rpartition("_epoch")
            pub.final[metric] = (value, int(epoch))
        else:
            pub.final[row.metric] = (value, None)
    if not logs.empty:
        pub.epochs = (logs.rename(columns={"epoch_seconds": "seconds"}).set_index("epoch")
                      [["train_loss", "train_acc", "test_loss", "test_acc", "seconds"]].sort_index())
        seconds = pub.epochs.seconds.dropna()
        if len(seconds):
            pub.seconds_per_epoch = float(seconds.median())
        twins = identical_logs(experiment, run)
        if twins:
            pub.notes.append(f"the post's {experiment}/{run} log is identical, figure for figure, to its "
                             f"{', '.join(twins)} log")
    return pub


def identical_logs(sweep: str, value: str) -> list[str]:
    """Other runs of the post whose epoch figures (from epoch 1) equal those of sweep/value."""
    blog = blog_logs()
    figures = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]

    def trained(s, v):
        return blog[(blog.sweep == s) & (blog.value == v) & (blog.epoch > 0)][figures].reset_index(drop=True)

    mine = trained(sweep, value)
    twins = []
    for (s, v), _ in blog.groupby(["sweep", "value"], sort=False):
        if (s, v) != (sweep, value) and len(mine) and trained(s, v).equals(mine):
            twins.append(f"{s}/{v}")
    return twins


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def _show(key: str, value) -> str:
    if value is None:
        return "the full set" if key in ("train_size", "test_size") else "none"
    return str(value)


def mismatches(pub: Published, cfg: dict, protocol: dict | None, names: dict[str, str]) -> list[str]:
    """Why the published figures do not apply to a run with settings `cfg` (empty: they apply).

    `protocol` is the run as the sweep file defines it (the published protocol), or None; `names`: the
    settings that define a protocol, each with the name users write (fluxlenet.config.PROTOCOL_KEYS).
    """
    wanted = dict(protocol or {})
    wanted.update(SOURCE_PROTOCOL.get(pub.source, {}))
    if pub.dataset:
        wanted["dataset"] = pub.dataset
    reasons = []
    for key, name in names.items():
        if key in wanted and not _same(cfg.get(key), wanted[key]):
            reasons.append(f"{name} {_show(key, cfg.get(key))} (published: {_show(key, wanted[key])})")
    return reasons
