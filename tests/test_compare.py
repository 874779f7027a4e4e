"""model_cka and collect_activations: the glue between capture and the CKA accumulator."""

from __future__ import annotations

import copy

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


@pytest.mark.parametrize("other", [False, True])
def test_grouped_minibatches_give_the_same_cka_as_one_at_a_time(model, images, other):
    # 42 images in batches of 8: five full batches per pass, then a remainder of 2 that
    # is dropped; groups of 3 batches share one forward pass and one batched Gram product.
    partner = ResNet(ResNetConfig(depth=8, width=2)).eval() if other else None
    kwargs = dict(layers=LAYERS, batch_size=8, passes=2, seed=5, device="cpu", other=partner)
    alone = model_cka(model, images, group=1, **kwargs)
    grouped = model_cka(model, images, group=3, **kwargs)
    assert torch.allclose(alone, grouped, rtol=0, atol=1e-6)
    assert not torch.allclose(alone, torch.zeros_like(alone))


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


# ---------------------------------------------------------------------------------------
# Streaming Grams (forward hooks) against captured activations, and bad input
# ---------------------------------------------------------------------------------------


class ReusedReLU(torch.nn.Module):
    """One ReLU module called twice in a forward pass: hooks on it see two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 32 * 32, 5)

    def forward(self, x):
        x = self.relu(self.conv(x))
        return self.fc(self.relu(self.conv2(x) - 0.1).flatten(1))


def captured_minibatch_cka(model, images, layers, batch, seed=0):
    """The minibatch estimator over model_cka's shuffled batches, from captured activations."""
    acts = capture(model, to_float(images), layers)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    acc = MinibatchCKA(layers)
    for start in range(0, len(images), batch):
        idx = order[start : start + batch]
        if len(idx) >= 4:
            acc.update({k: v[idx] for k, v in acts.items()})
    return acc.compute()


def test_grams_computed_in_the_hooks_equal_the_estimate_from_captured_activations(model, images):
    cka = model_cka(model, images, layers=LAYERS, batch_size=16, device="cpu")
    assert torch.allclose(cka, captured_minibatch_cka(model, images, LAYERS, 16), atol=1e-6)


def test_layers_that_are_not_modules_are_refused_and_each_call_of_a_reused_module_has_a_name(model, images):
    with pytest.raises(KeyError, match="'x'"):
        model_cka(model, images, layers=["x", "stem.conv"], batch_size=16, device="cpu")
    torch.manual_seed(2)
    reused = ReusedReLU().eval()
    with pytest.raises(ValueError, match="'relu_2': 2"):
        model_cka(reused, images, layers=["conv", "relu", "relu_2", "fc"], batch_size=14, device="cpu")
    cka = model_cka(reused, images, layers=["conv", "relu", "conv2", "relu_1"], batch_size=14, device="cpu")
    assert torch.allclose(cka, captured_minibatch_cka(reused, images, ["conv", "relu", "conv2", "relu_1"], 14), atol=1e-6)
    assert cka[1, 3] < 0.999  # the two calls are two layers


def test_model_cka_names_the_first_layer_with_nan(model, images):
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.stage2.block0.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 'stage2.block0.conv1' contains NaN or Inf"):
        # NaN spreads to every later layer: the error names the first, in forward order
        layers = ["stem.conv", "stage1.block0.relu2", "stage2.block0.conv1", "stage2.block0.add", "fc"]
        model_cka(broken, images, layers=layers, batch_size=21, device="cpu")
    with pytest.raises(ValueError, match="layer 'stage2.block0.conv1' contains NaN or Inf"):
        model_cka(model, images, other=broken, layers=LAYERS, other_layers=["stem.conv", "stage2.block0.conv1"],
                  batch_size=21, device="cpu")


def test_model_cka_transform_that_makes_nan_is_named(model, images):
    def transform(name, act):
        return act / 0 if name == "pool" else act  # 0/0 where the pool is 0, inf elsewhere

    with pytest.raises(ValueError, match="layer 'pool' contains NaN or Inf"):
        model_cka(model, images, layers=LAYERS, batch_size=21, device="cpu", transform=transform)


def test_model_cka_rescales_activations_whose_float32_grams_overflow(model, images):
    # fc scaled by 2^70: its logits ~1e21, their float32 Gram overflows. CKA is
    # scale-invariant, so the matrix is that of the unscaled model.
    big = copy.deepcopy(model)
    with torch.no_grad():
        big.fc.weight.mul_(2.0**70)
        big.fc.bias.mul_(2.0**70)
    acts = capture(big, to_float(images[:8]), ["fc"])["fc"]
    assert not torch.isfinite(acts @ acts.T).all()
    expected = model_cka(model, images, layers=LAYERS, batch_size=14, device="cpu")
    cka = model_cka(big, images, layers=LAYERS, batch_size=14, device="cpu")
    assert torch.allclose(cka, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("count,batch", [(3, 256), (0, 256), (40, 3)])
def test_model_cka_with_too_few_images_per_batch(model, images, count, batch):
    with pytest.raises(ValueError, match=f"{count} image.*batch_size is {batch}.*at least 4 images"):
        model_cka(model, images[:count], layers=LAYERS, batch_size=batch, device="cpu")
