"""Committed results: store entries computed elsewhere (a GPU window), kept in the repository.

``results/<profile>/`` holds a ``manifest.json`` and one compact file per entry under
``entries/``. An entry is what the model store would hold for one key (the analysis'
tensors and its record), packed small: float matrices as float16, class predictions as
uint8, the whole gzip-compressed. Each file's SHA-256 is in the manifest and is checked
on every read, so a damaged file reads as missing, never as a wrong result.

``ResultsArchive`` serves these entries to ``repsim.store.Store`` by key. A key hashes
the model, the recipe, the data fingerprint, the seed and the analysis settings, so an
entry whose code has since changed is simply not found: chapters show it as pending and
``python -m repsim.harvest --plan`` as stale.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import torch

from .files import atomic_write_bytes, config_key

RESULTS_FORMAT = "repsim-results-1"
ENTRY_FORMAT = "repsim-entry-1"
HALF_PRECISION_MIN = 256  # float tensors of at least this many elements are kept as float16


def pack_entry(config: dict, state: dict[str, torch.Tensor], record: dict, exact: bool = False) -> bytes:
    """One store entry as compact bytes: large float tensors in float16 (CKA and PC
    matrices: absolute error below 5e-4 for values in [-1, 1]) unless ``exact`` (model
    weights), integer tensors in the smallest type that holds them, gzip-compressed.
    ``unpack_entry`` restores the dtypes."""
    packed, dtypes = {}, {}
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"entry field {name!r} is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach().cpu().contiguous()
        dtypes[name] = str(tensor.dtype).removeprefix("torch.")
        if tensor.is_floating_point() and tensor.numel() >= HALF_PRECISION_MIN and not exact:
            if tensor.abs().max() > 6e4:
                raise ValueError(f"entry field {name!r} exceeds float16's range; it cannot be packed")
            tensor = tensor.half()
        elif not tensor.is_floating_point() and tensor.numel() and tensor.dtype != torch.bool:
            low, high = int(tensor.min()), int(tensor.max())
            tensor = tensor.to(torch.uint8 if 0 <= low and high < 256 else torch.int16 if -2**15 <= low and high < 2**15
                               else tensor.dtype)
        packed[name] = tensor
    buffer = io.BytesIO()
    torch.save({"format": ENTRY_FORMAT, "config": config, "record": record, "state": packed, "dtypes": dtypes}, buffer)
    return gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)


def unpack_entry(data: bytes) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(config, state, record) from ``pack_entry``'s bytes; ValueError if they are not one."""
    try:
        entry = torch.load(io.BytesIO(gzip.decompress(data)), weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 -- gzip, zip and unpickling errors alike mean "not an entry"
        raise ValueError(f"not a repsim result entry: {err}") from err
    if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
        raise ValueError("not a repsim result entry (unknown format)")
    state = {name: tensor.to(getattr(torch, entry["dtypes"][name])) for name, tensor in entry["state"].items()}
    return entry["config"], state, entry["record"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def default_root() -> Path | None:
    """``$REPSIM_RESULTS``, else the repository's ``results/`` beside this package."""
    if os.environ.get("REPSIM_RESULTS"):
        return Path(os.environ["REPSIM_RESULTS"]).expanduser()
    here = Path(__file__).resolve().parents[1] / "results"
    return here if here.is_dir() else None


def read_manifest(folder: Path) -> dict:
    """``folder/manifest.json`` (an empty manifest when absent); ValueError if unreadable."""
    path = Path(folder) / "manifest.json"
    if not path.exists():
        return {"format": RESULTS_FORMAT, "entries": {}, "bundles": {}}
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a repsim results manifest (format {RESULTS_FORMAT!r})")
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_bytes((json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(), Path(folder) / "manifest.json")


class ResultsArchive:
    """Read-only access by key to the entries under ``root/<profile>/``, for every profile."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root) if root is not None else None
        self._index: dict[str, tuple[Path, dict]] | None = None

    def index(self) -> dict[str, tuple[Path, dict]]:
        """{key: (folder, manifest row)} over every profile's manifest, read once."""
        if self._index is None:
            self._index = {}
            if self.root is not None and self.root.is_dir():
                for manifest_path in sorted(self.root.glob("*/manifest.json")):
                    folder = manifest_path.parent
                    for key, row in read_manifest(folder)["entries"].items():
                        self._index.setdefault(key, (folder, row))
        return self._index

    def load(self, config: dict) -> tuple[dict, dict] | None:
        """(state, record) of the committed entry for ``config``, or None when there is
        none or its file is missing or damaged."""
        found = self.index().get(config_key(config))
        if found is None:
            return None
        folder, row = found
        try:
            data = (folder / row["file"]).read_bytes()
        except OSError:
            return None
        if sha256(data) != row["sha256"]:
            return None
        try:
            stored_config, state, record = unpack_entry(data)
        except ValueError:
            return None
        if stored_config != config:
            return None
        return state, {**record, "source": {"results": folder.name, "bundle": row.get("bundle"),
                                            "device": row.get("device")}}

    def __contains__(self, config: dict) -> bool:
        return config_key(config) in self.index()

