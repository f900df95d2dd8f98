"""Parity: real small torch runs, and Flux runs made from them (Julia is not needed).

A Flux run folder holds the very same files as a torch one, so a copy of a torch run with its
backend renamed and some figures edited stands for a Flux run here.
"""

import csv
import fcntl
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fluxlenet.config import ConfigError
from fluxlenet.runs import compare_folders, compare_sweep
from parity import Policy, PolicyError, published

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "fashion-mnist"
SMALL = ["--backend", "torch", "--dataset", "fashion-mnist", "--data-dir", str(DATA), "--train-size", "300",
         "--test-size", "100", "--epochs", "1", "--trace-steps", "12"]


def fluxlenet(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "fluxlenet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The optimizer sweep (1 epoch, 300 / 100 Fashion-MNIST images) in runs folder a; b is a copy of a
    whose NADAM run was removed and run again (the sweep skips the two finished runs)."""
    if not (DATA / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no Fashion-MNIST files in {DATA}")
    root = tmp_path_factory.mktemp("parity")
    done = fluxlenet("sweep", "optimizer", *SMALL, "--runs-dir", root / "a")
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copytree(root / "a", root / "b")
    shutil.rmtree(root / "b" / "optimizer" / "NADAM-seed42")
    done = fluxlenet("sweep", "optimizer", *SMALL, "--runs-dir", root / "b")
    assert done.returncode == 0 and done.stdout.count("already done") == 2, done.stdout + done.stderr
    return root


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_config(run_dir: Path, **changes) -> None:
    """Change the run's settings, in config.json and checkpoint.json alike (they must agree)."""
    for path in (run_dir / "config.json", run_dir / "checkpoint.json"):
        doc = json.loads(path.read_text())
        doc["config"].update(changes)
        path.write_text(json.dumps(doc))


def as_flux(torch_dir: Path) -> Path:
    """A Flux run made from a torch run: the same files, backend flux."""
    flux_dir = copy_tree(torch_dir, torch_dir.parent / "flux")
    edit_config(flux_dir, backend="flux")
    return flux_dir


def edit_log(run_dir: Path, epoch: int, **changes) -> None:
    path = run_dir / "log.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        if int(row["epoch"]) == epoch:
            for key, change in changes.items():
                row[key] = repr(change(float(row[key])))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def edit_trace(run_dir: Path, step: int, factor: float) -> None:
    path = run_dir / "trace.csv"
    lines = path.read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        s, loss, checksum = line.split(",")
        if int(s) == step:
            loss = repr(float(loss) * factor)
        out.append(f"{s},{loss},{checksum}")
    path.write_text("\n".join(out) + "\n")


# -- the torch trace ------------------------------------------------------------------------

def test_trace_holds_the_loss_and_checksum_before_each_update(runs):
    """trace.csv step s: the loss of batch s and the parameter sum, both before update s."""
    import torch
    import torch.nn.functional as F

    from fluxlenet.backends.torch_backend import build_model, load_weights
    from fluxlenet.config import RunConfig
    from fluxlenet.data import load_dataset
    from fluxlenet.init import epoch_orders, initial_weights
    from fluxlenet.runs import read_trace

    folder = runs / "a" / "optimizer" / "ADAMW-seed42" / "torch"
    trace = read_trace(folder / "trace.csv")
    assert list(trace.index) == list(range(1, 11))  # 300 / 32 = 10 steps in the one epoch, all traced
    cfg = RunConfig(**json.loads((folder / "config.json").read_text())["config"])
    data = load_dataset("fashion-mnist", DATA, train_size=300, test_size=100, download=False, progress=False)
    model = build_model(cfg.layers())
    assert cfg.rng == "julia"  # the post's sweep: its own random scheme
    load_weights(model, initial_weights(cfg.layers(), cfg.seed, rng=cfg.rng))
    # ADAMW_flux012 with its default decay 0, after WeightDecay(1e-6): Adam with coupled L2
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.eta, weight_decay=cfg.lambda_)
    order = torch.from_numpy(next(epoch_orders(cfg.layers(), cfg.seed, 300, cfg.rng)))
    x, y = torch.from_numpy(data.train_x)[order], torch.from_numpy(data.train_y)[order]
    for step in range(1, 6):
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in model.parameters()))
        loss = F.cross_entropy(model(x[(step - 1) * 32:step * 32]), y[(step - 1) * 32:step * 32])
        if step == 1:  # the initial weights and the first batch: exactly the same arithmetic
            assert trace.loss[1] == loss.item() and trace.checksum[1] == checksum
        assert trace.loss[step] == pytest.approx(loss.item(), rel=1e-5)
        assert trace.checksum[step] == pytest.approx(checksum, rel=1e-6)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


