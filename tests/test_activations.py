"""Activation capture (forward hooks): the captured tensors are the layers' true outputs,
even with in-place ops downstream, and stay valid after later forward passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repsim.activations import ActivationCapture, capture
from repsim.models import ResNet, ResNetConfig, layer_names


@pytest.fixture(scope="module")
def resnet8() -> ResNet:
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=8))
    # Non-trivial BN statistics, so inference-mode BN differs from batch statistics.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_capture_equals_manual_forward(resnet8, images):
    model = resnet8.eval()
    acts = capture(model, images, ["stem.conv", "stem.relu", "stage2.block0.shortcut", "stage2.block0.add", "pool", "fc"])
    with torch.no_grad():
        logits = model(images)
        stem_conv = model.stem.conv(images)
        h1 = model.stage1(model.stem(images))
        block = model.stage2.block0
        shortcut = block.shortcut(h1)
        branch = block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(h1)))))
        pooled = model.stage3(model.stage2(h1)).mean(dim=(2, 3))
    assert list(acts) == ["stem.conv", "stem.relu", "stage2.block0.shortcut", "stage2.block0.add", "pool", "fc"]
    assert torch.allclose(acts["fc"], logits, atol=1e-6)
    assert torch.allclose(acts["stem.conv"], stem_conv.flatten(1), atol=1e-6)
    assert torch.allclose(acts["stem.relu"], model.stem(images).flatten(1), atol=1e-6)
    assert torch.allclose(acts["stage2.block0.shortcut"], shortcut.flatten(1), atol=1e-6)
    assert torch.allclose(acts["stage2.block0.add"], (branch + shortcut).flatten(1), atol=1e-5)
    assert (acts["stage2.block0.add"] < 0).any()  # the add, not the ReLU after it
    assert torch.allclose(acts["pool"], pooled, atol=1e-6)
    assert acts["stem.conv"].shape == (6, 16 * 32 * 32)
    assert acts["stage2.block0.shortcut"].shape == (6, 32 * 16 * 16)
    assert acts["pool"].shape == (6, 64) and acts["fc"].shape == (6, 10)


def test_capture_without_flatten_keeps_shapes(resnet8, images):
    acts = capture(resnet8, images, ["stage3.block0.conv1", "fc"], flatten=False)
    assert acts["stage3.block0.conv1"].shape == (6, 64, 8, 8)
    assert acts["fc"].shape == (6, 10)


def test_every_layer_name_is_capturable(resnet8, images):
    names = layer_names(resnet8)
    acts = ActivationCapture(resnet8, names)(images[:2])
    assert list(acts) == names
    assert all(a.dim() == 2 and a.shape[0] == 2 for a in acts.values())
    modules = dict(resnet8.named_modules())
    assert all(name in modules for name in names)  # every analysed layer is a module


def test_bn_in_inference_mode_even_if_model_is_training(images):
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=8))
    with torch.no_grad():
        model.stem.bn.running_mean.fill_(0.3)
    model.train()
    acts = capture(model, images, ["stem.bn", "fc"])
    reference = ResNet(ResNetConfig(depth=8))
    reference.load_state_dict(model.state_dict())
    reference.eval()
    with torch.no_grad():
        assert torch.allclose(acts["fc"], reference(images), atol=1e-6)
        assert torch.allclose(acts["stem.bn"], reference.stem.bn(reference.stem.conv(images)).flatten(1), atol=1e-6)


def test_capture_leaves_the_model_mode_alone(images):
    # Capturing during training (say, for a progress plot) must not switch the model's
    # BatchNorm layers to inference mode behind the caller's back.
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=8)).train()
    capture(model, images, ["stem.bn", "fc"])
    modes = {name: m.training for name, m in model.named_modules()}
    assert all(modes.values()), sorted(name for name, mode in modes.items() if not mode)[:5]


def test_capture_tracks_the_models_current_weights(images):
    # The capture shares the model's parameters: built once, it sees later updates.
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=8)).eval()
    cap = ActivationCapture(model, ["fc"])
    before = cap(images)["fc"]
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    after = cap(images)["fc"]
    assert torch.allclose(after, before + 1.0, atol=1e-6)


class InPlaceNet(nn.Module):
    """conv -> ReLU(inplace=True), and a residual `out += x` after a second conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(3, 3, 1)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv(x))
        y = self.conv2(out)
        y += x  # in place on the conv2 output
        return self.relu2(y)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_inplace_ops_do_not_change_captured_values(mode):
    torch.manual_seed(0)
    net = InPlaceNet().train(mode == "train")
    x = torch.randn(4, 3, 8, 8)
    cap = ActivationCapture(net, ["conv", "conv2"], flatten=False)  # built in the model's current mode
    acts = cap(x)
    with torch.no_grad():
        conv = net.conv(x)  # pre-ReLU
        conv2 = net.conv2(torch.relu(conv))  # before `+= x` and before relu2
    assert (conv < 0).any() and (conv2 < 0).any()
    assert torch.allclose(acts["conv"], conv, atol=1e-6), "captured conv output was overwritten by ReLU(inplace=True)"
    assert torch.allclose(acts["conv2"], conv2, atol=1e-6), "captured conv2 output was overwritten by `+= x`"


