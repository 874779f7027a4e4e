"""CKA against an independent float64 implementation, its invariances, and the
bookkeeping of the minibatch estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repsim.cka import MinibatchCKA, cka_of_grams, linear_cka

# ---------------------------------------------------------------------------------------
# Reference: the formulas, written out in float64 numpy, from uncentred Grams.
# ---------------------------------------------------------------------------------------


def ref_hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    """Gretton et al. 2005: tr(K H L H) / (n - 1)^2, H = I - 11^T / n."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2


def ref_hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012, HSIC_1:
    [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n (n-3)),
    with K~, L~ the Grams with zeroed diagonals."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    value = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    )
    return float(value) / (n * (n - 3))


def ref_grams(x, y):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    return x @ x.T, y @ y.T


def ref_cka(x, y, unbiased: bool) -> float:
    hsic = ref_hsic_unbiased if unbiased else ref_hsic_biased
    k, l = ref_grams(x, y)
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def ref_minibatch_cka(batches_x, batches_y, weighting: str = "released") -> float:
    """The paper's estimator: HSIC_1 of each batch summed over batches, then the ratio.

    "released" weights batch b by n_b (n_b - 3), as the released efficient_CKA.py does
    (it sums the unnormalised products of U-centred Grams); "equal" averages the HSIC_1
    estimates with equal weights."""
    sxy = sxx = syy = 0.0
    for x, y in zip(batches_x, batches_y):
        k, l = ref_grams(x, y)
        n = len(k)
        weight = n * (n - 3) if weighting == "released" else 1.0
        sxy += weight * ref_hsic_unbiased(k, l)
        sxx += weight * ref_hsic_unbiased(k, k)
        syy += weight * ref_hsic_unbiased(l, l)
    return sxy / np.sqrt(sxx * syy)