# -- repeats and lockstep -------------------------------------------------------------------

def test_two_torch_runs_with_the_same_seed_pass_with_zero_differences(cli, runs):
    code, out, err = cli("parity", "optimizer", "--runs-dir", runs / "a", "--against", runs / "b")
    assert code == 0, out + err
    assert "Sweep optimizer: pass" in out and "repeat" in out
    result = compare_sweep("optimizer", runs / "a", against=runs / "b")
    checks = result.checks()
    assert len(checks) == 3 and {c.kind for c in checks} == {"repeat"}
    for check in checks:
        assert check.status == "pass" and list(check.diffs.index) == [0, 1]
        assert (check.diffs.abs().to_numpy() == 0).all()
        assert len(check.steps) == 10 and (check.steps.rel == 0).all()


def test_one_point_of_test_accuracy_fails_and_names_run_epoch_metric(cli, runs, tmp_path):
    b = copy_tree(runs / "b", tmp_path / "b")
    edit_log(b / "optimizer" / "NADAM-seed42" / "torch", 1, test_acc=lambda v: v + 1.0)
    code, out, err = cli("parity", "optimizer", "--runs-dir", runs / "a", "--against", b)
    assert code == 1, out + err
    assert "NADAM seed 42, epoch 1, test_acc:" in out
    assert "Sweep optimizer: FAIL (1 of 3 runs failed)" in out
    # the tolerance is the user's to set, and the output shows the one in force
    code, out, err = cli("parity", "optimizer", "--runs-dir", runs / "a", "--against", b, "--tolerance", "exact_acc=1.5")
    assert code == 0 and "epoch figures |d| <= 1.5 points" in out


def flux_sweep(runs: Path, tmp_path: Path, **config) -> Path:
    """Sweep folder a with a Flux twin of every torch run."""
    root = copy_tree(runs / "a", tmp_path / "fluxruns")
    for run in (root / "optimizer").glob("*-seed42"):
        if config:
            edit_config(run / "torch", **config)
        as_flux(run / "torch")
    return root


def test_flux_vs_torch_float32_lockstep_bands(cli, runs, tmp_path):
    root = flux_sweep(runs, tmp_path)
    flux = root / "optimizer" / "AdaBelief-seed42" / "flux"
    edit_log(flux, 1, test_loss=lambda v: v * 1.01)          # within 2e-4 + 3% at epoch 1
    edit_trace(flux, 10, 1 + 1e-4)                            # within 1e-6 + 5e-5 x 9
    result = compare_sweep("optimizer", root)
    assert result.status == "pass" and {c.kind for c in result.checks()} == {"lockstep"}
    assert "Flux: not run" not in " ".join(result.notes)

    edit_trace(flux, 3, 1 + 1e-3)                             # the band at step 3 is 1.01e-4
    edit_log(flux, 0, test_acc=lambda v: v + 1.0)             # epoch 0: same weights, same figures
    result = compare_sweep("optimizer", root)
    verdict = next(v for v in result.verdicts if v.run == "AdaBelief")
    assert verdict.status == "fail"
    messages = " ".join(verdict.failures())
    assert "step trace broke at step 3" in messages and "AdaBelief seed 42, epoch 0, test_acc" in messages
    code, out, err = cli("parity", "optimizer", "--runs-dir", root, "--steps", "4")
    assert code == 1
    assert "Step trace of AdaBelief seed 42: flux vs torch" in out and "<- first break" in out


