"""A content-addressed store of trained models and analyses: read an entry, or compute it once.

An entry lives in ``<root>/<key>/``, where ``key`` hashes the full configuration (model,
training recipe, data, seed, and for an analysis its name and settings). It holds
``model.pt`` and ``record.json``; the record is written last and carries the SHA-256 of
the weights and of itself, so an entry counts as present only when both files are
complete and agree. Files are written through ``repsim.files``: a temporary name, fsync
and an atomic rename, so an interrupted run never leaves a file that reads as valid.

``load_or_train`` computes a missing entry under a lock per key (``fcntl.flock``, which
the kernel drops when its holder dies, even by SIGKILL): a second process waits, then
reads. Models are trained into the store by ``repsim.trained.train_missing``, which
holds a lock of its own per training and ``put``s each model; ``key in store`` tells
whether an entry exists without reading its weights. While something is computed, its
checkpoints live in ``<root>/<key>.partial/`` (``Store.partial``), removed once done.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import devices
from .files import (
    as_json,
    atomic_write_bytes,
    config_key,
    file_lock,
    remove_stale_temporaries,
    repsim_home,
    torch_bytes,
)
from .progress import report
from .results import ResultsArchive, default_root
from .runs import describe_key


def provenance() -> dict:
    """Library versions, machine and git commit, recorded with every run."""
    import numpy
    import torchvision

    from . import __version__

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "repsim": __version__,
        "git_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "device": devices.describe(),
    }


def _log_access(config: dict, source: str, device: str | None) -> None:
    """One JSON line in ``$REPSIM_ACCESS_LOG`` (if set): which result, from where."""
    path = os.environ.get("REPSIM_ACCESS_LOG")
    if not path:
        return
    line = json.dumps({"key": config_key(config), "analysis": config.get("analysis", "trained model"),
                       "source": source, "device": device}) + "\n"
    with open(path, "a") as log:
        log.write(line)


def _record_digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class PendingResult(LookupError):
    """A result that is neither in the store nor among the committed results, and that
    this run may not compute (a paper-scale analysis on a CPU, or a run told not to)."""

    def __init__(self, config: dict) -> None:
        what = config.get("analysis", "trained model")
        model = config.get("ResNetConfig", {})
        super().__init__(f"{what} of ResNet-{model.get('depth')} ({model.get('width')}x), seed {config.get('seed')}: "
                         "not computed yet, and this run does not compute it (harvest it on a GPU: python -m repsim.harvest)")
        self.config = config


class Store:
    """Load-or-train keyed by configuration and seed.

    A key missing from ``root`` is looked up among the committed results (``results``:
    a ``repsim.results.ResultsArchive``; by default the repository's ``results/``). With
    ``compute=False`` a key found in neither raises ``PendingResult`` instead of being
    computed. When ``$REPSIM_ACCESS_LOG`` names a file, every lookup appends a JSON line
    there saying where the result came from (``store``, ``results``, ``computed`` or
    ``pending``), which the book runner reads to report a chapter's coverage.
    """

    def __init__(self, root: str | os.PathLike | None = None, compute: bool = True, results=None) -> None:
        self.root = Path(root) if root is not None else repsim_home() / "store"
        self.compute = compute
        self.results = results if results is not None else ResultsArchive(default_root())

    def entry(self, config: dict) -> Path:
        return self.root / config_key(config)

    def partial(self, config: dict) -> Path:
        """Scratch folder for the checkpoints of an unfinished run of ``config``.

        Only the process holding the key's lock (that is, inside ``load_or_train``'s
        ``train``) may write here; ``load_or_train`` deletes it once the entry is whole.
        """
        return self.root / f"{config_key(config)}.partial"

    def load(self, config: dict) -> tuple[dict, dict] | None:
        """(state_dict, record) of a complete, intact entry here or among the committed
        results, else None."""
        return self._load_local(config) or self.results.load(as_json(config))

    def __contains__(self, config: dict) -> bool:
        """Whether ``config`` has an entry here or among the committed results, told from
        the record alone (no weights are read or hashed: ``load`` checks those)."""
        config = as_json(config)
        try:
            record = json.loads((self.entry(config) / "record.json").read_bytes())
        except (FileNotFoundError, IsADirectoryError, ValueError):
            record = None
        if (isinstance(record, dict) and record.get("config") == config and (self.entry(config) / "model.pt").is_file()
                and record.get("record_sha256") == _record_digest(record)):
            return True
        return config in self.results

    def get(self, config: dict) -> tuple[dict, dict]:
        """(state_dict, record) of the entry for ``config``, here or among the committed
        results; ``PendingResult`` when there is none (it was not computed, or may not be)."""
        config = as_json(config)
        found = self._found(config)
        if found is None:
            _log_access(config, "pending", None)
            raise PendingResult(config)
        return found

    def put(self, config: dict, state: dict, metrics: dict, seconds: float = 0.0) -> dict:
        """Store ``state`` computed elsewhere (one member of a stack, say) under ``config``,
        unless an entry is there already; the entry's record either way."""
        config = as_json(config)
        with self.lock(config):
            found = self._found(config)
            if found is not None:
                return found[1]
            remove_stale_temporaries(self.entry(config))
            record = self._write(config, state, metrics, seconds)
            _log_access(config, "computed", record["provenance"]["device"])
            return record

    def _load_local(self, config: dict) -> tuple[dict, dict] | None:
        config = as_json(config)
        entry = self.entry(config)
        try:
            record = json.loads((entry / "record.json").read_bytes())
            data = (entry / "model.pt").read_bytes()
        except (FileNotFoundError, IsADirectoryError, ValueError):  # ValueError: bad JSON or UTF-8
            return None
        if not isinstance(record, dict) or record.get("config") != config:
            return None
        # Both checksums must be there and agree: anything else is rebuilt.
        if record.get("weights_sha256") != hashlib.sha256(data).hexdigest():
            return None
        if record.get("record_sha256") != _record_digest(record):
            return None
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu"), record

    def load_or_train(self, config: dict, train: Callable[[], tuple[dict, dict]]) -> tuple[dict, dict]:
        """Return (state_dict, record) for ``config``, calling ``train()`` only if missing.

        ``train`` returns (state_dict, metrics). The record stores the config, metrics,
        wall time and ``provenance()``. ``train`` runs while this process holds the key's
        lock, so it may checkpoint into ``self.partial(config)``.
        """
        config = as_json(config)  # tuples become lists, as they come back from record.json
        found = self._found(config)
        if found is not None:
            return found
        if not self.compute:
            _log_access(config, "pending", None)
            raise PendingResult(config)
        entry = self.entry(config)
        with self.lock(config):
            found = self._found(config)  # another process may have trained it meanwhile
            if found is not None:
                return found
            remove_stale_temporaries(entry)
            remove_stale_temporaries(self.partial(config))
            report(f"computing {config['analysis']} of {describe_key(config)}" if "analysis" in config
                   else f"training {describe_key(config)}")
            start = time.perf_counter()
            state, metrics = train()
            record = self._write(config, state, metrics, time.perf_counter() - start)
            shutil.rmtree(self.partial(config), ignore_errors=True)
            _log_access(config, "computed", record["provenance"]["device"])
            return state, record

    def _found(self, config: dict) -> tuple[dict, dict] | None:
        found = self._load_local(config)
        if found is not None:
            _log_access(config, "store", found[1].get("provenance", {}).get("device"))
            return found
        found = self.results.load(config)
        if found is not None:
            _log_access(config, "results", found[1]["source"]["device"])
        return found

    def _write(self, config: dict, state: Any, metrics: dict, seconds: float) -> dict:
        """Write the entry for ``config``; the caller holds the key's lock."""
        config = as_json(config)
        entry = self.entry(config)
        weights = torch_bytes(state)
        # The old record goes first: from here until the new record lands, the entry
        # reads as missing rather than as a mismatched pair.
        (entry / "record.json").unlink(missing_ok=True)
        atomic_write_bytes(weights, entry / "model.pt")
        record = as_json({
            "config": config,
            "metrics": metrics,
            "train_seconds": seconds,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "provenance": provenance(),
        })
        record["record_sha256"] = _record_digest(record)
        atomic_write_bytes(json.dumps(record, indent=1).encode(), entry / "record.json")
        return record

    def lock(self, config: dict):
        """The key's lock, as a context manager (``load_or_train`` takes it itself)."""
        return file_lock(self.root / f"{config_key(config)}.lock")
