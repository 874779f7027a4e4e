"""A Sphinx extension for the book: provenance boxes and execution statistics.

Registered in ``_config.yml`` (``sphinx.extra_extensions``). Everything here is read
from the executed notebooks' metadata at build time (``repsim.book.provenance``), so the
published book shows where each chapter's outputs came from without re-executing it.

- Every page built from an executed notebook gets a folded "where these outputs come
  from" box under its title: profile, device, date, duration, repsim version and
  commit, parameters, whether the chapter's code changed since (stale), and where its
  results were computed (committed from a GPU, here, or still pending).
- ``{execution-statistics}`` renders one table row per chapter in ``_toc.yml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from repsim.book import provenance
from repsim.book.toc import toc_chapters

EXECUTION_PAGE = "book/execution"  # the page holding {execution-statistics}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return provenance.UNKNOWN
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 90 else f"{minutes / 60:.1f} h"


def _device(record: dict[str, Any]) -> str:
    device = record["device"]
    if device == provenance.UNKNOWN:
        return "not recorded"
    name = record.get("gpu") or record.get("cpu")  # older records name no CPU
    return f"{device} ({name})" if name and name != provenance.UNKNOWN else device


def _when(record: dict[str, Any]) -> str:
    finished = record["finished"]
    return finished.strftime("%Y-%m-%d %H:%M UTC") if finished else provenance.UNKNOWN


def _code(record: dict[str, Any]) -> str:
    commit = record["commit"]
    version = record["repsim_version"]
    if commit in (None, provenance.UNKNOWN):
        published = record.get("published_in_commit")
        where = f"not recorded; published in commit {published[:10]}" if published else "commit not recorded"
    else:
        where = f"commit {commit[:10]}" + (" with uncommitted changes" if record["dirty"] else "")
    return f"repsim {version}, {where}" if version != provenance.UNKNOWN else where


def _stale(record: dict[str, Any]) -> str:
    if record["stale"] is None:
        return "no source to compare"
    return ("stale: the chapter's code has changed since this run" if record["stale"]
            else "current: the chapter's code is what ran")


def _results(results: dict[str, Any]) -> str:
    """"12 computed on NVIDIA H200 (committed), 3 computed here on AMD EPYC, 2 pending"."""
    devices = results.get("devices", {})

    def on(source: str) -> str:
        return f" on {', '.join(devices[source])}" if devices.get(source) else ""

    parts = []
    if results["results"]:
        parts.append(f"{results['results']} computed{on('results')} (committed)")
    if results["store"]:
        parts.append(f"{results['store']} read from the model store (computed{on('store')} by an earlier run)")
    if results["computed"]:
        parts.append(f"{results['computed']} computed here{on('computed')}")
    if results["pending"]:
        parts.append(f"{results['pending']} pending: not computed yet, so missing from this page "
                     "(python -m repsim.harvest computes them on a GPU)")
    return ", ".join(parts) or "none from the model store: the chapter computed everything as it ran"


def _doc_link(text: str, target: str) -> addnodes.pending_xref:
    """A link to another page, resolved (and checked) by Sphinx like {doc}."""
    ref = addnodes.pending_xref("", refdomain="std", reftype="doc", reftarget=f"/{target}",
                                refexplicit=True, refwarn=True)
    ref += nodes.inline(text, text)
    return ref


def _field(name: str, *body: nodes.Node | str) -> nodes.field:
    paragraph = nodes.paragraph()
    for part in body:
        paragraph += nodes.Text(part) if isinstance(part, str) else part
    return nodes.field("", nodes.field_name(name, name), nodes.field_body("", paragraph))


def provenance_box(record: dict[str, Any], source: str, link_stats: bool) -> nodes.admonition:
    """The folded box: a one-line summary as its title, the details inside."""
    device = "" if record["device"] == provenance.UNKNOWN else f" on {_device(record)}"
    summary = f"Outputs from the {record['profile']} profile{device}, {_when(record)}"
    results = record["results"]
    pending = results["pending"] if results else 0
    if record["stale"]:
        summary += " (stale)"
    if pending:
        summary += f" ({pending} result{'s' if pending > 1 else ''} pending)"
    warn = record["stale"] or record["profile"] == "smoke" or pending
    box = nodes.admonition(classes=["provenance", "dropdown", "warning" if warn else "note"])
    box += nodes.title(summary, summary)
    parameters = ", ".join(f"{k}={v!r}" for k, v in record["parameters"].items()) or "none"
    fields = nodes.field_list()
    fields += _field("Profile", record["profile"])
    fields += _field("Parameters", nodes.literal(parameters, parameters))
    fields += _field("Device", _device(record))
    started = record["started"].strftime("%Y-%m-%d %H:%M UTC") if record["started"] else provenance.UNKNOWN
    fields += _field("Executed", f"{started} to {_when(record)}, {_duration(record['seconds'])}")
    fields += _field("Code", _code(record))
    if results is not None:
        fields += _field("Results", _results(results))
    fields += _field("Source", f"{source}: {_stale(record)} ",
                     nodes.literal(record["source_hash"][:12], record["source_hash"][:12]))
    record_note = ("recorded by repsim.book when it executed the chapter" if record["recorded"]
                   else "pieced together from papermill's metadata; the device and commit were not recorded")
    if record["recorded"]:
        by = record.get("recorded_by", "")
        record_note = ("written by repsim.book when it executed the chapter" if by == "repsim.book"
                       else by)
    fields += _field("Record", record_note)
    box += fields
    if link_stats:
        para = nodes.paragraph()
        para += nodes.Text("Every chapter's run is listed under ")
        para += _doc_link("execution statistics", EXECUTION_PAGE)
        para += nodes.Text(".")
        box += para
    return box


def add_provenance_box(app: Sphinx, doctree: nodes.document) -> None:
    """Put the provenance box under the title of a page built from an executed notebook."""
    docname = app.env.docname
    notebook = Path(app.srcdir) / f"{docname}.ipynb"
    source = notebook.with_suffix(".py")
    record = provenance.chapter_provenance(notebook, source)
    if record is None:
        return
    app.env.note_dependency(str(source))  # a changed source turns the box stale
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    box = provenance_box(record, f"{docname}.py", EXECUTION_PAGE in app.env.found_docs)
    title = section.next_node(nodes.title)
    section.insert(section.index(title) + 1 if title is not None else 0, box)


class ExecutionStatistics(SphinxDirective):
    """A table of every chapter's last published run, from its notebook's metadata."""

    def run(self) -> list[nodes.Node]:
        root = Path(self.env.srcdir)
        header = ["Chapter", "Profile", "Device", "Executed", "Duration", "Code"]
        rows, total = [], 0.0
        for stem in toc_chapters(root):
            notebook, source = root / "book" / f"{stem}.ipynb", root / "book" / f"{stem}.py"
            self.env.note_dependency(str(notebook))
            self.env.note_dependency(str(source))
            record = provenance.chapter_provenance(notebook, source)
            if record is None:
                rows.append([_doc_link(stem, f"book/{stem}"), "not executed", "", "", "", ""])
                continue
            total += record["seconds"] or 0.0
            state = {True: "stale", False: "current", None: "no source"}[record["stale"]]
            rows.append([_doc_link(stem, f"book/{stem}"), record["profile"], _device(record),
                         _when(record), _duration(record["seconds"]), state])
        rows.append(["total", "", "", "", _duration(total), ""])
        return [_table(header, rows)]


def _table(header: list[str], rows: list[list[Any]]) -> nodes.table:
    table = nodes.table(classes=["execution-statistics"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in header)

    def row(cells: list[Any]) -> nodes.row:
        out = nodes.row()
        for cell in cells:
            paragraph = nodes.paragraph()
            paragraph += cell if isinstance(cell, nodes.Node) else nodes.Text(str(cell))
            out += nodes.entry("", paragraph)
        return out

    group += nodes.thead("", row(header))
    group += nodes.tbody("", *[row(r) for r in rows])
    return table


def always_reread(app: Sphinx, env: Any, added: set, changed: set, removed: set) -> list[str]:
    """The statistics page reads other files' metadata: rebuild it on every build."""
    return [EXECUTION_PAGE] if EXECUTION_PAGE in env.found_docs else []


def quiet_theme(app: Sphinx, config: Any) -> None:
    """Without a default mode the theme logs a console error on a reader's first visit."""
    config.html_context.setdefault("default_mode", "auto")


def drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str,
                           context: dict[str, Any], doctree: Any) -> None:
    """sphinx-thebe adds its inline config once per read phase; twice declares a
    ``const`` twice, an error in every page's console. Keep the first of each script."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # An inline script's filename is None or "", depending on who added it.
        key = (getattr(script, "filename", script) or "", getattr(script, "attributes", {}).get("body"))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", quiet_theme)
    # Late (priority 900): after every other handler has added its page scripts.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("doctree-read", add_provenance_box)
    app.connect("env-get-outdated", always_reread)
    app.add_directive("execution-statistics", ExecutionStatistics)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
