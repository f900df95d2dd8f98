"""`--backend auto` sets Julia up on first use where the network is reachable (issue 22, item 7).

Where Julia is not set up: offline, PyTorch runs alone with the usual note; with a network, the inputs
are checked first, then the set-up runs once; one that fails is recorded, PyTorch runs alone, and the
next commands do not try again (`setup-julia` does). The set-up itself downloads Julia (about 1 GB) and
cannot run here: where these tests make the network reachable, `setup_julia` is replaced by one that
fails as an unreachable download would, and everything around it is real (the CLI, the run, the record).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxlenet import julia_env
from fluxlenet.cli import main

FASHION = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-mnist"
TRAIN = ["train", "--dataset", "fashion-mnist", "--train-size", "200", "--test-size", "100", "--epochs", "1"]
pytestmark = [pytest.mark.skipif(not FASHION.is_dir(), reason=f"real data not found at {FASHION}"),
              pytest.mark.skipif(julia_env.julia_status()[0], reason="Julia is set up here: auto runs both")]


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """A cache folder with no record of an earlier set-up."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fluxlenet" / "julia-setup-failed.json"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_offline_auto_runs_pytorch_alone_and_tries_no_set_up(tmp_path, fresh_home, capsys, monkeypatch):
    monkeypatch.setattr(julia_env, "network_reachable", lambda **kw: (False, "no route"))
    monkeypatch.setattr(julia_env, "setup_julia", lambda **kw: pytest.fail("no set-up offline"))
    code, out, err = run(capsys, *TRAIN, "--data-dir", FASHION, "--savepath", tmp_path / "t")
    assert code == 0, out + err
    assert "NOTE: Flux was not run: " in out and "running PyTorch alone" in out and "setting it up now" not in out
    assert (tmp_path / "t" / "t-seed0" / "torch" / "log.csv").is_file() and not fresh_home.exists()


def test_a_failed_set_up_is_said_recorded_and_not_tried_again(tmp_path, fresh_home, capsys, monkeypatch):
    calls = []

    def unreachable_download(echo=print, **kw):
        calls.append(1)
        echo("Setting up Julia for the Flux backend.")
        raise julia_env.JuliaSetupError("the Julia set-up failed (exit code 1); the messages above say why")

    monkeypatch.setattr(julia_env, "network_reachable", lambda **kw: (True, "pkg.julialang.org"))
    monkeypatch.setattr(julia_env, "setup_julia", unreachable_download)
    # a mistake in the inputs is said before any set-up (minutes of downloads for nothing)
    code, out, err = run(capsys, *TRAIN, "--data-dir", tmp_path / "nodata", "--savepath", tmp_path / "bad")
    assert code == 2 and calls == [] and "setting it up now" not in out, out + err

    code, out, err = run(capsys, *TRAIN, "--data-dir", FASHION, "--savepath", tmp_path / "t")
    assert code == 0 and calls == [1], out + err
    lines = out.splitlines()
    notice = next(i for i, line in enumerate(lines) if "setting it up now, once (about 1 GB" in line)
    assert lines[notice + 1] == "Setting up Julia for the Flux backend."  # the set-up's own progress follows
    assert ("NOTE: the automatic Julia set-up failed (the Julia set-up failed (exit code 1); the messages above "
            "say why); `python -m fluxlenet setup-julia` tries again") in out
    assert "NOTE: Flux was not run: " in out and (tmp_path / "t" / "t-seed0" / "torch" / "log.csv").is_file()
    assert json.loads(fresh_home.read_text())["error"].startswith("the Julia set-up failed (exit code 1)")

    # the next command does not try again, and says why Flux did not run
    code, out, err = run(capsys, *TRAIN, "--data-dir", FASHION, "--savepath", tmp_path / "t2")
    assert code == 0 and calls == [1], out + err
    assert "NOTE: the automatic Julia set-up of " in out and "failed (the Julia set-up failed" in out
    # --backend torch never probes nor sets up
    monkeypatch.setattr(julia_env, "network_reachable", lambda **kw: pytest.fail("no probe for --backend torch"))
    julia_env.clear_setup_failure()
    code, out, err = run(capsys, *TRAIN, "--backend", "torch", "--data-dir", FASHION, "--savepath", tmp_path / "t3")
    assert code == 0 and calls == [1] and "NOTE" not in out, out + err
