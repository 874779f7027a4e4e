"""Data loading (the shared CIFAR-10 archive, tiny image folders made here), its errors,
and the batched augmentation."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import repsim.data as data
from repsim.data import DataUnavailableError, augment, is_available, load_dataset, to_float


def encode(image: torch.Tensor, fmt: str) -> bytes:
    """A (3, H, W) uint8 tensor as PNG or JPEG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format=fmt)
    return buffer.getvalue()


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# ---------------------------------------------------------------------------------------
# The shared CIFAR-10 archive
# ---------------------------------------------------------------------------------------


def test_cifar10_shapes_and_classes(cifar):
    assert cifar.train_images.shape == (50_000, 3, 32, 32) and cifar.train_images.dtype == torch.uint8
    assert cifar.test_images.shape == (10_000, 3, 32, 32) and cifar.test_images.dtype == torch.uint8
    assert cifar.train_labels.shape == (50_000,) and cifar.train_labels.dtype == torch.int64
    assert cifar.test_labels.shape == (10_000,) and cifar.test_labels.dtype == torch.int64
    assert cifar.classes == CIFAR10_CLASSES and cifar.num_classes == 10
    assert cifar.name == "cifar10"


def test_cifar10_labels_balanced_and_prefix_mixed(cifar):
    assert torch.bincount(cifar.train_labels, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(cifar.test_labels, minlength=10).tolist() == [1000] * 10
    # Image folders list class by class; the fixed shuffle makes every prefix mixed.
    counts = torch.bincount(cifar.train_labels[:3000], minlength=10)
    assert ((counts >= 200) & (counts <= 400)).all(), counts.tolist()
    counts = torch.bincount(cifar.test_labels[:500], minlength=10)
    assert (counts >= 25).all(), counts.tolist()
    images, labels = cifar.train_prefix(3000)
    assert torch.equal(images, cifar.train_images[:3000]) and torch.equal(labels, cifar.train_labels[:3000])
    with pytest.raises(ValueError, match="train size"):
        cifar.train_prefix(50_001)


def test_cifar10_pixels_are_rgb_cifar(cifar):
    # Per-channel training means of CIFAR-10 (shared/data/README.md): decoded as RGB.
    means = to_float(cifar.train_images[::10]).mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.tensor([0.4913, 0.4821, 0.4465]), atol=0.01), means.tolist()


def test_cifar10_second_load_hits_the_cache(cifar, cifar_source, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("the archive was decoded again instead of read from the cache")

    monkeypatch.setattr(data, "_decode_image_folder", no_decoding)
    monkeypatch.setattr(data, "_read_archive", no_decoding)
    start = time.perf_counter()
    again = load_dataset("cifar10", source=cifar_source)
    seconds = time.perf_counter() - start
    assert seconds < 5, f"cached load took {seconds:.1f} s"
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(again, field), getattr(cifar, field)), field
    assert again.classes == cifar.classes
    assert again.fingerprint == cifar.fingerprint


# ---------------------------------------------------------------------------------------
# Tiny image folders made here
# ---------------------------------------------------------------------------------------

TINY_CLASSES = ("cat", "dog", "frog")  # sorted: labels 0, 1, 2


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch, request):
    """A per-test REPSIM_HOME for the tiny data sets, so their caches never collide."""
    if "cifar" not in request.fixturenames:
        monkeypatch.setenv("REPSIM_HOME", str(tmp_path / "home"))


def make_image_folder(root: Path, n_train: int = 4, n_test: int = 2, seed: int = 0,
                      splits=("train", "test")) -> dict[bytes, tuple[str, int]]:
    """Write random 32x32 images into root/<split>/<class>/; PNGs are lossless, so the
    loaded pixels can be compared exactly. Returns {pixel bytes: (split, label)}."""
    g = torch.Generator().manual_seed(seed)
    written = {}
    for split in splits:
        count = n_train if split == "train" else n_test
        for label, name in enumerate(TINY_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)
                (folder / f"{i:04d}.png").write_bytes(encode(image, 'PNG'))
                written[image.numpy().tobytes()] = (split, label)
    return written


def make_archive(folder: Path, archive: Path, prefix: str = "") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=f"{prefix}{child.name}")
    return archive


def check_tiny(ds, written: dict, n_train: int = 4, n_test: int = 2) -> None:
    assert ds.classes == TINY_CLASSES
    assert ds.train_images.shape == (3 * n_train, 3, 32, 32) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (3 * n_test, 3, 32, 32)
    for split in ("train", "test"):
        images, labels = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")
        for image, label in zip(images, labels):
            assert written[image.numpy().tobytes()] == (split, int(label))