def test_float64_lockstep_is_held_to_machine_precision_and_names_the_step(runs, tmp_path):
    root = flux_sweep(runs, tmp_path, precision="float64")
    for run in (root / "optimizer").glob("*-seed42"):
        edit_config(run / "flux", precision="float64")
    result = compare_sweep("optimizer", root)
    assert result.status == "pass" and {c.kind for c in result.checks()} == {"float64"}

    flux = root / "optimizer" / "ADAMW-seed42" / "flux"
    edit_trace(flux, 2, 1 + 1e-12)      # below 1e-10: rounding
    edit_trace(flux, 6, 1 + 1e-8)       # a semantic difference
    result = compare_sweep("optimizer", root)
    check = next(c for c in result.checks() if c.run == "ADAMW")
    assert check.status == "fail" and check.step_break.index == 6
    assert "float64 lockstep broke at step 6" in check.messages()[0] and "not rounding" in check.messages()[0]

    # epoch figures must be equal, as log.csv holds them
    nadam = root / "optimizer" / "NADAM-seed42" / "flux"
    edit_log(nadam, 1, train_loss=lambda v: v + 1e-4)
    check = next(c for c in compare_sweep("optimizer", root).checks() if c.run == "NADAM")
    assert check.first_break.index == 1 and check.first_break.metric == "train_loss"


def test_two_run_folders_compare_directly(cli, runs, tmp_path):
    torch_dir = runs / "a" / "optimizer" / "NADAM-seed42" / "torch"
    flux_dir = as_flux(copy_tree(torch_dir, tmp_path / "NADAM" / "torch"))
    result = compare_folders(flux_dir, torch_dir)
    assert result.status == "pass" and result.checks()[0].kind == "lockstep"
    code, out, err = cli("parity", torch_dir)  # alone: read, nothing to compare it with
    assert code == 0 and "NADAM" in out and "Sweep NADAM-seed42/torch: not compared" in out, out + err


def test_native_runs_and_seeds_are_judged_statistically(cli, runs, tmp_path):
    root = copy_tree(runs / "a", tmp_path / "native")
    base = root / "optimizer" / "AdaBelief-seed42"
    edit_config(base / "torch", mode="native", rng="numpy")  # native runs are made with --rng numpy
    as_flux(base / "torch")
    edit_log(base / "flux", 1, test_acc=lambda v: v + 5.0)   # another RNG: within the sampling noise of 100 images
    edit_log(base / "flux", 0, test_acc=lambda v: v + 30.0)  # other initial weights: epoch 0 is not judged
    check = next(c for c in compare_sweep("optimizer", root).checks() if c.run == "AdaBelief")
    # one seed a side: the difference is shown, the verdict is inconclusive and says what gives enough seeds
    assert check.kind == "native" and check.status == "inconclusive" and list(check.diffs.index) == [1]
    assert check.diffs.at[1, "test_acc"] == pytest.approx(5.0, abs=1e-9)
    edit_log(base / "flux", 1, test_acc=lambda v: v + 35.0)  # far outside the one-seed band: still not a failure
    code, out, err = cli("parity", "optimizer", "--runs-dir", root)
    assert code == 0 and "FAIL" not in out, out
    assert "AdaBelief  inconclusive" in out and "outside the one-seed band from epoch 1 (test_acc" in out
    # the command that made the runs, with more seeds (another --train-size, say, would be refused)
    assert (f"`python -m fluxlenet sweep optimizer --epochs 1 --dataset fashion-mnist --train-size 300 --test-size 100 "
            f"--mode native --rng numpy --data-dir {DATA} --runs-dir {root} --seeds 0,1,2,3,42` gives enough") in out
    edit_log(base / "flux", 1, test_acc=lambda v: v - 40.0)

    # three seeds a side: mean +- sd
    shutil.copy(base / "torch" / "log.csv", base / "flux" / "log.csv")
    rng = np.random.default_rng(0)
    for seed in (1, 2):
        folder = copy_tree(base, root / "optimizer" / f"AdaBelief-seed{seed}")
        for side in ("torch", "flux"):
            edit_config(folder / side, seed=seed)
            edit_log(folder / side, 1, test_acc=lambda v: v + rng.normal(0, 2))
    check = next(c for c in compare_sweep("optimizer", root).checks() if c.run == "AdaBelief")
    assert check.kind == "seeds" and check.seeds == [1, 2, 42] and check.status == "pass"
    headline = [f for f in check.figures if f.headline]
    assert [(f.metric, f.epoch, f.a.n, f.b.n, f.verdict) for f in headline] == [("test_acc", 1, 3, 3, "consistent")]
    for seed in (42, 1, 2):
        edit_log(root / "optimizer" / f"AdaBelief-seed{seed}" / "flux", 1, test_acc=lambda v: v + 40)
    check = next(c for c in compare_sweep("optimizer", root).checks() if c.run == "AdaBelief")
    assert check.status == "fail"
    assert "AdaBelief seeds 1,2,42, test_acc at epoch 1 (final): flux mean" in check.messages()[0]
    assert ": different (|difference|" in check.messages()[0]


