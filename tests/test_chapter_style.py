"""The chapters read like the paper: short visible cells that call the package.

No chapter defines functions, classes or lambdas, or loops (the logic lives in ``repsim``,
where it is tested); a comprehension is allowed, since it builds one value in one
readable expression (``[session.get(heatmap, run) for run in row]``) instead of hiding
it behind an adapter. No code cell is longer than 12 lines, and cells a reader cannot
open hold only the install bootstrap, imports and ``glue``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.py"))
HIDDEN = ("remove-cell", "remove-input")
FORBIDDEN = (ast.For, ast.AsyncFor, ast.While, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def code_cells(path: Path) -> list[tuple[str, str]]:
    """(header line, source) of every code cell of a jupytext percent file."""
    cells, current = [], None
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            current = [line, []]
            cells.append(current)
        elif current is not None:
            current[1].append(line)
    return [(header, "\n".join(lines).strip("\n")) for header, lines in cells if "[markdown]" not in header]


def _is_glue_or_import(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        name = node.value.func
        return isinstance(name, ast.Name) and name.id in ("glue", "glue_all")
    return False


def forbidden_in(source: str) -> list[str]:
    """The node types of ``source`` that a chapter cell may not hold."""
    return [type(node).__name__ for node in ast.walk(ast.parse(source)) if isinstance(node, FORBIDDEN)]


def test_comprehensions_pass_and_loops_functions_and_lambdas_do_not():
    assert forbidden_in("maps = [session.get(heatmap, run) for run in row]\nnames = {k: v for k, v in runs.items()}") == []
    assert forbidden_in("for run in runs:\n    print(run)") == ["For"]
    assert forbidden_in("title = lambda m: m.title") == ["Lambda"]
    assert forbidden_in("def f():\n    pass") == ["FunctionDef"]


def test_there_are_chapters():
    assert len(CHAPTERS) >= 5


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_chapter_has_no_loops_functions_or_classes(path):
    for header, source in code_cells(path):
        found = forbidden_in(source)
        assert not found, f"{path.name}: {header} holds {found}:\n{source}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_code_cell_is_longer_than_12_lines(path):
    for header, source in code_cells(path):
        if "importlib.util.find_spec" in source:
            continue  # the install bootstrap, never shown
        assert len(source.splitlines()) <= 12, f"{path.name}: {header} has {len(source.splitlines())} lines:\n{source}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_hidden_cells_hold_only_the_bootstrap_imports_and_glue(path):
    for header, source in code_cells(path):
        if not any(tag in header for tag in HIDDEN) or "importlib.util.find_spec" in source:
            continue
        strays = [ast.unparse(node) for node in ast.parse(source).body if not _is_glue_or_import(node)]
        assert not strays, f"{path.name}: hidden {header} computes {strays}"
