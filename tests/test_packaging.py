"""The package's parts and their dependencies: the science imports none of the book's
tools, and pyproject.toml declares what each part imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "repsim"
BOOK_TOOLS = ("papermill", "jupytext", "nbformat", "sphinx", "docutils", "playwright", "yaml")

# Imported by repsim.book.sphinx or the chapters, and installed (with pinned versions) by
# a declared dependency of the book extra.
BROUGHT_BY = {"sphinx": "jupyter-book", "docutils": "jupyter-book", "myst_nb": "jupyter-book",
              "IPython": "ipykernel"}


def test_the_science_imports_none_of_the_books_tools():
    # A fresh interpreter: this test session has imported the book's tools already.
    code = ("import sys, repsim.cka, repsim.models, repsim.train, repsim.store, repsim.run_analyses, repsim.populations; "
            f"print([m for m in {BOOK_TOOLS!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def imported_modules(files: list[Path]) -> set[str]:
    """Top-level names of the absolute imports in ``files`` (anywhere in each file)."""
    names = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"repsim", "__future__"}


def distributions(modules: set[str]) -> set[str]:
    """The installed distributions (normalised names) providing ``modules``."""
    providers = importlib.metadata.packages_distributions()
    missing = sorted(m for m in modules if m not in providers)
    assert not missing, f"no installed distribution provides {missing}"
    return {normalise(dist) for m in modules for dist in providers[m]}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: list[str]) -> set[str]:
    return {normalise(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]) for req in requirements}


@pytest.fixture(scope="module")
def project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_core_dependencies_are_what_the_science_imports(project):
    core = [p for p in PACKAGE.rglob("*.py") if "book" not in p.relative_to(PACKAGE).parts]
    assert distributions(imported_modules(core)) == declared(project["dependencies"])


def test_book_extra_covers_what_the_book_and_chapters_import(project):
    book = imported_modules(list((PACKAGE / "book").rglob("*.py")) + list((ROOT / "book").glob("*.py")))
    used = distributions(book - set(BROUGHT_BY)) | {BROUGHT_BY[m] for m in book & set(BROUGHT_BY)}
    extra = declared(project["optional-dependencies"]["book"])
    assert used <= declared(project["dependencies"]) | extra
    # Nothing in the extra goes unused but the MathJax copy, a Sphinx extension named in _config.yml.
    assert extra - used == {"sphinx-mathjax-offline"}


def test_requirements_txt_installs_every_declared_dependency(project):
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    everything = project["dependencies"] + [req for name, reqs in project["optional-dependencies"].items()
                                            for req in reqs if not req.startswith(project["name"])]
    assert sorted(line for line in lines if line) == sorted(everything)
