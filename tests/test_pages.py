"""No page shows an object's repr (``<Figure size 640x480 with 1 Axes>``,
``<IPython.core.display.Markdown object>``, ``... object at 0x7f...``) in place of what
the object is: checked here on the committed executed notebooks, whose outputs and glued
values are what Jupyter Book renders (``test_book`` checks the built HTML itself)."""

from __future__ import annotations

import base64
import re
import struct
from pathlib import Path

import nbformat
import pytest

from repsim.legibility import PAGE_WIDTH_INCHES, TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb")) + sorted((ROOT / "book" / "paper").glob("*.ipynb"))
GLUE_PREFIX = "application/papermill.record/"
# The representations Jupyter Book renders in preference to text/plain.
RICH = ("image/", "text/html", "text/markdown", "text/latex")
# {glue:text}`key`, {glue:md}`key:format`, {glue}`key`: the role's kind and the key.
GLUE_ROLE = re.compile(r"\{glue(?::(\w*))?\}`([^`:]+)(?::[^`]*)?`")
# ```{glue:figure} key (or :::{glue:} key): the directive's kind and the key.
GLUE_DIRECTIVE = re.compile(r"^\s*(?:`{3,}|:{3,})\{glue(?::(\w*))?\}\s+(\S+)", re.MULTILINE)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _rich(data: dict, prefix: str = "") -> bool:
    """Whether ``data`` holds a representation rendered in preference to text/plain. An
    empty one is not rendered: ``display(Markdown(""))`` shows its text/plain repr."""
    return any(mime.startswith(prefix + kind) and _text(value).strip() for mime, value in data.items() for kind in RICH)


def test_the_repr_pattern_finds_reprs_and_nothing_else(object_reprs):
    assert object_reprs("<Figure size 640x480 with 1 Axes>") == ["<Figure size 640x480 with 1 Axes>"]
    assert object_reprs("x <IPython.core.display.Markdown object> y") == ["<IPython.core.display.Markdown object>"]
    assert object_reprs("<repsim.heatmaps.Heatmap object at 0x7f3a2b1c>") == ["<repsim.heatmaps.Heatmap object at 0x7f3a2b1c>"]
    assert object_reprs("&lt;Figure size 400x120 with 1 Axes&gt;")  # as it appears in HTML
    assert object_reprs("A figure of size 640x480, 0.95 CKA, 'ResNet-14 (1x)', <figure class=\"align\">") == []


def test_an_empty_rich_representation_does_not_hide_the_repr():
    assert _rich({"text/markdown": "- a finding", "text/plain": "<IPython.core.display.Markdown object>"})
    assert not _rich({"text/markdown": [], "text/plain": "<IPython.core.display.Markdown object>"})
    assert not _rich({"text/plain": "<Figure size 640x480 with 1 Axes>"})
    assert _rich({GLUE_PREFIX + "image/png": "iVBOR..."}, GLUE_PREFIX) and not _rich({"image/png": "iVBOR..."}, GLUE_PREFIX)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "book")))
def test_no_output_of_an_executed_chapter_renders_as_a_repr(path, object_reprs):
    notebook = nbformat.read(path, as_version=4)
    # How each glued value is shown: by kind of role or directive ("text", "md", "figure", "" = best available).
    prose = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    shown_as: dict[str, set[str]] = {}
    for pattern in (GLUE_ROLE, GLUE_DIRECTIVE):
        for kind, key in pattern.findall(prose):
            shown_as.setdefault(key, set()).add(kind or "any")
    problems = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            where = f"{path.name} cell {index}"
            if output.get("output_type") == "stream":
                problems += [f"{where} prints {found}" for found in object_reprs(_text(output.get("text", "")))]
                continue
            data = output.get("data", {})
            glued = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if glued is not None:  # a glued value: shown where the prose refers to it
                plain = _text(data.get(GLUE_PREFIX + "text/plain", ""))
                rich = _rich(data, GLUE_PREFIX)
                for found in object_reprs(plain):
                    if not rich or "text" in shown_as.get(glued, set()):
                        problems.append(f"{where}: glued {glued!r} is shown as {found}")
                if "md" in shown_as.get(glued, set()) and GLUE_PREFIX + "text/markdown" not in data:
                    problems.append(f"{where}: {{glue:md}}`{glued}` has no markdown to show")
                continue
            if not _rich(data):
                problems += [f"{where} shows {found}" for found in object_reprs(_text(data.get("text/plain", "")))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "book")))
def test_every_published_figure_fits_the_page(path):
    """A glued figure wider than the page is shrunk there, and its text with it
    (``repsim.legibility``); plots draws none wider than the text column."""
    too_wide = []
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            png = output.get("data", {}).get(GLUE_PREFIX + "image/png")
            if png:
                width = struct.unpack(">I", base64.b64decode(png)[16:20])[0]  # the PNG header's IHDR width
                if width > PAGE_WIDTH_INCHES * 100 / TOLERANCE:  # matplotlib's 100 dpi, as the chapters save them
                    too_wide.append(f"{output['metadata']['scrapbook']['name']}: {width} px")
    assert not too_wide, f"{path.name}: figures wider than the page's {PAGE_WIDTH_INCHES * 100:.0f} px: {too_wide}"
