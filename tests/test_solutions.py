"""Every folded solution of a chapter's exercises runs in the chapter as a reader has it:
each name its code reads is a builtin, is defined by the chapter's code cells above the
solution, or is imported or assigned in the solution itself."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("0*_*.py"))

# A fenced Python block in a solution: ```python or ```{code-block} python (and ipython).
FENCE = re.compile(r"^(`{3,}|~{3,})\s*(?:\{code-block\}\s*|\{code-cell\}\s*)?i?python3?\s*$(.*?)^\1\s*$",
                   re.MULTILINE | re.DOTALL)
# IPython's own names: what a notebook defines without an import.
NOTEBOOK_NAMES = {"display", "get_ipython", "In", "Out", "_", "__", "___"}


def defined_names(tree: ast.AST) -> set[str]:
    """Every name ``tree`` binds anywhere: assignments, loop and ``with`` targets,
    comprehension variables, imports, function and class names and their arguments,
    ``except ... as`` names, ``global`` and walrus targets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    raise AssertionError("a star import hides which names are defined")
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Global):
            names.update(node.names)
    return names


def loaded_names(tree: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def _parse(source: str, where: str) -> ast.Module:
    # Jupytext keeps magics commented out; any left ("%time x", "!ls") are not Python.
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError as err:
        raise AssertionError(f"{where} is not valid Python: {err}") from err


def solutions(chapter: Path) -> list[tuple[str, str, set[str]]]:
    """(title, code, names defined by the code cells above it) of each fenced Python
    block in a solution cell of ``chapter``."""
    notebook = jupytext.read(chapter)
    defined: set[str] = set()
    found = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            defined |= defined_names(_parse(cell.source, f"{chapter.name} cell {index}"))
        elif cell.cell_type == "markdown" and "solution" in cell.metadata.get("tags", []):
            title = cell.source.splitlines()[0].strip("`~ ").removeprefix("{admonition}").strip()
            for match in FENCE.finditer(cell.source):
                found.append((title, match.group(2), set(defined)))
    return found


CASES = [(chapter.stem, title, code, defined) for chapter in CHAPTERS for title, code, defined in solutions(chapter)]


def test_the_chapters_have_solutions_with_code():
    assert len(CHAPTERS) >= 6
    assert len(CASES) >= 2, "no fenced Python block found in any solution: has the exercise format changed?"


def test_the_name_check_catches_an_undefined_name_and_accepts_local_ones():
    code = "import numpy as np\nfrom a.b import c\nx = [i * np.pi for i in range(3)]\nprint(c(x), y, len(z))\n"
    tree = ast.parse(code)
    assert loaded_names(tree) - defined_names(tree) - set(dir(builtins)) == {"y", "z"}


@pytest.mark.parametrize(("stem", "title", "code", "defined"), CASES, ids=[f"{case[0]}: {case[1]}" for case in CASES])
def test_a_solution_uses_only_names_the_chapter_defines_above_it(stem, title, code, defined):
    tree = _parse(code, f"{stem}: {title}")
    undefined = loaded_names(tree) - defined - defined_names(tree) - set(dir(builtins)) - NOTEBOOK_NAMES
    assert not undefined, f"{stem}, {title}: the solution reads {sorted(undefined)}, which no code cell above it defines"
