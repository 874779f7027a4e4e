"""CIFAR-10 / CIFAR-100 as uint8 tensors, decoded once and cached, plus batched augmentation.

Where the data comes from (``source`` argument, else the ``REPSIM_DATA`` variable):

- ``"torchvision"`` (the default): torchvision's own download and on-disk layout,
  checksummed by torchvision;
- a ``.tar.gz`` archive or a directory in image-folder layout
  (``train/<class>/*.jpg``, ``test/<class>/*.jpg``, classes in label order when sorted);
- a directory holding any of the above: ``<name>-jpeg.tar.gz``, ``<name>/`` or
  torchvision's ``cifar-10-batches-py`` / ``cifar-100-python``.

Image-folder sources list images class by class, so both splits are put in one fixed
random order (seed 0): a prefix of the training set (the paper's "less data") then holds
every class in about equal numbers.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import tarfile
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .files import file_lock, load_checked, remove_stale_temporaries, repsim_home, save_checked

# SHA-256 of archives whose content is known; others are checked against SHA256SUMS.
KNOWN_SHA256 = {
    "cifar10-jpeg.tar.gz": "5bbd2193f3b9982b20b3e62de1fcb9691706d5884e1bfe2840596f4c5f9b9bec",
}
SPLIT_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000)}
CIFAR_TRAIN_IMAGES, CIFAR_TEST_IMAGES = SPLIT_SIZES["cifar10"]
TORCHVISION_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
ORDER_SEED = 0
DECODER_VERSION = "pil-1"  # part of the cache key: a new decoder invalidates old caches


class DataUnavailableError(RuntimeError):
    """No copy of the data set could be found or downloaded."""


@dataclass(frozen=True)
class ImageDataset:
    """A data set held as tensors: images (N, 3, 32, 32) uint8, labels (N,) int64."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def fingerprint(self) -> str:
        """A content hash (labels and a strided sample of pixels): the store's key for
        the data, so models trained on other copies of a data set are kept apart."""
        digest = hashlib.sha256(self.name.encode())
        for tensor in (self.train_labels, self.test_labels, self.train_images[::97], self.test_images[::97]):
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()[:20]

    def train_prefix(self, size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``size`` training examples (all if None): the paper's fixed prefixes."""
        if size is None:
            return self.train_images, self.train_labels
        if not 0 < size <= len(self.train_labels):
            raise ValueError(f"train size must be in 1..{len(self.train_labels)}, got {size}")
        return self.train_images[:size], self.train_labels[:size]


def train_count(size: int | None, data=None) -> int:
    """Images in the training-set prefix ``size`` (None: all of them) of ``data``, an
    ``ImageDataset`` or just its fingerprint (then CIFAR's 50,000 are all)."""
    if size is not None:
        return size
    return len(data.train_labels) if isinstance(data, ImageDataset) else CIFAR_TRAIN_IMAGES


def test_count(data=None, limit: int | None = None) -> int:
    """Test images of ``data`` (an ``ImageDataset``, or its fingerprint: CIFAR's 10,000),
    at most ``limit`` (None: all)."""
    available = len(data.test_labels) if isinstance(data, ImageDataset) else CIFAR_TEST_IMAGES
    return available if limit is None else min(limit, available)


def load_dataset(name: str = "cifar10", source: str | os.PathLike | None = None) -> ImageDataset:
    """Load ``name`` ("cifar10" or "cifar100") from ``source``, decoding only on first use.

    The decoded tensors are cached under ``$REPSIM_HOME/cache`` in a file that carries its
    own SHA-256; a cache file damaged on disk is reported and decoded again.
    """
    _check_name(name)
    source = source if source is not None else os.environ.get("REPSIM_DATA", "torchvision")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or 'torchvision', got {type(source).__name__} {source!r}")
    if str(source) == "torchvision":
        return _load_torchvision(name, repsim_home() / "data", download=True)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataUnavailableError(f"data source {str(path)!r} does not exist. " + _HOW_TO_PROVIDE.format(name=name))
    if path.is_dir():
        path = _find_in_directory(name, path)
    elif _named_for(path) not in (None, name):
        raise DataUnavailableError(f"{path} holds {_named_for(path)}, not {name}. " + _HOW_TO_PROVIDE.format(name=name))
    if path.is_dir() and path.name == TORCHVISION_FOLDERS[name]:
        return _load_torchvision(name, path.parent, download=False)
    key = _sha256(path) if path.is_file() else f"{path.resolve()}:{_tree_mtime(path)}"
    if path.is_file():
        _verify_checksum(path, key)
    cache_key = f"{key}:{DECODER_VERSION}"
    cache = repsim_home() / "cache" / f"{name}-{hashlib.sha256(cache_key.encode()).hexdigest()[:16]}.pt"
    # Two processes (say, chapters run in parallel) decode once: the second waits, then reads.
    with file_lock(cache.with_suffix(".lock")):
        tensors = _read_cache(cache)
        if tensors is None:
            remove_stale_temporaries(cache.parent)
            files = _read_archive(path) if path.is_file() else _read_folder(path)
            tensors = _decode_image_folder(files, name, origin=str(path))
            save_checked(tensors, cache)
    return ImageDataset(**tensors, name=name, source=str(path))


_CACHE_FIELDS = {"train_images", "train_labels", "test_images", "test_labels", "classes"}


def _read_cache(cache: Path) -> dict | None:
    """The cached tensors, or None (and a warning) when the file is absent or damaged."""
    if not cache.exists():
        return None
    try:
        tensors = load_checked(cache)
    except Exception:  # noqa: BLE001 -- a checksummed file that torch cannot read: rebuild it
        tensors = None
    if isinstance(tensors, dict) and set(tensors) == _CACHE_FIELDS:
        return tensors
    # Caches written before they carried a checksum land here too, and are decoded once more.
    warnings.warn(f"the data cache {cache} is corrupted or unverifiable (checksum mismatch); decoding the data again",
                  stacklevel=3)
    return None


def _check_name(name: str) -> None:
    if not isinstance(name, str) or name not in SPLIT_SIZES:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(SPLIT_SIZES)}")


