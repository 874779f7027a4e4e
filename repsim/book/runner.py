"""Execute the book's chapters with papermill, then build the HTML with Jupyter Book.

    python -m repsim.book --profile smoke|laptop|paper [--chapters 02_cka ...]

Each chapter is a jupytext source ``book/<stem>.py``; the executed notebook replaces
``book/<stem>.ipynb`` only when every cell succeeded, so a failed run never leaves a
half-executed chapter in the book (its partial notebook goes to ``_build/failed/``).
It also never replaces a better run (``provenance.run_rank``: a paper run on a GPU
beats laptop, laptop beats a run that left results pending, which beats smoke;
``--force`` publishes anyway); the lesser run is kept in ``_build/executed/``. Each
published notebook records where it came from in ``metadata.repsim``
(``repsim.book.provenance``), with how many of its results were computed, read from the
store or the committed results, or left pending (``repsim.book.coverage``); the book
renders this at build time.

The terminal gets the plan first, then, while a chapter runs, what it is training or
computing (``repsim.progress``), and a summary at the end (``repsim.book.terminal``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import jupytext
import nbformat
import papermill
from traitlets.config import Config

from repsim import devices, progress
from repsim.book import provenance, terminal, toc
from repsim.book.coverage import read_access_log
from repsim.book.executed import ChapterRun, record_times
from repsim.book.paper_page import paper_page
from repsim.book.toc import toc_chapters
from repsim.files import repsim_home
from repsim.profiles import chapter_device, get_profile
from repsim.results import default_root, read_manifest


def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value); VALUE is JSON when it parses, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def cell_excerpt(source: str, lines: int = 6) -> str:
    """The first lines of a cell's source, indented, for the failure report."""
    shown = source.splitlines()
    text = "\n".join(f"    {line}" for line in shown[:lines])
    return text + ("\n    ..." if len(shown) > lines else "")


def report_failure(stem: str, exc: BaseException, partial: Path | None) -> None:
    """Say which chapter and cell failed, with the traceback and the partial notebook."""
    print(f"\nChapter {stem} failed.", file=sys.stderr)
    if isinstance(exc, papermill.PapermillExecutionError):
        # cell_index counts papermill's injected-parameters cell; the source names the cell plainly.
        print(f"Cell {exc.cell_index} of the executed notebook (In [{exc.exec_count}]) "
              f"raised {exc.ename}: {exc.evalue}", file=sys.stderr)
        print(f"The cell begins:\n{cell_excerpt(exc.source)}", file=sys.stderr)
        print("Traceback:", file=sys.stderr)
        # IPython colours tracebacks; a log file reads better without the escape codes.
        print(re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(exc.traceback)), file=sys.stderr)
    else:
        traceback.print_exception(exc, file=sys.stderr)
    if partial is not None:
        print(f"Partial notebook: {partial}", file=sys.stderr)
    print(f"The published book/{stem}.ipynb was left as it was.", file=sys.stderr)


def check_parameters(notebook: Path, params: dict[str, Any]) -> None:
    """Refuse parameters that the chapter's ``parameters`` cell does not define:
    papermill would inject them silently and the misspelled knob would do nothing."""
    known = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{notebook.stem} has no parameter(s) {', '.join(unknown)}; "
                         f"its parameters are {', '.join(known)}")


def published_rank(notebook: Path) -> int:
    """The rank (``provenance.run_rank``) of the published notebook; -1 when none."""
    record = provenance.chapter_provenance(notebook)
    if record is None:
        return -1
    device = record["device"] if record["recorded"] else None
    return provenance.run_rank(record["profile"], device, record["results"])


