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
