"""The CIFAR ResNet family: shapes, layer names, configuration checks, parameter layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repsim.models import Add, ResNet, ResNetConfig, layer_names, stage_of

BLOCK_LAYERS = ["conv1", "bn1", "relu1", "conv2", "bn2", "add", "relu2"]


@pytest.mark.parametrize("depth", [8, 14, 20])
@pytest.mark.parametrize("width", [1, 2])
def test_output_shape_over_depth_and_width(depth, width):
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=depth, width=width)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("config", [ResNetConfig(depth=14, residual=False), ResNetConfig(depth=8, num_classes=100)],
                         ids=["no-residual", "cifar100"])
def test_output_shape_variants(config):
    torch.manual_seed(0)
    model = ResNet(config).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, config.num_classes)


def test_train_mode_forward_and_backward():
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=8))
    out = model(torch.rand(4, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (4, 10)
    assert all(p.grad is not None for p in model.parameters())


def expected_names(depth: int, residual: bool = True) -> list[str]:
    n = (depth - 2) // 6
    names = ["stem.conv", "stem.bn", "stem.relu"]
    for s in (1, 2, 3):
        for b in range(n):
            prefix = f"stage{s}.block{b}."
            block = ["conv1", "bn1", "relu1", "conv2", "bn2"]
            if residual:
                block += ["shortcut"] if (s > 1 and b == 0) else []
                block += ["add"]
            block += ["relu2"]
            names += [prefix + layer for layer in block]
    return names + ["pool", "fc"]


def test_layer_names_resnet20():
    names = layer_names(ResNet(ResNetConfig(depth=20)))
    # 3 stem + 9 blocks x 7 + 2 projection shortcuts + pool + fc
    assert len(names) == 3 + 9 * 7 + 2 + 2 == 70
    assert names == expected_names(20)
    assert names[:4] == ["stem.conv", "stem.bn", "stem.relu", "stage1.block0.conv1"]
    assert names[-2:] == ["pool", "fc"]
    assert names.index("stage2.block0.shortcut") < names.index("stage2.block0.add")
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("depth", [8, 14, 26])
def test_layer_names_other_depths(depth):
    n = (depth - 2) // 6
    names = layer_names(ResNet(ResNetConfig(depth=depth, width=2)))
    assert len(names) == 3 + 3 * n * 7 + 2 + 2
    assert names == expected_names(depth)


def test_layer_names_without_residual():
    names = layer_names(ResNet(ResNetConfig(depth=20, residual=False)))
    assert len(names) == 3 + 9 * 6 + 2
    assert names == expected_names(20, residual=False)
    assert not any("add" in name or "shortcut" in name for name in names)


def test_layer_names_follow_forward_order():
    # The order of layer_names is the order in which the modules run.
    model = ResNet(ResNetConfig(depth=14)).eval()
    modules = dict(model.named_modules())
    called = []
    hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: called.append(name))
             for name in layer_names(model)]
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert called == layer_names(model)


def test_stage_of():
    assert stage_of("stem.conv") == 0
    assert stage_of("stage1.block0.conv1") == 1
    assert stage_of("stage3.block2.add") == 3
    assert stage_of("pool") == 4 and stage_of("fc") == 4


@pytest.mark.parametrize("depth", [0, 2, 7, 9, 10, 21, 19.0, "20"])
def test_invalid_depth(depth):
    with pytest.raises(ValueError, match="depth must be 6n \\+ 2"):
        ResNetConfig(depth=depth)


@pytest.mark.parametrize("width", [0, -1, 1.5, "2"])
def test_invalid_width(width):
    with pytest.raises(ValueError, match="width must be a positive integer"):
        ResNetConfig(width=width)


def test_invalid_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        ResNetConfig(num_classes=1)


def test_config_is_frozen_and_named():
    config = ResNetConfig(depth=14, width=2)
    with pytest.raises(AttributeError):
        config.depth = 20  # type: ignore[misc]
    assert config.units_per_stage == 2
    assert config.name == "ResNet-14 (2x)"
    assert ResNetConfig(depth=20, residual=False).name == "ResNet-20 (1x, no residual)"


@pytest.mark.parametrize("width", [1, 3])
def test_parameter_structure(width):
    model = ResNet(ResNetConfig(depth=14, width=width))
    c1, c2, c3 = 16 * width, 32 * width, 64 * width
    # every conv keeps its bias; BN uses the Keras defaults
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            assert module.bias is not None, name
        if isinstance(module, nn.BatchNorm2d):
            assert module.eps == pytest.approx(1e-3) and module.momentum == pytest.approx(0.01), name
    assert model.stem.conv.in_channels == 3 and model.stem.conv.out_channels == c1
    assert model.stem.conv.kernel_size == (3, 3) and model.stem.conv.stride == (1, 1)
    for s, (c_in, c_out) in enumerate([(c1, c1), (c1, c2), (c2, c3)], start=1):
        stage = getattr(model, f"stage{s}")
        first = stage.block0
        assert first.conv1.in_channels == c_in and first.conv1.out_channels == c_out
        assert first.conv2.in_channels == c_out and first.conv2.out_channels == c_out
        assert first.conv1.kernel_size == (3, 3)
        if s == 1:
            assert isinstance(first.shortcut, nn.Identity)
            assert first.conv1.stride == (1, 1)
        else:
            # projection: 1x1 stride-2 conv with bias, not followed by BN
            assert first.conv1.stride == (2, 2)
            assert isinstance(first.shortcut, nn.Conv2d)
            assert first.shortcut.kernel_size == (1, 1) and first.shortcut.stride == (2, 2)
            assert (first.shortcut.in_channels, first.shortcut.out_channels) == (c_in, c_out)
            assert first.shortcut.bias is not None
        for block in list(stage)[1:]:
            assert isinstance(block.shortcut, nn.Identity)
            assert block.conv1.stride == (1, 1) and block.conv1.in_channels == c_out
        assert isinstance(first.add, Add)
    # no BN anywhere on a shortcut path
    assert not any("shortcut" in name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d))
    assert model.fc.in_features == c3 and model.fc.out_features == 10


def test_no_residual_has_no_shortcut_parameters():
    model = ResNet(ResNetConfig(depth=14, residual=False))
    assert not any("shortcut" in name for name, _ in model.named_parameters())
    residual = ResNet(ResNetConfig(depth=14))
    extra = sum(p.numel() for p in residual.parameters()) - sum(p.numel() for p in model.parameters())
    assert extra == (16 * 32 + 32) + (32 * 64 + 64)  # the two 1x1 projection convs with biases


def test_initialisation_he_normal_zero_bias():
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=8, width=4))
    conv = model.stage3.block0.conv2  # 256 in-channels x 3 x 3: 147,456 weights
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.02)
    assert conv.weight.mean().abs().item() < 0.05 * (2 / fan_in) ** 0.5
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert torch.count_nonzero(module.bias) == 0


def test_residual_add_and_spatial_sizes():
    # Stage outputs are 32x32, 16x16, 8x8; the add sums the branch and the shortcut.
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=8)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        h1 = model.stage1(model.stem(x))
        h2 = model.stage2(h1)
        h3 = model.stage3(h2)
        block = model.stage2.block0
        branch = block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(h1)))))
        expected = torch.relu(branch + block.shortcut(h1))
    assert h1.shape == (2, 16, 32, 32) and h2.shape == (2, 32, 16, 16) and h3.shape == (2, 64, 8, 8)
    assert torch.allclose(h2, expected, atol=1e-6)
