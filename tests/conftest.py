"""Fixtures shared by the test modules."""

import pytest

from fluxlenet.cli import main


@pytest.fixture
def cli(capsys):
    """`python -m fluxlenet ARGS` in this process (parity and report need no worker): (exit code, stdout, stderr)."""
    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err
    return run