def test_a_run_that_stopped_early_is_incomplete_not_failed(cli, runs, tmp_path):
    root = flux_sweep(runs, tmp_path)
    flux = root / "optimizer" / "ADAMW-seed42" / "flux"
    (flux / "log.csv").write_text("\n".join((flux / "log.csv").read_text().splitlines()[:2]) + "\n")  # epoch 0
    (flux / "status.json").write_text(json.dumps({"status": "failed", "reason": "JuliaError: boom"}))
    code, out, err = cli("parity", "optimizer", "--runs-dir", root)
    assert code == 0 and "Sweep optimizer: INCOMPLETE" in out
    assert "incomplete: flux seed 42: failed (JuliaError: boom)" in out
    assert "incomplete: compared up to epoch 0: torch went on to epoch 1" in out


def test_a_nan_difference_is_shown_as_nan(cli, runs, tmp_path):
    """Both sides NaN agree (the verdict passes); the table still says NaN, not 0.00."""
    root = flux_sweep(runs, tmp_path)
    for side in ("torch", "flux"):
        edit_log(root / "optimizer" / "NADAM-seed42" / side, 1, test_loss=lambda v: float("nan"))
    code, out, err = cli("parity", "optimizer", "--runs-dir", root)
    row = next(line for line in out.splitlines() if line.startswith("NADAM") and "flux vs torch" in line)
    assert (row.split()[-3], row.split()[-1], code) == ("NaN", "pass", 0), out  # max|d| test loss, verdict
    edit_log(root / "optimizer" / "NADAM-seed42" / "torch", 1, test_loss=lambda v: 2.0)
    code, out, err = cli("parity", "optimizer", "--runs-dir", root)
    row = next(line for line in out.splitlines() if line.startswith("NADAM") and "flux vs torch" in line)
    assert (row.split()[-3], row.split()[-1], code) == ("NaN", "FAIL", 1), out


def test_a_run_left_running_by_a_killed_sweep_is_stopped(cli, runs, tmp_path):
    """status.json says running: the worker lock tells a live run from one whose sweep was killed."""
    root = copy_tree(runs / "a", tmp_path / "live")
    run = root / "optimizer" / "NADAM-seed42" / "torch"
    (run / "status.json").write_text(json.dumps({"status": "running", "pid": 1}))
    code, out, err = cli("parity", "optimizer", "--runs-dir", root)
    assert "incomplete: torch seed 42: stopped (status.json says running, but no process holds the run" in out
    with open(run / ".worker.lock", "a+") as lock:  # a live worker holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, out, err = cli("parity", "optimizer", "--runs-dir", root)
    assert "incomplete: torch seed 42: running" in out and "stopped" not in out


