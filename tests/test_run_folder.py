"""One owner of a run folder's files (runlog.RunFolder), and config.json written by one process: the worker
that runs the run, or, where no worker could, the sweep process for a run whose worker never wrote it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fluxlenet.config import RunConfig
from fluxlenet.rundir import Task, run_dir
from fluxlenet.runlog import RunFolder, read_config_file, read_status
from fluxlenet.runner import default_threads, finish_task, run_tasks, start_tasks
from fluxlenet.runs import load_run

FASHION = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-mnist"


def task(runs_dir: Path) -> Task:
    cfg = RunConfig(sweep="owner", run="A", backend="torch", dataset="fashion-mnist", data_dir=str(FASHION),
                    train_size=128, test_size=64, batchsize=64, epochs=1, checktime=1).validate()
    return Task(cfg, run_dir(runs_dir, cfg))


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
    assert doc["train_samples"] == 128 and read_status(t.run_dir)["pid"] != os.getpid()


def test_a_worker_that_died_before_writing_leaves_a_failed_run_that_can_be_read(tmp_path):
    t = task(tmp_path)
    t.run_dir.mkdir(parents=True)
    assert finish_task(t, -9, echo=lambda line: None) == "failed"  # killed before its first write
    run = load_run(t.run_dir)  # not "damaged": the settings are there
    assert run.status["status"] == "failed" and "SIGKILL" in run.status["reason"]
    assert run.config == t.cfg.to_dict()
