"""Nothing lost, round 3: what is on disk is what is judged.

Real tiny runs (200 / 100 Fashion-MNIST images, 1 epoch, PyTorch) made by `fluxlenet.cli.main`, then
changed the way a user would (another --train-size beside the old seeds, a config.json deleted or
edited, a sweep file with a value of the wrong type), and every command asked about them: one line,
the right exit code, nothing written or lost.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fluxlenet.cli import main

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FASHION = SHARED / "fashion-mnist"
MNIST = SHARED / "mnist"
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {SHARED}")

ERR = "fluxlenet: error: "
SIZES = ["--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", str(FASHION), "--train-size", "200",
         "--test-size", "100"]
SWEEP = """description = "seed groups"
[base]
batchsize = 100
epochs = 1
threads = 1
[[runs]]
name = "A"
"""


def run_main(capsys, *args):
    """`python -m fluxlenet ARGS` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with the bytes of its files (None for folders)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def edit_settings(run_dir: Path, **changes) -> None:
    """Change the stored settings of a run, in config.json and checkpoint.json alike."""
    for name in ("config.json", "checkpoint.json"):
        path = run_dir / name
        doc = json.loads(path.read_text())
        doc["config"].update(changes)
        path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Sweep `s` (one run A) with seeds 0 and 1, finished: (folder, sweep file, runs folder)."""
    tmp = tmp_path_factory.mktemp("made")
    (tmp / "s.toml").write_text(SWEEP)
    code = main(["sweep", str(tmp / "s.toml"), *SIZES, "--seeds", "0,1", "--runs-dir", str(tmp / "runs")])
    assert code == 0
    return tmp


@pytest.fixture
def work(made, tmp_path):
    """A copy of the finished sweep to change: (sweep file, runs folder)."""
    shutil.copy(made / "s.toml", tmp_path / "s.toml")
    shutil.copytree(made / "runs", tmp_path / "runs")
    return tmp_path / "s.toml", tmp_path / "runs"


# -- item 1: runs of other settings are not pooled as seeds ---------------------------------------------

def test_a_seed_of_other_settings_is_refused_when_it_would_be_made(work, capsys):
    sweep_file, runs = work
    before = snapshot(runs)
    code, out, err = run_main(capsys, "sweep", sweep_file, *SIZES[:-3], "300", "--test-size", "100",
                              "--seeds", "2", "--runs-dir", runs)
    assert code == 2 and out == ""
    assert err == (f"{ERR}{runs}/s holds 2 seed(s) of run A (torch) with other settings (train_size 200 there, 300 "
                   f"now); the seeds of a run must differ in the seed alone, or they would be averaged as seeds: "
                   f"use another folder (--runs-dir; --savepath for train), or move {runs}/s/A-seed0, "
                   f"{runs}/s/A-seed1 away\n")
    assert snapshot(runs) == before  # nothing written, not even the sweep's lock
    # the same settings: the new seed joins the others
    code, out, err = run_main(capsys, "sweep", sweep_file, *SIZES, "--seeds", "2", "--runs-dir", runs)
    assert code == 0 and err == "", out + err
    assert (runs / "s" / "A-seed2" / "torch" / "status.json").is_file()


def test_a_mix_of_settings_on_disk_is_neither_averaged_nor_judged(work, capsys):
    sweep_file, runs = work
    edit_settings(runs / "s" / "A-seed1" / "torch", train_size=300, eta=1e-3)
    before = snapshot(runs)
    line = (f"{ERR}run A (torch) in {runs}/s mixes settings over its seeds (eta 0.0003 (seed 0) vs 0.001 (seed 1); "
            f"train_size 200 (seed 0) vs 300 (seed 1)): a run's seeds must differ in the seed alone, so they are "
            f"neither averaged nor judged; move the run folders of one setting away (such as "
            f"{runs}/s/A-seed1/torch) or into another runs folder\n")
    for command in ("parity", "report"):
        code, out, err = run_main(capsys, command, sweep_file, "--runs-dir", runs)
        assert (code, out, err) == (2, "", line), command
    assert snapshot(runs) == before  # no report.md, no plots


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"no MNIST in {SHARED}")
def test_reproduce_neither_makes_nor_judges_a_mix(tmp_path, capsys):
    runs = tmp_path / "runs"
    small = ["--sweeps", "baseline", "--backend", "torch", "--data-dir", MNIST, "--test-size", "100", "--epochs", "1",
             "--runs-dir", runs]
    code, out, err = run_main(capsys, "reproduce", "post", *small, "--train-size", "256", "--seeds", "0")
    assert code == 4 and err == "", out + err  # one seed: inconclusive
    before = snapshot(runs)
    code, out, err = run_main(capsys, "reproduce", "post", *small, "--train-size", "300", "--seeds", "1")
    assert code == 2 and out == "" and err == (
        f"{ERR}{runs}/baseline holds 1 seed(s) of run default (torch) with other settings (train_size 256 there, 300 now); "
        f"the seeds of a run must differ in the seed alone, or they would be averaged as seeds: use another "
        f"folder (--runs-dir; --savepath for train), or move {runs}/baseline/default-seed0 away\n")
    assert snapshot(runs) == before
    # the advice for more seeds names the options the runs had, so that it is not refused
    planted = tmp_path / "planted.csv"
    planted.write_text("sweep,value,epoch,test_acc\nbaseline,default,1,50.0\n")
    code, out, err = run_main(capsys, "reproduce", "post", *small, "--report-only", "--published", planted,
                              "--tolerance", "min_seeds=2")
    advice = (f"python -m fluxlenet reproduce post --sweeps baseline --epochs 1 --train-size 256 --test-size 100 "
              f"--data-dir {MNIST} --runs-dir {runs} --seeds 0,1,2,3,4")
    assert code == 4 and f"`{advice}` gives enough (finished runs are skipped)" in out, out + err
    code, out, err = run_main(capsys, *advice.split()[3:], "--backend", "torch")
    assert code == 4 and err == "" and "already done" in out, out + err  # not refused: the seeds were added
    assert all((runs / "baseline" / f"default-seed{seed}" / "torch" / "status.json").is_file() for seed in range(5))
    # a damaged run is named on the terminal too, and so is a published row that matches no run
    log = runs / "baseline" / "default-seed4" / "torch" / "log.csv"
    good = log.read_bytes()
    log.write_bytes(good + b"garbage\n")
    planted.write_text("sweep,value,epoch,test_acc\nbaseline,default,1,50.0\nbaseline,256,1,50.0\n"
                       "cifar-lr,0.1,1,50.0\nl2,1e-6,1,50.0\n")  # l2: left out by --sweeps, said so already
    code, out, err = run_main(capsys, "reproduce", "post", *small, "--report-only", "--published", planted)
    assert code == 1 and err == "", out + err  # 4 seeds near 13%: the planted 50.0 is not reproduced
    assert (f"NOTE: left out, damaged: {log}: line 4 has 1 fields, the header 10; move the run folder {log.parent} "
            f"away (a rerun of its sweep then runs it afresh)\n") in out
    assert (f"NOTE: --published {planted}: 2 row(s) match no run here and are not judged: baseline/256, "
            f"cifar-lr/0.1\n") in out
    assert "match no run here" in (runs / "reproduce-post" / "report.md").read_text()
    log.write_bytes(good)
    # a mix made by hand (a copied folder, its settings edited) is not judged
    seed7 = shutil.copytree(runs / "baseline" / "default-seed0", runs / "baseline" / "default-seed7") / "torch"
    edit_settings(seed7, seed=7, train_size=300)
    before = snapshot(runs)
    code, out, err = run_main(capsys, "reproduce", "post", *small, "--report-only")
    assert code == 2 and out == "" and err == (
        f"{ERR}run default (torch) in {runs}/baseline mixes settings over its seeds (train_size 256 (seeds 0,1,2,3,4) vs "
        f"300 (seed 7)): a run's seeds must differ in the seed alone, so they are neither averaged nor judged; move "
        f"the run folders of one setting away (such as {seed7}) or into another runs folder\n")
    assert snapshot(runs) == before


# -- item 4: every key of a sweep file is type-checked once, when it is read, by every command ------------

WRONG_TYPES = [  # (the sweep file's text, the line on stderr after "sweep file PATH: ")
    (SWEEP.replace("[base]", "published = 5\n[base]"), "published must be a string (text in quotes), not 5 (line 2)"),
    (SWEEP.replace("[base]", 'published = ["lenet-99-post/baseline"]\n[base]'),
     "published must be a string (text in quotes), not ['lenet-99-post/baseline'] (line 2)"),
    (SWEEP.replace("[base]", 'published = "lenet-99-pots/baseline"\n[base]'),
     'published must name published figures as "<source>/<experiment>" with a source of fluxlenet/reference/'
     "published-results.csv (cifar-lr-homework, lenet-99-post, lenet-variants-report), not "
     "'lenet-99-pots/baseline' (line 2)"),
    (SWEEP.replace('description = "seed groups"', "description = [1, 2]"),
     "description must be a string (text in quotes), not [1, 2] (line 1)"),
    (SWEEP.replace("[base]\nbatchsize = 100", "base = [100]").replace("epochs = 1\nthreads = 1\n", ""),
     "base must be a table of settings ([base]), not [100] (line 2)"),
    ('runs = "A"\n', "needs at least one [[runs]] table, not runs = 'A' (line 1)"),
    (SWEEP.replace("batchsize = 100", 'batchsize = "100"'), "run 'A': batchsize must be a number, not '100' (line 3)"),
    (SWEEP.replace("threads = 1", "threads = [1]"), "run 'A': threads must be a number, not [1] (line 5)"),
    (SWEEP.replace('name = "A"', 'name = ["A"]'), "run name ['A'] must be a string (text in quotes) (line 7)"),
]


@pytest.mark.parametrize("text, message", WRONG_TYPES, ids=[m.split(" ")[0] + str(i) for i, (_, m)
                                                            in enumerate(WRONG_TYPES)])
def test_a_value_of_the_wrong_type_is_one_line_in_every_command(work, capsys, text, message):
    sweep_file, runs = work
    sweep_file.write_text(text)
    before = snapshot(runs)
    line = f"{ERR}sweep file {sweep_file}: {message}\n"
    for command in (["sweep", sweep_file, *SIZES], ["parity", sweep_file], ["report", sweep_file],
                    ["sweep", "--grid", "eta=1e-3", "--base", sweep_file, *SIZES]):
        code, out, err = run_main(capsys, *command, "--runs-dir", runs)
        assert (code, out, err) == (2, "", line), command
    assert snapshot(runs) == before


# -- settings on disk: config.json restored, cross-checked with checkpoint.json ------------------------------

def test_a_finished_run_whose_config_json_was_deleted_gets_it_back(work, capsys):
    sweep_file, runs = work
    run = runs / "s" / "A-seed1" / "torch"
    settings = json.loads((run / "checkpoint.json").read_text())["config"]
    (run / "config.json").unlink()
    # read as it is: checkpoint.json holds the settings, so the run is valid (no advice to move it)
    for command in ("parity", "report"):
        code, out, err = run_main(capsys, command, sweep_file, "--runs-dir", runs)
        assert code == 0 and err == "" and "damaged" not in out, command + out + err
    (runs / "s" / "report.md").unlink()
    code, out, err = run_main(capsys, "sweep", sweep_file, *SIZES, "--seeds", "0,1", "--runs-dir", runs)
    assert code == 0 and err == "", out + err
    assert (f"--- A seed 1 [torch]: already done in {run}, skipped (config.json restored from checkpoint.json)\n"
            in out)
    assert json.loads((run / "config.json").read_text()) == {"config": settings, "restored_from": "checkpoint.json"}
    code, out, err = run_main(capsys, "parity", sweep_file, "--runs-dir", runs)
    assert code == 0 and err == "" and "damaged" not in out, out + err


@pytest.mark.parametrize("damage", ["disagree", "missing"])
def test_settings_that_disagree_or_are_missing_are_damage_not_defaults(work, capsys, damage):
    sweep_file, runs = work
    run = runs / "s" / "A-seed1" / "torch"
    if damage == "disagree":  # config.json edited by hand, checkpoint.json not
        doc = json.loads((run / "config.json").read_text())
        doc["config"]["eta"] = 1e-3
        (run / "config.json").write_text(json.dumps(doc))
        what = (f"{run}/config.json: and checkpoint.json beside it disagree (eta 0.001 vs 0.0003: one was edited), "
                f"so the settings the run was trained with are unknown")
    else:  # a setting that changes results is in neither file: it is not taken to be its default
        for name in ("config.json", "checkpoint.json"):
            doc = json.loads((run / name).read_text())
            del doc["config"]["eta"]
            (run / name).write_text(json.dumps(doc))
        what = (f"{run}/config.json: neither config.json nor checkpoint.json says the setting eta, so the run's "
                f"settings are unknown")
    message = f"{what}; move the run folder {run} away (a rerun of its sweep then runs it afresh)"
    before = snapshot(runs)
    code, out, err = run_main(capsys, "sweep", sweep_file, *SIZES, "--seeds", "0,1", "--runs-dir", runs)
    assert code == 2 and err == f"{ERR}{message}\n", out + err
    assert f"--- A seed 1 [torch]: {run} is damaged (see the error), left as it is" in out
    assert snapshot(runs) == before
    for command in ("parity", "report"):
        code, out, err = run_main(capsys, command, sweep_file, "--runs-dir", runs)
        assert code == 0 and err == "" and f"NOTE: left out, damaged: {message}\n" in out, command + out + err
    shutil.rmtree(run.parent)  # as the advice says: the rerun runs it afresh
    code, out, err = run_main(capsys, "sweep", sweep_file, *SIZES, "--seeds", "0,1", "--runs-dir", runs)
    assert code == 0 and err == "" and json.loads((run / "config.json").read_text())["config"]["eta"] == 3e-4


# -- log.csv: a column added by hand is kept on resume ---------------------------------------------------------

def test_a_column_added_to_log_csv_by_hand_is_kept_when_the_run_resumes(tmp_path, capsys, monkeypatch):
    """Kept, not refused: the figures are still ours, and the user's notes are theirs; a resumed run writes
    the column back after ours, its cells where they were and empty in the rows it adds."""
    (tmp_path / "r.toml").write_text(SWEEP.replace("epochs = 1", "epochs = 2\nchecktime = 1"))
    runs = tmp_path / "runs"
    run = runs / "r" / "A-seed0" / "torch"
    monkeypatch.setenv("FLUXLENET_FAULT", "raise@checkpoint1")  # fails after the checkpoint of epoch 1
    code, out, err = run_main(capsys, "sweep", tmp_path / "r.toml", *SIZES, "--runs-dir", runs)
    assert code == 1 and json.loads((run / "status.json").read_text())["status"] == "failed"
    monkeypatch.delenv("FLUXLENET_FAULT")
    lines = (run / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch", "0", "1"]
    (run / "log.csv").write_text("\n".join([lines[0] + ",note", lines[1] + ",before training",
                                            lines[2] + ",looks fine"]) + "\n")
    code, out, err = run_main(capsys, "sweep", tmp_path / "r.toml", *SIZES, "--runs-dir", runs)
    assert code == 0 and err == "", out + err
    assert "Resuming from the checkpoint of epoch 1" in (run / "console.log").read_text()
    kept = (run / "log.csv").read_text().splitlines()
    assert kept[:3] == [lines[0] + ",note", lines[1] + ",before training", lines[2] + ",looks fine"]
    assert len(kept) == 4 and kept[3].startswith("2,") and kept[3].endswith(",ok,")
    code, out, err = run_main(capsys, "parity", tmp_path / "r.toml", "--runs-dir", runs)
    assert code == 0 and err == "" and "damaged" not in out, out + err


# -- names: "café" composed (NFC) and decomposed (NFD) are one name ---------------------------------------------

NFC, NFD = "caf\u00e9", "cafe\u0301"


def test_names_that_differ_only_in_unicode_normalisation_are_one_name(tmp_path, capsys):
    runs = tmp_path / "runs"
    both = tmp_path / "both.toml"
    both.write_text(SWEEP + f'[[runs]]\nname = "{NFD}"\n[[runs]]\nname = "{NFC}"\n')
    code, out, err = run_main(capsys, "sweep", both, *SIZES, "--runs-dir", runs)
    assert (code, out, err) == (2, "", f"{ERR}sweep file {both}: two runs are named '{NFC}'\n")
    assert not runs.exists()
    # a sweep file named, and a run named, in NFD: the folders are NFC, and the NFC spelling finds them done
    (tmp_path / f"{NFD}.toml").write_text(SWEEP.replace('name = "A"', f'name = "{NFD}"'))
    code, out, err = run_main(capsys, "sweep", tmp_path / f"{NFD}.toml", *SIZES, "--runs-dir", runs)
    assert code == 0 and err == "", out + err
    assert [p.name for p in runs.iterdir()] == [NFC] and [p.name for p in (runs / NFC).iterdir()
                                                           if p.is_dir()] == [f"{NFC}-seed0"]
    (tmp_path / f"{NFC}.toml").write_text(SWEEP.replace('name = "A"', f'name = "{NFC}"'))
    code, out, err = run_main(capsys, "sweep", tmp_path / f"{NFC}.toml", *SIZES, "--runs-dir", runs)
    assert code == 0 and "already done" in out, out + err
    code, out, err = run_main(capsys, "parity", NFD, "--runs-dir", runs)  # the name typed decomposed
    assert code == 0 and err == "" and f"Parity of {NFC}" in out, out + err
    # train: the run is named after its folder, which is kept in NFC
    code, out, err = run_main(capsys, "train", *SIZES, "--epochs", "1", "--savepath", tmp_path / "t" / NFD)
    assert code == 0 and [p.name for p in (tmp_path / "t").iterdir()] == [NFC], out + err
    code, out, err = run_main(capsys, "train", *SIZES, "--epochs", "1", "--savepath", tmp_path / "t" / NFC)
    assert code == 0 and "already done" in out, out + err


# -- parity --against the same folder ------------------------------------------------------------------------

def test_parity_against_the_same_folder_says_both_sides_are_one_folder(work, capsys, tmp_path):
    sweep_file, runs = work
    run = runs / "s" / "A-seed0" / "torch"
    (tmp_path / "link").symlink_to(runs)
    cases = [([sweep_file, "--runs-dir", runs, "--against", runs], runs, runs / "s"),
             ([sweep_file, "--runs-dir", runs, "--against", tmp_path / "link"], tmp_path / "link", runs / "s"),
             ([run, "--against", run], run, run)]
    for args, against, here in cases:
        code, out, err = run_main(capsys, "parity", *args)
        assert (code, out) == (2, ""), args
        assert err == (f"{ERR}--against {against}: both sides are one folder ({here}), so every run would be "
                       f"compared with itself; give the runs folder of another attempt\n")


# -- two sweep files of one name in different folders ------------------------------------------------------------

def test_two_sweep_files_of_one_name_do_not_share_a_runs_folder(made, tmp_path, capsys):
    runs = shutil.copytree(made / "runs", tmp_path / "runs")
    mine = made / "s.toml"
    other = tmp_path / "elsewhere" / "s.toml"
    other.parent.mkdir()
    other.write_text(SWEEP.replace('name = "A"', 'name = "B"'))
    before = snapshot(runs)
    code, out, err = run_main(capsys, "sweep", other, *SIZES, "--runs-dir", runs)
    assert (code, out) == (2, "") and err == (
        f"{ERR}{runs}/s holds the runs of the sweep file {mine}, and the sweep file {other} has the same name but "
        f"other runs; rename one of the files, or give this one another --runs-dir\n")
    code, out, err = run_main(capsys, "parity", other, "--runs-dir", runs)
    assert (code, out) == (2, "") and err == (
        f"{ERR}{runs}/s holds the runs of the sweep file {mine}, and the sweep file {other} has the same name but "
        f"other runs; give that file ({mine}) or the folder {runs}/s itself\n")
    assert snapshot(runs) == before
    # a copy of the file (the same runs) is the same sweep; so is the file moved
    copy = tmp_path / "copy" / "s.toml"
    copy.parent.mkdir()
    shutil.copy(mine, copy)
    code, out, err = run_main(capsys, "sweep", copy, *SIZES, "--seeds", "0,1", "--runs-dir", runs)
    assert code == 0 and out.count("already done") == 2, out + err
    # a file named like a built-in sweep is another sweep than the built-in one
    (tmp_path / "baseline.toml").write_text(SWEEP)
    code, out, err = run_main(capsys, "sweep", tmp_path / "baseline.toml", *SIZES, "--runs-dir", runs)
    assert code == 0, out + err
    code, out, err = run_main(capsys, "sweep", "baseline", *SIZES, "--runs-dir", runs)
    assert (code, out) == (2, "") and err == (
        f"{ERR}{runs}/baseline holds the runs of the sweep file {tmp_path}/baseline.toml, and the built-in sweep "
        f"baseline has the same name but other runs; rename one of the files, or give this one another --runs-dir\n")


# -- threads: the default does not depend on how the runs were scheduled --------------------------------------

def test_a_runs_default_threads_do_not_depend_on_jobs(tmp_path, capsys):
    """One thread a run unless --threads, with --jobs 1 as with --jobs 2 (and under Ray: tests/test_ray.py):
    the same figures, and parity --against finds the two attempts identical with no note on threads."""
    (tmp_path / "t.toml").write_text(SWEEP.replace("threads = 1\n", "") + '[[runs]]\nname = "B"\neta = 1e-3\n')
    for jobs in (1, 2):
        code, out, err = run_main(capsys, "sweep", tmp_path / "t.toml", *SIZES, "--jobs", jobs,
                                  "--runs-dir", tmp_path / f"jobs{jobs}")
        assert code == 0 and err == "", out + err
        for run in ("A", "B"):
            config = json.loads((tmp_path / f"jobs{jobs}" / "t" / f"{run}-seed0" / "torch" / "config.json").read_text())
            assert config["config"]["threads"] == 1 and config["threads"] == {"torch": 1}
    code, out, err = run_main(capsys, "parity", tmp_path / "t.toml", "--runs-dir", tmp_path / "jobs1",
                              "--against", tmp_path / "jobs2")
    assert code == 0 and err == "" and "float32 sums may" not in out and "Sweep t: pass" in out, out + err
    assert (tmp_path / "jobs1" / "t" / "A-seed0" / "torch" / "log.csv").read_text().count("\n") == 3
    # --threads is the user's, recorded, and said where two compared runs differ in it
    code, out, err = run_main(capsys, "sweep", tmp_path / "t.toml", *SIZES, "--threads", 2,
                              "--runs-dir", tmp_path / "two")
    assert code == 0 and json.loads((tmp_path / "two" / "t" / "A-seed0" / "torch" / "config.json").read_text()
                                    )["threads"] == {"torch": 2}
    code, out, err = run_main(capsys, "parity", tmp_path / "t.toml", "--runs-dir", tmp_path / "jobs1",
                              "--against", tmp_path / "two")
    assert "threads 1 vs 2: float32 sums may then differ in order" in out, out + err
