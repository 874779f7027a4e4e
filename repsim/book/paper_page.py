"""The page of a paper-scale chapter while only part of it is harvested.

Such a page is a copy of the executed chapter published beside the chapter's own page
(``book/paper/<stem>.ipynb``, in the part "At paper scale, as harvested so far"), so
its labels would clash with the chapter's: every label the copy defines (``(label)=``
targets and ``:name:`` options) gets ``PREFIX``, and so does every reference to one of
them; references to other chapters' labels are left as they are. Its title says
what it is.
"""

from __future__ import annotations

import re

PREFIX = "paper-scale-"
TITLE_SUFFIX = " (paper scale, as harvested so far)"
_TARGET = re.compile(r"^\((?P<label>[^)\s]+)\)=[ \t]*$", re.MULTILINE)
_NAME = re.compile(r"^(?P<lead>[ \t]*:name:[ \t]*)(?P<label>\S+)[ \t]*$", re.MULTILINE)
_REFERENCE = re.compile(r"\{(?P<role>numref|ref)\}`(?P<text>[^`<]*<)?(?P<label>[^`>]+)(?P<close>>?)`")
_TITLE = re.compile(r"^# (?P<title>.+)$", re.MULTILINE)


def paper_page(nb):
    """``nb`` (an nbformat notebook) with its own labels and references prefixed and its
    title marked; changed in place and returned."""
    markdown = [cell for cell in nb.cells if cell.cell_type == "markdown"]
    labels = {m["label"] for cell in markdown for pattern in (_TARGET, _NAME) for m in pattern.finditer(cell.source)}

    def reference(match: re.Match) -> str:
        label = match["label"]
        if label not in labels:
            return match[0]
        return f"{{{match['role']}}}`{match['text'] or ''}{PREFIX}{label}{match['close']}`"

    for cell in markdown:
        source = _TARGET.sub(lambda m: f"({PREFIX}{m['label']})=" if m["label"] in labels else m[0], cell.source)
        source = _NAME.sub(lambda m: f"{m['lead']}{PREFIX}{m['label']}", source)
        cell.source = _REFERENCE.sub(reference, source)
    if markdown:
        markdown[0].source = _TITLE.sub(lambda m: f"# {m['title']}{TITLE_SUFFIX}", markdown[0].source, count=1)
    return nb
