"""RunConfig validation, sweep files, the post's sweeps and run logs."""

import csv
import dataclasses

import pytest

from fluxlenet import config, optim_spec, sweeps
from fluxlenet.config import ConfigError, RunConfig
from fluxlenet.runlog import RunFolder, RunLog, epoch_line

BAD_VALUES = [
    ({"eta": -0.1}, "eta must be > 0"),
    ({"batchsize": 0}, "batchsize must be >= 1"),
    ({"checktime": -1}, "checktime must be >= 0"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"optimizer": "Adamm"}, "unknown optimizer 'Adamm'"),
    ({"model": "resnet"}, "unknown model 'resnet'"),
    ({"dataset": "imagenet"}, "unknown dataset"),
    ({"lambda_": -1e-3}, "lambda must be >= 0"),
    ({"momentum": 1.5}, "momentum must be in"),
    ({"epochs": 10**20}, "epochs must be at most 100,000, not 100000000000000000000"),
    ({"steps": 10**10}, "steps must be at most 1,000,000,000"),
    ({"batchsize": 10**7}, "batchsize must be at most 1,000,000"),
    ({"seed": 2**32}, "seed must be at most 4,294,967,295"),
    ({"milestones": [5, 10**6]}, "milestones must be at most 100,000"),
    ({"warmup_epochs": float("inf")}, "must be finite"),
    ({"run": "../escape"}, "run name '../escape' must not start with a dot"),
    ({"run": "lr/1e-3"}, "run name 'lr/1e-3' must not contain /"),
    ({"run": ""}, "run name '' is empty"),
    ({"sweep": "a\nb"}, "sweep name .* must be printable"),
    ({"run": "x" * 101}, "is longer than 100 characters"),
]


@pytest.mark.parametrize("change, message", BAD_VALUES)
def test_impossible_values_are_refused_with_a_clear_message(change, message):
    values = {"rho" if k == "momentum" else k: v for k, v in change.items()}
    with pytest.raises(ConfigError, match=message):
        RunConfig(**values).validate()


def test_names_that_are_one_folder_pass():
    for name in ("ADAMW", "lr=1e-3", "λ 1e-6", "测试", "a.b", "x" * 100):
        RunConfig(run=name, sweep=name).validate()


def test_user_keys_and_types():
    cfg = RunConfig.from_dict({"lambda": 1e-4, "momentum": 0.95, "batchsize": 32.0})
    assert (cfg.lambda_, cfg.rho, cfg.batchsize) == (1e-4, 0.95, 32)
    with pytest.raises(ConfigError, match="must be a number"):
        RunConfig.from_dict({"eta": "fast"})
    with pytest.raises(ConfigError, match="whole number"):
        RunConfig.from_dict({"batchsize": 3.5})
    with pytest.raises(ConfigError, match="unknown setting 'etaa'"):
        RunConfig.from_dict({"etaa": 1})
    assert RunConfig.from_dict({"flush_subnormals": True}).flush_subnormals is True
    with pytest.raises(ConfigError, match="flush_subnormals must be true or false"):
        RunConfig.from_dict({"flush_subnormals": 1})
    # it changes the results: a run with it is another run than one without
    assert RunConfig(flush_subnormals=True).semantic_dict() != RunConfig().semantic_dict()


def test_every_setting_that_changes_results_says_whether_it_is_protocol():
    """A new setting that changes results must say whether published figures depend on it: left out of
    PROTOCOL_KEYS by default, a run with another value would be judged against the write-up's figures."""
    undeclared = [f.name for f in dataclasses.fields(RunConfig)
                  if f.metadata["result"] and f.metadata["protocol"] not in (True, False)]
    assert not undeclared, f"say protocol=True or protocol=False in the settings table for: {undeclared}"


def test_the_lists_of_settings_come_from_the_table():
    assert config.PROTOCOL_KEYS == ("model", "optimizer", "eta", "lambda_", "rho", "batchsize", "epochs", "steps",
                                    "warmup_epochs", "milestones", "gamma", "dataset", "train_size", "test_size",
                                    "valid_size")
    assert config.SWEEP_KEYS == config.PROTOCOL_KEYS + ("mode", "rng", "precision")
    assert set(config.NOT_SEMANTIC) == {"sweep", "run", "backend", "precision", "device", "threads", "data_dir",
                                        "trace_steps"}
    assert config.USER_NAMES == {"lambda_": "lambda", "rho": "momentum"}
    assert config.ALIASES == {"lambda": "lambda_", "λ": "lambda_", "η": "eta", "momentum": "rho"}
    assert RunConfig.from_dict({"λ": 1e-4, "η": 1e-3}).replace(rho=0.5) == \
        RunConfig.from_dict({"lambda": 1e-4, "eta": 1e-3, "momentum": 0.5})
    # a setting that does not change results is no protocol, and two compared runs may differ in it
    for f in dataclasses.fields(RunConfig):
        if not f.metadata["result"]:
            assert f.name in config.NOT_SEMANTIC and f.name not in config.SWEEP_KEYS + config.PROTOCOL_KEYS


def test_epoch_plan_and_step_budget():
    cfg = RunConfig(batchsize=128)
    assert cfg.steps_per_epoch(60000) == 469 and cfg.total_epochs(60000) == 10
    budget = RunConfig(batchsize=128, steps=200)
    assert budget.total_epochs(5000) == 5  # 40 steps an epoch
    assert [budget.steps_in_epoch(e, 5000) for e in (1, 5)] == [40, 40]
    assert RunConfig(batchsize=100, steps=130).steps_in_epoch(2, 10000) == 30


