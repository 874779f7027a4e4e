"""First principal components: exact against numpy's SVD, and CKA with PC1 removed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repsim.cka import linear_cka
from repsim.compare import collect_activations
from repsim.models import ResNet, ResNetConfig
from repsim.pca import cka_without_first_pc, first_pc, layer_pcs, pc_cosine_similarity, remove_first_pc


def _low_rank_plus_noise(n=300, d=500, strength=5.0, seed=0):
    g = np.random.default_rng(seed)
    signal = np.outer(g.normal(size=n), g.normal(size=d)) * strength
    return torch.tensor(signal + g.normal(size=(n, d)) + 3.0, dtype=torch.float32)  # + 3: not centred


@pytest.mark.parametrize("shape", [(300, 500), (40, 30)])  # randomised and exact paths
def test_first_pc_matches_numpy_svd(shape):
    x = _low_rank_plus_noise(*shape)
    pc = first_pc(x)
    centred = x.double().numpy() - x.double().numpy().mean(0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    assert pc.variance_explained == pytest.approx(s[0] ** 2 / (s**2).sum(), rel=1e-4)
    assert abs(np.dot(pc.direction.numpy(), vt[0])) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(np.abs(pc.scores.numpy()), np.abs(u[:, 0] * s[0]), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(pc.mean.numpy(), x.numpy().mean(0), rtol=1e-5, atol=1e-5)


def test_variance_explained_is_one_for_rank_one_and_small_for_noise():
    g = torch.Generator().manual_seed(0)
    rank_one = torch.outer(torch.randn(200, generator=g), torch.randn(100, generator=g))
    assert first_pc(rank_one).variance_explained == pytest.approx(1.0, abs=1e-5)
    noise = torch.randn(2000, 50, generator=g)
    assert first_pc(noise).variance_explained < 0.05  # isotropic: about 1/50 each


def test_sign_is_fixed_and_constant_layers_have_no_pc():
    x = _low_rank_plus_noise(50, 20)
    assert first_pc(x).scores[first_pc(x).scores.abs().argmax()] > 0
    assert first_pc(-x).scores[first_pc(-x).scores.abs().argmax()] > 0
    flat = first_pc(torch.ones(10, 4))
    assert flat.variance_explained == 0.0 and not flat.scores.any()


@pytest.mark.parametrize("bad,match", [
    (torch.ones(1, 5), "N >= 2"),
    (torch.ones(5), "N >= 2"),
    (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), "NaN"),
])
def test_first_pc_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        first_pc(bad)
    with pytest.raises(TypeError, match="floating"):
        first_pc(torch.ones(4, 3, dtype=torch.int64))


def test_removing_pc1_leaves_nothing_along_it():
    x = _low_rank_plus_noise(200, 80)
    pc = first_pc(x)
    rest = remove_first_pc(x, pc)
    assert rest.mean(0).abs().max() < 1e-4  # centred
    assert (rest @ pc.direction).abs().max() < 1e-3
    assert first_pc(rest).variance_explained < pc.variance_explained


def test_pc_cosine_similarity_is_absolute_and_symmetric():
    x = _low_rank_plus_noise(100, 30)
    a, b = first_pc(x), first_pc(x * 2)
    flipped = type(a)(a.mean, -a.direction, -a.scores, a.variance_explained)
    sim = pc_cosine_similarity([a, b, flipped])
    np.testing.assert_allclose(sim, np.ones((3, 3)), atol=1e-6)


@pytest.fixture(scope="module")
def small_model_and_images():
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=8)).eval()
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return model, images


def test_layer_pcs_in_small_groups_equal_one_group(small_model_and_images):
    model, images = small_model_and_images
    layers = ["stem.relu", "stage1.block0.add", "stage3.block0.relu2", "pool"]
    together = layer_pcs(model, images, layers, device="cpu")
    apart = layer_pcs(model, images, layers, device="cpu", max_bytes=1)  # one layer per group
    assert list(together) == layers
    for name in layers:
        assert together[name].variance_explained == pytest.approx(apart[name].variance_explained, rel=1e-5)
        acts = collect_activations(model, images, [name], device="cpu")[name]
        assert together[name].variance_explained == pytest.approx(first_pc(acts).variance_explained, rel=1e-5)


def test_cka_without_pc1_matches_direct_computation(small_model_and_images):
    model, images = small_model_and_images
    layers = ["stem.relu", "stage2.block0.relu2", "pool"]
    pcs = layer_pcs(model, images, layers, device="cpu")
    # One batch holding every image: the minibatch estimate is the full-sample unbiased CKA.
    cka = cka_without_first_pc(model, images, pcs, batch_size=len(images), device="cpu").numpy()
    acts = collect_activations(model, images, layers, device="cpu")
    stripped = {n: remove_first_pc(acts[n], pcs[n]) for n in layers}
    for i, a in enumerate(layers):
        for j, b in enumerate(layers):
            assert cka[i, j] == pytest.approx(linear_cka(stripped[a], stripped[b], unbiased=True), abs=1e-6)
