"""Where a chapter's results came from, counted from the model store's access log.

While ``$REPSIM_ACCESS_LOG`` names a file, ``repsim.store`` appends one JSON line per
lookup: the entry's ``key``, its ``analysis`` ("trained model" for a model), its
``source`` and the ``device`` that computed it. The sources are

- ``computed``: computed by this run, here;
- ``store``: read from this machine's model store (computed by an earlier run);
- ``results``: read from the committed results (computed elsewhere, e.g. on a GPU);
- ``pending``: neither stored nor committed, and this run may not compute it.

The runner gives each chapter a fresh log and records the counts in the executed
notebook's ``metadata.repsim["results"]``, from which the published page says how much
of it was computed where, and what is still missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCES = ("computed", "store", "results", "pending")
MODEL = "trained model"  # the store's name for an entry that is a model, not an analysis


@dataclass(frozen=True)
class Coverage:
    """Distinct store entries a chapter used, by kind and source."""

    models: dict[str, int]  # source -> trained models
    analyses: dict[str, int]  # source -> analyses (heatmaps, probes, predictions, ...)
    devices: dict[str, list[str]]  # source -> the devices that computed those entries

    def count(self, source: str) -> int:
        return self.models[source] + self.analyses[source]

    def metadata(self) -> dict[str, Any]:
        """The JSON record kept in ``metadata.repsim["results"]``."""
        return {**{source: self.count(source) for source in SOURCES},
                "models": dict(self.models), "devices": {k: list(v) for k, v in self.devices.items()}}


def read_access_log(path: Path) -> Coverage:
    """Count the entries in the access log at ``path`` (no file: nothing was looked up).

    An entry looked up several times counts once, by its first lookup: a model trained
    by the chapter and read again later was computed, not reused. A last line cut short
    (a kernel killed mid-write) is ignored.
    """
    first: dict[str, dict] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        try:
            access = json.loads(line)
        except json.JSONDecodeError:
            continue
        if access.get("source") not in SOURCES:
            raise ValueError(f"{path}: unknown source {access.get('source')!r} in {line!r}")
        first.setdefault(access["key"], access)
    models, analyses = dict.fromkeys(SOURCES, 0), dict.fromkeys(SOURCES, 0)
    devices: dict[str, set[str]] = {source: set() for source in SOURCES if source != "pending"}
    for access in first.values():
        source = access["source"]
        (models if access.get("analysis") == MODEL else analyses)[source] += 1
        if source != "pending" and access.get("device"):
            devices[source].add(access["device"])
    return Coverage(models, analyses, {source: sorted(names) for source, names in devices.items()})