def test_the_posts_sweeps_are_its_protocol():
    base = sweeps.load("baseline").runs
    assert [(c.eta, c.lambda_, c.batchsize, c.optimizer, c.epochs) for c in base] == [(3e-4, 0.0, 128, "Adam", 10)]
    assert [c.batchsize for c in sweeps.load("batchsize").runs] == [32, 64, 256, 512]
    l2 = sweeps.load("l2").runs
    assert [c.lambda_ for c in l2] == [1e-2, 1e-4, 1e-6] and {c.batchsize for c in l2} == {32}
    opt = sweeps.load("optimizer").runs
    assert [c.run for c in opt] == ["ADAMW", "NADAM", "AdaBelief"]
    assert {(c.batchsize, c.lambda_) for c in opt} == {(32, 1e-6)}
    # Flux 0.12's ADAMW(eta) had decay 0: the chain is WeightDecay(1e-6) then ADAMW, as the post ran it
    assert opt[0].optimiser_chain() == [{"rule": "WeightDecay", "lambda": 1e-6},
                                        {"rule": "ADAMW_flux012", "eta": 3e-4, "beta": [0.9, 0.999], "decay": 0.0}]


def test_a_users_sweep_file_and_its_mistakes(tmp_path):
    good = tmp_path / "mine.toml"
    good.write_text('[base]\neta = 1e-3\n[[runs]]\nname = "a"\nbatchsize = 64\n')
    sweep = sweeps.load(str(good))
    assert sweep.name == "mine" and sweep.runs[0].batchsize == 64 and sweep.runs[0].sweep == "mine"
    bad_key = tmp_path / "bad.toml"
    bad_key.write_text('[base]\neta = 1e-3\n\n[[runs]]\nname = "a"\nbatch_size = 64\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'batch_size'.*\(line 6\)"):
        sweeps.load(str(bad_key))
    broken = tmp_path / "broken.toml"
    broken.write_text("[base]\neta = \n")
    with pytest.raises(ConfigError, match="not valid TOML.*line 2"):
        sweeps.load(str(broken))
    with pytest.raises(ConfigError, match="unknown sweep 'nope'"):
        sweeps.load("nope")


def test_optimiser_chains_follow_the_post():
    assert optim_spec.optimiser_chain("Adam", 3e-4, 0.0) == [optim_spec.make_rule("Adam", 3e-4)]
    chain = optim_spec.optimiser_chain("Adam", 3e-4, 1e-4)
    assert chain[0] == {"rule": "WeightDecay", "lambda": 1e-4} and chain[1]["rule"] == "Adam"
    adamw = optim_spec.optimiser_chain("AdamW", 1e-3, 1e-2)
    assert len(adamw) == 1 and adamw[0]["lambda"] == 1e-2 and adamw[0]["couple"] is True


def test_schedule_factor_warmup_and_multistep():
    f = optim_spec.lr_factor
    assert f(0, 100, warmup_epochs=2) == pytest.approx(1 / 200)
    assert f(199, 100, warmup_epochs=2) == 1.0
    assert f(4999, 100, milestones=[50, 100], gamma=0.2) == 1.0
    assert f(5000, 100, milestones=[50, 100], gamma=0.2) == pytest.approx(0.2)
    assert f(10000, 100, milestones=[50, 100], gamma=0.2) == pytest.approx(0.04)


def test_the_posts_epoch_line_and_the_run_files(tmp_path):
    train, test = {"loss": 0.0829, "acc": 97.515}, {"loss": 0.0717, "acc": 97.75}
    assert epoch_line(3, train, test) == \
        "Epoch: 3   Train: (loss = 0.0829, acc = 97.515)   Test: (loss = 0.0717, acc = 97.75)"
    printed = []
    log = RunLog(tmp_path, echo=printed.append)
    assert log.record(0, train, test, seconds=1.5, lr=3e-4) == "ok"
    assert log.record(1, {"loss": float("nan"), "acc": 10.0}, test) == "diverged"
    log.set_status("diverged")
    log.close()
    rows = RunFolder(tmp_path).read_log_rows()
    assert [r["epoch"] for r in rows] == [0, 1] and rows[0]["test_acc"] == 97.75 and rows[1]["status"] == "diverged"
    assert (tmp_path / "console.log").read_text().splitlines()[0] == printed[0]
    assert RunFolder(tmp_path).read_status()["status"] == "diverged"
    assert list(tmp_path.glob("events.out.tfevents.*"))
    with open(tmp_path / "log.csv") as f:
        assert next(csv.reader(f))[:5] == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]
    # resuming from a checkpoint at epoch 0 forgets later rows
    log = RunLog(tmp_path, echo=printed.append)
    log.truncate(0)
    assert [r["epoch"] for r in RunFolder(tmp_path).read_log_rows()] == [0]


def test_the_rerun_advice_names_every_option_of_sweep_that_changes_results():
    """More seeds are advised as the command that made the runs: every option of `sweep` that changes results
    (a new one included, from the table) and where the data is; another --train-size would be refused."""
    cfg = config.RunConfig(train_size=300, flush_subnormals=True, precision="float64", data_dir="d x").to_dict()
    assert config.rerun_options(cfg, config.RunConfig().to_dict()) == (
        " --train-size 300 --precision float64 --flush-subnormals --data-dir 'd x'")
