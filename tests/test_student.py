"""Student copies: solutions and outputs are gone, everything else is kept."""

from __future__ import annotations

from pathlib import Path

import nbformat

from repsim.book.student import main, student_notebook

ROOT = Path(__file__).resolve().parents[1]

CHAPTER = '''# %% tags=["parameters"]
profile = "smoke"

# %% [markdown]
# **Exercise 1.** What is 1 + 1?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 1
# :class: dropdown
# Two.
# ````

# %% tags=["hide-input"]
print(1 + 1)
'''


def test_solutions_are_removed_and_the_rest_kept(tmp_path):
    source = tmp_path / "01_x.py"
    source.write_text(CHAPTER)
    nb = student_notebook(source)
    text = "\n".join(c.source for c in nb.cells)
    assert "Solution to exercise 1" not in text and "Two." not in text
    assert "**Exercise 1.**" in text and "print(1 + 1)" in text
    assert [c.cell_type for c in nb.cells] == ["code", "markdown", "code"]
    assert nb.cells[2].metadata["tags"] == ["hide-input"]


def test_student_copies_of_the_book_have_no_outputs_and_no_solutions(tmp_path):
    out = tmp_path / "student"
    assert main(["--root", str(ROOT), "--out", str(out)]) == 0
    copies = sorted(out.glob("*.ipynb"))
    assert {p.stem for p in copies} >= {"02_cka", "03_blocks", "04_probes", "05_across_models"}
    for path in copies:
        nb = nbformat.read(path, as_version=4)
        assert "papermill" not in nb.metadata and "repsim" not in nb.metadata
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), path.stem
        assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells), path.stem
        assert not any("Solution to exercise" in c.source for c in nb.cells), path.stem
    # the book's chapters do have exercises with solutions to strip
    published = (ROOT / "book" / "02_cka.py").read_text()
    assert published.count('tags=["solution"]') >= 2
