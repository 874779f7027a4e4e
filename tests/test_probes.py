"""Linear probes: all layers at once, learning rate chosen on held-out training images."""

from __future__ import annotations

import math

import pytest
import torch

from repsim.data import ImageDataset
from repsim.models import ResNet, ResNetConfig
from repsim.probes import probe_layers, train_probes


def _colour_coded(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose class (0-3) sets the brightness of one colour channel."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randint(0, 96, (n, 3, 32, 32), generator=g)
    images[torch.arange(n), labels % 3] += 96 * (1 + labels // 3)[:, None, None]
    return images.clamp(0, 255).to(torch.uint8), labels


@pytest.fixture(scope="module")
def setup():
    train_images, train_labels = _colour_coded(600, 0)
    test_images, test_labels = _colour_coded(200, 1)
    data = ImageDataset(train_images, train_labels, test_images, test_labels, ("a", "b", "c", "d"), "toy", "memory")
    torch.manual_seed(0)
    return ResNet(ResNetConfig(depth=8, num_classes=4)).eval(), data


def test_probe_layers_are_each_add_and_the_bn_before_it():
    names = probe_layers(ResNet(ResNetConfig(depth=14)))
    assert names[:4] == ["stage1.block0.bn2", "stage1.block0.add", "stage1.block1.bn2", "stage1.block1.add"]
    assert len(names) == 2 * 3 * 2
    with pytest.raises(ValueError, match="no residual adds"):
        probe_layers(ResNet(ResNetConfig(depth=8, residual=False)))


def test_probes_read_the_class_from_a_random_network(setup):
    model, data = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = train_probes(model, data, train_size=500, val_size=100, epochs=4, batch_size=100,
                        lrs=(1e-12, 1e-2), max_features=512, device="cpu")
    assert [row["layer"] for row in rows] == probe_layers(model)
    # The useless learning rate must lose on the validation images, for every layer.
    assert all(row["lr"] == 1e-2 for row in rows)
    assert min(row["test_acc"] for row in rows) > 0.6  # chance is 0.25
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model stays frozen


def test_bad_sizes_are_named(setup):
    model, data = setup
    with pytest.raises(ValueError, match="exceeds the 600 training images"):
        train_probes(model, data, train_size=550, val_size=100, device="cpu")
    with pytest.raises(ValueError, match="train_size and val_size"):
        train_probes(model, data, train_size=0, val_size=100, device="cpu")


def test_unit_span_and_gain_per_unit_read_the_post_add_probes():
    from repsim.probes import gain_per_unit, unit_span

    adds = [f"stage1.block{b}.add" for b in range(5)]
    accuracies = [0.30, 0.40, 0.42, 0.43, 0.60]
    rows = [row for name, acc in zip(adds, accuracies)
            for row in ({"layer": name.replace("add", "bn2"), "test_acc": 0.0}, {"layer": name, "test_acc": acc})]
    span = unit_span(rows, ["stage1.block1.relu2", *adds[1:4]])
    assert span == (1, 3)
    assert gain_per_unit(rows, span, inside=True) == pytest.approx(0.015)  # steps 1->2 and 2->3
    assert gain_per_unit(rows, span, inside=False) == pytest.approx(0.135)  # steps 0->1 and 3->4
    assert unit_span(rows, ["stage2.block0.add"]) is None
    assert gain_per_unit(rows, None, inside=False) == pytest.approx(0.075)
    assert math.isnan(gain_per_unit(rows, None, inside=True))