def test_parity_and_report_read_runs_folders_run_folders_and_train_runs(cli, runs, tmp_path):
    code, out, err = cli("parity", runs / "a")  # a runs folder holding one sweep
    assert code == 0 and out.startswith(f"Parity of optimizer ({runs / 'a' / 'optimizer'})"), out + err
    two = copy_tree(runs / "a", tmp_path / "two")
    copy_tree(two / "optimizer", two / "other")
    code, out, err = cli("parity", two)
    assert code == 2 and f"{two} is a runs folder holding optimizer, other: give one of them" in err
    # a run of an older `train --savepath`: <savepath>/<backend>/ (today: <savepath>/<run>-seed<N>/<backend>/)
    train = copy_tree(runs / "a" / "optimizer" / "NADAM-seed42", tmp_path / "runs" / "train")
    code, out, err = cli("parity", "train", "--runs-dir", tmp_path / "runs")
    assert code == 0 and "Parity of train" in out and "NADAM" in out, out + err
    code, out, err = cli("report", train)
    assert code == 0 and (train / "report.html").is_file() and (train / "test-accuracy.png").is_file(), out + err


def test_a_damaged_run_is_left_out_and_the_others_compared(cli, runs, tmp_path):
    root = flux_sweep(runs, tmp_path)
    bad = root / "optimizer" / "NADAM-seed42" / "torch"
    (bad / "config.json").write_text("{")
    (root / "optimizer" / "ADAMW-seed42" / "flux" / "log.csv").write_bytes(b"epoch,train_loss\n0,\xff\n")
    code, out, err = cli("parity", "optimizer", "--runs-dir", root)
    assert code == 0 and err == "", out + err
    assert f"NOTE: left out, damaged: {bad}/config.json: is not a fluxlenet run config" in out
    assert "incomplete: torch seed 42: damaged run folder, left out (see the note)" in out
    assert "incomplete: flux seed 42: damaged run folder, left out (see the note)" in out
    row = next(line for line in out.splitlines() if line.startswith("AdaBelief") and "flux vs torch" in line)
    assert row.endswith("pass")  # the others are compared
    code, out, err = cli("parity", bad)  # the damaged run itself: one line
    assert code == 2 and err == (f"fluxlenet: error: {bad}/config.json: is not a fluxlenet run config (JSON with "
                                 f"the run's settings); move the run folder {bad} away (a rerun of its sweep then "
                                 f"runs it afresh)\n")


# -- published figures ----------------------------------------------------------------------

def test_the_published_figures_and_their_semantic_notes():
    pub = published.find("lenet-99-post/optimizer", "ADAMW")
    assert pub.dataset == "mnist" and list(pub.epochs.index) == list(range(11))
    assert pub.final_value("test_acc") == 99.05 and pub.final["test_acc"] == (99.05, 10)
    assert any("identical, figure for figure, to its l2/1e-6 log" in n for n in pub.notes)
    assert published.find("lenet-99-post/batchsize", "32").final_value("test_acc") == 98.94
    assert published.find("lenet-variants-report/variants", "activation").final_value("test_acc") == 86.93
    assert published.find("cifar-lr-homework/final", "final").dataset == "cifar10"
    assert published.find("lenet-99-post/optimizer", "SGD") is None


def post_protocol_run(runs: Path, tmp_path: Path, shift: float = 0.0) -> Path:
    """A torch run of the post's protocol (full MNIST, 10 epochs) whose log is the post's l2/1e-6 log."""
    root = copy_tree(runs / "a", tmp_path / "post")
    folder = root / "optimizer" / "ADAMW-seed42" / "torch"
    edit_config(folder, dataset="mnist", train_size=None, test_size=None, epochs=10)
    doc = json.loads((folder / "config.json").read_text())
    doc.update(train_samples=60000, test_samples=10000)
    (folder / "config.json").write_text(json.dumps(doc))
    blog = published.blog_logs()
    rows = blog[(blog.sweep == "l2") & (blog.value == "1e-6")]
    with (folder / "log.csv").open("w") as f:
        f.write("epoch,train_loss,train_acc,test_loss,test_acc,valid_loss,valid_acc,seconds,lr,status\n")
        for row in rows.itertuples():
            test_acc = row.test_acc + (shift if row.epoch == 5 else 0.0)
            f.write(f"{row.epoch},{row.train_loss},{row.train_acc},{row.test_loss},{test_acc},,,"
                    f"{row.epoch_seconds if row.epoch else ''},0.0003,ok\n")
    (folder / "status.json").write_text(json.dumps({"status": "finished", "last_epoch": 10}))
    return root


