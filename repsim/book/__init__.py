"""Publishing the book: everything that executes, renders and checks it, apart from the science.

    python -m repsim.book               execute the chapters, then build the HTML (runner)
    python -m repsim.book.sitecheck     load the built pages offline in headless Chromium
    python -m repsim.book.student       student copies: no outputs, no solutions

- ``toc``: the chapters listed in ``_toc.yml``.
- ``runner``: papermill execution, publishing rule, timings, the Jupyter Book build.
- ``terminal``: what the runner prints: the plan, progress lines, the summary.
- ``coverage``: where a chapter's results came from, from the store's access log.
- ``provenance``: where a published notebook's outputs came from (``metadata.repsim``).
- ``sphinx``: the Sphinx extension (``_config.yml``) that renders provenance at build time.
- ``prose``: the values a chapter's prose quotes, formatted, and ``glue_all`` to glue them.
- ``sitecheck``, ``student``: the two commands above.

Nothing in ``repsim`` outside this package imports it, so the science modules need
neither papermill, jupytext, Sphinx nor Playwright.
"""