def test_captured_tensors_unchanged_by_later_forward_passes(resnet8, images):
    cap = ActivationCapture(resnet8, ["stem.conv", "stage1.block0.relu2", "fc"])
    first = cap(images)
    saved = {k: v.clone() for k, v in first.items()}
    second = cap(torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    for name in saved:
        assert torch.equal(first[name], saved[name]), name
        assert not torch.allclose(second[name], saved[name]), name
        assert first[name].data_ptr() != second[name].data_ptr()
    with torch.no_grad():
        resnet8(images)
    assert all(torch.equal(first[k], saved[k]) for k in saved)


def test_inplace_capture_unchanged_after_later_passes():
    torch.manual_seed(0)
    net = InPlaceNet().eval()
    cap = ActivationCapture(net, ["conv"], flatten=False)
    x = torch.randn(2, 3, 8, 8)
    first = cap(x)["conv"]
    saved = first.clone()
    cap(torch.randn(2, 3, 8, 8))
    net(x.clone())
    assert torch.equal(first, saved)


def test_unknown_layer_name_raises_key_error(resnet8):
    with pytest.raises(KeyError, match="stage2.block7.conv1"):
        ActivationCapture(resnet8, ["stem.conv", "stage2.block7.conv1"])
    with pytest.raises(KeyError, match="'stem.cnv'"):
        capture(resnet8, torch.rand(1, 3, 32, 32), ["stem.cnv"])


def test_empty_or_duplicate_layers(resnet8):
    with pytest.raises(ValueError, match="empty"):
        ActivationCapture(resnet8, [])
    with pytest.raises(ValueError, match="duplicate"):
        ActivationCapture(resnet8, ["fc", "fc"])


class ShortcutAndInPlace(nn.Module):
    """An identity after a conv (the same tensor object), then an in-place ReLU on it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.same = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.same(self.conv(x)))


def test_a_layer_that_returns_an_earlier_layers_tensor_reuses_its_result_until_it_changes(images):
    torch.manual_seed(3)
    model = ShortcutAndInPlace().eval()
    calls = []

    def record(name, act):
        calls.append(name)
        return act.clone()

    acts = ActivationCapture(model, ["conv", "same", "relu"], reduce=record, reuse=True)(images)
    assert calls == ["conv", "relu"]  # "same" is conv's tensor; the in-place ReLU changed it after
    with torch.no_grad():
        conv = model.conv(images)
    assert torch.equal(acts["same"], conv.flatten(1)) and torch.equal(acts["relu"], torch.relu(conv).flatten(1))
    assert torch.equal(acts["conv"], conv.flatten(1))  # kept as it was before the in-place ReLU
    calls.clear()
    ActivationCapture(model, ["conv", "same", "relu"], reduce=record)(images)
    assert calls == ["conv", "same", "relu"]  # without reuse, every layer is reduced
