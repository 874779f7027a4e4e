"""model_cka and collect_activations: the glue between capture and the CKA accumulator."""

from __future__ import annotations

import pytest
import torch

from repsim.activations import capture
from repsim.cka import MinibatchCKA, linear_cka
from repsim.compare import collect_activations, model_cka
from repsim.data import to_float
from repsim.models import ResNet, ResNetConfig

LAYERS = ["stem.conv", "stage1.block0.relu2", "stage2.block0.add", "stage3.block0.bn2", "pool", "fc"]


@pytest.fixture(scope="module")
def model() -> ResNet:
    torch.manual_seed(0)
    return ResNet(ResNetConfig(depth=8)).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (42, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_collect_activations_equals_one_big_capture(model, images):
    acts = collect_activations(model, images, LAYERS, batch_size=10, device="cpu")
    whole = capture(model, to_float(images), LAYERS)
    assert list(acts) == LAYERS
    for name in LAYERS:
        assert acts[name].shape == whole[name].shape and acts[name].shape[0] == 42
        assert torch.allclose(acts[name], whole[name], atol=1e-5), name


def test_model_cka_one_batch_equals_linear_cka(model, images):
    cka = model_cka(model, images, layers=LAYERS, batch_size=len(images), passes=1, device="cpu")
    acts = capture(model, to_float(images), LAYERS)
    assert cka.shape == (len(LAYERS), len(LAYERS)) and cka.dtype == torch.float64
    for i, a in enumerate(LAYERS):
        for j, b in enumerate(LAYERS):
            assert cka[i, j].item() == pytest.approx(linear_cka(acts[a], acts[b], unbiased=True), abs=1e-6), (a, b)


def test_model_cka_matches_manual_minibatches(model, images):
    # Same seeded shuffles as model_cka; the last batch of each pass (2 images) is dropped.
    batch, passes, seed = 8, 2, 3
    cka = model_cka(model, images, layers=LAYERS, batch_size=batch, passes=passes, seed=seed, device="cpu")
    acts = capture(model, to_float(images), LAYERS)
    g = torch.Generator().manual_seed(seed)
    acc = MinibatchCKA(LAYERS)
    for _ in range(passes):
        order = torch.randperm(len(images), generator=g)
        for start in range(0, len(images), batch):
            idx = order[start : start + batch]
            if len(idx) >= 4:
                acc.update({k: v[idx] for k, v in acts.items()})
    assert acc.batches_ == 10
    assert torch.allclose(cka, acc.compute(), atol=1e-6)


def test_model_cka_against_itself_is_the_within_model_matrix(model, images):
    within = model_cka(model, images, layers=LAYERS, batch_size=16, device="cpu")
    cross = model_cka(model, images, other=model, layers=LAYERS, other_layers=LAYERS[2:], batch_size=16, device="cpu")
    assert cross.shape == (len(LAYERS), len(LAYERS) - 2)
    assert torch.allclose(cross, within[:, 2:], atol=1e-9)
    assert torch.allclose(within.diagonal(), torch.ones(len(LAYERS), dtype=torch.float64), atol=1e-9)


def test_model_cka_two_different_models(model, images):
    torch.manual_seed(1)
    other = ResNet(ResNetConfig(depth=14, width=2)).eval()
    cross = model_cka(model, images, other=other, layers=LAYERS, other_layers=["stem.conv", "fc"], batch_size=21, device="cpu")
    assert cross.shape == (len(LAYERS), 2)
    assert (cross <= 1 + 1e-9).all() and torch.isfinite(cross).all()
    assert not torch.allclose(cross[:, 1], torch.ones(len(LAYERS), dtype=torch.float64))
