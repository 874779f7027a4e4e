"""The measures beside linear CKA (repsim.measures) against float64 references written
here from the formulas with numpy and scipy, their invariances, known values, and their
bookkeeping (cross blocks, minibatches, blocks of examples)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist, squareform
from scipy.stats import ortho_group

from repsim import measures
from repsim.cka import MinibatchCKA, linear_cka
from repsim.measures import (
    MEASURES,
    knn_matrix,
    mutual_knn,
    neighbour_sets,
    procrustes_factors,
    procrustes_matrix,
    procrustes_similarity,
    rbf_cka,
    rbf_gram,
    squared_distances,
)


def features(n: int, p: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, p))


def gram64(x: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(x)
    x = x - x.mean(dim=0)
    return x @ x.T


# ---- references, from the formulas --------------------------------------------------

def ref_rbf_kernel(x: np.ndarray, fraction: float) -> np.ndarray:
    """exp(-d2 / (2 sigma^2)), sigma = fraction * median pairwise distance (i < j)."""
    distances = pdist(x)
    sigma = fraction * np.median(distances)
    return np.exp(-squareform(distances) ** 2 / (2 * sigma**2))


def ref_hsic1_unnormalised(k: np.ndarray, l: np.ndarray) -> float:
    """n (n - 3) HSIC_1 (Song et al. 2012, eq. 5), with zero-diagonal K~, L~."""
    n = k.shape[0]
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    ones = np.ones(n)
    return (np.trace(k @ l) + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * ones @ k @ l @ ones)


def ref_hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def ref_cka(k: np.ndarray, l: np.ndarray, unbiased: bool) -> float:
    hsic = ref_hsic1_unnormalised if unbiased else ref_hsic_biased
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def ref_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """<X R, Y> for centred, Frobenius-normalised X and Y, R = argmin ||X R - Y||_F."""
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    width = max(x.shape[1], y.shape[1])  # zero columns: the rotation may use every dimension
    x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, width - y.shape[1])))
    r, _ = orthogonal_procrustes(x, y)
    return float(np.trace(r.T @ x.T @ y))


def ref_neighbours(x: np.ndarray, k: int) -> np.ndarray:
    _, index = cKDTree(x).query(x, k=k + 1)
    assert (index[:, 0] == np.arange(len(x))).all()  # the nearest is the example itself
    return index[:, 1:]


def ref_mutual_knn(x: np.ndarray, y: np.ndarray, k: int) -> float:
    a, b = ref_neighbours(x, k), ref_neighbours(y, k)
    return float(np.mean([len(set(i) & set(j)) / k for i, j in zip(a, b)]))


def transforms(x: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """x under the maps every measure here is invariant to."""
    rng = np.random.default_rng(seed)
    p = x.shape[1]
    return {
        "orthogonal": x @ ortho_group.rvs(p, random_state=seed),
        "scaling": 3.7 * x,
        "translation": x + rng.standard_normal(p) * 10,
        "feature permutation": x[:, rng.permutation(p)],
    }


def general_linear(x: np.ndarray, seed: int) -> np.ndarray:
    """x times an invertible matrix that is far from a scaled rotation."""
    rng = np.random.default_rng(seed)
    p = x.shape[1]
    return x @ (np.diag(np.linspace(0.1, 3.0, p)) @ ortho_group.rvs(p, random_state=seed) + 0.1 * rng.standard_normal((p, p)))


def test_measure_names():
    assert MEASURES == ("linear CKA", "RBF CKA", "Procrustes", "mutual k-NN")


# ---- squared distances and the RBF kernel -------------------------------------------

def test_squared_distances_match_pdist_for_centred_and_uncentred_grams():
    x = features(30, 7, 0) + 5.0
    want = squareform(pdist(x)) ** 2
    uncentred = squared_distances(torch.from_numpy(x @ x.T))
    centred = squared_distances(gram64(x))
    np.testing.assert_allclose(uncentred.numpy(), want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(centred.numpy(), want, rtol=1e-12, atol=1e-12)
    assert centred.dtype == torch.float64 and (centred.diagonal() == 0).all() and (centred >= 0).all()
    batched = squared_distances(torch.stack([gram64(x), gram64(2 * x)]))  # (..., n, n)
    np.testing.assert_allclose(batched[1].numpy(), 4 * want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [50, 48])  # an odd and an even number of pairs (1225, 1128)
@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_rbf_gram_is_the_double_centred_kernel_at_the_median_bandwidth(n, fraction):
    x = features(n, 6, n)
    h = np.eye(n) - np.ones((n, n)) / n
    want = h @ ref_rbf_kernel(x, fraction) @ h
    got = rbf_gram(gram64(x), fraction)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    # Batched Grams get each its own bandwidth.
    stacked = rbf_gram(torch.stack([gram64(x), gram64(x[:, :2])]), fraction)
    np.testing.assert_allclose(stacked[0].numpy(), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(stacked[1].numpy(), h @ ref_rbf_kernel(x[:, :2], fraction) @ h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("fraction", [0.2, 0.5, 2.0])
def test_rbf_cka_matches_the_reference(unbiased, fraction):
    x = features(60, 8, 1)
    y = np.tanh(x @ features(8, 12, 2)) + 0.5 * features(60, 12, 3)  # related, not identical
    want = ref_cka(ref_rbf_kernel(x, fraction), ref_rbf_kernel(y, fraction), unbiased)
    assert 0.1 < want < 0.999
    assert rbf_cka(x, y, fraction, unbiased) == pytest.approx(want, abs=1e-10)
    assert rbf_cka(torch.from_numpy(x).float(), y, fraction, unbiased) == pytest.approx(want, abs=1e-5)


def test_minibatch_rbf_cka_is_the_ratio_of_summed_batch_hsics():
    batches = [(features(40, 5, 10 + b), features(40, 9, 20 + b)) for b in range(3)]
    for b, (x, y) in enumerate(batches):  # make the layers related
        batches[b] = (x, np.hstack([x ** 2, y[:, :4]]))
    sums = np.zeros(3)
    for x, y in batches:
        k, l = ref_rbf_kernel(x, 0.5), ref_rbf_kernel(y, 0.5)
        sums += [ref_hsic1_unnormalised(k, l), ref_hsic1_unnormalised(k, k), ref_hsic1_unnormalised(l, l)]
    want = sums[0] / np.sqrt(sums[1] * sums[2])

    one_by_one = MinibatchCKA(["x", "y"])
    for x, y in batches:
        one_by_one.update_grams({"x": rbf_gram(gram64(x)), "y": rbf_gram(gram64(y))})
    assert float(one_by_one.compute()[0, 1]) == pytest.approx(want, abs=1e-10)
    at_once = MinibatchCKA(["x"], other_layers=["y"])  # (3, n, n) Grams: three batches in one call
    at_once.update_grams({"x": rbf_gram(torch.stack([gram64(x) for x, _ in batches]))},
                         {"y": rbf_gram(torch.stack([gram64(y) for _, y in batches]))})
    assert float(at_once.compute()[0, 0]) == pytest.approx(want, abs=1e-10)
    # Not the mean of the per-batch CKAs.
    mean_of_ckas = np.mean([ref_cka(ref_rbf_kernel(x, 0.5), ref_rbf_kernel(y, 0.5), True) for x, y in batches])
    assert abs(mean_of_ckas - want) > 1e-6


def test_rbf_cka_invariances():
    x = features(50, 6, 4)
    y = np.sin(x @ features(6, 6, 5))
    base = rbf_cka(x, y)
    assert 0.2 < base < 0.99
    assert rbf_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    for name, moved in transforms(x, 6).items():
        assert rbf_cka(moved, y) == pytest.approx(base, abs=1e-10), name
    order = np.random.default_rng(7).permutation(50)
    assert rbf_cka(x[order], y[order]) == pytest.approx(base, abs=1e-10)
    assert abs(rbf_cka(general_linear(x, 8), y) - base) > 1e-3


def test_rbf_of_a_constant_layer_is_zero_and_similar_to_nothing():
    constant = np.tile(features(1, 5, 9), (20, 1))
    assert (rbf_gram(torch.from_numpy(constant @ constant.T)) == 0).all()
    assert (rbf_gram(gram64(constant)) == 0).all()
    assert rbf_cka(constant, features(20, 5, 10)) == 0.0
    assert rbf_cka(constant, constant, unbiased=False) == 0.0


# ---- orthogonal Procrustes ----------------------------------------------------------

@pytest.mark.parametrize("n, p1, p2", [(60, 10, 10), (50, 4, 9), (40, 300, 120)])  # the last: wider than n
def test_procrustes_matches_scipy(n, p1, p2):
    x = features(n, p1, p1)
    y = np.hstack([x[:, : min(p1, p2)] @ features(min(p1, p2), min(p1, p2), 1), np.zeros((n, p2 - min(p1, p2)))])
    y = y + features(n, p2, p2 + 1)
    want = ref_procrustes(x, y)
    assert 0.1 < want < 0.99
    assert procrustes_similarity(x, y) == pytest.approx(want, abs=1e-10)
    assert procrustes_similarity(y, x) == pytest.approx(want, abs=1e-10)


def test_procrustes_factors_are_the_normalised_centred_gram():
    x = features(40, 300, 11)  # rank n - 1 after centring
    k = gram64(x)
    f = procrustes_factors(k + 7.0)  # adding a constant to every entry is a translation's worth of change
    assert f.shape == (40, 39) and f.dtype == torch.float64
    np.testing.assert_allclose((f @ f.T).numpy(), (k / k.trace()).numpy(), rtol=0, atol=1e-14)
    low_rank = features(40, 3, 12)
    assert procrustes_factors(gram64(low_rank)).shape == (40, 3)


def test_procrustes_invariances_and_known_values():
    x = features(45, 8, 13)
    q = ortho_group.rvs(8, random_state=14)
    assert procrustes_similarity(x, 0.3 * x @ q + 5.0) == pytest.approx(1.0, abs=1e-12)
    wider = np.hstack([x, np.zeros((45, 4))]) @ ortho_group.rvs(12, random_state=15)  # embedded in 12 dimensions
    assert procrustes_similarity(x, wider) == pytest.approx(1.0, abs=1e-12)
    y = np.tanh(x) + 0.5 * features(45, 8, 16)
    base = procrustes_similarity(x, y)
    assert 0.2 < base < 0.99
    for name, moved in transforms(x, 17).items():
        assert procrustes_similarity(moved, y) == pytest.approx(base, abs=1e-10), name
    order = np.random.default_rng(18).permutation(45)
    assert procrustes_similarity(x[order], y[order]) == pytest.approx(base, abs=1e-10)
    assert abs(procrustes_similarity(general_linear(x, 19), y) - base) > 1e-3
    assert procrustes_similarity(x, general_linear(x, 19)) < 1 - 1e-3
    unrelated = procrustes_matrix([procrustes_factors(gram64(features(45, 8, s))) for s in range(20, 26)])
    assert (unrelated >= 0).all() and (unrelated <= 1).all()
    np.testing.assert_allclose(unrelated.diagonal().numpy(), 1.0, atol=1e-12)
    np.testing.assert_array_equal(unrelated.numpy(), unrelated.T.numpy())


def test_procrustes_of_a_constant_layer_is_zero():
    constant = np.tile(features(1, 5, 27), (20, 1))
    assert procrustes_factors(gram64(constant)).shape == (20, 0)
    assert procrustes_factors(torch.from_numpy(constant @ constant.T)).shape == (20, 0)
    assert procrustes_similarity(constant, features(20, 5, 28)) == 0.0
    both = procrustes_matrix([procrustes_factors(gram64(constant)), procrustes_factors(gram64(features(20, 5, 29)))])
    assert both[0, 0] == 0 and both[0, 1] == 0 and both[1, 1] == pytest.approx(1.0, abs=1e-12)


# ---- mutual k-nearest neighbours ----------------------------------------------------

@pytest.mark.parametrize("k", [1, 5, 29])
def test_neighbour_sets_match_a_kd_tree(k):
    x = features(30, 4, 30)
    got = neighbour_sets(gram64(x), k)
    assert got.dtype == torch.int64 and got.shape == (30, k)
    np.testing.assert_array_equal(got.numpy(), ref_neighbours(x, k))


def test_equal_distances_go_to_the_lower_index():
    x = np.array([[0.0], [1.0], [-1.0], [2.0], [-2.0], [0.0]])  # 0 and 5 coincide
    got = neighbour_sets(torch.from_numpy(x @ x.T), 3)
    assert got[0].tolist() == [5, 1, 2]
    assert got[5].tolist() == [0, 1, 2]
    assert got[3].tolist() == [1, 0, 5]  # distances 1, 2, 2
    assert neighbour_sets(torch.ones(4, 4), 2).tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]  # a constant layer
    # Many ties in long rows (where an unstable sort reorders them): by distance, then index.
    x = np.random.default_rng(39).integers(0, 4, size=(300, 1)).astype(float)
    d2 = squareform(pdist(x)) ** 2
    np.fill_diagonal(d2, np.inf)
    want = np.array([np.lexsort((np.arange(300), row))[:40] for row in d2])
    np.testing.assert_array_equal(neighbour_sets(torch.from_numpy(x @ x.T), 40).numpy(), want)


@pytest.mark.parametrize("k", [1, 10])
def test_mutual_knn_matches_the_set_reference(k):
    x = features(80, 6, 31)
    y = x @ features(6, 6, 32) + 0.5 * features(80, 6, 33)
    want = ref_mutual_knn(x, y, k)
    assert 0.2 < want < 0.95
    assert mutual_knn(x, y, k) == pytest.approx(want, abs=1e-15)
    assert mutual_knn(torch.from_numpy(x), torch.from_numpy(y), k) == pytest.approx(want, abs=1e-15)


def test_mutual_knn_is_exactly_one_under_the_invariances():
    x = features(60, 5, 34)
    assert mutual_knn(x, x, 7) == 1.0
    for name, moved in transforms(x, 35).items():
        assert mutual_knn(x, moved, 7) == 1.0, name
    assert mutual_knn(x, general_linear(x, 36), 7) < 0.99


def test_mutual_knn_of_unrelated_representations_is_near_chance():
    n, k = 200, 10
    got = mutual_knn(features(n, 10, 37), features(n, 10, 38), k)
    # |N_a(i) ∩ N_b(i)| of independent neighbour sets is hypergeometric (k draws of n - 1,
    # k marked); its mean over n examples, taken as independent, has this standard error.
    chance = k / (n - 1)
    variance = k * (k / (n - 1)) * (1 - k / (n - 1)) * (n - 1 - k) / (n - 2)
    assert abs(got - chance) < 4 * np.sqrt(variance / k**2 / n)


def test_knn_matrix_in_blocks_of_examples_equals_the_set_reference(monkeypatch):
    xs = [features(50, 4, s) for s in range(40, 44)]
    xs[1] = xs[0] + 0.3 * xs[1]  # one related pair
    want = np.array([[ref_mutual_knn(a, b, 6) for b in xs] for a in xs])
    sets = [neighbour_sets(gram64(x), 6) for x in xs]
    whole = knn_matrix(sets)
    np.testing.assert_allclose(whole.numpy(), want, rtol=0, atol=1e-15)
    assert whole.dtype == torch.float64 and (whole.diagonal() == 1).all() and whole[0, 1] > 0.3
    monkeypatch.setattr(measures, "_ONE_HOT_ELEMENTS", 8 * 50 * 3)  # blocks of 3 examples
    np.testing.assert_array_equal(knn_matrix(sets).numpy(), whole.numpy())


# ---- bookkeeping and robustness -----------------------------------------------------

def test_cross_blocks_equal_the_joint_matrix():
    xs = [features(40, 6, s) for s in range(50, 55)]
    xs[3] = np.tanh(xs[2]) + 0.2 * xs[3]
    grams = [gram64(x) for x in xs]
    sets = [neighbour_sets(g, 5) for g in grams]
    joint = knn_matrix(sets)
    np.testing.assert_array_equal(knn_matrix(sets[:2], sets[2:]).numpy(), joint[:2, 2:].numpy())
    factors = [procrustes_factors(g) for g in grams]
    joint = procrustes_matrix(factors)
    np.testing.assert_allclose(procrustes_matrix(factors[:2], factors[2:]).numpy(), joint[:2, 2:].numpy(),
                               rtol=0, atol=1e-14)
    assert joint[2, 3] == pytest.approx(ref_procrustes(xs[2], xs[3]), abs=1e-10)


def test_a_few_far_points_dominate_linear_cka_but_not_mutual_knn():
    # Davari et al. 2023: translating a handful of examples far away drives linear CKA
    # of two otherwise independent representations towards 1.
    x, y = features(200, 10, 60), features(200, 10, 61)
    assert linear_cka(x, y, unbiased=True) < 0.1 and mutual_knn(x, y, 10) < 0.1
    x[:4, 0] += 1000.0
    y[:4, 3] += 1000.0
    assert linear_cka(x, y, unbiased=True) > 0.9
    assert mutual_knn(x, y, 10) < 0.2


# ---- bad input ----------------------------------------------------------------------

K5 = gram64(features(5, 3, 70))
F5, F6 = procrustes_factors(K5), procrustes_factors(gram64(features(6, 3, 71)))
N5, N6 = neighbour_sets(K5, 2), neighbour_sets(gram64(features(6, 3, 72)), 2)
NAN = K5.clone()
NAN[1, 2] = float("nan")


@pytest.mark.parametrize("call, match", [
    (lambda: squared_distances(torch.zeros(3, 4)), "square"),
    (lambda: squared_distances(torch.zeros(3)), "square"),
    (lambda: squared_distances(NAN), "NaN or Inf"),
    (lambda: rbf_gram(NAN), "NaN or Inf"),
    (lambda: rbf_gram(K5, fraction=0.0), "fraction"),
    (lambda: rbf_gram(K5, fraction=-0.5), "fraction"),
    (lambda: rbf_cka(features(5, 3, 0), features(5, 3, 1), fraction=0), "fraction"),
    (lambda: rbf_cka(features(10, 3, 0), features(11, 3, 1)), "same examples"),
    (lambda: procrustes_factors(torch.zeros(2, 3, 3)), "square"),
    (lambda: procrustes_factors(NAN), "NaN or Inf"),
    (lambda: procrustes_matrix([]), "empty"),
    (lambda: procrustes_matrix([F5], []), "empty"),
    (lambda: procrustes_matrix([F5, F6]), "examples"),
    (lambda: procrustes_matrix([F5], [F6]), "examples"),
    (lambda: procrustes_similarity(features(10, 3, 0), features(11, 3, 1)), "same examples"),
    (lambda: neighbour_sets(K5, 0), r"k must be .*\(n = 5 examples"),
    (lambda: neighbour_sets(K5, 5), r"k must be .*\(n = 5 examples"),
    (lambda: neighbour_sets(torch.zeros(4, 5), 1), "square"),
    (lambda: neighbour_sets(NAN, 2), "NaN or Inf"),
    (lambda: knn_matrix([]), "empty"),
    (lambda: knn_matrix([N5, N6]), "examples"),
    (lambda: knn_matrix([N5], [N6]), "examples"),
    (lambda: knn_matrix([N5, N5[:, :1]]), "k = 1"),
    (lambda: knn_matrix([N5], [N5[:, :1]]), "k = 1"),
    (lambda: knn_matrix([N5.double()]), "integer"),
    (lambda: knn_matrix([N5 + 3]), "outside"),
    (lambda: mutual_knn(features(10, 3, 0), features(11, 3, 1), 2), "same examples"),
    (lambda: mutual_knn(features(10, 3, 0), features(10, 3, 1), 10), r"k must be .*\(n = 10 examples"),
])
def test_bad_input_is_refused_with_a_clear_message(call, match):
    with pytest.raises(ValueError, match=match):
        call()
