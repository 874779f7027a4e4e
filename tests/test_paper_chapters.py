"""Every chapter executes with the paper profile on a CPU from whatever is harvested:
nothing at all (everything pending, and the pages say so), or the committed results of
the windows so far (what is there, the rest pending). Never an error."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

from repsim.book.toc import toc_chapters

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = toc_chapters(ROOT)


def _execute(stem: str, tmp_path, monkeypatch, results: str | None) -> tuple[str, list[dict]]:
    """Execute ``stem`` as the runner would (papermill, the chapter's folder), with the
    paper profile on the CPU and ``REPSIM_RESULTS`` = ``results`` (None: the committed
    ones); returns the outputs as text and the store's access log."""
    log = tmp_path / f"{stem}.access.log"
    monkeypatch.setenv("REPSIM_HOME", str(tmp_path / "home"))  # no model store: results only
    monkeypatch.setenv("REPSIM_ACCESS_LOG", str(log))
    if results is not None:
        monkeypatch.setenv("REPSIM_RESULTS", results)
    else:
        monkeypatch.delenv("REPSIM_RESULTS", raising=False)
    source = tmp_path / f"{stem}.ipynb"
    jupytext.write(jupytext.read(ROOT / "book" / f"{stem}.py"), source)
    papermill.execute_notebook(source, tmp_path / f"{stem}.out.ipynb", cwd=ROOT / "book", progress_bar=False,
                               parameters={"profile": "paper", "device": "cpu"})
    text = json.dumps(nbformat.read(tmp_path / f"{stem}.out.ipynb", as_version=4)["cells"])
    lookups = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return text, lookups


@pytest.mark.slow
@pytest.mark.parametrize("stem", CHAPTERS)
def test_a_paper_chapter_executes_from_nothing_harvested(stem, tmp_path, monkeypatch, cifar_source):
    monkeypatch.setenv("REPSIM_DATA", str(cifar_source))
    empty = tmp_path / "no-results"
    empty.mkdir()
    text, lookups = _execute(stem, tmp_path, monkeypatch, str(empty))
    sources = {entry["source"] for entry in lookups}
    assert sources == {"pending"}, sources  # nothing computed on the CPU, nothing found
    assert "pending" in text


@pytest.mark.slow
@pytest.mark.parametrize("stem", CHAPTERS)
def test_a_paper_chapter_executes_from_the_committed_harvest(stem, tmp_path, monkeypatch, cifar_source):
    monkeypatch.setenv("REPSIM_DATA", str(cifar_source))
    if not (ROOT / "results" / "paper" / "manifest.json").exists():
        pytest.skip("no paper-scale results committed yet")
    text, lookups = _execute(stem, tmp_path, monkeypatch, None)
    sources = {entry["source"] for entry in lookups}
    assert sources <= {"results", "pending"}, sources  # a paper-scale result is never computed on a CPU
    if stem == "02_cka":  # harvested whole in the first window: nothing pending
        assert sources == {"results"}
