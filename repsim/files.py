"""Files that survive interruption, and the keys that name them: repsim's bottom layer.

Everything here is about bytes on disk and imports nothing of repsim: writes that land
whole or not at all (a temporary file, fsync, an atomic rename), files that carry their
own checksum, an exclusive lock per path that the kernel drops when its holder dies, and
the stable hash (``config_key``) under which a configuration's results are stored.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


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


def torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# Files that carry their own checksum: this header line, then the torch.save bytes.
_CHECKED_MAGIC = b"repsim-sha256:"


def save_checked(obj: Any, path: Path) -> None:
    """Atomically ``torch.save`` ``obj`` behind a SHA-256 header, for ``load_checked``."""
    data = torch_bytes(obj)
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


def as_json(value: Any) -> Any:
    """``value`` as it comes back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


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
