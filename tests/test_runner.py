"""The book runner's argument checks, without executing a chapter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from repsim.book import main, toc_chapters

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
