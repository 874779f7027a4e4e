"""A partly harvested chapter's page: its own labels beside the chapter's, and a title
that says what it is."""

from __future__ import annotations

import nbformat

from repsim.book.paper_page import PREFIX, TITLE_SUFFIX, paper_page


def test_a_paper_page_renames_its_own_labels_and_the_references_to_them():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Depth and width\n\n(origins)=\n## Origins"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("```{glue:figure} fig_1\n:name: paper-fig-1\n\nCaption.\n```\n"
                                      "See {numref}`paper-fig-1`, {numref}`Figure %s <paper-fig-1>`, "
                                      "{ref}`origins` and {numref}`fig-cka-heatmap` of chapter 2."),
    ])
    page = paper_page(nb)
    first, _, last = (cell.source for cell in page.cells)
    assert first.startswith(f"# Depth and width{TITLE_SUFFIX}\n") and f"({PREFIX}origins)=" in first
    assert f":name: {PREFIX}paper-fig-1" in last
    assert f"{{numref}}`{PREFIX}paper-fig-1`" in last and f"{{numref}}`Figure %s <{PREFIX}paper-fig-1>`" in last
    assert f"{{ref}}`{PREFIX}origins`" in last
    assert "{numref}`fig-cka-heatmap`" in last  # another chapter's label: left alone
    assert page.cells[1].source == "x = 1"
