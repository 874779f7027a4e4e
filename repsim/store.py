"""A content-addressed store of trained models: load a cached run, train only when missing.

An entry lives in ``<root>/<key>/``, where ``key`` hashes the full configuration (model,
training recipe, data) and the seed. It holds ``model.pt`` and ``record.json``; the
record is written last and carries the SHA-256 of the weights and of itself, so an entry
counts as present only when both files are complete and agree. Every file is written to
a temporary name, fsynced and renamed into place, so an interrupted run never leaves a
file that reads as valid.

A lock file per key (``<root>/<key>.lock``, ``fcntl.flock``) keeps two processes from
training the same model at once: the second waits, then loads. The kernel drops the
lock when its holder dies, even by SIGKILL. While a model trains, its checkpoints live in
``<root>/<key>.partial/`` (see ``Store.partial``); that folder is removed once the entry
is complete.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from . import devices
from .progress import report_computing


def repsim_home() -> Path:
    """Root for data caches and the model store: ``$REPSIM_HOME`` or ``~/.cache/repsim``."""
    return Path(os.environ.get("REPSIM_HOME", Path.home() / ".cache" / "repsim")).expanduser()


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)  # make the rename itself survive a power cut


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files left by a writer that was killed mid-write. Only call this
    while holding the lock that serialises writers to ``folder``."""
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename."""
    atomic_write_bytes(_torch_bytes(obj), Path(path))


# Files that carry their own checksum: this header line, then the torch.save bytes.
_CHECKED_MAGIC = b"repsim-sha256:"


def save_checked(obj: Any, path: Path) -> None:
    """Atomically ``torch.save`` ``obj`` behind a SHA-256 header, for ``load_checked``."""
    data = _torch_bytes(obj)
    atomic_write_bytes(_CHECKED_MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data, Path(path))


def load_checked(path: Path) -> Any | None:
    """What ``save_checked`` wrote to ``path``; None if the file is missing, truncated,
    altered, or not in this format (so the caller rebuilds it rather than trusting it)."""
    try:
        raw = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    header, _, data = raw.partition(b"\n")
    if not header.startswith(_CHECKED_MAGIC) or header[len(_CHECKED_MAGIC):] != hashlib.sha256(data).hexdigest().encode():
        return None
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _as_json(config: dict) -> dict:
    return json.loads(json.dumps(config))


def config_key(config: dict) -> str:
    """A stable 20-hex-digit key for a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def as_config(*parts: Any, **named: Any) -> dict:
    """Merge dataclass configs and plain values into one JSON-ready dict: a positional
    dataclass goes under its type's name, a named one is turned into a dict too."""
    out = {}
    for part in parts:
        out[type(part).__name__] = dataclasses.asdict(part)
    for name, value in named.items():
        out[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
    return out


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


@contextmanager
def file_lock(path: Path):
    """An exclusive ``flock`` on ``path`` (created if missing), held for the ``with`` body.

    The lock file is never deleted: removing it would let a waiter and a newcomer lock
    two different files of the same name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
        from .results import ResultsArchive, default_root

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
        return self._load_local(config) or self.results.load(_as_json(config))

    def _load_local(self, config: dict) -> tuple[dict, dict] | None:
        config = _as_json(config)
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
        config = _as_json(config)  # tuples become lists, as they come back from record.json
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
            report_computing(config)
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
        config = _as_json(config)
        entry = self.entry(config)
        weights = _torch_bytes(state)
        # The old record goes first: from here until the new record lands, the entry
        # reads as missing rather than as a mismatched pair.
        (entry / "record.json").unlink(missing_ok=True)
        atomic_write_bytes(weights, entry / "model.pt")
        record = _as_json({
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
