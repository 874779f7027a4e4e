"""A content-addressed store of trained models: load a cached run, train only when missing.

An entry lives in ``<root>/<key>/``, where ``key`` hashes the full configuration (model,
training recipe, data) and the seed. It holds ``model.pt`` and ``record.json``; the
record is written last and carries the weights' SHA-256, so an entry counts as present
only when both files are complete and agree. Every file is written to a temporary name
and renamed into place, so an interrupted run never leaves a file that reads as valid.
A lock file per key keeps two processes from training the same model at once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


def repsim_home() -> Path:
    """Root for data caches and the model store: ``$REPSIM_HOME`` or ``~/.cache/repsim``."""
    return Path(os.environ.get("REPSIM_HOME", Path.home() / ".cache" / "repsim")).expanduser()


def atomic_write_bytes(data: bytes, path: Path) -> None:
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


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename."""
    atomic_write_bytes(_torch_bytes(obj), Path(path))


def _as_json(config: dict) -> dict:
    return json.loads(json.dumps(config))


def config_key(config: dict) -> str:
    """A stable 20-hex-digit key for a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def as_config(*parts: Any, **named: Any) -> dict:
    """Merge dataclass configs and plain values into one JSON-ready dict."""
    out = {}
    for part in parts:
        out[type(part).__name__] = dataclasses.asdict(part)
    out.update(named)
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
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
    }


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Store:
    """Load-or-train keyed by configuration and seed."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else repsim_home() / "store"

    def entry(self, config: dict) -> Path:
        return self.root / config_key(config)

    def load(self, config: dict) -> tuple[dict, dict] | None:
        """(state_dict, record) of a complete, intact entry, else None."""
        config = _as_json(config)
        entry = self.entry(config)
        record_path, weights_path = entry / "record.json", entry / "model.pt"
        if not (record_path.exists() and weights_path.exists()):
            return None
        try:
            record = json.loads(record_path.read_text())
        except json.JSONDecodeError:
            return None
        data = weights_path.read_bytes()
        if record.get("weights_sha256") != hashlib.sha256(data).hexdigest() or record.get("config") != config:
            return None  # corrupted or stale: rebuild rather than trust it
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu"), record

    def load_or_train(self, config: dict, train: Callable[[], tuple[dict, dict]]) -> tuple[dict, dict]:
        """Return (state_dict, record) for ``config``, calling ``train()`` only if missing.

        ``train`` returns (state_dict, metrics). The record stores the config, metrics,
        wall time and ``provenance()``.
        """
        config = _as_json(config)  # tuples become lists, as they come back from record.json
        found = self.load(config)
        if found is not None:
            return found
        entry = self.entry(config)
        with _locked(self.root / f"{entry.name}.lock"):
            found = self.load(config)  # another process may have trained it meanwhile
            if found is not None:
                return found
            start = time.perf_counter()
            state, metrics = train()
            seconds = time.perf_counter() - start
            weights = _torch_bytes(state)
            atomic_write_bytes(weights, entry / "model.pt")
            record = {
                "config": config,
                "metrics": metrics,
                "train_seconds": seconds,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "weights_sha256": hashlib.sha256(weights).hexdigest(),
                "provenance": provenance(),
            }
            atomic_write_bytes(json.dumps(record, indent=1).encode(), entry / "record.json")
            return state, record