def test_published_figures_apply_only_to_the_posts_protocol(cli, runs, tmp_path):
    result = compare_sweep("optimizer", runs / "a")
    assert all("dataset fashion-mnist (published: mnist)" in " ".join(m) for m in result.published_mismatch.values())
    assert not [c for c in result.checks() if c.kind == "published"]
    assert result.status == "not compared"

    # one seed: every figure is inconclusive, whatever the difference, and the output says what gives enough
    root = post_protocol_run(runs, tmp_path)
    result = compare_sweep("optimizer", root)
    check = next(c for c in result.checks() if c.run == "ADAMW")
    assert check.kind == "published" and check.status == "inconclusive" and check.max_abs("test_acc") == 0
    assert len(check.figures) == 44 and {f.verdict for f in check.figures} == {"inconclusive"}

    root = post_protocol_run(runs, tmp_path / "shifted", shift=-3.0)
    code, out, err = cli("parity", "optimizer", "--runs-dir", root)
    assert code == 0 and "FAIL" not in out and "NOT REPRODUCED" not in out
    assert "ADAMW      42     torch vs published" in out and "inconclusive: 1 seed(s), at least 3 needed" in out
    assert f"`python -m fluxlenet sweep optimizer --data-dir {DATA} --runs-dir {root} --seeds 0,1,2,3,42`" in out
    assert "reproduced when the published figure lies in mean +- t(0.995, n-1) x sd x sqrt(1+1/n)" in out


# -- user mistakes --------------------------------------------------------------------------

def test_user_mistakes_are_one_line(cli, runs, tmp_path):
    (tmp_path / "latin1.toml").write_bytes("# café\nsigmas = 3\n".encode("latin-1"))
    for args, words in [(["parity", "optimizer", "--runs-dir", tmp_path], "no runs of sweep 'optimizer'"),
                        (["parity", "nosuchsweep", "--runs-dir", runs / "a"],
                         "'nosuchsweep' is not a sweep name (built-in: baseline,"),
                        (["parity", "baseline", "--runs-dir", runs / "a"],
                         f"no runs of sweep 'baseline' in {runs / 'a' / 'baseline'}: run `python -m fluxlenet sweep "
                         f"baseline` first"),
                        (["parity", tmp_path], f"no runs in {tmp_path}: looked for {tmp_path}/config.json (a run), "),
                        (["parity", "optimizer", "--runs-dir", runs / "a", "--tolerance", "acc=1"],
                         "unknown tolerance 'acc'"),
                        (["report", "optimizer", "--runs-dir", tmp_path], "no runs of sweep"),
                        (["parity", "optimizer", "--runs-dir", runs / "a", "--policy", tmp_path / "latin1.toml"],
                         f"policy file {tmp_path / 'latin1.toml'}: not valid TOML: not UTF-8 text")]:
        code, out, err = cli(*args)
        assert code == 2 and words in err, err
        assert len(err.strip().splitlines()) == 1
    (tmp_path / "empty" / "optimizer").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no runs in "):
        compare_sweep("optimizer", tmp_path / "empty")


def test_policy_overrides_from_a_file(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text("lockstep_acc_max = 1.0\nexact_trace_steps = 50\n")
    policy = Policy().with_file(path).with_overrides("native_acc=0.5")
    assert (policy.lockstep_acc_max, policy.exact_trace_steps, policy.native_acc) == (1.0, 50, 0.5)
    assert policy.epoch_band("lockstep", "test_acc", 9, 98.0, 98.0) == 1.0
    assert policy.trace_band("float64", 51) is None
    with pytest.raises(PolicyError, match="must be a number >= 0"):
        Policy().with_overrides("sigmas=-1")
