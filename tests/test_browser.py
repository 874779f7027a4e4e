"""The offline checks of the built book: each kind of fault on a page is caught.

The pages here are tiny hand-written sites; .ci/run applies the same checks to the
real build (python -m repsim.book.sitecheck). Without Chromium these tests skip, unless
REPSIM_REQUIRE_BROWSER is set (CI sets it, so a missing browser fails there).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from repsim.book.sitecheck import check_links, check_pages, find_chromium


def needs_browser() -> str:
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("REPSIM_REQUIRE_BROWSER"):
            pytest.fail("REPSIM_REQUIRE_BROWSER is set but no Chromium was found")
        pytest.skip("no Chromium on this machine")
    pytest.importorskip("playwright")
    return chromium


def page(body: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body>{body}</body></html>"


PNG = bytes.fromhex(  # a 1x1 transparent PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "img.png").write_bytes(PNG)
    (tmp_path / "index.html").write_text(page('<p id="top">fine</p><img src="img.png">'
                                              '<a href="other.html#here">x</a>'))
    (tmp_path / "other.html").write_text(page('<h1 id="here">other</h1><a href="index.html#top">back</a>'))
    return tmp_path


def test_links_of_a_sound_site_pass(site):
    assert check_links(site) == []


def test_broken_links_and_cdn_scripts_are_found(site):
    (site / "bad.html").write_text(page(
        '<a href="missing.html">a</a><a href="other.html#nowhere">b</a><img src="gone.png">'
        '<a href="https://example.org">external links are fine</a>',
        head='<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'))
    problems = check_links(site)
    assert any("missing.html points at a missing file" in p for p in problems)
    assert any("names no id" in p and "#nowhere" in p for p in problems)
    assert any("gone.png points at a missing file" in p for p in problems)
    assert any("from the network" in p and "cdn.jsdelivr" in p for p in problems)
    assert not any("example.org" in p for p in problems)
    assert all(p.startswith("bad.html:") for p in problems)


def test_browser_passes_a_sound_page_and_screenshots_it(site, tmp_path):
    chromium = needs_browser()
    shots = tmp_path / "shots"
    reports = check_pages(site, [site / "index.html"], screenshots=shots, chromium=chromium)
    assert [r.problems for r in reports] == [[]]
    assert reports[0].screenshot.stat().st_size > 0


def test_browser_finds_console_errors_broken_images_and_network_requests(site):
    chromium = needs_browser()
    (site / "bad.html").write_text(page(
        '<script>console.error("something broke")</script>'
        '<script>undefinedFunction()</script>'
        '<img src="gone.png"><img src="https://example.org/remote.png">'))
    [report] = check_pages(site, [site / "bad.html"], chromium=chromium)
    assert any("something broke" in m for m in report.console_errors)
    assert any("undefinedFunction" in m for m in report.console_errors)
    assert any("gone.png" in s for s in report.broken_images)
    assert any("example.org/remote.png" in u for u in report.failed_requests)  # offline: refused


def test_browser_finds_maths_left_unrendered(site):
    chromium = needs_browser()
    # Sphinx's markup for maths, with no MathJax on the page (as when its CDN is unreachable)
    (site / "maths.html").write_text(page(
        '<p>Inline <span class="math notranslate nohighlight">\\(x^2\\)</span>.</p>'
        '<div class="math notranslate nohighlight">\\[\\sum_i x_i\\]</div>'))
    [report] = check_pages(site, [site / "maths.html"], chromium=chromium)
    assert len(report.unrendered_math) >= 2, report


def test_browser_accepts_maths_rendered_by_the_vendored_mathjax(site):
    chromium = needs_browser()
    mathjax = pytest.importorskip("importlib.resources").files("sphinx-mathjax-offline") / "static" / "mathjax"
    shutil.copytree(Path(str(mathjax)), site / "mathjax")
    (site / "maths.html").write_text(page(
        '<p>Inline <span class="math notranslate nohighlight">\\(x^2\\)</span>.</p>',
        head='<script defer src="mathjax/tex-chtml.js"></script>'))
    [report] = check_pages(site, [site / "maths.html"], chromium=chromium)
    assert report.problems == []
