"""Check the built book as a reader sees it: offline, in a real headless browser.

    python -m repsim.book.sitecheck _build/html --screenshots _build/browser-check

Two checks over every HTML page of the build:

- ``check_links`` (no browser): every relative link, image, script and stylesheet
  points at a file of the build, and every ``#fragment`` at an id of its page; no
  script or stylesheet comes from the network (a page needing a CDN does not read
  offline).
- ``check_pages`` (Chromium through Playwright): each page is opened from ``file://``
  with every network request refused, and fails on a console error, an uncaught
  exception, a failed request, a broken image, or maths that MathJax left
  unrendered. A full-page screenshot of each page is written for a person to look at.

Chromium is not downloaded: ``find_chromium`` looks for the system's (Debian's
``chromium`` package), or ``$REPSIM_CHROMIUM``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Pages of the build that are not the book's pages.
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}

# Run in the page after MathJax's first typeset: .math elements without MathJax's
# output, and TeX delimiters left in the visible text (outside code).
UNRENDERED_MATH_JS = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const raw = [];
  for (const el of document.querySelectorAll('.math')) {
    if (!el.querySelector('mjx-container, .MathJax, svg')) raw.push(el.textContent.trim().slice(0, 80));
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const delimiters = /\\\\\\(|\\\\\\[|\\$\\$/;
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement.closest('pre, code, script, style, mjx-container, .math, textarea')) continue;
    if (delimiters.test(node.textContent)) raw.push(node.textContent.trim().slice(0, 80));
  }
  return raw;
}
"""

BROKEN_IMAGES_JS = """
async () => {
  const images = Array.from(document.images);
  for (const img of images) { img.loading = 'eager'; }
  await Promise.all(images.map(img => img.complete ? null :
    new Promise(done => { img.onload = img.onerror = done; })));
  return images.filter(img => img.naturalWidth === 0).map(img => img.getAttribute('src'));
}
"""


@dataclass
class PageReport:
    """What one page did wrong; empty lists mean it passed."""

    page: str
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    unrendered_math: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def problems(self) -> list[str]:
        return ([f"console error: {m}" for m in self.console_errors]
                + [f"failed request: {u}" for u in self.failed_requests]
                + [f"broken image: {s}" for s in self.broken_images]
                + [f"unrendered maths: {t!r}" for t in self.unrendered_math])


def html_pages(site: Path) -> list[Path]:
    """Every HTML page of a build, outside the theme's and Sphinx's asset folders."""
    site = site.resolve()
    return sorted(p for p in site.rglob("*.html")
                  if not any(d in SKIP_DIRS or d.startswith(".") for d in p.relative_to(site).parts[:-1]))


class _Refs(HTMLParser):
    """Collects ids and the URLs of a page's links and resources."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []  # a href: may be external
        self.resources: list[tuple[str, str]] = []  # (tag, url): must load for the page to work

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag in ("img", "script", "iframe", "source") and a.get("src"):
            self.resources.append((tag, a["src"]))
        elif tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or ""):
            self.resources.append((tag, a["href"]))


def _parse(page: Path) -> _Refs:
    refs = _Refs()
    refs.feed(page.read_text(encoding="utf-8", errors="replace"))
    return refs


def check_links(site: Path) -> list[str]:
    """Broken internal links and network-only resources, as ``page: problem`` lines."""
    site = site.resolve()
    parsed = {page: _parse(page) for page in html_pages(site)}
    problems = []
    for page, refs in parsed.items():
        name = page.relative_to(site).as_posix()
        urls = [("a", u) for u in refs.links] + refs.resources
        for tag, url in urls:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                if tag != "a":
                    problems.append(f"{name}: <{tag}> loads {url} from the network")
                continue
            if parts.scheme:  # mailto:, data:, javascript:
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{name}: <{tag}> {url} points at a missing file")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{name}: {url} names no id of {target.relative_to(site).as_posix()}")
    return problems


def find_chromium() -> str | None:
    """``$REPSIM_CHROMIUM``, else a Chromium or Chrome on the PATH."""
    if os.environ.get("REPSIM_CHROMIUM"):
        return os.environ["REPSIM_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _evaluate(page, script: str):
    """Evaluate in the page; a redirecting page (the book's index.html) is followed first."""
    from playwright.sync_api import Error

    for attempt in range(3):
        try:
            return page.evaluate(script)
        except Error as exc:
            if "context was destroyed" not in str(exc) or attempt == 2:
                raise
            page.wait_for_load_state("load")


def check_pages(site: Path, pages: list[Path] | None = None, screenshots: Path | None = None,
                chromium: str | None = None, timeout_ms: float = 30_000) -> list[PageReport]:
    """Open each page from disk in headless Chromium with the network refused."""
    from playwright.sync_api import sync_playwright  # late: only this check needs it

    site = site.resolve()
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found: install Debian's 'chromium' package "
                                "or set REPSIM_CHROMIUM to a Chromium executable")
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    reports = []
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        # Offline reading: anything but the book's own files is refused, and reported.
        context.route(lambda url: not url.startswith(("file:", "data:", "blob:", "about:")),
                      lambda route: route.abort("internetdisconnected"))
        for path in pages or html_pages(site):
            path = path.resolve()
            report = PageReport(path.relative_to(site).as_posix())
            page = context.new_page()
            page.on("console", lambda m, r=report: m.type == "error" and r.console_errors.append(
                f"{m.text} ({m.location.get('url', '')}:{m.location.get('lineNumber', '')})"))
            page.on("pageerror", lambda e, r=report: r.console_errors.append(f"uncaught {e}"))
            page.on("requestfailed", lambda q, r=report: r.failed_requests.append(
                f"{q.url} ({q.failure})"))
            page.on("response", lambda s, r=report: s.status >= 400 and r.failed_requests.append(
                f"{s.url} (HTTP {s.status})"))
            page.goto(path.as_uri(), wait_until="load", timeout=timeout_ms)
            if 'http-equiv="refresh"' in path.read_text(errors="replace").lower():
                # A redirect (the book's index.html): check the page it lands on.
                page.wait_for_url(lambda u, start=path.as_uri(): u != start, timeout=timeout_ms)
                page.wait_for_load_state("load")
            report.unrendered_math = _evaluate(page, UNRENDERED_MATH_JS)
            report.broken_images = _evaluate(page, BROKEN_IMAGES_JS)
            page.wait_for_timeout(200)  # late console messages of deferred scripts
            if screenshots is not None:
                report.screenshot = screenshots / (report.page.replace("/", "__").removesuffix(".html") + ".png")
                page.screenshot(path=str(report.screenshot), full_page=True)
            page.close()
            reports.append(report)
        browser.close()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repsim.book.sitecheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("site", type=Path, nargs="?", default=Path("_build/html"),
                        help="the built HTML folder (default: _build/html)")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="folder for one full-page PNG per page")
    parser.add_argument("--links-only", action="store_true", help="skip the browser")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        print(f"error: {args.site} holds no built book (no index.html); "
              f"build it with python -m repsim.book --build-only", file=sys.stderr)
        return 2
    failures = [f"links: {p}" for p in check_links(args.site)]
    pages = html_pages(args.site)
    print(f"links: {len(pages)} pages checked, {len(failures)} problem(s)")
    if not args.links_only:
        for report in check_pages(args.site, pages, args.screenshots):
            status = "ok" if not report.problems else f"{len(report.problems)} problem(s)"
            print(f"browser: {report.page}: {status}")
            failures += [f"{report.page}: {p}" for p in report.problems]
        if args.screenshots is not None:
            print(f"screenshots: {args.screenshots.resolve()}")
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
