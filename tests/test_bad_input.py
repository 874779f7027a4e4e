"""Bad input gets a clear error that names the argument and the problem: data sources
and caches, model configurations, training recipes, activation capture, profiles."""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.error
import warnings

import numpy as np
import pytest
import torch
from test_data import TINY_CLASSES, check_tiny, make_archive, make_image_folder
from torch import nn

import repsim.data as data
from repsim.activations import ActivationCapture, capture
from repsim.data import DataUnavailableError, is_available, load_dataset
from repsim.models import ResNet, ResNetConfig, delete_residual_units
from repsim.profiles import get_profile
from repsim.train import TrainConfig, train_model


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("REPSIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REPSIM_DATA", raising=False)


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path):
    folder = tmp_path / "tiny"
    written = make_image_folder(folder)
    return make_archive(folder, tmp_path / "tiny.tar.gz"), written


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_corrupted_archive_bytes(tmp_path, archive, where):
    path, _ = archive
    raw = bytearray(path.read_bytes())
    for i in range(int(len(raw) * where), int(len(raw) * where) + 16):
        raw[i] ^= 0xFF  # damage inside the compressed stream
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(raw)
    with pytest.raises(ValueError, match="bad.tar.gz is truncated or corrupted"):
        load_dataset("cifar10", source=bad)


@pytest.mark.parametrize("content", [b"", b"not a tar file at all", bytes(range(256)) * 4])
def test_archive_that_is_not_an_archive(tmp_path, content):
    bad = tmp_path / "junk.tar.gz"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="junk.tar.gz is truncated or corrupted"):
        load_dataset("cifar10", source=bad)


@pytest.mark.parametrize("layout", ["flat images", "no class folders", "empty archive", "train and test swapped names"])
def test_archive_without_the_expected_folders(tmp_path, layout):
    folder = tmp_path / "tiny"
    make_image_folder(folder)
    if layout == "flat images":
        for image in folder.rglob("*.png"):
            image.rename(folder / f"{image.parent.parent.name}-{image.parent.name}-{image.name}")
        for split in ("train", "test"):
            for sub in (folder / split).iterdir():
                sub.rmdir()
            (folder / split).rmdir()
    elif layout == "no class folders":
        for image in folder.rglob("*.png"):
            image.rename(image.parent.parent / f"{image.parent.name}-{image.name}")
        for split in ("train", "test"):
            for sub in (folder / split).iterdir():
                if sub.is_dir():
                    sub.rmdir()
    elif layout == "empty archive":
        for image in folder.rglob("*.png"):
            image.unlink()
    else:
        (folder / "train").rename(folder / "training")
        (folder / "test").rename(folder / "testing")
    path = make_archive(folder, tmp_path / "layout.tar.gz")
    with pytest.raises(ValueError, match="layout.tar.gz is not in image-folder layout: expected train/<class>/<image>"):
        load_dataset("cifar10", source=path)


def test_checksum_mismatch_names_both_digests(tmp_path, archive):
    path, _ = archive
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{'f' * 64}  tiny.tar.gz\n")
    with pytest.raises(ValueError, match=f"checksum mismatch for .*tiny.tar.gz: SHA-256 is {actual}, expected f{{64}}"):
        load_dataset("cifar10", source=path)
    assert not list((tmp_path / "home").rglob("cifar10-*.pt"))  # nothing decoded or cached


