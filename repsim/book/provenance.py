"""Where a chapter's published outputs came from, read from the executed notebook.

papermill writes ``metadata.papermill`` (parameters, start and end time, duration) into
every notebook it executes; the runner (``python -m repsim.book``) adds
``metadata.repsim`` (profile, the device actually used, the repsim version and git
commit, and a hash of the chapter's code at execution time). ``chapter_provenance``
merges the two into one flat record, which the book's provenance boxes and its
execution-statistics page render at build time, so no chapter is re-executed just to
show where it came from.

A chapter is *stale* when the code cells of its source ``book/<stem>.py`` hash
differently from the code that was executed.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import jupytext
import nbformat

UNKNOWN = "unknown"

# Which published run wins: a paper run on a GPU, else laptop; smoke only fills a gap.
PROFILE_RANK = {"smoke": 0, "laptop": 2, "paper": 3}
# A run that left results pending (``repsim.book.coverage``) shows holes where a laptop
# run shows its own, smaller results: it ranks below laptop, above smoke.
INCOMPLETE_RANK = 1


def code_hash(cells: list[Any]) -> str:
    """sha256 over the non-empty code cells, ignoring papermill's injected parameters.

    Only code counts: editing prose, tags or outputs does not make a chapter stale.
    """
    sources = [cell.source.strip() for cell in cells
               if cell.cell_type == "code" and cell.source.strip()
               and "injected-parameters" not in cell.metadata.get("tags", [])]
    return hashlib.sha256("\n# <cell>\n".join(sources).encode()).hexdigest()


def source_hash(source: Path) -> str:
    """The code hash of a jupytext chapter source ``book/<stem>.py``."""
    return code_hash(jupytext.read(source).cells)


def git_state(root: Path, paths: list[str]) -> dict[str, Any]:
    """HEAD's commit and whether ``paths`` hold uncommitted changes (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", *paths) if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def repsim_version() -> str:
    """The installed distribution's version, else the package's own."""
    try:
        return importlib.metadata.version("wide-deep-repsim")
    except importlib.metadata.PackageNotFoundError:
        from repsim import __version__
        return __version__


def device_used(requested: str | None, profile: str) -> dict[str, Any]:
    """The device a chapter of ``profile`` runs on when asked for ``requested`` (None:
    the profile's): chosen as the chapter chooses it, named as the store names it."""
    import torch  # late: slow to import, and only the runner needs it

    from repsim import devices
    from repsim.profiles import chapter_device, get_profile

    device = devices.resolve(chapter_device(requested, get_profile(profile)))
    return {"device": str(device), "gpu": devices.describe(device) if device.type == "cuda" else None,
            "cpu": devices.cpu_name(), "cpu_cores": os.cpu_count(), "machine": platform.machine(),
            "torch": torch.__version__}


def execution_metadata(root: Path, stem: str, profile: str, requested_device: str | None) -> dict[str, Any]:
    """``metadata.repsim`` for a chapter about to be executed from ``book/<stem>.py``."""
    source = root / "book" / f"{stem}.py"
    return {
        "profile": profile,
        **device_used(requested_device, profile),
        "repsim_version": repsim_version(),
        **git_state(root, ["repsim", f"book/{stem}.py"]),
        "source_hash": source_hash(source),
        "python": platform.python_version(),
        "recorded_by": "repsim.book",
    }


def backfill_metadata(root: Path, notebook: Path) -> dict[str, Any]:
    """``metadata.repsim`` for a notebook executed before the runner recorded it.

    Only what can be established is filled in: the profile (papermill's parameters),
    the executed code (the notebook's own code cells) and the commit that published the
    notebook (git). The device and the commit it ran from were not recorded.
    """
    nb = nbformat.read(notebook, as_version=4)
    params = nb.metadata.get("papermill", {}).get("parameters", {})
    rel = notebook.resolve().relative_to(root.resolve()).as_posix()
    try:
        published = subprocess.run(["git", "log", "-1", "--format=%H", "--", rel], cwd=root,
                                   capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        published = None
    return {
        "profile": params.get("profile", UNKNOWN),
        "device": params.get("device") or UNKNOWN,
        "gpu": UNKNOWN,
        "repsim_version": UNKNOWN,
        "commit": UNKNOWN,
        "published_in_commit": published,
        "source_hash": code_hash(nb.cells),
        "recorded_by": "backfill: papermill metadata, the notebook's code cells and git history",
    }


def _parse_time(text: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def chapter_provenance(notebook: Path, source: Path | None = None) -> dict[str, Any] | None:
    """One flat record of an executed chapter, or None if papermill never ran it.

    Keys: profile, device, gpu, cpu (the CPU's model), started, finished (datetimes or
    None), seconds, parameters, repsim_version, commit, dirty, source_hash, stale (True,
    False or None when there is no source to compare), results
    (``coverage.Coverage.metadata``, None when not recorded), recorded (False when
    metadata.repsim is absent and the record was pieced together here), recorded_by.
    """
    if not notebook.exists():
        return None
    nb = nbformat.read(notebook, as_version=4)
    pm = nb.metadata.get("papermill")
    if not pm:
        return None
    meta = nb.metadata.get("repsim") or {}
    params = dict(pm.get("parameters") or {})
    executed = meta.get("source_hash") or code_hash(nb.cells)
    current = source_hash(source) if source is not None and source.exists() else None
    return {
        "profile": meta.get("profile") or params.get("profile", UNKNOWN),
        "device": meta.get("device", UNKNOWN),
        "gpu": meta.get("gpu"),
        "cpu": meta.get("cpu"),
        "started": _parse_time(pm.get("start_time")),
        "finished": _parse_time(pm.get("end_time")),
        "seconds": pm.get("duration"),
        "parameters": params,
        "repsim_version": meta.get("repsim_version", UNKNOWN),
        "commit": meta.get("commit", UNKNOWN),
        "dirty": meta.get("dirty"),
        "published_in_commit": meta.get("published_in_commit"),
        "source_hash": executed,
        "stale": None if current is None else current != executed,
        "results": meta.get("results"),
        "recorded": bool(meta),
        "recorded_by": meta.get("recorded_by", "papermill metadata only"),
    }


def run_rank(profile: str, device: str | None, results: dict[str, Any] | None = None) -> int:
    """How good a run is for publishing, given its ``results`` counts (None: unknown).

    Paper on a GPU > laptop > a run with pending results > smoke. A paper run on a CPU
    that computed nothing itself and left nothing pending shows results computed on a
    GPU (the committed ones): it ranks as a paper run on a GPU. Any other paper run
    without a GPU counts as laptop.
    """
    rank = PROFILE_RANK.get(profile, -1)
    if results is not None and results["pending"]:
        return min(rank, INCOMPLETE_RANK)
    on_gpu = str(device or "").startswith("cuda")
    read_everything = results is not None and results["computed"] == 0
    if profile == "paper" and not on_gpu and not read_everything:
        rank = PROFILE_RANK["laptop"]
    return rank