def related(n: int, p1: int, p2: int, seed: int, noise: float = 1.0, dtype=torch.float64):
    """x (n, p1) and y (n, p2) = x W + noise: clearly related, CKA well inside (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p1, generator=g, dtype=torch.float64)
    y = x @ torch.randn(p1, p2, generator=g, dtype=torch.float64) + noise * torch.randn(n, p2, generator=g, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


SHAPES = [(6, 1, 1), (10, 3, 5), (40, 20, 7), (100, 200, 30), (257, 16, 64)]


# ---------------------------------------------------------------------------------------
# Against the reference
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
@pytest.mark.parametrize("n,p1,p2", SHAPES)
def test_linear_cka_matches_float64_reference(n, p1, p2, unbiased):
    x, y = related(n, p1, p2, seed=n + p1 + p2)
    expected = ref_cka(x.numpy(), y.numpy(), unbiased)
    assert np.isfinite(expected)
    assert linear_cka(x, y, unbiased=unbiased) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
def test_linear_cka_accepts_numpy(unbiased):
    x, y = related(50, 8, 4, seed=1)
    expected = ref_cka(x.numpy(), y.numpy(), unbiased)
    assert linear_cka(x.numpy(), y.numpy(), unbiased=unbiased) == pytest.approx(expected, abs=1e-10)


def test_unbiased_estimator_is_near_zero_for_independent_features_where_biased_is_not():
    # The reason the paper uses HSIC_1: with few examples and many features the biased
    # estimator reports similarity between independent representations.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 500, generator=g, dtype=torch.float64)
    y = torch.randn(32, 500, generator=g, dtype=torch.float64)
    biased, unbiased = linear_cka(x, y), linear_cka(x, y, unbiased=True)
    assert biased == pytest.approx(ref_cka(x, y, False), abs=1e-10)
    assert unbiased == pytest.approx(ref_cka(x, y, True), abs=1e-10)
    assert biased > 0.5
    assert abs(unbiased) < 0.1


# ---------------------------------------------------------------------------------------
# Invariances
# ---------------------------------------------------------------------------------------


def random_orthogonal(p: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # (p, p), Haar-distributed


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
def test_invariant_to_orthogonal_transform(unbiased):
    x, y = related(60, 12, 9, seed=2)
    qx, qy = random_orthogonal(12, 3), random_orthogonal(9, 4)
    assert torch.allclose(qx.T @ qx, torch.eye(12, dtype=torch.float64), atol=1e-12)
    base = linear_cka(x, y, unbiased=unbiased)
    assert linear_cka(x @ qx, y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x @ qx, y @ qy, unbiased=unbiased) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
@pytest.mark.parametrize("scale", [1e-3, 0.5, 3.7, 1e4])
def test_invariant_to_isotropic_scaling(unbiased, scale):
    x, y = related(60, 12, 9, seed=5)
    base = linear_cka(x, y, unbiased=unbiased)
    assert linear_cka(scale * x, y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, scale * y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
def test_invariant_to_mean_shift(unbiased):
    x, y = related(60, 12, 9, seed=6)
    g = torch.Generator().manual_seed(7)
    shift_x = 100 * torch.randn(1, 12, generator=g, dtype=torch.float64)  # same vector for every example
    shift_y = -30 * torch.randn(1, 9, generator=g, dtype=torch.float64)
    base = linear_cka(x, y, unbiased=unbiased)
    assert linear_cka(x + shift_x, y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x + shift_x, y + shift_y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
def test_not_invariant_to_general_invertible_linear_map(unbiased):
    # x has two independent unit-variance features, y is the first one: CKA ~ 1/sqrt(2).
    # Stretching the first feature of x (an invertible map) pushes CKA towards 1,
    # shrinking it pushes CKA towards 0.
    g = torch.Generator().manual_seed(8)
    x = torch.randn(500, 2, generator=g, dtype=torch.float64)
    y = x[:, :1].clone()
    base = linear_cka(x, y, unbiased=unbiased)
    assert base == pytest.approx(2**-0.5, abs=0.1)
    for a in (torch.tensor([[10.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.1, 0.0], [0.0, 1.0]]),
              torch.tensor([[10.0, 0.0], [3.0, 1.0]])):
        a = a.double()
        assert abs(torch.linalg.det(a)) > 0.05  # invertible
        assert abs(linear_cka(x @ a, y, unbiased=unbiased) - base) > 0.15


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_self_similarity_is_one(unbiased, dtype):
    x, _ = related(80, 30, 1, seed=9, dtype=dtype)
    assert linear_cka(x, x, unbiased=unbiased) == pytest.approx(1.0, abs=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
def test_symmetric(unbiased):
    x, y = related(70, 11, 23, seed=10)
    assert linear_cka(x, y, unbiased=unbiased) == pytest.approx(linear_cka(y, x, unbiased=unbiased), abs=1e-12)


# ---------------------------------------------------------------------------------------
# MinibatchCKA
# ---------------------------------------------------------------------------------------


def layered_batch(n: int, seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Activations of four 'layers' of one model for n examples, with some (n, C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 6, generator=g, dtype=torch.float64)
    acts = {
        "conv": (base @ torch.randn(6, 2 * 3 * 3, generator=g, dtype=torch.float64)).reshape(n, 2, 3, 3),
        "bn": base @ torch.randn(6, 10, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, 10, generator=g, dtype=torch.float64),
        "relu": torch.relu(base @ torch.randn(6, 7, generator=g, dtype=torch.float64)),
        "fc": torch.randn(n, 3, generator=g, dtype=torch.float64),
    }
    return {k: v.to(dtype) for k, v in acts.items()}


@pytest.mark.parametrize("n", [4, 9, 64])
def test_minibatch_single_batch_equals_full_unbiased_estimator(n):
    acts = layered_batch(n, seed=n)
    names = list(acts)
    cka = MinibatchCKA(names).update(acts).compute()
    assert cka.shape == (4, 4) and cka.dtype == torch.float64
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            expected = linear_cka(acts[a].flatten(1), acts[b].flatten(1), unbiased=True)
            assert cka[i, j].item() == pytest.approx(expected, abs=1e-12), (a, b)
            if n > 4:  # n = 4 can make a self-HSIC_1 vanish; the formula is then 0/0
                assert cka[i, j].item() == pytest.approx(ref_cka(acts[a], acts[b], unbiased=True), abs=1e-10), (a, b)


def test_minibatch_biased_single_batch_equals_linear_cka():
    acts = layered_batch(30, seed=1)
    names = list(acts)
    cka = MinibatchCKA(names, unbiased=False).update(acts).compute()
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            assert cka[i, j].item() == pytest.approx(linear_cka(acts[a].flatten(1), acts[b].flatten(1)), abs=1e-12)


BATCH_SIZES = [16, 7, 32, 5, 20]


def test_minibatch_sums_hsic_over_batches_like_the_reference():
    batches = [layered_batch(n, seed=100 + i) for i, n in enumerate(BATCH_SIZES)]
    names = list(batches[0])
    acc = MinibatchCKA(names)
    for acts in batches:
        acc.update(acts)
    cka = acc.compute()
    assert acc.batches_ == len(BATCH_SIZES) and acc.examples_ == sum(BATCH_SIZES)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            expected = ref_minibatch_cka([acts[a] for acts in batches], [acts[b] for acts in batches])
            assert cka[i, j].item() == pytest.approx(expected, abs=1e-10), (a, b)
    assert torch.allclose(cka.diagonal(), torch.ones(len(names), dtype=torch.float64), atol=1e-12)
    assert torch.allclose(cka, cka.T, atol=1e-14)


def test_a_remainder_batch_is_weighted_as_in_the_released_code():
    # 4 batches of 32 and a remainder of 6: the released code's n(n - 3) weights, not
    # equal weights. On equal batches the two weightings give the same CKA.
    x, y = related(134, 12, 5, seed=41, noise=3.0)
    sizes = [32, 32, 32, 32, 6]
    bounds = np.cumsum([0] + sizes)
    acc = MinibatchCKA(["x", "y"])
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update({"x": x[a:b], "y": y[a:b]})
    batches_x = [x[a:b].numpy() for a, b in zip(bounds[:-1], bounds[1:])]
    batches_y = [y[a:b].numpy() for a, b in zip(bounds[:-1], bounds[1:])]
    released = ref_minibatch_cka(batches_x, batches_y, "released")
    equal = ref_minibatch_cka(batches_x, batches_y, "equal")
    assert acc.compute()[0, 1].item() == pytest.approx(released, abs=1e-12)
    assert abs(released - equal) > 1e-3  # the weighting matters with a remainder batch
    assert ref_minibatch_cka(batches_x[:4], batches_y[:4], "released") == pytest.approx(
        ref_minibatch_cka(batches_x[:4], batches_y[:4], "equal"), abs=1e-12)


def test_minibatch_result_does_not_depend_on_batch_order():
    batches = [layered_batch(n, seed=200 + i) for i, n in enumerate(BATCH_SIZES)]
    names = list(batches[0])
    results = []
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        acc = MinibatchCKA(names)
        for i in order:
            acc.update(batches[i])
        results.append(acc.compute())
    for other in results[1:]:
        assert torch.allclose(results[0], other, rtol=0, atol=1e-12)
    # and the batches matter: one batch alone gives a different answer
    alone = MinibatchCKA(names).update(batches[0]).compute()
    assert (alone - results[0]).abs().max() > 1e-3


def test_cross_model_block_equals_block_of_joint_computation():
    # Two "models" with overlapping layer names, so the joint run needs renamed keys.
    layers_a, layers_b = ["conv", "relu"], ["conv", "bn", "fc"]
    batches_a = [layered_batch(n, seed=300 + i) for i, n in enumerate(BATCH_SIZES)]
    batches_b = [layered_batch(n, seed=400 + i) for i, n in enumerate(BATCH_SIZES)]
    cross = MinibatchCKA(layers_a, layers_b)
    joint = MinibatchCKA([f"a/{k}" for k in layers_a] + [f"b/{k}" for k in layers_b])
    for acts_a, acts_b in zip(batches_a, batches_b):
        acts_a = {k: acts_a[k] for k in layers_a}
        acts_b = {k: acts_b[k] for k in layers_b}
        cross.update(acts_a, acts_b)
        joint.update({**{f"a/{k}": v for k, v in acts_a.items()}, **{f"b/{k}": v for k, v in acts_b.items()}})
    block = cross.compute()
    full = joint.compute()
    assert block.shape == (2, 3)
    assert torch.allclose(block, full[:2, 2:], rtol=0, atol=1e-12)
    # the block is not trivially the same model against itself
    assert not torch.allclose(block[0, 0], torch.tensor(1.0, dtype=torch.float64))


# ---------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------


def centre(x: torch.Tensor) -> np.ndarray:
    x = x.double().flatten(1).numpy()
    return x - x.mean(axis=0, keepdims=True)


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
def test_float32_features_with_large_mean_match_float64(unbiased):
    g = torch.Generator().manual_seed(11)
    n, p = 256, 64
    x32 = (1e3 + torch.randn(n, p, generator=g)).float()
    y32 = (1e3 + x32 @ torch.randn(p, 40, generator=g) / 8 + torch.randn(n, 40, generator=g)).float()
    # The reference sees exactly the same (float32-representable) values, centred in
    # float64 (a mean shift, so the same CKA) because uncentred ~1e6 Grams lose digits.
    x64, y64 = x32.double(), y32.double()
    expected = ref_cka(centre(x64), centre(y64), unbiased)
    assert linear_cka(x64, y64, unbiased=unbiased) == pytest.approx(expected, abs=1e-10)
    assert linear_cka(x32, y32, unbiased=unbiased) == pytest.approx(expected, abs=1e-6)
    assert linear_cka(x32, x32, unbiased=unbiased) == pytest.approx(1.0, abs=1e-6)


def test_minibatch_float32_with_large_mean_matches_float64():
    g = torch.Generator().manual_seed(12)
    batches32, batches64 = [], []
    for n in (64, 64, 50):
        x = (1e3 + torch.randn(n, 4, 4, 4, generator=g)).float()
        y = (1e3 + x.flatten(1) @ torch.randn(64, 20, generator=g) / 8 + torch.randn(n, 20, generator=g)).float()
        batches32.append({"x": x, "y": y})
        batches64.append({"x": x.double(), "y": y.double()})
    acc32, acc64 = MinibatchCKA(["x", "y"]), MinibatchCKA(["x", "y"])
    for b32, b64 in zip(batches32, batches64):
        acc32.update(b32)
        acc64.update(b64)
    expected = ref_minibatch_cka([centre(b["x"]) for b in batches64], [centre(b["y"]) for b in batches64])
    assert acc64.compute()[0, 1].item() == pytest.approx(expected, abs=1e-10)
    assert torch.allclose(acc32.compute(), acc64.compute(), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Constant representations: the module docstring defines their CKA as 0.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("value", [0.0, 0.1, 3.7, 1e3])
def test_constant_representation_has_cka_zero(value, dtype, unbiased):
    # 0.0 is a dead ReLU layer; other constants are not exactly representable after
    # averaging over examples, which must not turn 0/0 into rounding noise.
    n = 37
    const = torch.full((n, 5), value, dtype=dtype)
    const[:, 2] = -2 * value  # constant over examples, not over features
    y, _ = related(n, 6, 1, seed=13, dtype=dtype)
    assert abs(linear_cka(const, y, unbiased=unbiased)) < 1e-12
    assert abs(linear_cka(y, const, unbiased=unbiased)) < 1e-12
    assert abs(linear_cka(const, const, unbiased=unbiased)) < 1e-12  # 0 by definition, not 1
    cka = MinibatchCKA(["const", "y"], unbiased=unbiased).update({"const": const, "y": y}).compute()
    assert cka[1, 1].item() == pytest.approx(1.0, abs=1e-6)
    assert cka[0].abs().max().item() < 1e-12 and cka[:, 0].abs().max().item() < 1e-12


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
def test_unbiased_needs_four_examples(n):
    x, y = related(n, 2, 2, seed=14)
    with pytest.raises(ValueError, match=f"at least 4 examples, x and y have {n}"):
        linear_cka(x, y, unbiased=True)
    with pytest.raises(ValueError, match=f"at least 4 examples, the layers of this batch.*have {n}"):
        MinibatchCKA(["x", "y"]).update({"x": x, "y": y})
    with pytest.raises(ValueError, match="at least 4 examples"):
        MinibatchCKA(["x"], ["y"]).update({"x": related(5, 2, 2, seed=1)[0]}, {"y": y})
    if n >= 2:  # biased: fine from 2 examples
        assert linear_cka(x, y) == pytest.approx(ref_cka(x, y, False), abs=1e-10)
    else:
        with pytest.raises(ValueError, match="at least 2 examples"):
            linear_cka(x, y)
        with pytest.raises(ValueError, match="at least 2 examples"):
            MinibatchCKA(["x", "y"], unbiased=False).update({"x": x, "y": y})


def test_mismatched_example_counts():
    x, _ = related(10, 3, 1, seed=15)
    y, _ = related(9, 3, 1, seed=16)
    with pytest.raises(ValueError, match="same examples.*10 rows.*9"):
        linear_cka(x, y)
    with pytest.raises(ValueError, match="layer 'y' has 9 examples"):
        MinibatchCKA(["x", "y"]).update({"x": x, "y": y})
    with pytest.raises(ValueError, match="different numbers of examples"):
        MinibatchCKA(["x"], ["y"]).update({"x": x}, {"y": y})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values(bad):
    x, y = related(10, 3, 4, seed=17)
    y[4, 1] = bad
    with pytest.raises(ValueError, match="y contains NaN or Inf"):
        linear_cka(x, y)
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        linear_cka(y, x)
    with pytest.raises(ValueError, match="layer 'stage2.block0.bn1'.*NaN or Inf"):
        MinibatchCKA(["stem.conv", "stage2.block0.bn1"]).update({"stem.conv": x, "stage2.block0.bn1": y})
    with pytest.raises(ValueError, match="layer 'fc'.*NaN or Inf"):
        MinibatchCKA(["x"], ["fc"]).update({"x": x}, {"fc": y})
    # a NaN layer among large ones: named, not mistaken for an overflow to rescale
    with pytest.raises(ValueError, match="layer 'bad'.*NaN or Inf"):
        MinibatchCKA(["ok", "bad"]).update({"ok": 1e3 + x, "bad": 1e20 * y})


def test_non_finite_grams_are_refused_by_update_grams():
    from repsim.cka import NonFiniteGramError, batch_gram

    x, y = related(10, 3, 4, seed=17, dtype=torch.float32)
    acc = MinibatchCKA(["x", "y"])
    with pytest.raises(NonFiniteGramError, match="'y'") as info:
        acc.update_grams({"x": batch_gram(x), "y": batch_gram(y * 1e20)})
    assert info.value.layers == ["y"] and acc.hsic_ is None  # nothing was added
    acc.update_grams({"x": batch_gram(x), "y": batch_gram(y)})
    assert acc.compute()[0, 1].item() == pytest.approx(linear_cka(x, y, unbiased=True), abs=1e-6)
    with pytest.raises(TypeError, match="layer 'x'.*batch_gram"):
        acc.update_grams({"x": batch_gram(x).numpy(), "y": batch_gram(y)})
    with pytest.raises(ValueError, match="layer 'x'.*square"):
        acc.update_grams({"x": x, "y": batch_gram(y)})


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
def test_float32_gram_overflow_is_computed_by_rescaling(unbiased):
    # Centred values ~1e19: their float32 products overflow. CKA is scale-invariant, so
    # the answer is the CKA of the same features at a sane scale, not an error.
    g = torch.Generator().manual_seed(18)
    base = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y, _ = related(12, 3, 1, seed=18)
    big = (base * 2.0**64).float()  # exactly 2^64 times base, rounded once to float32
    assert not torch.isfinite(big @ big.T).all()  # the naive Gram does overflow
    expected = ref_cka(big.double() / 2.0**64, y, unbiased)
    assert linear_cka(big, y.float(), unbiased=unbiased) == pytest.approx(expected, abs=1e-6)
    batches = [{"y": y[:6].float(), "big": big[:6]}, {"y": y[6:].float(), "big": big[6:]}]
    acc = MinibatchCKA(["y", "big"], unbiased=unbiased)
    for acts in batches:
        acc.update(acts)
    small = MinibatchCKA(["y", "big"], unbiased=unbiased)
    for acts in batches:  # the same features scaled back down: the same batch weights
        small.update({"y": acts["y"], "big": acts["big"].double() / 2.0**64})
    assert torch.allclose(acc.compute(), small.compute(), rtol=0, atol=1e-6)
    assert 0.05 < abs(acc.compute()[0, 1].item()) < 0.999  # a real value, not 0 or 1


def test_float32_overflow_in_one_batch_only_keeps_the_batch_weights():
    # Only the second batch overflows; rescaling it alone must be undone exactly, or the
    # sum over batches would weight it wrongly.
    g = torch.Generator().manual_seed(21)
    x = [torch.randn(8, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    y = [xi @ torch.randn(5, 3, generator=g, dtype=torch.float64) + torch.randn(8, 3, generator=g, dtype=torch.float64) for xi in x]
    scaled = MinibatchCKA(["x", "y"])
    reference = MinibatchCKA(["x", "y"])
    for i in range(2):
        factor = 2.0**70 if i == 1 else 2.0**60  # both overflow float32 Grams, by different factors
        scaled.update({"x": (x[i] * factor).float(), "y": (y[i] * factor).float()})
        reference.update({"x": (x[i] * factor).float().double(), "y": (y[i] * factor).float().double()})
    assert torch.allclose(scaled.compute(), reference.compute(), rtol=0, atol=1e-6)


def test_float64_overflow_raises_naming_the_layer():
    x = torch.randn(8, 4, dtype=torch.float64) * 1e200  # even the float64 Gram overflows
    y, _ = related(8, 3, 1, seed=18)
    with pytest.raises(OverflowError, match="layer 'huge'"):
        MinibatchCKA(["y", "huge"]).update({"y": y, "huge": x})
    with pytest.raises(OverflowError, match="Gram of x"):
        linear_cka(x, y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features_are_multiplied_in_float32(dtype):
    # float16 Grams overflow at 65504; these features would give entries ~1e6.
    g = torch.Generator().manual_seed(22)
    x = (30 * torch.randn(64, 1000, generator=g)).to(dtype)
    y = (x.float() @ torch.randn(1000, 20, generator=g) / 30).to(dtype)
    expected = ref_cka(x.double(), y.double(), True)
    assert linear_cka(x, y, unbiased=True) == pytest.approx(expected, abs=1e-5)
    cka = MinibatchCKA(["x", "y"]).update({"x": x, "y": y}).compute()
    assert cka[0, 1].item() == pytest.approx(expected, abs=1e-5)


def test_unknown_and_missing_layer_names():
    acts = layered_batch(8, seed=19)
    with pytest.raises(KeyError, match="stage9.nope"):
        MinibatchCKA(list(acts)).update({**acts, "stage9.nope": acts["fc"]})
    with pytest.raises(KeyError, match="lack.*relu"):
        MinibatchCKA(list(acts)).update({k: v for k, v in acts.items() if k != "relu"})
    with pytest.raises(KeyError, match="other_acts"):
        MinibatchCKA(["fc"], ["conv", "bn"]).update({"fc": acts["fc"]}, {"conv": acts["conv"]})


def test_empty_inputs():
    with pytest.raises(ValueError, match="x is empty"):
        linear_cka(torch.empty(0, 3), torch.empty(0, 3))
    with pytest.raises(ValueError, match="x is empty"):
        linear_cka(torch.randn(5, 0), torch.randn(5, 2))
    with pytest.raises(ValueError, match="y is empty"):
        linear_cka(torch.randn(5, 2), torch.randn(5, 0))
    with pytest.raises(ValueError, match="layer 'b' is empty"):
        MinibatchCKA(["a", "b"]).update({"a": torch.randn(6, 2), "b": torch.empty(6, 0)})
    with pytest.raises(ValueError, match="layer 'a' is empty"):
        MinibatchCKA(["a"]).update({"a": torch.empty(0, 3, 4, 4)})
    with pytest.raises(ValueError, match="at least one layer"):
        MinibatchCKA([])
    with pytest.raises(ValueError, match="at least one layer"):
        MinibatchCKA(["a"], [])
    with pytest.raises(RuntimeError, match="before any update"):
        MinibatchCKA(["a"]).compute()


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64, torch.complex128])
def test_integer_bool_and_complex_dtypes_are_rejected(dtype):
    x = torch.arange(20).reshape(10, 2).to(dtype)
    with pytest.raises(TypeError, match=f"x has dtype {dtype}.*real floating-point"):
        linear_cka(x, torch.randn(10, 2))
    with pytest.raises(TypeError, match=f"y has dtype {dtype}"):
        linear_cka(torch.randn(10, 2), x)
    with pytest.raises(TypeError, match=f"layer 'a' has dtype {dtype}"):
        MinibatchCKA(["a", "b"]).update({"a": x, "b": torch.randn(10, 2)})
    with pytest.raises(TypeError, match=f"layer 'b' has dtype {dtype}"):
        MinibatchCKA(["a"], ["b"]).update({"a": torch.randn(10, 2)}, {"b": x})


def test_non_array_input_is_rejected():
    with pytest.raises(TypeError, match="numpy"):
        linear_cka([[1.0, 2.0]] * 5, torch.randn(5, 2))
    with pytest.raises(TypeError, match="layer 'a'.*numpy"):
        MinibatchCKA(["a"]).update({"a": [[1.0, 2.0]] * 5})


def test_one_dimensional_input_is_rejected():
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(torch.randn(10), torch.randn(10, 2))
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(torch.randn(10, 2), torch.randn(10, 2, 2))  # linear_cka does not flatten
    with pytest.raises(ValueError, match="2-D"):
        MinibatchCKA(["a"]).update({"a": torch.randn(10)})


def test_argument_mistakes():
    with pytest.raises(ValueError, match="duplicate"):
        MinibatchCKA(["a", "a"])
    with pytest.raises(ValueError, match="duplicate"):
        MinibatchCKA(["a"], ["b", "b"])
    x, _ = related(8, 3, 1, seed=20)
    with pytest.raises(ValueError, match="other_acts exactly"):
        MinibatchCKA(["a"]).update({"a": x}, {"b": x})
    with pytest.raises(ValueError, match="other_acts exactly"):
        MinibatchCKA(["a"], ["b"]).update({"a": x})


# ---------------------------------------------------------------------------------------
# Numbers: precision at scale, batch order and batch size
# ---------------------------------------------------------------------------------------


def large_mean_layers(n: int, seed: int) -> dict[str, torch.Tensor]:
    """float32 features of three related layers with per-feature means of 1e3 to 1e4."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, generator=g, dtype=torch.float64)
    layers = {
        "a": z @ torch.randn(8, 48, generator=g, dtype=torch.float64) + torch.randn(n, 48, generator=g, dtype=torch.float64),
        "b": torch.relu(z @ torch.randn(8, 32, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(n, 32, generator=g, dtype=torch.float64),
        "c": z[:, :2] @ torch.randn(2, 16, generator=g, dtype=torch.float64) + torch.randn(n, 16, generator=g, dtype=torch.float64),
    }
    return {k: (v + 10 ** (3 + torch.rand(1, v.shape[1], generator=g, dtype=torch.float64))).float() for k, v in layers.items()}


def test_float32_large_mean_many_batches_match_float64_reference():
    # 10,000 examples, 40 batches of 250, means up to 1e4: the error does not grow with
    # the number of batches (sums are in float64) and the centring keeps each Gram exact.
    layers = large_mean_layers(10_000, seed=30)
    names = list(layers)
    acc = MinibatchCKA(names)
    sums = np.zeros((3, 3))
    for start in range(0, 10_000, 250):
        batch = {k: v[start : start + 250] for k, v in layers.items()}
        acc.update(batch)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                # the reference: Song et al.'s formula in numpy float64, on float64-centred copies
                k, l = ref_grams(centre(batch[a]), centre(batch[b]))
                sums[i, j] += ref_hsic_unbiased(k, l)
    expected = sums / np.sqrt(np.outer(np.diag(sums), np.diag(sums)))
    cka = acc.compute().numpy()
    assert acc.examples_ == 10_000 and acc.batches_ == 40
    assert np.abs(cka - expected).max() <= 1e-6
    assert 0.1 < expected[0, 2] < 0.9  # a related but different pair, not a trivial 0 or 1


def minibatch_estimate(layers: dict[str, torch.Tensor], batch: int, order: torch.Tensor) -> torch.Tensor:
    acc = MinibatchCKA(list(layers))
    for start in range(0, len(order) - batch + 1, batch):
        idx = order[start : start + batch]
        acc.update({k: v[idx] for k, v in layers.items()})
    return acc.compute()


def test_same_batches_in_another_order_give_the_same_float32_result():
    layers = large_mean_layers(2_000, seed=31)
    order = torch.randperm(2_000, generator=torch.Generator().manual_seed(0))
    batches = order.reshape(-1, 100)  # 20 fixed batches
    forward = minibatch_estimate(layers, 100, batches.flatten())
    shuffled = minibatch_estimate(layers, 100, batches[torch.randperm(20, generator=torch.Generator().manual_seed(1))].flatten())
    assert torch.allclose(forward, shuffled, rtol=0, atol=1e-12)  # float64 sums: only their roundoff differs
    other_batches = minibatch_estimate(layers, 100, torch.randperm(2_000, generator=torch.Generator().manual_seed(2)))
    assert (other_batches - forward).abs().max() > 1e-6  # different batches do give another estimate


def test_batch_size_changes_the_estimate_only_within_its_spread():
    # The minibatch estimate is a random variable over the batching; with another batch
    # size it should land within a few standard deviations of that spread.
    layers = large_mean_layers(1_200, seed=32)
    estimates = {}
    for batch in (40, 200):
        runs = [minibatch_estimate(layers, batch, torch.randperm(1_200, generator=torch.Generator().manual_seed(s)))
                for s in range(12)]
        estimates[batch] = torch.stack(runs)  # (runs, 3, 3)
    spread = torch.sqrt(estimates[40].var(dim=0) + estimates[200].var(dim=0))  # (3, 3)
    difference = (estimates[40][0] - estimates[200][0]).abs()
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    assert (spread[off_diagonal] > 1e-5).all()  # the batching does matter...
    assert (difference[off_diagonal] <= 4 * spread[off_diagonal]).all()  # ...but only by its spread
    # The check can fail: the biased HSIC estimator's minibatch CKA moves with the batch
    # size (small batches inflate it) far beyond that spread.
    def biased(batch):
        order = torch.randperm(1_200, generator=torch.Generator().manual_seed(0))
        acc = MinibatchCKA(list(layers), unbiased=False)
        for start in range(0, 1_200, batch):
            acc.update({k: v[order[start : start + batch]] for k, v in layers.items()})
        return acc.compute()

    assert ((biased(8) - biased(200)).abs()[off_diagonal] > 4 * spread[off_diagonal]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu():
    layers = large_mean_layers(2_000, seed=33)
    order = torch.randperm(2_000, generator=torch.Generator().manual_seed(0))
    cpu = minibatch_estimate(layers, 250, order)
    gpu = minibatch_estimate({k: v.cuda() for k, v in layers.items()}, 250, order.cuda())
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float64
    assert torch.allclose(cpu, gpu, rtol=0, atol=1e-6)
    x, y = layers["a"][:300], layers["c"][:300]
    assert linear_cka(x.cuda(), y.cuda(), unbiased=True) == pytest.approx(linear_cka(x, y, unbiased=True), abs=1e-6)


# ---------------------------------------------------------------------------------------
# The peer benchmark (benchmarks/cka_peers.py), at a tiny size
# ---------------------------------------------------------------------------------------


def load_benchmark():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cka_peers.py"
    spec = importlib.util.spec_from_file_location("cka_peers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_benchmark()


@pytest.fixture(scope="module")
def tiny_workloads(bench):
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return [
        bench.resnet_workload(images, depth=8, width=1, batch_size=16, seed=0),
        bench.synthetic_workload(96, layers=4, p=40, mean=(1e3, 1e4), batch_size=16, seed=0, device="cpu"),
    ]


def test_benchmark_repsim_is_within_1e6_of_float64(bench, tiny_workloads):
    for workload in tiny_workloads:
        mine = ["repsim", "repsim.similarity"] if workload.run_public is not None else ["repsim"]
        measured, reference = bench.compare_packages(workload, mine, "cpu")
        assert reference.shape == (len(workload.layers),) * 2
        for result in measured:
            assert result.seconds > 0 and result.cka.shape == reference.shape
            assert result.max_error <= 1e-6, (workload.name, result.package)
    assert tiny_workloads[0].run_public is not None  # the public call is measured on the ResNet
    # the reference is an independent formula: check it against this file's on one batch
    synthetic = tiny_workloads[1]
    (idx,) = next(iter(synthetic.loader()))
    acts = [table[idx].double().numpy() for table in synthetic.make_model().features]
    hsic = bench.hsic1_all_pairs(acts)
    k, l = ref_grams(centre(torch.from_numpy(acts[0])), centre(torch.from_numpy(acts[2])))
    assert hsic[0, 2] == pytest.approx(ref_hsic_unbiased(k, l), rel=1e-9)


def test_benchmark_peers_compute_the_same_estimator(bench, tiny_workloads):
    peers = bench.available_peers()
    if not peers:
        pytest.skip("no peer CKA package installed (pip install -r benchmarks/requirements.txt)")
    # Centred features, where float32 Grams lose nothing: every package must then agree
    # with the float64 reference, which shows that the reference is their estimator too.
    centred = bench.synthetic_workload(96, layers=4, p=40, mean=(0, 0), batch_size=16, seed=1, device="cpu")
    measured, reference = bench.compare_packages(centred, ["repsim", *peers], "cpu")
    assert np.abs(reference[~np.eye(4, dtype=bool)]).max() > 0.2  # not a trivial matrix
    for m in measured:
        assert not m.failure and m.max_error < 1e-4, m.package
    # The same with a large mean: uncentred float32 Grams lose the HSIC, repsim does not.
    measured, _ = bench.compare_packages(tiny_workloads[1], ["repsim", *peers], "cpu")
    repsim = measured[0]
    for m in measured[1:]:
        assert m.failure or m.max_error > 100 * repsim.max_error, m.package


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
def test_features_a_few_ulps_wide_are_not_mistaken_for_constant(unbiased):
    # Found by Hypothesis: spread 0.0117 around 7666, i.e. ~24 float32 levels, once fell
    # under the constant-layer threshold and got CKA 0 instead of its float64 value.
    g = torch.Generator().manual_seed(40)
    x = (7666.0 + 0.0117 * torch.randn(30, 2, generator=g, dtype=torch.float64)).float()
    y = (x.double() - 7666.0) @ torch.randn(2, 3, generator=g, dtype=torch.float64) + 0.01 * torch.randn(30, 3, generator=g, dtype=torch.float64)
    expected = ref_cka(centre(x), y.numpy(), unbiased)
    assert abs(expected) > 0.3
    assert linear_cka(x, y.float(), unbiased=unbiased) == pytest.approx(expected, abs=1e-6)
    cka = MinibatchCKA(["x", "y"], unbiased=unbiased).update({"x": x, "y": y.float()}).compute()
    assert cka[0, 1].item() == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------------------------
# GramMaker: on a CPU, an uncentred Gram centred in float64 where the mean is small
# ---------------------------------------------------------------------------------------


def _centred_gram64(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    x = x - x.mean(dim=-2, keepdim=True)
    return x @ x.transpose(-1, -2)


@pytest.mark.parametrize("mean, uncentred", [(0.5, True), (3.0, True), (100.0, False)])
def test_gram_maker_skips_centring_only_where_the_mean_is_small(mean, uncentred):
    from repsim.cka import GramMaker

    g = torch.Generator().manual_seed(11)
    x = (torch.randn(2, 128, 4096, generator=g) + mean * torch.rand(4096, generator=g)).relu()  # 2 minibatches
    y = (x @ torch.randn(4096, 2048, generator=g) / 64 + torch.randn(2, 128, 2048, generator=g)).relu() + mean
    maker = GramMaker()
    kx, ky = maker("x", x), maker("y", y)
    assert ("x" not in maker.centred) == uncentred
    ex, ey = _centred_gram64(x), _centred_gram64(y)
    assert kx.shape == (2, 128, 128)
    assert (kx.double() - ex).abs().max() <= 1e-5 * ex.abs().max()
    # the CKA of two related layers from these Grams is the float64 one, within the 1e-6 bound
    for b in range(2):
        expected = cka_of_grams(ex[b], ey[b], True)
        assert 0.1 < expected < 0.99
        assert cka_of_grams(kx[b].double(), ky[b].double(), True) == pytest.approx(expected, abs=1e-6)
    if not uncentred:  # decided once: the next batch goes straight to the centred Gram
        assert maker("x", x).dtype == torch.float32


def test_gram_maker_centres_constant_small_and_non_finite_layers():
    from repsim.cka import GramMaker

    maker = GramMaker()
    constant = torch.full((128, 4096), 3.0)
    assert torch.count_nonzero(maker("constant", constant)) == 0 and "constant" in maker.centred
    small = torch.randn(32, 4096)
    assert maker("small", small).dtype == torch.float32  # too few examples to skip centring
    broken = torch.randn(128, 4096)
    broken[5, 7] = float("nan")
    assert torch.isnan(maker("broken", broken)).any() and "broken" in maker.centred