@pytest.mark.parametrize("kind", ["truncated", "bit flip", "garbage", "old format"])
def test_corrupted_cache_file_is_detected_and_rebuilt(tmp_path, archive, kind):
    path, written = archive
    first = load_dataset("cifar10", source=path)
    (cache,) = (tmp_path / "home" / "cache").glob("cifar10-*.pt")
    raw = bytearray(cache.read_bytes())
    if kind == "truncated":
        cache.write_bytes(raw[: len(raw) // 2])
    elif kind == "bit flip":
        raw[-200] ^= 0x01  # inside the pixel data: torch.load alone would not notice
        cache.write_bytes(raw)
    elif kind == "garbage":
        cache.write_bytes(bytes(len(raw)))
    else:  # a cache written by plain torch.save, without a checksum
        torch.save({"train_images": first.train_images}, cache)
    with pytest.warns(UserWarning, match="data cache .* is corrupted or unverifiable"):
        again = load_dataset("cifar10", source=path)
    check_tiny(again, written)
    assert torch.equal(again.train_images, first.train_images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is clean
        load_dataset("cifar10", source=path)


def test_no_data_and_no_internet_says_how_to_get_the_data(monkeypatch):
    from torchvision import datasets

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    with pytest.raises(DataUnavailableError, match=r"could not download cifar10.*name resolution.*REPSIM_DATA") as info:
        load_dataset("cifar10")  # no REPSIM_DATA: torchvision's download
    assert "source='torchvision'" in str(info.value) and "cifar10-jpeg.tar.gz" in str(info.value)
    assert not is_available("cifar10")


def test_corrupted_torchvision_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(DataUnavailableError, match="could not read cifar10 with torchvision.*corrupted"):
        load_dataset("cifar10", source=folder)


@pytest.mark.parametrize("name", ["mnist", "CIFAR10", None, 10])
def test_unknown_data_set_name(name):
    with pytest.raises(ValueError, match=f"unknown data set {name!r}"):
        load_dataset(name, source="torchvision")
    with pytest.raises(ValueError, match="unknown data set"):
        is_available(name)


@pytest.mark.parametrize("source", [3, 2.5, ["a.tar.gz"]])
def test_source_of_the_wrong_type(source):
    with pytest.raises(TypeError, match="source must be a path or 'torchvision'"):
        load_dataset("cifar10", source=source)


def test_two_loads_decode_once_under_the_lock(tmp_path, archive, monkeypatch):
    # The decode runs under the cache's lock: a second load (as from a parallel chapter)
    # finds the finished cache instead of decoding again.
    path, _ = archive
    calls = []
    real = data._decode_image_folder
    monkeypatch.setattr(data, "_decode_image_folder", lambda *a, **k: calls.append(1) or real(*a, **k))
    load_dataset("cifar10", source=path)
    load_dataset("cifar10", source=path)
    assert len(calls) == 1
    assert list((tmp_path / "home" / "cache").glob("*.lock"))
    assert TINY_CLASSES == load_dataset("cifar10", source=path).classes


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [True, False, -4, 1, 8.0, 14.5, None, np.float64(20)])
def test_invalid_depth(depth):
    with pytest.raises(ValueError, match="depth must be 6n \\+ 2"):
        ResNetConfig(depth=depth)


@pytest.mark.parametrize("depth,nearest", [(21, 20), (18, 20), (9, 8), (110, 110 - 6 + 6)])
def test_depth_error_suggests_the_nearest_valid_depth(depth, nearest):
    if (depth - 2) % 6 == 0:
        assert ResNetConfig(depth=depth).depth == depth
        return
    with pytest.raises(ValueError, match=f"nearest valid depth is {nearest}"):
        ResNetConfig(depth=depth)


@pytest.mark.parametrize("width", [True, False, -2, 0, 2.0, 0.5, None, "1"])
def test_invalid_width(width):
    with pytest.raises(ValueError, match="width must be a positive integer multiplier"):
        ResNetConfig(width=width)


@pytest.mark.parametrize("residual", ["no", 0, 1, None])
def test_residual_must_be_a_bool(residual):
    with pytest.raises(ValueError, match="residual must be True or False"):
        ResNetConfig(residual=residual)


@pytest.mark.parametrize("num_classes", [True, 1, 0, 10.0])
def test_invalid_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        ResNetConfig(num_classes=num_classes)


def test_numpy_integers_are_plain_ints():
    config = ResNetConfig(depth=np.int64(14), width=np.int32(2))
    assert config == ResNetConfig(depth=14, width=2)
    assert type(config.depth) is int and type(config.width) is int
    assert dataclasses.asdict(config) == {"depth": 14, "width": 2, "residual": True, "num_classes": 10}


@pytest.mark.parametrize("config", [20, {"depth": 20}, "ResNet-20"])
def test_resnet_needs_a_config(config):
    with pytest.raises(TypeError, match="config must be a ResNetConfig"):
        ResNet(config)


@pytest.mark.parametrize("stage,count", [(True, 1), (0, 1), (4, 1), (1, True), (1, 1.0), (1, -1), (1, 2)])
def test_delete_residual_units_bad_arguments(stage, count):
    model = ResNet(ResNetConfig(depth=8))
    with pytest.raises(ValueError, match="stage must be|count must be"):
        delete_residual_units(model, stage, count)


# ---------------------------------------------------------------------------------------
# Training recipes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("epochs", 2.5), ("epochs", True), ("epochs", 0), ("batch_size", 1), ("batch_size", None),
    ("train_size", 0), ("train_size", 1), ("eval_size", 0), ("evaluations", 0),
    ("lr", float("nan")), ("lr", float("inf")), ("lr", 0.0), ("lr", -0.1), ("lr", "0.1"),
    ("momentum", 1.0), ("momentum", -0.5), ("momentum", float("nan")),
    ("weight_decay", -1e-4), ("weight_decay", float("nan")), ("bn_momentum", 0.0), ("bn_momentum", 1.5),
])
def test_invalid_train_config(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        TrainConfig(**{field: value})


def test_train_config_keeps_valid_values_and_normalises_numpy():
    config = TrainConfig(epochs=np.int64(3), lr=np.float32(0.5), train_size=None, eval_size=None)
    assert type(config.epochs) is int and type(config.lr) is float and config.lr == 0.5
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        TrainConfig(epoch=3)  # a misspelled field


@pytest.mark.parametrize("seed", [1.5, "0", None, True])
def test_train_model_rejects_a_bad_seed(seed):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (8,), generator=g)
    ds = data.ImageDataset(images, labels, images, labels, tuple("abcdefghij"), "cifar10", "memory")
    with pytest.raises(TypeError, match="seed must be an integer"):
        train_model(ResNetConfig(depth=8), TrainConfig(epochs=1, batch_size=4), ds, seed=seed, device="cpu", progress=False)