@contextlib.contextmanager
def environment(**values: str):
    """Set environment variables for the ``with`` body; the kernel papermill starts
    inherits them. Restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def kernel_config(folder: Path) -> Config:
    """Start the kernel over IPC (Unix sockets in ``folder``) where the system has them.

    Over TCP, ipykernel warns on every start that the connection is unencrypted; the
    kernel only ever talks to this process, so sockets in a private folder are the
    quieter and the safer transport. Elsewhere (Windows) the default TCP stays.
    """
    if os.name != "posix":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": str(folder / "kernel")}})


def execute_chapter(root: Path, stem: str, params: dict[str, Any], kernel: str,
                    timeout: float | None, force: bool = False) -> ChapterRun:
    """Run ``book/<stem>.py`` with papermill and publish ``book/<stem>.ipynb``.

    The executed notebook is published unless the one already there came from a better
    run (``provenance.run_rank``) and ``force`` is false.
    """
    book = root / "book"
    executed = root / "_build" / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    out = executed / f"{stem}.{os.getpid()}.ipynb"
    profile = get_profile(params["profile"])
    # Recorded before execution: the code that runs is the code as it is now.
    record = provenance.execution_metadata(root, stem, profile.name, params.get("device"))
    start = time.perf_counter()
    with TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        access_log, progress_log = tmp / "access.jsonl", tmp / "progress.log"
        try:
            # A fresh notebook from the source, so no stale outputs survive.
            source = tmp / f"{stem}.ipynb"
            jupytext.write(jupytext.read(book / f"{stem}.py"), source)
            check_parameters(source, params)
            with (environment(REPSIM_ACCESS_LOG=str(access_log), **{progress.VARIABLE: str(progress_log)}),
                  terminal.Follow(progress_log, stem)):
                papermill.execute_notebook(
                    source, out, parameters=params, kernel_name=kernel, cwd=book,
                    progress_bar={"desc": stem}, execution_timeout=timeout, config=kernel_config(tmp))
        except Exception as exc:
            partial = None
            if out.exists():
                partial = root / "_build" / "failed" / f"{stem}.ipynb"
                partial.parent.mkdir(parents=True, exist_ok=True)
                os.replace(out, partial)
            report_failure(stem, exc, partial)
            raise
        coverage = read_access_log(access_log)
    seconds = time.perf_counter() - start
    # papermill records absolute temporary paths; the published notebook is committed.
    nb = nbformat.read(out, as_version=4)
    nb.metadata["papermill"].update(input_path=f"book/{stem}.py",
                                     output_path=f"book/{stem}.ipynb")
    record["results"] = coverage.metadata()
    nb.metadata["repsim"] = record
    for cell in nb.cells:  # the provenance box shows the parameters; the cell would repeat them
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, out)
    device = record["gpu"] or record["cpu"]
    published = book / f"{stem}.ipynb"
    rank = provenance.run_rank(record["profile"], record["device"], record["results"])
    if rank >= published_rank(published) or force:
        os.replace(out, published)
        return ChapterRun(stem, seconds, coverage, published, device)
    kept = executed / f"{stem}.{record['profile']}.ipynb"
    os.replace(out, kept)
    pending = coverage.count("pending")
    if pending and record["profile"] == "paper" and coverage.count("results"):
        # What is harvested of a paper-scale chapter is published on a page of its own, in
        # a part of the book that says so, until the whole chapter is harvested.
        page = book / "paper" / f"{stem}.ipynb"
        page.parent.mkdir(exist_ok=True)
        nbformat.write(paper_page(nbformat.read(kept, as_version=4)), page)  # its own labels beside the chapter's
        toc.add_to_part(root, toc.PAPER_PART, f"book/paper/{stem}")
        reason = f"{pending} result(s) pending; what is harvested is in book/paper/{stem}.ipynb"
        print(f"{stem}: paper scale, {pending} result(s) pending: published in book/paper/{stem}.ipynb "
              f"(part '{toc.PAPER_PART}'); the chapter page stays as it was", file=sys.stderr)
        return ChapterRun(stem, seconds, coverage, page, device, reason)
    if pending:
        reason = f"{pending} result(s) pending"
        why = f"this {record['profile']} run left {reason}, and the published notebook comes from a complete run"
    else:
        reason = "a better run is published"
        why = f"the published notebook comes from a better run than this {record['profile']} run on {device}"
    print(f"{stem}: {why}; kept it, and this run in {kept} (--force publishes it)", file=sys.stderr)
    return ChapterRun(stem, seconds, coverage, kept, device, reason)


def build(root: Path, strict: bool) -> int:
    """Run ``jupyter-book build``; with ``strict``, any warning fails it."""
    exe = Path(sys.executable).with_name("jupyter-book")
    # jupyter_book 1.x has no __main__ module, so the fallback calls its click entry point.
    cmd = ([str(exe)] if exe.exists() else
           [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"])
    cmd += ["build", str(root)]
    if strict:
        # --all: an incremental build would not re-emit warnings of unchanged pages.
        cmd += ["--warningiserror", "--nitpick", "--keep-going", "--all"]
    return subprocess.call(cmd)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m repsim.book", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="laptop", help="smoke, laptop or paper")
    p.add_argument("--chapters", nargs="+", metavar="STEM",
                   help="chapter stems such as 02_cka (default: all in _toc.yml)")
    p.add_argument("--root", type=Path, default=Path.cwd(),
                   help="folder holding _config.yml, _toc.yml and book/")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--no-build", action="store_true", help="execute only")
    mode.add_argument("--build-only", action="store_true", help="build only")
    p.add_argument("--strict", action="store_true", help="build warnings are errors")
    p.add_argument("--param", action="append", type=parse_param, default=[],
                   metavar="KEY=VALUE", help="extra papermill parameter (repeatable)")
    p.add_argument("--kernel", default="python3")
    p.add_argument("--timeout", type=float, default=None, help="seconds per cell")
    p.add_argument("--force", action="store_true",
                   help="publish the executed notebooks even over a better run's")
    p.add_argument("--backfill-provenance", action="store_true",
                   help="write metadata.repsim into published notebooks that lack it, "
                        "from papermill's metadata and git, and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Execute the chosen chapters, record their times, build the book."""
    args = parse_args(argv)
    root = args.root.resolve()
    try:
        profile = get_profile(args.profile)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    available = toc_chapters(root)
    chapters = args.chapters or available
    unknown = [c for c in chapters if c not in available]
    if unknown:
        print(f"error: unknown chapter(s) {', '.join(unknown)}; "
              f"valid: {', '.join(available) or 'none'}", file=sys.stderr)
        return 2
    if args.backfill_provenance:
        for stem in chapters:
            notebook = root / "book" / f"{stem}.ipynb"
            nb = nbformat.read(notebook, as_version=4) if notebook.exists() else None
            if nb is None or "papermill" not in nb.metadata or "repsim" in nb.metadata:
                continue
            nb.metadata["repsim"] = provenance.backfill_metadata(root, notebook)
            nbformat.write(nb, notebook)
            print(f"{stem}: provenance backfilled")
        return 0
    if args.build_only:
        code = build(root, args.strict)
        print(f"\nHTML: {root / '_build' / 'html' / 'index.html'}")
        return code
    # Chapters run from book/, so a relative data path given from here is resolved now.
    data = os.environ.get("REPSIM_DATA")
    if data and data != "torchvision":
        os.environ["REPSIM_DATA"] = str(Path(data).expanduser().resolve())
    params = {"profile": args.profile, **dict(args.param)}
    try:
        device = devices.resolve(chapter_device(params.get("device"), profile))
    except RuntimeError as exc:
        print(f"error: {exc}. The {profile.name} profile asks for {profile.device!r}; with --param device=cpu "
              "it reads what it may not compute on the CPU from the store and the committed results, "
              "or leaves it pending", file=sys.stderr)
        return 2
    results = default_root()
    committed = len(read_manifest(results / profile.name)["entries"]) if results is not None else 0
    terminal.print_plan(root, chapters, profile, device, devices.describe(device), repsim_home() / "store",
                        committed)
    runs, code = [], 0
    for stem in chapters:
        try:
            runs.append(execute_chapter(root, stem, params, args.kernel, args.timeout, args.force))
        except Exception:
            code = 1
            break
    if runs:
        record_times(root, args.profile, runs)
    if code == 0 and not args.no_build:
        code = build(root, args.strict)
    terminal.print_summary(runs, root, built=code == 0 and not args.no_build)
    return code