def is_available(name: str, source: str | os.PathLike | None = None) -> bool:
    """Whether ``name`` can be loaded without a download (e.g. "is CIFAR-100 present?")."""
    _check_name(name)
    source = source if source is not None else os.environ.get("REPSIM_DATA", "torchvision")
    if str(source) == "torchvision":
        return (repsim_home() / "data" / TORCHVISION_FOLDERS[name]).is_dir()
    path = Path(source).expanduser()
    if path.is_file():
        return _named_for(path) in (None, name)
    try:
        return path.is_dir() and _find_in_directory(name, path) is not None
    except DataUnavailableError:
        return False


def _named_for(path: Path) -> str | None:
    """The data set an archive's file name announces ("cifar10-jpeg.tar.gz": cifar10), if any."""
    stem = path.name.split(".")[0]
    return next((name for name in SPLIT_SIZES if stem == name or stem.startswith(name + "-")), None)


_HOW_TO_PROVIDE = (
    "To provide {name}: connect to the internet and use source='torchvision' (the default), "
    "or set REPSIM_DATA (or pass source=) to a local copy: a torchvision CIFAR folder, an "
    "image-folder directory with train/<class>/ and test/<class>/, or a .tar.gz of one "
    "(e.g. cifar10-jpeg.tar.gz)."
)