def test_train_size_larger_than_the_data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (8,), generator=g)
    ds = data.ImageDataset(images, labels, images, labels, tuple("abcdefghij"), "cifar10", "memory")
    with pytest.raises(ValueError, match="train size must be in 1..8, got 100"):
        train_model(ResNetConfig(depth=8), TrainConfig(epochs=1, batch_size=4, train_size=100), ds, seed=0,
                    device="cpu", progress=False)


# ---------------------------------------------------------------------------------------
# Activation capture
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet8():
    torch.manual_seed(0)
    return ResNet(ResNetConfig(depth=8)).eval()


@pytest.mark.parametrize("typo,suggestion", [
    ("stage1.block0.conv", "stage1.block0.conv1"), ("stem.cnv", "stem.conv"), ("stage2.block0.shortcu", "stage2.block0.shortcut"),
    ("stage1.blok0.relu2", "stage1.block0.relu2"), ("fc1", "fc"),
])
def test_unknown_layer_suggests_close_names(resnet8, typo, suggestion):
    with pytest.raises(KeyError, match=f"{typo!r} \\(did you mean [^)]*{suggestion!r}"):
        ActivationCapture(resnet8, ["stem.conv", typo])


def test_unrelated_layer_name_lists_capturable_names(resnet8):
    with pytest.raises(KeyError, match="'xyz'.*start with \\['stem', 'stem.conv'") as info:
        ActivationCapture(resnet8, ["xyz"])
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("layers,error,message", [
    ("fc", TypeError, "got the string 'fc'; use \\['fc'\\]"),
    (["fc", 3], TypeError, "layers must be strings"),
    (["fc", "pool", "fc"], ValueError, "duplicate names: \\['fc'\\]"),
    ([], ValueError, "layers is empty"),
])
def test_malformed_layer_lists(resnet8, layers, error, message):
    with pytest.raises(error, match=message):
        ActivationCapture(resnet8, layers)


class SharedReLU(nn.Module):
    """One ReLU module called twice in a forward pass, as torchvision's BasicBlock does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))) - 0.1)


def test_the_calls_of_a_module_called_twice_are_named_as_torchvision_names_them():
    torch.manual_seed(0)
    net = SharedReLU().eval()
    x = torch.randn(2, 3, 8, 8)
    acts = capture(net, x, ["relu", "relu_1", "conv2"], flatten=False)
    with torch.no_grad():
        first = torch.relu(net.conv1(x))
        assert torch.equal(acts["relu"], first)
        assert torch.equal(acts["conv2"], net.conv2(first))
        assert torch.equal(acts["relu_1"], torch.relu(net.conv2(first) - 0.1))
    with pytest.raises(ValueError, match="\\{'relu_2': 2\\} name a call that did not happen"):
        capture(net, x, ["relu_2"])
    with pytest.raises(KeyError, match="unknown layer name"):
        capture(net, x, ["conv1_1x"])


class PairOut(nn.Module):
    """A container that returns a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.side = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(x), self.side(x)


class UsesPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = PairOut()
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        main, _ = self.pair(x)
        return self.head(main)


class LeafTuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 3, batch_first=True)

    def forward(self, x):
        out, _ = self.rnn(x)
        return out


class LastOpNotOutput(nn.Module):
    """A container whose last op is a side computation, not what it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.probe = nn.Conv2d(3, 4, 1)
        self.extra = []

    def forward(self, x):
        out = self.conv(x)
        self.probe(x)  # computed last, discarded
        return out


class WrapsLast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = LastOpNotOutput()

    def forward(self, x):
        return self.block(x) * 2


def test_a_container_returning_a_tuple_is_an_error_not_its_last_element():
    torch.manual_seed(0)
    net = UsesPair().eval()
    with pytest.raises(TypeError, match="layer 'pair' returns a tuple, not a tensor"):
        capture(net, torch.randn(2, 3, 4, 4), ["pair"])
    acts = capture(net, torch.randn(2, 3, 4, 4), ["pair.conv", "pair.side"])  # its parts are fine
    assert acts["pair.conv"].shape == (2, 64) and acts["pair.side"].shape == (2, 32)


def test_a_leaf_module_with_a_tuple_output_is_an_error():
    torch.manual_seed(0)
    net = LeafTuple().eval()
    with pytest.raises(TypeError, match="layer 'rnn' returns a tuple, not a tensor"):
        capture(net, torch.randn(2, 5, 4), ["rnn"])


def test_a_container_captures_what_it_returns_not_its_last_operation():
    torch.manual_seed(0)
    net = WrapsLast().eval()
    x = torch.randn(2, 3, 4, 4)
    acts = capture(net, x, ["block"], flatten=False)
    with torch.no_grad():
        assert torch.equal(acts["block"], net.block.conv(x))  # not the discarded side computation


def test_containers_capture_their_output(resnet8):
    # A ResNet block is a container too: its name captures its output (the final ReLU).
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cap = ActivationCapture(resnet8, ["stage1.block0", "stage1.block0.relu2", "pool"])
    acts = cap(x)
    assert torch.equal(acts["stage1.block0"], acts["stage1.block0.relu2"])
    with torch.no_grad():
        assert torch.allclose(acts["stage1.block0"], resnet8.stage1.block0(resnet8.stem(x)).flatten(1), atol=1e-6)
    assert torch.equal(cap(x)["stage1.block0"], acts["stage1.block0"])


# ---------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("typo,suggestion", [("smoek", "smoke"), ("labtop", "laptop"), ("PAPER", None), ("papers", "paper")])
def test_misspelled_profile(typo, suggestion):
    with pytest.raises(ValueError, match=f"unknown profile {typo!r}") as info:
        get_profile(typo)
    assert ("did you mean" in str(info.value)) == (suggestion is not None)
    if suggestion:
        assert f"did you mean {suggestion!r}" in str(info.value)
    assert "choose one of ['laptop', 'paper', 'smoke']" in str(info.value)


@pytest.mark.parametrize("typo,suggestion", [("devices", "device"), ("trian", "train"), ("min_step", "min_steps"),
                                             ("dataset_", "dataset")])
def test_misspelled_profile_field(typo, suggestion):
    profile = get_profile("smoke")
    with pytest.raises(ValueError, match=f"unknown profile field {typo!r} \\(did you mean {suggestion!r}\\?\\)"):
        profile.with_overrides(**{typo: None})
    assert profile == get_profile("smoke")  # nothing half-applied


def test_one_misspelled_field_among_valid_ones_changes_nothing():
    with pytest.raises(ValueError, match="'cka_examples'"):
        get_profile("smoke").with_overrides(device="cuda", cka_examples=64)
    assert get_profile("smoke").device == "cpu"


def test_profile_name_of_the_wrong_type():
    with pytest.raises(ValueError, match="unknown profile None"):
        get_profile(None)


def test_misspelled_nested_field_names_the_field():
    with pytest.raises(TypeError, match="'epoch'"):
        dataclasses.replace(get_profile("smoke").train, epoch=3)
    with pytest.raises(ValueError, match="^epochs must be"):
        dataclasses.replace(get_profile("smoke").train, epochs=0)
