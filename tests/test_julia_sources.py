"""Every Julia file in the repository parses (tree-sitter-julia): no ERROR and no MISSING nodes.

No Julia is needed; this catches syntax slips in julia/ on machines without Julia. It is a
parse, not a compile: names, types and methods are checked by julia/test/runtests.jl.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ts = pytest.importorskip("tree_sitter", reason="tree-sitter is a test dependency (pip install -e .[test])")
tsj = pytest.importorskip("tree_sitter_julia", reason="tree-sitter-julia is a test dependency")

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "runs", "build", "dist", ".pytest_cache"}


def julia_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.jl")
                  if not any(part in SKIP_DIRS or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts))


def parse_problems(source: bytes) -> list[str]:
    """'line:col ERROR|MISSING <type>' for every bad node of the parse tree."""
    parser = ts.Parser(ts.Language(tsj.language()))
    tree = parser.parse(source)
    problems = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_error or node.is_missing:
            kind = "MISSING" if node.is_missing else "ERROR"
            row, col = node.start_point
            problems.append(f"{row + 1}:{col + 1} {kind} {node.type}")
        stack.extend(node.children)
    if tree.root_node.has_error and not problems:
        problems.append("the tree has an error")
    return sorted(problems)


def test_the_package_files_are_there():
    names = {p.relative_to(ROOT).as_posix() for p in julia_files()}
    assert {"julia/src/FluxLeNet.jl", "julia/test/runtests.jl"} <= names


@pytest.mark.parametrize("path", julia_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_julia_file_parses(path):
    problems = parse_problems(path.read_bytes())
    assert not problems, f"{path.relative_to(ROOT)}: " + ", ".join(problems[:10])


@pytest.mark.parametrize("snippet", [
    b"function f(x)\n    x +\nend\n",                      # an operator with nothing after it
    b"module M\nstruct S\n    a::Int\n",                   # unclosed struct and module
    b"x = [1, 2\ny = 3\n",                                 # unclosed bracket
    b"for i in 1:3\n    println(i)\n",                     # unclosed for
])
def test_a_broken_file_fails(snippet):
    assert parse_problems(snippet), "the check must be able to fail"


def test_a_good_snippet_passes():
    assert parse_problems(b"module M\nusing Flux\nf(x; a = 1) = @. x * a + 1\nend\n") == []
