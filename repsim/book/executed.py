"""What executing a chapter leaves behind: its run, and the times kept for the next plan.

The runner (``repsim.book.runner``) records each chapter's seconds per profile in
``_build/execution.json``; the terminal (``repsim.book.terminal``) reads them, and the
published notebooks' own papermill records, to tell how long the next run will take.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from repsim.book.coverage import Coverage


@dataclass(frozen=True)
class ChapterRun:
    """One executed chapter: how long it took, where its results came from, and where
    its notebook went (``book/`` when published, else ``_build/executed/`` and why)."""

    stem: str
    seconds: float
    coverage: Coverage
    notebook: Path
    device: str  # the hardware it ran on (``devices.describe``)
    reason: str | None = None  # why it was not published

    @property
    def published(self) -> bool:
        return self.reason is None


def recorded_times(root: Path) -> dict[str, dict[str, dict]]:
    """{profile: {chapter: {seconds, finished_at, device}}} from ``_build/execution.json``."""
    path = root / "_build" / "execution.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record_times(root: Path, profile: str, runs: list[ChapterRun]) -> None:
    """Merge this run's chapter times into ``_build/execution.json``, under its profile
    (``recorded_times``), so a smoke run leaves the laptop times alone."""
    path = root / "_build" / "execution.json"
    log = recorded_times(root)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for run in runs:
        log.setdefault(profile, {})[run.stem] = {"seconds": round(run.seconds, 1), "finished_at": now,
                                                 "device": run.device}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log, indent=2) + "\n")


def published_run(root: Path, profile: str, stem: str) -> dict | None:
    """{seconds, device} of the published notebook of ``stem`` (``book/`` or
    ``book/paper/``) when it was executed with ``profile``, from its own metadata."""
    for notebook in (root / "book" / f"{stem}.ipynb", root / "book" / "paper" / f"{stem}.ipynb"):
        try:
            metadata = json.loads(notebook.read_text())["metadata"]
        except (OSError, ValueError, KeyError):
            continue
        seconds = metadata.get("papermill", {}).get("duration")
        if metadata.get("repsim", {}).get("profile") == profile and seconds is not None:
            record = metadata["repsim"]
            return {"seconds": float(seconds), "device": record.get("gpu") or f"{record.get('cpu')}, "
                    f"{record.get('cpu_cores')} cores"}
    return None