def test_tiny_folder_loads_from_directory_and_archive(tmp_path):
    folder = tmp_path / "tiny"
    written = make_image_folder(folder)
    from_dir = load_dataset("cifar10", source=folder)
    check_tiny(from_dir, written)
    assert from_dir.source == str(folder)
    archive = make_archive(folder, tmp_path / "tiny.tar.gz")
    from_archive = load_dataset("cifar10", source=archive)
    check_tiny(from_archive, written)
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(from_dir, field), getattr(from_archive, field)), field
    assert from_dir.fingerprint == from_archive.fingerprint
    # The order is shuffled (seeded), not class by class.
    assert from_dir.train_labels.tolist() != sorted(from_dir.train_labels.tolist())


def test_archive_with_top_level_folder_and_jpegs(tmp_path):
    folder = tmp_path / "tiny"
    written = make_image_folder(folder)
    jpeg = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    (folder / "train" / "dog" / "9999.jpg").write_bytes(encode(jpeg, 'JPEG'))
    archive = make_archive(folder, tmp_path / "tiny.tar.gz", prefix="./tiny/")
    ds = load_dataset("cifar10", source=archive)
    assert ds.train_images.shape == (13, 3, 32, 32)
    found = [(img, int(lab)) for img, lab in zip(ds.train_images, ds.train_labels)
             if img.numpy().tobytes() not in written]
    assert len(found) == 1 and found[0][1] == TINY_CLASSES.index("dog")
    assert (found[0][0].int() - 128).abs().max() <= 3  # lossy, but a flat grey stays grey


def test_directory_holding_named_archive_is_found(tmp_path):
    make_image_folder(tmp_path / "tiny")
    holder = tmp_path / "holder"
    holder.mkdir()
    make_archive(tmp_path / "tiny", holder / "cifar10-jpeg.tar.gz")
    # Not the published archive, so its (known) checksum does not match.
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_dataset("cifar10", source=holder)
    assert is_available("cifar10", holder)
    assert is_available("cifar10", tmp_path / "tiny")
    assert not is_available("cifar10", tmp_path / "missing")
    assert not is_available("cifar10", tmp_path / "tiny" / "train")


def test_tiny_archive_second_load_uses_cache(tmp_path, monkeypatch):
    folder = tmp_path / "tiny"
    written = make_image_folder(folder)
    archive = make_archive(folder, tmp_path / "tiny.tar.gz")
    first = load_dataset("cifar10", source=archive)
    cached = list((tmp_path / "home" / "cache").glob("cifar10-*.pt"))
    assert len(cached) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data, "_decode_image_folder", no_decoding)
    second = load_dataset("cifar10", source=archive)
    check_tiny(second, written)
    assert torch.equal(first.train_images, second.train_images)
    assert not list((tmp_path / "home").rglob("*.tmp"))


def test_changed_archive_is_decoded_again(tmp_path):
    # The cache is keyed by content: a different archive at the same path is not served stale.
    folder = tmp_path / "tiny"
    make_image_folder(folder, seed=0)
    archive = make_archive(folder, tmp_path / "tiny.tar.gz")
    first = load_dataset("cifar10", source=archive)
    other = tmp_path / "other"
    written = make_image_folder(other, seed=1)
    make_archive(other, archive)
    second = load_dataset("cifar10", source=archive)
    check_tiny(second, written)
    assert not torch.equal(first.train_images, second.train_images)
    assert first.fingerprint != second.fingerprint


def test_truncated_archive(tmp_path):
    folder = tmp_path / "tiny"
    make_image_folder(folder)
    good = make_archive(folder, tmp_path / "good.tar.gz").read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_dataset("cifar10", source=truncated)


def test_checksum_mismatch(tmp_path):
    folder = tmp_path / "tiny"
    make_image_folder(folder)
    archive = make_archive(folder, tmp_path / "tiny.tar.gz")
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    wrong = "0" * 64
    (tmp_path / "SHA256SUMS").write_text(f"{wrong}  tiny.tar.gz\n")
    with pytest.raises(ValueError, match=f"checksum mismatch.*{actual}.*expected {wrong}"):
        load_dataset("cifar10", source=archive)
    (tmp_path / "SHA256SUMS").write_text(f"{actual} *tiny.tar.gz\n")
    assert load_dataset("cifar10", source=archive).train_images.shape == (12, 3, 32, 32)


def test_wrong_layout_without_test_folder(tmp_path):
    folder = tmp_path / "tiny"
    make_image_folder(folder, splits=("train",))
    archive = make_archive(folder, tmp_path / "train-only.tar.gz")
    with pytest.raises(ValueError, match="not in image-folder layout.*test/<class>"):
        load_dataset("cifar10", source=archive)
    with pytest.raises(DataUnavailableError, match="holds no cifar10.*train/ and test/"):
        load_dataset("cifar10", source=folder)