def _find_in_directory(name: str, directory: Path) -> Path:
    candidates = [
        directory / f"{name}-jpeg.tar.gz",
        directory / name,
        directory / TORCHVISION_FOLDERS[name],
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    if (directory / "train").is_dir() and (directory / "test").is_dir():
        return directory
    if directory.name == TORCHVISION_FOLDERS[name]:
        return directory
    raise DataUnavailableError(
        f"{str(directory)!r} holds no {name}: expected one of "
        f"{[c.name for c in candidates]} or train/ and test/ folders. " + _HOW_TO_PROVIDE.format(name=name)
    )


def _load_torchvision(name: str, root: Path, download: bool) -> ImageDataset:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    try:
        splits = [cls(root=str(root), train=train, download=download) for train in (True, False)]
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a bad checksum a RuntimeError
        raise DataUnavailableError(
            f"could not {'download' if download else 'read'} {name} with torchvision into {root}: {err}. "
            + _HOW_TO_PROVIDE.format(name=name)
        ) from err
    # torchvision keeps (N, 32, 32, 3) uint8 arrays in memory; no per-image work needed.
    images = [torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous() for s in splits]
    labels = [torch.tensor(s.targets, dtype=torch.int64) for s in splits]
    return ImageDataset(images[0], labels[0], images[1], labels[1], tuple(splits[0].classes), name=name, source=f"torchvision:{root}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_checksum(path: Path, actual: str) -> None:
    expected = KNOWN_SHA256.get(path.name)
    sums = path.parent / "SHA256SUMS"
    if expected is None and sums.exists():
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == path.name:
                expected = parts[0]
    if expected is not None and expected != actual:
        raise ValueError(f"checksum mismatch for {path}: SHA-256 is {actual}, expected {expected}; the file is corrupted or not the published archive")


def _tree_mtime(path: Path) -> int:
    return max((p.stat().st_mtime_ns for p in path.rglob("*")), default=0)


def _read_archive(path: Path) -> dict[str, bytes]:
    """{relative path: file bytes} for every file in a .tar.gz."""
    files = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    files[member.name.lstrip("./")] = tar.extractfile(member).read()
            # tarfile stops quietly at a damaged header, as if the archive ended there;
            # reading the compressed stream to its end makes gzip check its CRC and length.
            while tar.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:  # zlib: a damaged compressed stream
        raise ValueError(f"archive {path} is truncated or corrupted: {err}") from err
    return files


def _read_folder(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _decode_image_folder(files: dict[str, bytes], name: str, origin: str, workers: int | None = None) -> dict:
    """Decode train/<class>/<file> and test/<class>/<file> into shuffled uint8 tensors,
    in ``workers`` processes (default: one per core, at most 16; 1 decodes here)."""
    by_split: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for rel in sorted(files):
        parts = Path(rel).parts
        if len(parts) >= 3 and parts[-3] in by_split:
            by_split[parts[-3]].setdefault(parts[-2], []).append(rel)
    classes = sorted(by_split["train"])
    if not classes or sorted(by_split["test"]) != classes:
        raise ValueError(
            f"{origin} is not in image-folder layout: expected train/<class>/<image> and "
            f"test/<class>/<image> with the same classes; found train classes {classes[:10]} "
            f"and test classes {sorted(by_split['test'])[:10]}"
        )
    out = {"classes": tuple(classes)}
    generator = torch.Generator().manual_seed(ORDER_SEED)
    for split, per_class in by_split.items():
        paths = [p for c in classes for p in per_class[c]]
        labels = torch.tensor([i for i, c in enumerate(classes) for _ in per_class[c]], dtype=torch.int64)
        images = torch.from_numpy(_decode_all([(p, files[p]) for p in paths], origin, workers)).permute(0, 3, 1, 2)
        order = torch.randperm(len(paths), generator=generator)
        out[f"{split}_images"], out[f"{split}_labels"] = images[order].contiguous(), labels[order]
    return out


def _decode_all(items: list[tuple[str, bytes]], origin: str, workers: int | None = None) -> np.ndarray:
    """(N, 32, 32, 3) uint8 pixels of the image files ``items`` ((name, bytes), in order).

    A 32x32 JPEG decodes in tens of microseconds, so Python's per-image work dominates
    and threads only contend for the GIL (2 threads: 0.69x one, ``benchmarks/decode.py``):
    chunks go to forked processes instead, where the platform forks; the pixels are
    Pillow's either way, so the data fingerprint does not depend on the worker count.
    """
    workers = workers or min(16, os.cpu_count() or 1)
    chunks = [items[i : i + 2_000] for i in range(0, len(items), 2_000)]
    if workers > 1 and len(chunks) > 1 and "fork" in multiprocessing.get_all_start_methods():
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return np.concatenate(list(pool.map(_decode_chunk, chunks, [origin] * len(chunks))))
    return np.concatenate([_decode_chunk(chunk, origin) for chunk in chunks]) if chunks else np.empty((0, 32, 32, 3), np.uint8)


def _decode_chunk(items: list[tuple[str, bytes]], origin: str) -> np.ndarray:
    return np.stack([_decode(data, rel, origin) for rel, data in items])


def _decode(data: bytes, rel: str, origin: str) -> np.ndarray:
    """One image file to (32, 32, 3) uint8 pixels (Pillow: torchvision.io's codecs are
    deprecated)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:  # Pillow's errors for broken files
        raise ValueError(f"cannot decode image {rel} in {origin}: {err}") from err
    if pixels.shape != (32, 32, 3):
        shape = (3, *pixels.shape[:2])
        raise ValueError(f"image {rel} in {origin} has shape {shape}, expected (3, 32, 32)")
    return pixels


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) to float in [0, 1]; the paper uses no mean/std normalisation."""
    return images.float().div_(255)


def augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Batched CIFAR augmentation on the images' device: 4-pixel reflect pad, random
    32x32 crop, random horizontal flip. images: (B, C, H, W) float -> same shape."""
    b, c, h, w = images.shape
    padded = F.pad(images, (4, 4, 4, 4), mode="reflect")  # (B, C, H + 8, W + 8)
    dev = images.device
    dy = torch.randint(0, 9, (b, 1), generator=generator, device=generator.device if generator else dev).to(dev)
    dx = torch.randint(0, 9, (b, 1), generator=generator, device=generator.device if generator else dev).to(dev)
    rows = (dy + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=dev)[:, None, None, None]
    chans = torch.arange(c, device=dev)[None, :, None, None]
    crops = padded[batch, chans, rows, cols]
    flip = torch.rand(b, generator=generator, device=generator.device if generator else dev).to(dev) < 0.5
    return torch.where(flip[:, None, None, None], crops.flip(3), crops)
