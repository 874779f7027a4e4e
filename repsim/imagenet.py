"""The paper's ImageNet experiment (Sec. 6, Figs. 7c and F.4): its data and its models.

Populations of ImageNet ResNet-50s are far beyond one GPU's budget, so the book runs
the class-level analysis on CIFAR. This module keeps the ImageNet path real for those
with the means: an ImageNet-style image folder, and a torchvision ResNet-50 whose
third stage is made deeper (more bottleneck blocks; 17 instead of 6 is the paper's
"ResNet-83") or wider (a larger bottleneck width in that stage only; the paper uses
2.8x).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn
from torchvision import datasets, transforms
from torchvision.models.resnet import Bottleneck, ResNet, conv1x1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_transform(train: bool, size: int = 224) -> transforms.Compose:
    """The usual ResNet preprocessing: random resized crop and flip for training;
    resize to 8/7 of ``size`` and centre crop for evaluation."""
    if train:
        steps = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(round(size * 8 / 7)), transforms.CenterCrop(size)]
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def imagenet_folder(root: str | os.PathLike, split: str = "train", size: int = 224) -> datasets.ImageFolder:
    """ImageNet laid out as ``root/<split>/<class>/<image>`` (the layout of
    torchvision's ImageFolder), with the split's standard transform."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    folder = Path(root).expanduser() / split
    if not folder.is_dir():
        raise FileNotFoundError(f"no ImageNet {split} split at {folder}: expected {split}/<class>/<image> under {root}")
    if not any(child.is_dir() for child in folder.iterdir()):
        raise FileNotFoundError(f"{folder} has no class folders: expected {split}/<class>/<image>")
    return datasets.ImageFolder(str(folder), transform=imagenet_transform(split == "train", size))


def resnet50_variant(stage3_blocks: int = 6, stage3_width: float = 1.0, num_classes: int = 1000) -> ResNet:
    """A torchvision ResNet-50 with its third stage (``layer3``) changed.

    ``stage3_blocks``: bottleneck blocks in that stage (6 in ResNet-50; 17 gives the
    paper's deeper "ResNet-83"). ``stage3_width``: multiplier of the stage's bottleneck
    width (256 channels in ResNet-50; 2.8 gives the paper's wider model). The stage's
    output keeps 1,024 channels, so the other stages are untouched.
    """
    if stage3_blocks < 1:
        raise ValueError(f"stage3_blocks must be >= 1, got {stage3_blocks}")
    if stage3_width <= 0:
        raise ValueError(f"stage3_width must be positive, got {stage3_width}")
    model = ResNet(Bottleneck, [3, 4, stage3_blocks, 3], num_classes=num_classes)
    if stage3_width != 1.0:
        model.layer3 = _wide_stage(stage3_blocks, stage3_width)
    return model


def _wide_stage(blocks: int, width: float) -> nn.Sequential:
    # Bottleneck's inner width is planes * base_width / 64; base_width widens it alone.
    base_width = round(64 * width)
    in_channels, planes = 512, 256
    downsample = nn.Sequential(conv1x1(in_channels, planes * Bottleneck.expansion, 2),
                               nn.BatchNorm2d(planes * Bottleneck.expansion))
    layers = [Bottleneck(in_channels, planes, 2, downsample, base_width=base_width)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes, base_width=base_width) for _ in range(blocks - 1)]
    stage = nn.Sequential(*layers)
    for module in stage.modules():  # torchvision's initialisation for new convs and BNs
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return stage