def test_wrong_layout_different_classes(tmp_path):
    folder = tmp_path / "tiny"
    make_image_folder(folder)
    (folder / "test" / "frog").rename(folder / "test" / "toad")
    with pytest.raises(ValueError, match="same classes"):
        load_dataset("cifar10", source=folder)


def test_bad_images(tmp_path):
    folder = tmp_path / "tiny"
    make_image_folder(folder)
    small = torch.zeros(3, 16, 16, dtype=torch.uint8)
    (folder / "test" / "cat" / "small.png").write_bytes(encode(small, 'PNG'))
    with pytest.raises(ValueError, match=r"small.png.*\(3, 16, 16\), expected \(3, 32, 32\)"):
        load_dataset("cifar10", source=folder)
    (folder / "test" / "cat" / "small.png").unlink()
    (folder / "train" / "dog" / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="cannot decode image train/dog/junk.jpg"):
        load_dataset("cifar10", source=folder)


def test_no_data_and_no_internet(tmp_path, monkeypatch):
    with pytest.raises(DataUnavailableError, match="does not exist.*REPSIM_DATA"):
        load_dataset("cifar10", source=tmp_path / "missing")
    monkeypatch.setenv("REPSIM_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataUnavailableError, match="REPSIM_DATA"):
        load_dataset("cifar10")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataUnavailableError, match="holds no cifar100.*REPSIM_DATA"):
        load_dataset("cifar100", source=tmp_path / "empty")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        load_dataset("mnist", source="torchvision")


# ---------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------


def find_window(out: torch.Tensor, padded: torch.Tensor) -> list[tuple[int, int, bool]]:
    """All (dy, dx, flipped) whose 32x32 window of ``padded`` equals ``out``."""
    hits = []
    for dy in range(9):
        for dx in range(9):
            window = padded[:, dy : dy + 32, dx : dx + 32]
            for flipped in (False, True):
                if torch.equal(out, window.flip(-1) if flipped else window):
                    hits.append((dy, dx, flipped))
    return hits


def test_augment_is_a_flipped_or_plain_crop_of_the_reflect_padded_image():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(32, 3, 32, 32, generator=g)
    out = augment(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    padded = F.pad(images, (4, 4, 4, 4), mode="reflect")
    found = []
    for i in range(len(images)):
        hits = find_window(out[i], padded[i])
        assert len(hits) == 1, f"image {i}: {hits}"
        found.append(hits[0])
    assert {flipped for _, _, flipped in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) > 5  # offsets vary
    assert any(dy in (0, 8) or dx in (0, 8) for dy, dx, _ in found)  # windows reach into the padding


def test_augment_is_deterministic_under_a_seeded_generator():
    images = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = augment(images, torch.Generator().manual_seed(7))
    b = augment(images, torch.Generator().manual_seed(7))
    c = augment(images, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(images, torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0)))  # input untouched


def test_to_float_scales_to_unit_interval():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 3, 1, 1)
    out = to_float(images)
    assert out.dtype == torch.float32
    assert torch.allclose(out.flatten(), torch.tensor([0.0, 0.2, 1.0]))
    assert images.dtype == torch.uint8 and images.flatten().tolist() == [0, 51, 255]


def test_an_archive_named_for_another_data_set_is_refused(cifar_source):
    # REPSIM_DATA pointing at the CIFAR-10 archive must not pass for CIFAR-100.
    assert is_available("cifar10", cifar_source)
    assert not is_available("cifar100", cifar_source)
    with pytest.raises(DataUnavailableError, match="holds cifar10, not cifar100"):
        load_dataset("cifar100", source=cifar_source)


def test_decoding_in_worker_processes_gives_the_same_pixels_and_names_a_broken_file():
    import io

    import numpy as np
    from PIL import Image

    from repsim.data import _decode_image_folder

    rng = np.random.default_rng(0)
    files = {}
    for split, count in (("train", 2_500), ("test", 100)):  # two chunks of the training split
        for i in range(count):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="JPEG")
            files[f"{split}/{'ab'[i % 2]}/{i:05d}.jpg"] = buffer.getvalue()
    here = _decode_image_folder(files, "cifar10", "memory", workers=1)
    pooled = _decode_image_folder(files, "cifar10", "memory", workers=2)
    assert all(torch.equal(here[key], pooled[key]) for key in ("train_images", "train_labels", "test_images"))
    files["train/b/02401.jpg"] = b"not a jpeg"  # in the second chunk, decoded by a worker
    with pytest.raises(ValueError, match="02401.jpg"):
        _decode_image_folder(files, "cifar10", "memory", workers=2)
