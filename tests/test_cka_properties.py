"""Property-based tests (Hypothesis) of linear CKA's invariances and bounds.

Hypothesis draws the shapes, the seed of the random features and the size of each
transformation; the features themselves are Gaussian with a random low-rank part, so
every draw is a well-posed CKA (a draw of raw floats would be mostly constant or
degenerate matrices, whose CKA the module defines as 0). Each property must hold for
the biased and the unbiased estimator alike.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from repsim.cka import MinibatchCKA, linear_cka

# Derandomised and without an example database: the same draws on every run and no
# .hypothesis folder in the working tree.
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None)
ESTIMATORS = pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])


@st.composite
def pairs(draw, min_n: int = 6):
    """x (n, p1) and y (n, p2), float64, sharing a random number of latent directions."""
    n = draw(st.integers(min_n, 48))
    p1, p2 = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    shared = draw(st.integers(0, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, shared, generator=g, dtype=torch.float64)
    x = z @ torch.randn(shared, p1, generator=g, dtype=torch.float64) + torch.randn(n, p1, generator=g, dtype=torch.float64)
    y = z @ torch.randn(shared, p2, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, p2, generator=g, dtype=torch.float64)
    return x, y, seed


def orthogonal(p: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@ESTIMATORS
@SETTINGS
@given(data=pairs(), scale=st.floats(1e-3, 1e3), side=st.sampled_from(["x", "y", "both"]))
def test_isotropic_scaling(unbiased, data, scale, side):
    x, y, _ = data
    sx = scale if side in ("x", "both") else 1.0
    sy = scale if side in ("y", "both") else 1.0
    assert linear_cka(sx * x, sy * y, unbiased=unbiased) == pytest.approx(linear_cka(x, y, unbiased=unbiased), abs=1e-9)


@ESTIMATORS
@SETTINGS
@given(data=pairs())
def test_orthogonal_transform(unbiased, data):
    x, y, seed = data
    qx, qy = orthogonal(x.shape[1], seed + 1), orthogonal(y.shape[1], seed + 2)
    base = linear_cka(x, y, unbiased=unbiased)
    assert linear_cka(x @ qx, y @ qy, unbiased=unbiased) == pytest.approx(base, abs=1e-9)


@ESTIMATORS
@SETTINGS
@given(data=pairs(), magnitude=st.floats(0.0, 1e4))
def test_translation(unbiased, data, magnitude):
    # The same vector added to every example (a mean shift) changes nothing.
    x, y, seed = data
    g = torch.Generator().manual_seed(seed + 3)
    shift = magnitude * torch.randn(1, x.shape[1], generator=g, dtype=torch.float64)
    assert linear_cka(x + shift, y, unbiased=unbiased) == pytest.approx(linear_cka(x, y, unbiased=unbiased), abs=1e-8)


@ESTIMATORS
@SETTINGS
@given(data=pairs())
def test_feature_permutation(unbiased, data):
    x, y, seed = data
    g = torch.Generator().manual_seed(seed + 4)
    px, py = torch.randperm(x.shape[1], generator=g), torch.randperm(y.shape[1], generator=g)
    assert linear_cka(x[:, px], y[:, py], unbiased=unbiased) == pytest.approx(linear_cka(x, y, unbiased=unbiased), abs=1e-10)


@ESTIMATORS
@SETTINGS
@given(data=pairs())
def test_symmetry_and_self_similarity(unbiased, data):
    x, y, _ = data
    assert linear_cka(x, y, unbiased=unbiased) == pytest.approx(linear_cka(y, x, unbiased=unbiased), abs=1e-12)
    assert linear_cka(x, x, unbiased=unbiased) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(y, y, unbiased=unbiased) == pytest.approx(1.0, abs=1e-10)


@SETTINGS
@given(data=pairs(min_n=2))
def test_biased_cka_lies_in_the_unit_interval(data):
    x, y, _ = data
    value = linear_cka(x, y)
    assert -1e-12 <= value <= 1 + 1e-12


@SETTINGS
@given(data=pairs(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_one_minibatch_equals_the_full_batch_unbiased_estimator(data, dtype):
    x, y, _ = data
    x, y = x.to(dtype), y.to(dtype)
    cka = MinibatchCKA(["x", "y"]).update({"x": x, "y": y}).compute()
    tol = 1e-6 if dtype == torch.float32 else 1e-10
    assert cka[0, 1].item() == pytest.approx(linear_cka(x, y, unbiased=True), abs=tol)
    assert cka[1, 0].item() == pytest.approx(cka[0, 1].item(), abs=1e-12)
    assert np.allclose(cka.diagonal().numpy(), 1.0, atol=tol)


@ESTIMATORS
@SETTINGS
@given(data=pairs(), offset=st.floats(1e2, 1e4), scale=st.floats(1e-2, 1e2))
def test_float32_with_large_mean_and_scale_matches_float64(unbiased, data, offset, scale):
    # The invariances again, now as a precision bound: a float32 copy moved far from the
    # origin and rescaled gives the float64 value of the same (float32-rounded) numbers.
    x, y, _ = data
    x32, y32 = (scale * x + offset).float(), (y - offset).float()
    expected = linear_cka(x32.double(), y32.double(), unbiased=unbiased)
    assert linear_cka(x32, y32, unbiased=unbiased) == pytest.approx(expected, abs=1e-6)
