"""Linear centred kernel alignment (CKA) and its minibatch estimator.

For representations X (n, p1) and Y (n, p2) with linear Grams K = X X^T, L = Y Y^T:

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

Biased HSIC (Gretton et al. 2005): <H K H, H L H> / (n - 1)^2 with H = I - 11^T / n.
Unbiased HSIC (Song et al. 2012, "HSIC_1"): <K~, L~> / (n (n - 3)), with K~ the
U-centred Gram (``u_centre``). The minibatch estimator (Nguyen et al. 2021) sums the
unbiased HSIC of each minibatch before taking the ratio.

Both estimators are invariant to adding the same vector to every example, so each batch
is mean-centred over examples before its Gram. Features with a large mean then lose no
precision in the float32 Gram (without centring the mean term swamps it). U-centring,
the HSIC products and the sums over batches are in float64.

A representation that is constant over the examples has zero HSIC with everything,
itself included, so CKA is 0/0. This module defines it as **0**: a constant layer
carries no information about the inputs, so it is similar to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def as_matrix(x: ArrayLike, name: str = "x", flatten: bool = False, check_finite: bool = True) -> torch.Tensor:
    """Validate a (n, p) representation and return it as a float tensor (n, p).

    With ``flatten=True`` an (n, ...) input is flattened per example first. With
    ``check_finite=False`` the caller checks for NaN and Inf itself (``MinibatchCKA``
    checks the far smaller Gram, which any non-finite entry makes non-finite).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} has dtype {x.dtype}; CKA needs real floating-point features (use .float())")
    if flatten and x.dim() > 2:
        x = x.flatten(1)
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (examples, features), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if check_finite and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def gram(x: torch.Tensor) -> torch.Tensor:
    """(n, n) linear Gram of the example-centred (n, p) features, in float64.

    float32 inputs are multiplied in float32 (the fast path) after centring.
    """
    mean = x.mean(dim=0, keepdim=True)
    x = x - mean
    k = (x @ x.T).double()
    # A representation whose centred energy is at the round-off level of its mean is
    # constant: its Gram is exactly zero (so CKA is 0), not amplified rounding noise.
    roundoff = 16 * torch.finfo(x.dtype).eps
    constant = k.trace() <= x.shape[0] * roundoff**2 * mean.double().square().sum()
    return k.masked_fill(constant, 0.0)  # no branch: no host-device sync on a GPU


def u_centre(k: torch.Tensor) -> torch.Tensor:
    """U-centre an (n, n) Gram (Song et al. 2012; Szekely & Rizzo 2014), n >= 4.

    Zero the diagonal, subtract row and column sums / (n - 2), add back the grand sum
    / ((n - 1)(n - 2)), and zero the diagonal again.
    """
    n = k.shape[-1]
    k = k.clone()
    k.diagonal(dim1=-2, dim2=-1).zero_()
    row = k.sum(dim=-1, keepdim=True)  # (..., n, 1)
    total = row.sum(dim=-2, keepdim=True)  # (..., 1, 1)
    k = k - row / (n - 2) - row.transpose(-1, -2) / (n - 2) + total / ((n - 1) * (n - 2))
    k.diagonal(dim1=-2, dim2=-1).zero_()
    return k


def double_centre(k: torch.Tensor) -> torch.Tensor:
    """H K H for the (n, n) Gram K, H = I - 11^T / n."""
    k = k - k.mean(dim=-1, keepdim=True)
    return k - k.mean(dim=-2, keepdim=True)


