"""A harvest's bundle: what one GPU window computed, small enough to come back, checkable.

A bundle is one or more zip files ``bundle-<id>-<part>.zip`` (at most 15 MiB each, so a
window's eight returned files of 16 MiB hold it). Every part carries the bundle's
``manifest.json`` (profile, data fingerprint, code commit, device, self-check, the jobs
with their estimated and measured seconds, the measured rates) and its share of the
entries, each listed in the manifest with its SHA-256.

``read_bundle`` verifies everything (zip CRCs, format, checksums, and that every entry's
configuration hashes to its key) before anything is used; ``import_bundles`` merges
verified bundles into ``results/<profile>/`` and never removes or overwrites an entry
already there.
"""

from __future__ import annotations

import io
import json
import secrets
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write_bytes, config_key
from ..results import RESULTS_FORMAT, read_manifest, sha256, unpack_entry, write_manifest

BUNDLE_FORMAT = "repsim-bundle-1"
PART_BYTES = 15 * 2**20
TOTAL_BYTES = 56 * 2**20  # what a window can return (64 MiB), less room for the log


class BundleError(ValueError):
    """A bundle that is not a complete, intact repsim harvest."""


@dataclass
class BundleWriter:
    """Collects a harvest's entries and rewrites its bundle files after every job."""

    folder: Path
    manifest: dict
    entries: dict[str, tuple[dict, bytes]] = field(default_factory=dict)  # key -> (manifest row, packed bytes)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.manifest = {**self.manifest, "format": BUNDLE_FORMAT, "id": f"{stamp}-{secrets.token_hex(3)}"}

    @property
    def bytes(self) -> int:
        return sum(len(data) for _, data in self.entries.values())

    def add(self, key: str, name: str, data: bytes, device: str) -> None:
        if len(data) > PART_BYTES:
            raise BundleError(f"{name}: {len(data):,} bytes packed, more than a bundle part holds ({PART_BYTES:,})")
        row = {"name": name, "file": f"entries/{key}.pt.gz", "sha256": sha256(data), "bytes": len(data),
               "device": device, "computed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.entries[key] = (row, data)

    def save(self) -> list[Path]:
        """Write every part (atomically) and return their paths."""
        parts: list[list[str]] = [[]]
        size = 0
        for key, (_, data) in self.entries.items():
            if parts[-1] and size + len(data) > PART_BYTES:
                parts.append([])
                size = 0
            parts[-1].append(key)
            size += len(data)
        paths = []
        for number, keys in enumerate(parts, 1):
            manifest = {**self.manifest, "part": number, "parts": len(parts),
                        "entries": {key: self.entries[key][0] for key in keys}}
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
                for key in keys:
                    row, data = self.entries[key]
                    archive.writestr(row["file"], data)
            path = self.folder / f"bundle-{self.manifest['id']}-{number}.zip"
            atomic_write_bytes(buffer.getvalue(), path)
            paths.append(path)
        return paths


def read_bundle(path: Path) -> tuple[dict, dict[str, bytes]]:
    """(manifest, {key: packed entry}) of one verified bundle part; ``BundleError`` naming
    the file and the fault if it is truncated, corrupted or not a repsim bundle."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            if broken is not None:
                raise BundleError(f"{path.name}: {broken} fails its CRC check (the file is corrupted)")
            try:
                manifest = json.loads(archive.read("manifest.json"))
            except KeyError:
                raise BundleError(f"{path.name} has no manifest.json: not a repsim harvest bundle") from None
            if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
                raise BundleError(f"{path.name} is not a repsim harvest bundle (format {BUNDLE_FORMAT!r} expected)")
            for field_name in ("id", "profile", "data", "entries"):
                if field_name not in manifest:
                    raise BundleError(f"{path.name}: its manifest lacks {field_name!r}")
            entries = {}
            for key, row in manifest["entries"].items():
                try:
                    data = archive.read(row["file"])
                except KeyError:
                    raise BundleError(f"{path.name}: entry {row.get('name', key)!r} is listed but missing") from None
                if sha256(data) != row["sha256"]:
                    raise BundleError(f"{path.name}: entry {row['name']!r} fails its SHA-256 check")
                try:
                    config, _, _ = unpack_entry(data)
                except ValueError as err:
                    raise BundleError(f"{path.name}: entry {row['name']!r}: {err}") from None
                if config_key(config) != key:
                    raise BundleError(f"{path.name}: entry {row['name']!r} holds the result of another key")
                entries[key] = data
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, UnicodeDecodeError) as err:
        if isinstance(err, BundleError):
            raise
        raise BundleError(f"{path.name} is truncated or not a zip file: {err}") from err
    return manifest, entries


def bundle_paths(source: Path) -> list[Path]:
    """The bundle parts in a folder (or the one file given)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise BundleError(f"{source} does not exist")
    return sorted(source.glob("bundle-*.zip"))


def read_bundles(source: Path) -> list[tuple[Path, dict, dict[str, bytes]]]:
    """Every bundle part under ``source``, all verified first."""
    return [(path, *read_bundle(path)) for path in bundle_paths(source)]


def import_bundles(source: Path, results_root: Path) -> dict:
    """Merge the bundles under ``source`` into ``results_root/<profile>/``.

    Every part is verified before anything is written; one bad part refuses the whole
    import. Entry files are written before the manifest (atomically) that lists them, so
    an interrupted import leaves the earlier results as they were. An entry already
    present is kept. Returns counts: parts, added, already present, and the profiles.
    """
    parts = read_bundles(source)
    if not parts:
        raise BundleError(f"no bundle files (bundle-*.zip) in {source}")
    summary = {"parts": len(parts), "added": 0, "present": 0, "profiles": []}
    for profile in sorted({manifest["profile"] for _, manifest, _ in parts}):
        folder = Path(results_root) / profile
        manifest = read_manifest(folder)
        ours = [(path, m, e) for path, m, e in parts if m["profile"] == profile]
        data = manifest.get("data")
        for path, bundle, _ in ours:
            if data is not None and bundle["data"]["fingerprint"] != data["fingerprint"]:
                raise BundleError(f"{path.name} was computed on other data (fingerprint {bundle['data']['fingerprint']}) "
                                  f"than results/{profile} (fingerprint {data['fingerprint']}); refusing to mix them")
            data = data or bundle["data"]
        for _, bundle, entries in ours:
            for key, packed in entries.items():
                row = bundle["entries"][key]
                if key in manifest["entries"]:
                    summary["present"] += 1
                    continue
                atomic_write_bytes(packed, folder / row["file"])
                manifest["entries"][key] = {**row, "bundle": bundle["id"]}
                summary["added"] += 1
            record = {k: v for k, v in bundle.items() if k not in ("entries", "part", "parts", "format")}
            manifest["bundles"][bundle["id"]] = record
        manifest.update(format=RESULTS_FORMAT, profile=profile, data=data)
        write_manifest(folder, manifest)
        summary["profiles"].append(profile)
    return summary


def harvested(results_root: Path | None, profile: str, extra: Path | None = None) -> tuple[set[str], dict[str, str], list[dict]]:
    """What is already harvested for ``profile``: the keys, {entry name: key}, and the
    bundle records (with their measurements), from ``results_root/<profile>/`` and from
    any bundles in ``extra`` (a harvest's output folder)."""
    keys, names, records = set(), {}, []
    if results_root is not None:
        manifest = read_manifest(Path(results_root) / profile)
        for key, row in manifest["entries"].items():
            keys.add(key)
            names[row["name"]] = key
        records.extend(manifest["bundles"].values())
    if extra is not None and Path(extra).is_dir():
        for _, bundle, entries in read_bundles(extra):
            if bundle["profile"] != profile:
                continue
            for key in entries:
                keys.add(key)
                names[bundle["entries"][key]["name"]] = key
            records.append(bundle)
    return keys, names, records
