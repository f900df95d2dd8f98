"""fluxlenet may import parity; parity imports nothing of fluxlenet (read from the source, not by importing)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fluxlenet", "parity")


def imported_packages(path: Path, package: str) -> dict[str, int]:
    """Which of PACKAGES the module at `path`, of `package`, imports (any import statement, at any depth,
    and importlib.import_module / __import__ of a literal name), each with the line of its first import."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package if node.level else node.module or ""]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__"):
            names = [node.args[0].value]
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                found.setdefault(top, node.lineno)
    return found


def edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> 'path:line' of each module that makes that import."""
    out: dict[tuple[str, str], list[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for other, line in imported_packages(path, package).items():
                if other != package:
                    out.setdefault((package, other), []).append(f"{path.relative_to(REPO)}:{line}")
    return out


def test_the_reader_sees_imports():
    found = edges()
    assert ("fluxlenet", "parity") in found  # the report, the reproduction and the CLI use parity
    assert any(p.startswith("fluxlenet/runs.py:") for p in found[("fluxlenet", "parity")])


def test_no_import_cycle_between_fluxlenet_and_parity():
    found = edges()
    both = ("fluxlenet", "parity") in found and ("parity", "fluxlenet") in found
    assert not both, ("fluxlenet and parity import each other; parity must not import fluxlenet (hand it what it "
                      "needs instead): " + ", ".join(found[("parity", "fluxlenet")]))
    assert ("parity", "fluxlenet") not in found, ", ".join(found[("parity", "fluxlenet")])


@pytest.mark.parametrize("source, expected", [
    ("from fluxlenet.config import ConfigError", {"fluxlenet"}),
    ("import fluxlenet.sweeps as s", {"fluxlenet"}),
    ("def f():\n    from fluxlenet import julia_env", {"fluxlenet"}),
    ("import importlib\nimportlib.import_module('fluxlenet.runs')", {"fluxlenet"}),
    ("from . import compare\nimport numpy", {"parity"}),
])
def test_the_reader_finds_each_form_of_import(tmp_path, source, expected):
    module = tmp_path / "m.py"
    module.write_text(source, encoding="utf-8")
    assert set(imported_packages(module, "parity")) == expected


def imported_modules(path: Path) -> set[str]:
    """The fluxlenet modules that the module at `path` imports (relative or absolute, at any depth)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = (node.module or "") if not node.level else ("fluxlenet." + (node.module or "")).rstrip(".")
            if base.startswith("fluxlenet"):
                found.update([base] if base != "fluxlenet" else [f"fluxlenet.{a.name}" for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fluxlenet"))
    return found


def test_the_cli_hands_runs_to_the_plan_and_the_executors_only_run_them():
    cli = imported_modules(REPO / "fluxlenet" / "cli.py")
    assert "fluxlenet.plan" in cli
    assert not cli & {"fluxlenet.runner", "fluxlenet.worker"}, sorted(cli)  # (ray-node reads ray_executor's names)
    assert "run_tasks" not in (REPO / "fluxlenet" / "cli.py").read_text(encoding="utf-8")
    for executor in ("runner.py", "ray_executor.py"):
        assert "fluxlenet.plan" not in imported_modules(REPO / "fluxlenet" / executor), executor
    plan = imported_modules(REPO / "fluxlenet" / "plan.py")
    assert {"fluxlenet.runner", "fluxlenet.ray_executor"} <= plan  # one plan, both executors
