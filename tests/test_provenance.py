"""Provenance: stale detection, the publishing order of runs, and the committed book."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from repsim.book import provenance
from repsim.book.toc import toc_chapters

ROOT = Path(__file__).resolve().parents[1]

SOURCE = '''# %% tags=["parameters"]
profile = "laptop"

# %% [markdown]
# Some prose.

# %%
x = 1
'''


@pytest.fixture
def chapter(tmp_path: Path) -> tuple[Path, Path]:
    """A chapter source and a notebook 'executed' from it by papermill."""
    source = tmp_path / "01_x.py"
    source.write_text(SOURCE)
    nb = jupytext.read(source)
    nb.metadata["papermill"] = {"parameters": {"profile": "laptop"}, "duration": 12.5,
                                "start_time": "2026-01-02T03:04:05+00:00",
                                "end_time": "2026-01-02T03:04:17+00:00"}
    notebook = tmp_path / "01_x.ipynb"
    nbformat.write(nb, notebook)
    return source, notebook


def test_fresh_notebook_is_current_and_its_unrecorded_fields_say_so(chapter):
    source, notebook = chapter
    record = provenance.chapter_provenance(notebook, source)
    assert record["stale"] is False
    assert record["profile"] == "laptop" and record["seconds"] == 12.5
    assert record["started"].hour == 3 and record["finished"].second == 17
    assert record["recorded"] is False
    assert record["device"] == record["commit"] == provenance.UNKNOWN


def test_changed_code_makes_a_chapter_stale_but_prose_and_tags_do_not(chapter):
    source, notebook = chapter
    source.write_text(SOURCE.replace("# Some prose.", "# Other prose.").replace("# %%\nx", '# %% tags=["hide-input"]\nx'))
    assert provenance.chapter_provenance(notebook, source)["stale"] is False
    source.write_text(SOURCE.replace("x = 1", "x = 2"))
    assert provenance.chapter_provenance(notebook, source)["stale"] is True


def test_recorded_hash_wins_over_the_notebooks_cells(chapter):
    # jupytext --sync can copy new code into an executed notebook; the outputs are still
    # from the code that ran, which metadata.repsim recorded.
    source, notebook = chapter
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata["repsim"] = {"profile": "laptop", "device": "cpu", "source_hash": "0" * 64}
    nbformat.write(nb, notebook)
    record = provenance.chapter_provenance(notebook, source)
    assert record["stale"] is True and record["recorded"] is True and record["device"] == "cpu"


def results(computed=0, store=0, committed=0, pending=0) -> dict:
    return {"computed": computed, "store": store, "results": committed, "pending": pending}


def test_runs_are_ranked_paper_on_gpu_then_laptop_then_smoke():
    rank = provenance.run_rank
    assert rank("paper", "cuda") > rank("laptop", "cpu") > rank("smoke", "cpu")
    assert rank("paper", "cpu") == rank("laptop", "cpu")  # a paper run without a GPU is no better


def test_a_paper_run_on_a_cpu_from_committed_results_ranks_as_one_on_a_gpu():
    rank = provenance.run_rank
    assert rank("paper", "cpu", results(committed=40, store=3)) == rank("paper", "cuda", results(computed=43))
    # It computed part of its results on the CPU: laptop, as before.
    assert rank("paper", "cpu", results(committed=40, computed=1)) == rank("laptop", "cpu")


def test_a_run_with_pending_results_ranks_below_laptop_and_above_smoke():
    rank = provenance.run_rank
    incomplete = rank("paper", "cpu", results(committed=38, pending=2))
    assert rank("laptop", "cpu", results(computed=12)) > incomplete > rank("smoke", "cpu", results(computed=3))
    assert rank("paper", "cuda", results(pending=1)) == incomplete


def test_the_box_says_where_results_were_computed_and_what_is_pending(chapter):
    from repsim.book.sphinx import provenance_box

    source, notebook = chapter
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata["repsim"] = {"profile": "paper", "device": "cpu", "cpu": "AMD EPYC",
                             "source_hash": provenance.source_hash(source), "recorded_by": "repsim.book",
                             "results": {**results(computed=1, store=2, committed=12, pending=3),
                                         "devices": {"results": ["NVIDIA H200"], "store": ["AMD EPYC"],
                                                     "computed": ["AMD EPYC"]}}}
    nbformat.write(nb, notebook)
    box = provenance_box(provenance.chapter_provenance(notebook, source), "01_x.py", link_stats=False)
    text = box.astext()
    assert "Outputs from the paper profile on cpu (AMD EPYC)" in text and "(3 results pending)" in text
    assert ("12 computed on NVIDIA H200 (committed), 2 read from the model store (computed on AMD EPYC by an "
            "earlier run), 1 computed here on AMD EPYC, 3 pending: not computed yet") in text
    assert "warning" in box["classes"]

    nb.metadata["repsim"]["results"] = {**results(committed=12), "devices": {"results": ["NVIDIA H200"]}}
    nbformat.write(nb, notebook)
    box = provenance_box(provenance.chapter_provenance(notebook, source), "01_x.py", link_stats=False)
    text = box.astext()
    assert "pending" not in text and "Results\n\n12 computed on NVIDIA H200 (committed)\n" in text, text
    assert "warning" not in box["classes"]


def test_backfill_marks_what_was_not_recorded(chapter):
    source, notebook = chapter
    meta = provenance.backfill_metadata(source.parent, notebook)
    assert meta["profile"] == "laptop"
    assert meta["device"] == meta["gpu"] == meta["commit"] == provenance.UNKNOWN
    assert meta["source_hash"] == provenance.source_hash(source)


@pytest.mark.parametrize("stem", toc_chapters(ROOT))
def test_published_chapter_is_not_a_smoke_run(stem):
    record = provenance.chapter_provenance(ROOT / "book" / f"{stem}.ipynb", ROOT / "book" / f"{stem}.py")
    assert record is not None, f"book/{stem}.ipynb was not executed by papermill"
    assert record["profile"] in ("laptop", "paper"), f"book/{stem}.ipynb comes from a {record['profile']} run"


def test_install_cells_name_the_configured_repository():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for stem in toc_chapters(ROOT):
        text = (ROOT / "book" / f"{stem}.py").read_text()
        named = re.findall(r"git\+(https://[^\"@]+)", text)
        if named:  # chapters being rewritten may not have the cell yet
            assert named == [url], f"{stem} installs from {named}, _config.yml says {url}"
    assert re.findall(r"git\+(https://[^\"@]+)", (ROOT / "book" / "02_cka.py").read_text()) == [url]
