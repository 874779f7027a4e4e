"""The book runner's argument checks, without executing a chapter."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from repsim.book import provenance
from repsim.book.runner import main
from repsim.book.toc import toc_chapters
from repsim.files import config_key

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def book_root(tmp_path: Path) -> Path:
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("*.ipynb"))
    return tmp_path


def test_chapters_come_from_the_toc(book_root):
    assert toc_chapters(book_root)[0] == "02_cka"


def test_misspelled_profile_is_refused(book_root, capsys):
    assert main(["--root", str(book_root), "--profile", "lapto", "--no-build"]) == 2
    assert "did you mean 'laptop'" in capsys.readouterr().err


def test_unknown_chapter_is_refused(book_root, capsys):
    assert main(["--root", str(book_root), "--chapters", "99_nope", "--no-build"]) == 2
    assert "unknown chapter(s) 99_nope" in capsys.readouterr().err


def test_misspelled_parameter_is_refused_before_execution(book_root, capsys):
    code = main(["--root", str(book_root), "--profile", "smoke", "--no-build", "--param", "sed=3"])
    assert code == 1
    assert "has no parameter(s) sed" in capsys.readouterr().err
    assert not (book_root / "book" / "02_cka.ipynb").exists()  # nothing was published


def tiny_book(root: Path, cells: str, parameters: str = "") -> Path:
    """A one-chapter book whose chapter 01_tiny runs ``cells`` after its parameters
    (``profile`` and ``parameters``)."""
    (root / "book").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/01_tiny\n")
    (root / "_config.yml").write_text("title: tiny\n")
    header = ("# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n"
              "#     language: python\n#     name: python3\n# ---\n\n")
    (root / "book" / "01_tiny.py").write_text(
        header + '# %% tags=["parameters"]\nprofile = "smoke"\n' + parameters + '\n# %%\nx = 1\n\n' + cells)
    return root


def test_failing_chapter_is_reported_and_not_published(tmp_path, capsys):
    root = tiny_book(tmp_path, "# %%\ny = x + 1\nraise ValueError('chapter broke here')\n")
    published = root / "book" / "01_tiny.ipynb"
    published.write_text("last good notebook")  # must survive the failed run

    code = main(["--root", str(root), "--profile", "smoke", "--no-build", "--kernel", "python3"])

    err = capsys.readouterr().err
    assert code == 1
    assert "Chapter 01_tiny failed." in err
    # the failing cell: its index, its source and the traceback
    assert "ValueError: chapter broke here" in err
    assert "raise ValueError('chapter broke here')" in err
    assert "Traceback" in err
    assert published.read_text() == "last good notebook"
    partial = root / "_build" / "failed" / "01_tiny.ipynb"
    assert f"Partial notebook: {partial}" in err
    nb = nbformat.read(partial, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "ValueError"
    assert not list((root / "_build" / "executed").glob("01_tiny*.ipynb"))  # nothing half-published


def test_successful_chapter_records_provenance_and_respects_a_better_run(tmp_path, capsys):
    root = tiny_book(tmp_path, "# %%\nprint(x + 1)\n")
    published = root / "book" / "01_tiny.ipynb"

    assert main(["--root", str(root), "--profile", "smoke", "--no-build"]) == 0
    nb = nbformat.read(published, as_version=4)
    meta = nb.metadata["repsim"]
    assert meta["profile"] == "smoke" and meta["device"] == "cpu"
    assert meta["source_hash"] == provenance.source_hash(root / "book" / "01_tiny.py")
    assert nb.metadata["papermill"]["parameters"] == {"profile": "smoke"}
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "remove-cell" in injected[0].metadata["tags"]

    # Pretend the published run was a laptop run: a smoke run must not replace it.
    nb.metadata["repsim"]["profile"] = "laptop"
    nbformat.write(nb, published)
    assert main(["--root", str(root), "--profile", "smoke", "--no-build"]) == 0
    assert nbformat.read(published, as_version=4).metadata["repsim"]["profile"] == "laptop"
    assert (root / "_build" / "executed" / "01_tiny.smoke.ipynb").exists()
    assert "comes from a better run" in capsys.readouterr().err
    # --force publishes it anyway
    assert main(["--root", str(root), "--profile", "smoke", "--no-build", "--force"]) == 0
    assert nbformat.read(published, as_version=4).metadata["repsim"]["profile"] == "smoke"


def test_a_chapter_shows_progress_and_counts_its_results_without_the_transport_warning(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this repsim
    store = tmp_path / "store"
    root = tiny_book(tmp_path / "root", (
        "# %%\nimport torch\nfrom repsim import progress\nfrom repsim.store import Store\n"
        f"store = Store({str(store)!r})\nprogress.report('half way')\n"
        "store.load_or_train({'analysis': 'a sum', 'seed': 0}, lambda: ({'x': torch.ones(1)}, {}))\n"
        "store.load_or_train({'seed': 0}, lambda: ({'x': torch.ones(1)}, {}))\n"
        "store.load_or_train({'analysis': 'a sum', 'seed': 0}, lambda: ({'x': torch.ones(1)}, {}))\n"))

    assert main(["--root", str(root), "--profile", "smoke", "--no-build"]) == 0

    out, err = capfd.readouterr()
    assert "without encryption" not in out + err  # the kernel runs over IPC, not TCP
    assert "Executing 1 chapter(s) with the smoke profile on cpu" in out
    progress = [line for line in out.splitlines() if line.startswith("[01_tiny ")]
    assert [line.split("] ", 1)[1] for line in progress] == [
        "half way", "computing a sum of store entry " + config_key({"analysis": "a sum", "seed": 0}),
        "training store entry " + config_key({"seed": 0})]
    assert "01_tiny:" in err  # papermill's progress bar carries the chapter's name
    summary = next(line for line in out.splitlines() if line.startswith("01_tiny "))
    assert summary.split()[2:] == ["1", "0", "1", "0", "0", "0", "book/01_tiny.ipynb"]
    results = nbformat.read(root / "book" / "01_tiny.ipynb", as_version=4).metadata["repsim"]["results"]
    assert results["computed"] == 2 and results["models"]["computed"] == 1
    assert results["store"] == results["results"] == results["pending"] == 0
    assert "REPSIM_ACCESS_LOG" not in os.environ and "REPSIM_PROGRESS" not in os.environ  # restored


def test_a_run_with_pending_results_does_not_replace_a_laptop_notebook(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    root = tiny_book(tmp_path, (
        "# %%\nfrom repsim.store import PendingResult, Store\n"
        f"try:\n    Store({str(tmp_path / 'store')!r}, compute=False).load_or_train({{'analysis': 'a sum'}}, None)\n"
        "except PendingResult as missing:\n    print(missing)\n"), parameters='device = None\n')
    published = root / "book" / "01_tiny.ipynb"
    laptop = nbformat.v4.new_notebook(metadata={"papermill": {"parameters": {"profile": "laptop"}},
                                                "repsim": {"profile": "laptop", "device": "cpu"}})
    nbformat.write(laptop, published)

    assert main(["--root", str(root), "--profile", "paper", "--param", "device=cpu", "--no-build"]) == 0

    assert nbformat.read(published, as_version=4).metadata["repsim"]["profile"] == "laptop"
    kept = root / "_build" / "executed" / "01_tiny.paper.ipynb"
    assert nbformat.read(kept, as_version=4).metadata["repsim"]["results"]["pending"] == 1
    out, err = capsys.readouterr()
    assert f"01_tiny: this paper run left 1 result(s) pending, and the published notebook comes from a complete run; " \
           f"kept it, and this run in {kept}" in err
    assert "not published: _build/executed/01_tiny.paper.ipynb (1 result(s) pending)" in out


def test_a_profile_whose_device_is_missing_is_refused_with_a_way_out(book_root, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has the paper profile's GPU")
    assert main(["--root", str(book_root), "--profile", "paper", "--no-build"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU is available" in err and "--param device=cpu" in err


def test_a_partly_harvested_paper_chapter_gets_a_page_in_a_part_of_its_own(tmp_path):
    from repsim.book.toc import PAPER_PART, add_to_part, toc_chapters

    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "02_cka.py").write_text("")
    (tmp_path / "_toc.yml").write_text("# the toc\nformat: jb-book\nroot: book/intro\nchapters:\n  - file: book/02_cka\n")
    assert add_to_part(tmp_path, PAPER_PART, "book/paper/02_cka")
    assert not add_to_part(tmp_path, PAPER_PART, "book/paper/02_cka")  # listed once
    toc = yaml.safe_load((tmp_path / "_toc.yml").read_text())
    assert toc["parts"] == [{"chapters": [{"file": "book/02_cka"}]},
                            {"caption": PAPER_PART, "chapters": [{"file": "book/paper/02_cka"}]}]
    assert (tmp_path / "_toc.yml").read_text().startswith("# the toc\n")
    assert toc_chapters(tmp_path) == ["02_cka"]  # the paper page is never executed as a chapter
