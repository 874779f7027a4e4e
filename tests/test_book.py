"""The book is a test: every chapter runs in the smoke profile and the book builds
with warnings as errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from repsim.book.sitecheck import check_links
from repsim.book.toc import toc_chapters

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_book_executes_and_builds(tmp_path, cifar_source, object_reprs):
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "book").mkdir()
    for source in sorted((ROOT / "book").iterdir()):
        if source.suffix in (".py", ".md"):  # sources only: no stale executed notebooks
            shutil.copy(source, tmp_path / "book" / source.name)
    if (ROOT / "book" / "paper").is_dir():  # the partly harvested paper-scale pages _toc.yml lists
        shutil.copytree(ROOT / "book" / "paper", tmp_path / "book" / "paper")
    chapters = toc_chapters(tmp_path)  # what the runner executes: the chapters in _toc.yml
    assert "02_cka" in chapters

    # Inherit REPSIM_HOME (set by conftest or CI); point the chapters at the offline data.
    env = {**os.environ, "REPSIM_DATA": str(Path(cifar_source).resolve())}
    result = subprocess.run(
        [sys.executable, "-m", "repsim.book", "--root", str(tmp_path), "--profile", "smoke", "--strict"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )
    output = f"--- stdout ---\n{result.stdout[-20000:]}\n--- stderr ---\n{result.stderr[-20000:]}"
    assert result.returncode == 0, output

    for stem in chapters:
        page = tmp_path / "_build" / "html" / "book" / f"{stem}.html"
        assert page.exists(), output
        html = page.read_text()
        figures = re.findall(r'<img[^>]*src="\.\./(_images/[^"]+\.(?:png|svg))"', html)
        assert figures, f"no figure rendered in {stem}.html"
        assert all((page.parent.parent / src).is_file() for src in figures), figures
        # Every labelled paper figure the chapter defines is in the page.
        source = (tmp_path / "book" / f"{stem}.py").read_text()
        for label in re.findall(r":name: (paper-fig-[a-z0-9]+)", source):
            assert f'id="{label}"' in html, f"{stem}: figure {label} missing from the page"

    # Provenance, rendered at build time from each notebook's metadata.
    html_dir = tmp_path / "_build" / "html"
    for stem in chapters:
        html = (html_dir / "book" / f"{stem}.html").read_text()
        assert "Outputs from the smoke profile on cpu" in html, f"{stem}: no provenance box"
        assert "the chapter&#8217;s code is what ran" in html or "the chapter's code is what ran" in html, stem
    stats = (html_dir / "book" / "execution.html").read_text()
    assert all(f'{stem}.html"' in stats for stem in chapters), "execution statistics miss a chapter"
    assert stats.count(">current<") == len(chapters), "a chapter just executed is not current"
    # Offline: MathJax is vendored, no page loads a script from a CDN, every internal link resolves.
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert check_links(html_dir) == []
    # No published page shows an object's repr (<Figure size ...>, <IPython.core.display.Markdown
    # object>, ... object at 0x...) where the object itself should be.
    pages = [page for page in html_dir.rglob("*.html") if not {"_static", "_sources"} & set(page.parts)]
    assert len(pages) > len(chapters)
    reprs = {str(page.relative_to(html_dir)): found for page in pages if (found := object_reprs(page.read_text()))}
    assert not reprs, f"pages show object reprs: {reprs}"

    for stem in chapters:
        notebook = nbformat.read(tmp_path / "book" / f"{stem}.ipynb", as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()]
        assert code, stem
        assert all(cell.get("execution_count") for cell in code), f"{stem}: not every code cell ran"
        outputs = [out for cell in code for out in cell.get("outputs", [])]
        assert outputs, f"{stem}: the executed notebook has no outputs"
        errors = [out for out in outputs if out.get("output_type") == "error"]
        assert not errors, f"{stem}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        assert notebook.metadata["papermill"]["parameters"].get("profile") == "smoke"
        if stem == "02_cka":
            # shown directly ("image/png") or glued into the prose ("application/papermill.record/image/png")
            mimes = {mime for out in outputs for mime in out.get("data", {})}
            assert any(mime.endswith("image/png") for mime in mimes), f"02_cka drew no figure: {sorted(mimes)}"
