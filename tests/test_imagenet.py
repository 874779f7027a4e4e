"""The ImageNet path: an image-folder loader and ResNet-50 with a deeper or wider third stage."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from repsim.imagenet import imagenet_folder, resnet50_variant


@pytest.fixture
def tiny_imagenet(tmp_path):
    """Two classes, three 80x60 JPEGs each, in train/ and val/."""
    for split in ("train", "val"):
        for c, colour in (("n01440764", (200, 30, 30)), ("n01443537", (30, 30, 200))):
            folder = tmp_path / split / c
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (80, 60), tuple(v + 10 * i for v in colour)).save(folder / f"{i}.JPEG")
    return tmp_path


def test_folder_loader_reads_classes_and_applies_the_transform(tiny_imagenet):
    train = imagenet_folder(tiny_imagenet, "train", size=32)
    val = imagenet_folder(tiny_imagenet, "val", size=32)
    assert train.classes == val.classes == ["n01440764", "n01443537"] and len(train) == len(val) == 6
    image, label = val[5]
    assert image.shape == (3, 32, 32) and label == 1
    assert image[2].mean() > image[0].mean()  # the blue class is blue after normalisation too


def test_folder_loader_names_what_is_missing(tmp_path, tiny_imagenet):
    with pytest.raises(FileNotFoundError, match="no ImageNet val split"):
        imagenet_folder(tmp_path / "nowhere", "val")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no class folders"):
        imagenet_folder(tmp_path / "empty", "train")
    with pytest.raises(ValueError, match="split must be"):
        imagenet_folder(tiny_imagenet, "test")


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_deeper_and_wider_third_stages():
    base = resnet50_variant(num_classes=2)
    deeper = resnet50_variant(stage3_blocks=17, num_classes=2)
    wider = resnet50_variant(stage3_width=2.8, num_classes=2)
    assert len(base.layer3) == 6 and len(deeper.layer3) == 17 and len(wider.layer3) == 6
    assert base.layer3[1].conv2.out_channels == 256 and wider.layer3[1].conv2.out_channels == 716  # 256 * round(64 * 2.8) / 64
    assert wider.layer3[-1].conv3.out_channels == base.layer3[-1].conv3.out_channels == 1024
    assert base.layer2[0].conv1.weight.shape == wider.layer2[0].conv1.weight.shape  # other stages untouched
    # The paper matched the two variants' accuracy; their sizes are of the same order.
    assert _params(deeper) > _params(base) and _params(wider) > _params(base)
    x = torch.rand(2, 3, 64, 64)
    for model in (base, deeper, wider):
        assert model.eval()(x).shape == (2, 2)
    with pytest.raises(ValueError, match="stage3_blocks"):
        resnet50_variant(stage3_blocks=0)
    with pytest.raises(ValueError, match="stage3_width"):
        resnet50_variant(stage3_width=0)
