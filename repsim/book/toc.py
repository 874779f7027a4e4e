"""The book's chapters: the ``book/*.py`` sources listed in ``_toc.yml``, in order.

Its own module so that the Sphinx extension and the student copies can list chapters
without importing the runner (and papermill with it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def toc_chapters(root: Path) -> list[str]:
    """Stems of the ``book/*.py`` chapters listed in ``_toc.yml``, in toc order."""

    def files(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["file"]] if "file" in node else []
            return own + [f for v in node.values() for f in files(v)]
        if isinstance(node, list):
            return [f for item in node for f in files(item)]
        return []

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    entries = [toc.get("root", "")] + files({k: v for k, v in toc.items() if k != "root"})
    stems = [Path(f).name for f in entries if Path(f).parent.as_posix() == "book"]
    return [s for s in dict.fromkeys(stems) if (root / "book" / f"{s}.py").exists()]


PAPER_PART = "At paper scale, as harvested so far"


def add_to_part(root: Path, caption: str, file: str) -> bool:
    """List ``file`` (e.g. ``book/paper/03_blocks``) in the part ``caption`` of
    ``_toc.yml``, turning a list of chapters into a first, uncaptioned part if needed.
    Returns whether the toc changed."""
    path = root / "_toc.yml"
    text = path.read_text()
    toc = yaml.safe_load(text)
    if "parts" not in toc:
        toc["parts"] = [{"chapters": toc.pop("chapters", [])}]
    part = next((p for p in toc["parts"] if p.get("caption") == caption), None)
    if part is None:
        part = {"caption": caption, "chapters": []}
        toc["parts"].append(part)
    if any(entry.get("file") == file for entry in part["chapters"]):
        return False
    part["chapters"].append({"file": file})
    comments = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    path.write_text(comments + yaml.safe_dump(toc, sort_keys=False))
    return True