def centre_gram(k: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Centre an (n, n) Gram and scale it so that the inner product of two centred
    Grams is the HSIC estimate itself: U-centring / sqrt(n (n - 3)) when unbiased,
    H K H / (n - 1) when biased."""
    n = k.shape[0]
    if unbiased:
        if n < 4:
            raise ValueError(f"the unbiased HSIC estimator needs at least 4 examples, got {n}")
        return u_centre(k) / np.sqrt(n * (n - 3))
    if n < 2:
        raise ValueError(f"CKA needs at least 2 examples, got {n}")
    return double_centre(k) / (n - 1)


def centred_gram(x: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """``centre_gram(gram(x))`` for a (n, p) representation."""
    return centre_gram(gram(x), unbiased)


def cka_of_grams(k: torch.Tensor, l: torch.Tensor, unbiased: bool) -> float:
    """Linear CKA from two (n, n) Grams of the same examples."""
    kc, lc = centre_gram(k, unbiased), centre_gram(l.to(k.device), unbiased)
    return float(cka_from_hsic((kc * lc).sum(), (kc * kc).sum(), (lc * lc).sum()))


def cka_from_hsic(hsic_xy: torch.Tensor, hsic_xx: torch.Tensor, hsic_yy: torch.Tensor) -> torch.Tensor:
    """CKA = HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y)), 0 where either self-HSIC is 0."""
    denom = torch.sqrt(torch.clamp(hsic_xx, min=0) * torch.clamp(hsic_yy, min=0))
    safe = denom > 0
    return torch.where(safe, hsic_xy / torch.where(safe, denom, torch.ones_like(denom)), torch.zeros_like(denom))


def linear_cka(x: ArrayLike, y: ArrayLike, unbiased: bool = False) -> float:
    """Linear CKA between representations x (n, p1) and y (n, p2) of the same n examples.

    Uses (n, n) Grams, so memory is O(n^2). Returns a float in [-1, 1] (the unbiased
    estimator can be slightly negative), and 0 if either representation is constant.
    """
    x, y = as_matrix(x, "x"), as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: x has {x.shape[0]} rows, y has {y.shape[0]}")
    return cka_of_grams(gram(x), gram(y.to(x.device)), unbiased)


class MinibatchCKA:
    """All-pairs minibatch CKA between the layers of one model or of two models.

    Each ``update`` computes one Gram per layer, centres it, flattens the centred Grams
    into the rows of a (layers, n^2) matrix G and adds the pairwise HSICs G G^T to a
    float64 sum. ``compute`` returns CKA_ij = S_ij / sqrt(S_ii S_jj).

    Within one model pass ``layers``; across two models pass ``layers`` and
    ``other_layers`` and give both models' activations to ``update``. The result is
    then the (len(layers), len(other_layers)) cross block.
    """

    def __init__(self, layers: Sequence[str], other_layers: Sequence[str] | None = None, unbiased: bool = True) -> None:
        self.layers = list(layers)
        self.other_layers = None if other_layers is None else list(other_layers)
        self.unbiased = unbiased
        for names, what in ((self.layers, "layers"), (self.other_layers or [], "other_layers")):
            if len(set(names)) != len(names):
                raise ValueError(f"{what} contains duplicate names")
        if not self.layers or (self.other_layers is not None and not self.other_layers):
            raise ValueError("give at least one layer name")
        self.hsic_ = None  # (L1 + L2, L1 + L2) float64 sums, or (L, L) within one model
        self.batches_ = 0
        self.examples_ = 0

    def _centred_grams(self, acts: Mapping[str, ArrayLike], names: list[str], which: str) -> torch.Tensor:
        missing = [name for name in names if name not in acts]
        if missing:
            raise KeyError(f"{which} activations lack layer(s) {missing[:5]}; got {list(acts)[:5]}...")
        extra = [name for name in acts if name not in names]
        if extra:
            raise KeyError(f"unknown layer name(s) {extra[:5]} in {which} activations; expected {names[:5]}...")
        matrices = [as_matrix(acts[name], f"layer {name!r}", flatten=True, check_finite=False) for name in names]
        for name, x in zip(names, matrices):
            if x.shape[0] != matrices[0].shape[0]:
                raise ValueError(f"layer {name!r} has {x.shape[0]} examples, layer {names[0]!r} has {matrices[0].shape[0]}")
        g = torch.stack([centred_gram(x, self.unbiased).flatten() for x in matrices])  # (layers, n^2)
        if not torch.isfinite(g).all():  # one check (one GPU sync) per batch; name the layer only on failure
            for name, x, row in zip(names, matrices, g):
                if not torch.isfinite(x).all():
                    raise ValueError(f"layer {name!r} contains NaN or Inf values")
                if not torch.isfinite(row).all():
                    raise OverflowError(f"the Gram of layer {name!r} overflowed {x.dtype}; rescale its activations")
        return g

    @torch.no_grad()
    def update(self, acts: Mapping[str, ArrayLike], other_acts: Mapping[str, ArrayLike] | None = None) -> "MinibatchCKA":
        """Add one minibatch: ``acts`` maps layer name to (n, ...) activations."""
        if (other_acts is None) != (self.other_layers is None):
            raise ValueError("give other_acts exactly when the accumulator was built with other_layers")
        g = self._centred_grams(acts, self.layers, "acts")
        if other_acts is not None:
            g_other = self._centred_grams(other_acts, self.other_layers, "other_acts")
            if g_other.shape[1] != g.shape[1]:
                raise ValueError("the two models' activations hold different numbers of examples")
            g = torch.cat([g, g_other.to(g.device)])
        batch_hsic = g @ g.T  # (L, L) HSIC estimates of this batch, float64
        self.hsic_ = batch_hsic if self.hsic_ is None else self.hsic_ + batch_hsic
        self.batches_ += 1
        self.examples_ += int(round(g.shape[1] ** 0.5))
        return self

    def compute(self) -> torch.Tensor:
        """CKA matrix (float64, on CPU): (L, L) within a model, (L1, L2) across two."""
        if self.hsic_ is None:
            raise RuntimeError("compute() called before any update()")
        s = self.hsic_.cpu()
        diag = s.diagonal()
        cka = cka_from_hsic(s, diag[:, None], diag[None, :])
        if self.other_layers is None:
            return cka
        n1 = len(self.layers)
        return cka[:n1, n1:]


def subsample_cka(x: ArrayLike, y: ArrayLike, sizes, repeats: int, unbiased: bool, seed: int = 0) -> np.ndarray:
    """CKA of x and y on random subsets of the rows: (len(sizes), repeats) array.

    Shows how an estimator behaves as the number of examples n shrinks. The Grams are
    computed once: the Gram of a subset of rows is the same subset of the full Gram.
    """
    x, y = as_matrix(x, "x"), as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: x has {x.shape[0]} rows, y has {y.shape[0]}")
    kx, ky = gram(x), gram(y.to(x.device))
    generator = torch.Generator().manual_seed(seed)
    out = np.empty((len(sizes), repeats))
    for i, size in enumerate(sizes):
        if size > x.shape[0]:
            raise ValueError(f"sample size {size} exceeds the {x.shape[0]} examples available")
        for r in range(repeats):
            rows = torch.randperm(x.shape[0], generator=generator)[:size]
            out[i, r] = cka_of_grams(kx[rows][:, rows], ky[rows][:, rows], unbiased)
    return out
