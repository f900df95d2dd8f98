"""One owner of a run folder's files (runlog.RunFolder), and config.json written by one process: the worker
that runs the run, or, where no worker could, the sweep process for a run whose worker never wrote it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fluxlenet.config import RunConfig
from fluxlenet.rundir import Task, run_dir
from fluxlenet.runlog import RunFolder, read_config_file
from fluxlenet.runner import default_threads, finish_task, run_tasks, start_tasks
from fluxlenet.runs import load_run, load_sweep_dir, run_depth

FASHION = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-mnist"


def task(runs_dir: Path) -> Task:
    cfg = RunConfig(sweep="owner", run="A", backend="torch", dataset="fashion-mnist", data_dir=str(FASHION),
                    train_size=128, test_size=64, batchsize=64, epochs=1, checktime=1).validate()
    return Task(cfg, run_dir(runs_dir / cfg.sweep, cfg))


def test_a_run_folder_names_each_file_once(tmp_path):
    folder = RunFolder(tmp_path)
    names = [p.name for p in folder.files + (folder.lock_file,)]
    assert len(names) == len(set(names)) == 11
    assert all(p.parent == tmp_path for p in folder.files)


def test_the_sweep_process_leaves_config_json_to_the_worker(tmp_path):
    t = task(tmp_path)
    [(ready, cfg)] = start_tasks([t], echo=lambda line: None, threads_of=default_threads)
    assert ready is t and cfg.threads == 1
    assert t.run_dir.is_dir() and not RunFolder(t.run_dir).config_file.exists()  # checked writable, nothing written


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {FASHION}")
def test_the_worker_writes_config_json_with_the_settings_it_ran_and_its_environment(tmp_path):
    t = task(tmp_path)
    assert [x.cfg.run for x in run_tasks([t], jobs=1, echo=lambda line: None)["finished"]] == ["A"]
    doc = read_config_file(RunFolder(t.run_dir).config_file)
    assert doc["config"] == t.cfg.replace(threads=1).to_dict()  # the threads it was given, recorded
    assert {"git_commit", "versions", "device", "threads", "train_samples"} <= set(doc)
    assert doc["train_samples"] == 128 and RunFolder(t.run_dir).read_status()["pid"] != os.getpid()


def test_a_worker_that_died_before_writing_leaves_a_failed_run_that_can_be_read(tmp_path):
    t = task(tmp_path)
    t.run_dir.mkdir(parents=True)
    assert finish_task(t, -9, echo=lambda line: None) == "failed"  # killed before its first write
    run = load_run(t.run_dir)  # not "damaged": the settings are there
    assert run.status["status"] == "failed" and "SIGKILL" in run.status["reason"]
    assert run.config == t.cfg.to_dict()


# -- one layout for train and sweeps --------------------------------------------------------------------

TRAIN = ["train", "--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", str(FASHION),
         "--train-size", "128", "--test-size", "64", "--batchsize", "64", "--epochs", "1"]


def cli(capsys, *args):
    from fluxlenet.cli import main
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {FASHION}")
def test_train_lays_its_runs_out_as_a_sweeps_and_its_seeds_are_seeds(tmp_path, capsys):
    """`train --savepath P` is the sweep folder of one run named after P: P/P-seed<N>/<backend>/, so that its
    seeds sit side by side and are read, checked and averaged as a sweep's."""
    mine = tmp_path / "runs" / "mine"
    for seed in (0, 1):
        code, out, err = cli(capsys, *TRAIN, "--seed", seed, "--savepath", mine)
        assert code == 0 and err == "", out + err
    assert sorted(p.name for p in mine.iterdir() if p.is_dir()) == ["mine-seed0", "mine-seed1"]
    run = load_run(mine / "mine-seed1" / "torch")
    assert (run.run, run.seed, run.backend, run.config["sweep"]) == ("mine", 1, "torch", "train")
    for target in (mine, "mine"):  # the folder, or its name under --runs-dir
        code, out, err = cli(capsys, "parity", target, "--runs-dir", tmp_path / "runs")
        assert code == 0 and f"Parity of mine ({mine})" in out, out + err
    assert run_depth(mine) == run_depth(tmp_path / "runs" / "mine") == 2  # a sweep folder's depth
    assert [(r.run, r.seed) for r in load_sweep_dir(mine)] == [("mine", 0), ("mine", 1)]
    # another setting at a new seed would be averaged with these: refused, nothing written
    code, out, err = cli(capsys, *TRAIN, "--seed", 2, "--eta", "1e-3", "--savepath", mine)
    assert code == 2 and out == "" and err.startswith(f"fluxlenet: error: {mine} holds 2 seed(s) of run mine "
                                                      f"(torch) with other settings (eta 0.0003 there, 0.001 now)")
    assert not (mine / "mine-seed2").exists()


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {FASHION}")
def test_a_run_in_trains_old_layout_is_read_and_a_new_run_beside_it_refused(tmp_path, capsys):
    """Before train's runs were laid out as a sweep's, they were <savepath>/<backend>/: such a folder still
    reads (parity, report), and train says where to move it rather than hiding it behind a new run."""
    new = tmp_path / "old"
    assert cli(capsys, *TRAIN, "--seed", 3, "--savepath", new)[0] == 0
    old = tmp_path / "copy" / "old"
    old.parent.mkdir()
    (new / "old-seed3").rename(old)  # <savepath>/torch/: the old layout
    code, out, err = cli(capsys, "parity", old)
    assert code == 0 and "Parity of old" in out, out + err
    before = sorted(p.relative_to(old) for p in old.rglob("*"))
    code, out, err = cli(capsys, *TRAIN, "--seed", 3, "--savepath", old)
    assert (code, out) == (2, "") and err == (
        f"fluxlenet: error: {old} holds a run in the old layout of `train` ({old / 'torch'}/); runs of train now "
        f"go in <savepath>/<run>-seed<N>/<backend>/: move it to {old / 'old-seed3'}/torch/, or give another "
        f"--savepath\n")
    assert sorted(p.relative_to(old) for p in old.rglob("*")) == before
    # moved as said, it is the finished run of that command
    (old / "old-seed3").mkdir()
    (old / "torch").rename(old / "old-seed3" / "torch")
    code, out, err = cli(capsys, *TRAIN, "--seed", 3, "--savepath", old)
    assert code == 0 and "already done" in out, out + err
