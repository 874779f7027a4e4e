"""Student copies of the chapters: no outputs, no solutions.

    python -m repsim.book.student [--out _build/student] [--chapters 02_cka ...]

Each chapter's jupytext source ``book/<stem>.py`` becomes ``<out>/<stem>.ipynb``
without the cells tagged ``solution`` (the folded solutions to the exercises), with no
outputs or execution counts, and without the runner's execution metadata. The rest,
including the setup cells the book hides, stays: a student runs the notebook as is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

from repsim.book.toc import toc_chapters

SOLUTION_TAG = "solution"


def student_notebook(source: Path) -> nbformat.NotebookNode:
    """The chapter at ``source`` (a jupytext .py or an .ipynb), stripped for students."""
    nb = jupytext.read(source)
    nb.cells = [cell for cell in nb.cells if SOLUTION_TAG not in cell.metadata.get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        tags = [t for t in cell.metadata.get("tags", []) if t != "injected-parameters"]
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    for key in ("papermill", "repsim", "jupytext"):  # a plain notebook, no pairing
        nb.metadata.pop(key, None)
    return nb


def write_student_copies(root: Path, out: Path, chapters: list[str]) -> list[Path]:
    """Write ``<out>/<stem>.ipynb`` for each chapter; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in chapters:
        nb = student_notebook(root / "book" / f"{stem}.py")
        path = out / f"{stem}.ipynb"
        nbformat.write(nb, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m repsim.book.student", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path.cwd(),
                   help="folder holding _toc.yml and book/")
    p.add_argument("--out", type=Path, default=None, help="default: <root>/_build/student")
    p.add_argument("--chapters", nargs="+", metavar="STEM", help="default: all in _toc.yml")
    args = p.parse_args(argv)
    root = args.root.resolve()
    available = toc_chapters(root)
    chapters = args.chapters or available
    unknown = [c for c in chapters if c not in available]
    if unknown:
        print(f"error: unknown chapter(s) {', '.join(unknown)}; valid: {', '.join(available)}",
              file=sys.stderr)
        return 2
    for path in write_student_copies(root, args.out or root / "_build" / "student", chapters):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
