"""The paper's CIFAR ResNet family (Keras ResNet v1), one parameterised model.

Depth is 6n + 2: a stem, three stages of n basic blocks, and a dense head. Every
sub-layer is its own named module, so ``layer_names(model)`` lists every output the
paper analyses (conv, bn, relu, residual add, pool, logits) in forward order.
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass

import torch
from torch import nn

# Keras defaults the paper's code keeps: BN momentum 0.99 (PyTorch 0.01), eps 1e-3.
BN_MOMENTUM = 0.01
BN_EPS = 1e-3


@dataclass(frozen=True)
class ResNetConfig:
    depth: int = 20  # 6n + 2: 8, 14, 20, 26, ..., 56, 62, 110, 164
    width: int = 1  # multiplier k: stages have 16k, 32k, 64k channels
    residual: bool = True  # False drops the shortcut add (paper's Fig. C.1)
    num_classes: int = 10

    def __post_init__(self) -> None:
        # bool is an int in Python: width=True would silently build a 1x model.
        for field, rule in (("depth", "6n + 2 with n >= 1 (8, 14, 20, ...)"), ("width", "a positive integer multiplier"),
                            ("num_classes", "an integer >= 2")):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{field} must be {rule}, got {type(value).__name__} {value!r}")
            object.__setattr__(self, field, int(value))  # numpy integers would not survive JSON
        if self.depth < 8 or (self.depth - 2) % 6:
            n = max(1, round((self.depth - 2) / 6))
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {self.depth!r}; "
                             f"the nearest valid depth is {6 * n + 2}")
        if self.width < 1:
            raise ValueError(f"width must be a positive integer multiplier, got {self.width!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if not isinstance(self.residual, bool):
            # residual="no" would be truthy and build a residual network.
            raise ValueError(f"residual must be True or False, got {type(self.residual).__name__} {self.residual!r}")

    @property
    def units_per_stage(self) -> int:
        return (self.depth - 2) // 6

    @property
    def name(self) -> str:
        plain = "" if self.residual else ", no residual"
        return f"ResNet-{self.depth} ({self.width}x{plain})"


class Add(nn.Module):
    """The residual add, a module so that its output is named and capturable."""

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return x + shortcut


def _conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Conv2d:
    # Convs keep their bias, as in the paper's Keras code.
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=True)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, add shortcut, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3, stride)
        self.bn1 = _bn(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv(c_out, c_out, 3, 1)
        self.bn2 = _bn(c_out)
        self.residual = residual
        if residual:
            # Projection without BN where the shape changes (first block of stages 2, 3).
            needs_projection = stride != 1 or c_in != c_out
            self.shortcut = _conv(c_in, c_out, 1, stride) if needs_projection else nn.Identity()
            self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.residual:
            out = self.add(out, self.shortcut(x))
        return self.relu2(out)


class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        if not isinstance(config, ResNetConfig):
            raise TypeError(f"config must be a ResNetConfig (e.g. ResNetConfig(depth=20)), got {type(config).__name__} {config!r}")
        self.config = config
        channels = [16 * config.width, 32 * config.width, 64 * config.width]
        self.stem = nn.Sequential()
        self.stem.add_module("conv", _conv(3, channels[0], 3, 1))
        self.stem.add_module("bn", _bn(channels[0]))
        self.stem.add_module("relu", nn.ReLU())
        c_in = channels[0]
        for s, c_out in enumerate(channels):
            stage = nn.Sequential()
            for b in range(config.units_per_stage):
                stride = 2 if (s > 0 and b == 0) else 1
                stage.add_module(f"block{b}", BasicBlock(c_in, c_out, stride, config.residual))
                c_in = c_out
            self.add_module(f"stage{s + 1}", stage)
        # 8x8 average pool over the last stage's 8x8 map, then flatten: (n, 64k).
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels[2], config.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal kernels and zero biases, as Keras' he_normal initialiser."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(self.pool(x))


_ANALYSED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, Add, nn.Linear)


def layer_names(model: ResNet) -> list[str]:
    """Names of every analysed sub-layer output, in forward order.

    Within a block the order is conv1, bn1, relu1, conv2, bn2, shortcut, add, relu2,
    which is the order of ``BasicBlock.forward``; ``pool`` (pooled and flattened) comes
    before ``fc`` (the logits).
    """
    # Modules register in definition order, which BasicBlock keeps equal to call order.
    names = []
    for name, module in model.named_modules():
        if isinstance(module, _ANALYSED) or name == "pool":
            names.append(name)
    return names


def stage_of(name: str) -> int:
    """Stage index of a layer name: 0 for the stem, 1-3 for stages, 4 for the head."""
    if name.startswith("stem"):
        return 0
    if name.startswith("stage"):
        return int(name[len("stage")])
    return 4


class ShortcutOnly(nn.Module):
    """What is left of a residual unit whose residual branch is deleted: its shortcut
    (identity, or the projection of a stage's first block), then the block's ReLU."""

    def __init__(self, shortcut: nn.Module) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.shortcut(x))


def delete_residual_units(model: ResNet, stage: int, count: int) -> ResNet:
    """A copy of ``model`` with the residual branches of the last ``count`` residual units
    (the ``stageS.blockB`` modules; "block" alone means the block structure) of ``stage`` (1-3) deleted, as in the paper's Fig. 5; the shortcuts stay.

    The original model is not modified. Deleting from a network without residual
    connections is refused: with no shortcut, nothing would carry the signal through.
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"model must be a repsim ResNet, got {type(model).__name__}")
    if not model.config.residual:
        raise ValueError(f"{model.config.name} has no residual connections, so its residual units cannot be deleted")
    if isinstance(stage, bool) or stage not in (1, 2, 3):
        raise ValueError(f"stage must be 1, 2 or 3, got {stage!r}")
    blocks = model.config.units_per_stage
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 0 <= count <= blocks:
        raise ValueError(f"count must be between 0 and {blocks} (residual units in stage {stage}), got {count!r}")
    pruned = copy.deepcopy(model)
    stage_module = getattr(pruned, f"stage{stage}")
    for b in range(blocks - count, blocks):
        block = getattr(stage_module, f"block{b}")
        setattr(stage_module, f"block{b}", ShortcutOnly(block.shortcut))
    return pruned
