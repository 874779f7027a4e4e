"""Similarity measures beside linear CKA, all computed from (n, n) Gram matrices.

A Gram K = X X^T of n examples costs O(n^2) memory whatever the width p of the layer,
so every measure here works for layers of 65,536 features as well as of 16. Each one
answers a different question about two representations X (n, p1) and Y (n, p2):

- **RBF CKA** (Kornblith et al. 2019, Sec. 4): CKA on Gaussian kernels of the
  distances, whose bandwidth is a fraction of the median distance. Local structure
  counts more than with the linear kernel.
- **Procrustes** (Williams et al. 2021, "Generalized Shape Metrics"): how well one
  centred, Frobenius-normalised representation matches the other after the best
  rotation; the cosine of their angular Procrustes distance.
- **mutual k-NN** (Huh et al. 2024, "The Platonic Representation Hypothesis"): how
  many of each example's k nearest neighbours the two representations share. Only
  ranks of distances count, so a few points far out cannot dominate it the way they
  dominate linear CKA (Davari et al. 2023, "Reliability of CKA").

Every measure is invariant to translation, rotation (orthogonal maps) and isotropic
scaling of either representation; none is invariant to a general invertible linear map.
Everything is computed in float64. A representation that is constant over the examples
(all pairwise distances exactly 0) is similar to nothing under RBF CKA and Procrustes
(0), as ``repsim.cka`` defines for linear CKA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .cka import ArrayLike, MinibatchCKA, as_matrix, double_centre

MEASURES = ("linear CKA", "RBF CKA", "Procrustes", "mutual k-NN")  # display names, in this order

# One-hot neighbour rows of this many elements at most are built at a time in knn_matrix.
_ONE_HOT_ELEMENTS = 2**24


def _check_gram(gram: torch.Tensor, name: str = "gram", batched: bool = True) -> torch.Tensor:
    """Validate an (n, n) Gram, or (..., n, n) when ``batched``; return it as float64."""
    if not isinstance(gram, torch.Tensor) or not gram.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got "
                        f"{gram.dtype if isinstance(gram, torch.Tensor) else type(gram).__name__}")
    if gram.dim() < 2 or (not batched and gram.dim() != 2) or gram.shape[-1] != gram.shape[-2]:
        wanted = "(..., n, n)" if batched else "(n, n)"
        raise ValueError(f"{name} must be a square {wanted} Gram matrix, got shape {tuple(gram.shape)}")
    if gram.shape[-1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(gram.shape)}")
    if not torch.isfinite(gram).all():
        raise ValueError(f"{name} holds NaN or Inf values")
    return gram.double()


def squared_distances(gram: torch.Tensor) -> torch.Tensor:
    """(..., n, n) float64 squared Euclidean distances d2_ij = K_ii + K_jj - 2 K_ij.

    K = X X^T is any (..., n, n) Gram, centred or not (distances ignore translation);
    a centred one (``repsim.cka.batch_gram``) loses less to cancellation when the
    features have a large mean. Clamped at 0 (round-off), diagonal exactly 0.
    """
    k = _check_gram(gram)
    k = (k + k.transpose(-1, -2)) / 2  # a float32 GEMM need not give K_ij == K_ji: d2 must be symmetric
    diag = k.diagonal(dim1=-2, dim2=-1)
    d2 = (diag[..., :, None] + diag[..., None, :] - 2 * k).clamp_(min=0)
    d2.diagonal(dim1=-2, dim2=-1).zero_()
    return d2


def _median_distance(d2: torch.Tensor) -> torch.Tensor:
    """(...) median of the n(n-1)/2 distances sqrt(d2_ij), i < j, of each (..., n, n)
    matrix; of an even count, the mean of the middle two (as numpy's median)."""
    n = d2.shape[-1]
    upper = torch.triu_indices(n, n, offset=1, device=d2.device)
    pairs = d2[..., upper[0], upper[1]].sort(dim=-1).values  # (..., m)
    m = pairs.shape[-1]
    # sqrt is monotone, so the middle squared distances are those of the middle distances
    if m % 2:
        return pairs[..., m // 2].sqrt()
    return (pairs[..., m // 2 - 1].sqrt() + pairs[..., m // 2].sqrt()) / 2


def rbf_gram(gram: torch.Tensor, fraction: float = 0.5) -> torch.Tensor:
    """(..., n, n) float64 RBF kernel exp(-d2 / (2 sigma^2)) of the examples whose
    (..., n, n) linear Gram is ``gram``, double-centred.

    sigma = fraction * the median distance over the n(n-1)/2 pairs i < j of each matrix
    (Kornblith et al. 2019, Sec. 4 and 6). (Their demo code's ``rbf`` takes instead
    sigma^2 = fraction^2 * the median of all n^2 squared distances, the zero diagonal
    included: a slightly smaller bandwidth.) The kernel is returned as H K H
    (H = I - 11^T / n): the biased HSIC and HSIC_1 are unchanged by double centring,
    and ``MinibatchCKA``'s constant-layer rule (a grand sum near n times the trace)
    then tells a constant layer from a real one, as it does for linear Grams.
    A median of 0 (a constant layer, or more than half the pairs coincide: no bandwidth
    can be read off) gives an all-zero matrix, so CKA 0 as ``repsim.cka`` defines for
    constant layers.
    """
    try:
        valid = math.isfinite(float(fraction)) and float(fraction) > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"fraction must be a positive number (sigma = fraction * median distance), got {fraction!r}")
    d2 = squared_distances(gram)
    if d2.shape[-1] < 2:
        raise ValueError(f"an RBF bandwidth needs at least 2 examples, got {d2.shape[-1]}")
    sigma = float(fraction) * _median_distance(d2)  # (...)
    zero = sigma == 0
    two_sigma2 = torch.where(zero, torch.ones_like(sigma), 2 * sigma**2)[..., None, None]
    k = torch.exp(-d2 / two_sigma2)
    return double_centre(k).masked_fill_(zero[..., None, None], 0.0)


def _feature_grams(x: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, n) float64 Grams of the example-centred (n, ...) features x and y."""
    x, y = as_matrix(x, "x", flatten=True), as_matrix(y, "y", flatten=True)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: x has {x.shape[0]} rows, y has {y.shape[0]}")
    grams = []
    for z in (x, y.to(x.device)):
        z = z.double()
        z = z - z.mean(dim=0, keepdim=True)
        grams.append(z @ z.T)
    return grams[0], grams[1]


def rbf_cka(x: ArrayLike, y: ArrayLike, fraction: float = 0.5, unbiased: bool = True) -> float:
    """RBF CKA between (n, p1) features x and (n, p2) features y of one batch: CKA of
    their ``rbf_gram`` kernels, through ``MinibatchCKA.update_grams`` (so the same
    estimator, unbiased HSIC_1 or biased, as the minibatch sums). In [-1, 1] unbiased,
    [0, 1] biased."""
    kx, ky = _feature_grams(x, y)
    cka = MinibatchCKA(["x", "y"], unbiased=unbiased)
    cka.update_grams({"x": rbf_gram(kx, fraction), "y": rbf_gram(ky, fraction)})
    return float(cka.compute()[0, 1])


def procrustes_factors(gram: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """(n, r) float64 F with F F^T = H K H / tr(H K H) for an (n, n) Gram K.

    The eigendecomposition of the double-centred Gram, V diag(lam) V^T, gives
    F = V sqrt(lam) / sqrt(sum lam) over the eigenvalues lam above rtol * the largest
    (smaller ones and negatives are round-off of a rank-deficient Gram: a layer wider
    than n, or one of few effective dimensions). F is the centred representation up to
    a rotation and scale, with ||F||_F = 1 and r <= n - 1 columns whatever the width.
    A constant layer (all distances 0) gives (n, 0).
    """
    if not rtol >= 0:
        raise ValueError(f"rtol must be >= 0, got {rtol!r}")
    k = _check_gram(gram, batched=False)
    n = k.shape[-1]
    if not squared_distances(k).any():
        return k.new_zeros(n, 0)
    lam, vectors = torch.linalg.eigh(double_centre(k))  # ascending eigenvalues
    keep = lam > max(rtol * float(lam[-1]), 0.0)
    lam, vectors = lam[keep], vectors[:, keep]
    if lam.numel() == 0:
        return k.new_zeros(n, 0)
    return vectors * (lam / lam.sum()).sqrt()


def _check_list(matrices: Sequence[torch.Tensor], name: str, what: str) -> list[torch.Tensor]:
    """A non-empty list of 2-D tensors with the same number of rows (examples)."""
    matrices = list(matrices)
    if not matrices:
        raise ValueError(f"{name} is empty: give at least one layer's {what}")
    for i, m in enumerate(matrices):
        if not isinstance(m, torch.Tensor) or m.dim() != 2:
            raise ValueError(f"{name}[{i}] must be a 2-D tensor of {what}, got "
                             f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__}")
        if m.shape[0] != matrices[0].shape[0]:
            raise ValueError(f"{name}[{i}] has {m.shape[0]} examples, {name}[0] has {matrices[0].shape[0]}")
    return matrices


def _nuclear(f: torch.Tensor, g: torch.Tensor) -> float:
    """||F^T G||_* for (n, r1) F and (n, r2) G, 0 when either has no column."""
    if f.shape[1] == 0 or g.shape[1] == 0:
        return 0.0
    if f is g:  # F^T F is positive semi-definite: its nuclear norm is its trace
        return float((f * f).sum())
    return float(torch.linalg.svdvals(f.T @ g).sum())


def procrustes_matrix(factors: Sequence[torch.Tensor], other: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """(L, L') float64 (on the CPU) orthogonal Procrustes similarity between every pair
    of layers, from their ``procrustes_factors`` (n, r_a).

    The similarity of a and b is ||F_a^T F_b||_* (the sum of its singular values). For
    centred features X_a (n, p) and X_b (n, p) (the narrower padded with zero columns)
    it equals max over orthogonal Q of <X_a, X_b Q> / (||X_a||_F ||X_b||_F) (Schoenemann
    1966: the maximum is the nuclear norm of X_a^T X_b), the cosine of the angular
    Procrustes distance of Williams et al. 2021 (eq. 4 with alpha = 1, no whitening).
    In [0, 1]: 1 iff one centred representation is an orthogonal transform of the other
    up to scale; 0 when either factor has rank 0 (a constant layer). With other=None,
    the (L, L) matrix within one list: symmetric, diagonal 1 for non-constant layers.
    Costs one SVD of an (r_a, r_b) matrix per pair (r <= n - 1): at n = 2,048 tens of
    seconds on two CPU cores. (The eigenvalues of the smaller of M M^T, M^T M are 5-8
    times faster, but squaring loses singular values below ~1e-8 of the largest: errors
    up to 1e-8 for layers with fast-decaying spectra.)
    """
    rows = _check_list(factors, "factors", "Procrustes factors (n, r)")
    cols = rows if other is None else _check_list(other, "other", "Procrustes factors (n, r)")
    if cols[0].shape[0] != rows[0].shape[0]:
        raise ValueError(f"other holds {cols[0].shape[0]} examples, factors {rows[0].shape[0]}")
    rows = [f.double() for f in rows]
    cols = rows if other is None else [g.double().to(rows[0].device) for g in cols]
    out = torch.zeros(len(rows), len(cols), dtype=torch.float64)
    for i, f in enumerate(rows):
        for j, g in enumerate(cols):
            out[i, j] = out[j, i] if other is None and j < i else _nuclear(f, g)
    return out.clamp_(max=1.0)  # at most ||F_a||_F ||F_b||_F = 1; more is round-off


def procrustes_similarity(x: ArrayLike, y: ArrayLike) -> float:
    """Orthogonal Procrustes similarity (``procrustes_matrix``) of (n, p1) features x
    and (n, p2) features y."""
    kx, ky = _feature_grams(x, y)
    return float(procrustes_matrix([procrustes_factors(kx)], [procrustes_factors(ky)])[0, 0])


def neighbour_sets(gram: torch.Tensor, k: int) -> torch.Tensor:
    """(n, k) int64: the k nearest other examples of each example, by the Euclidean
    distances of its (n, n) Gram (``squared_distances``), nearest first; equal distances
    go to the lower index (a stable sort), so a constant layer's neighbours are the
    lowest indices. Needs 1 <= k <= n - 1."""
    d2 = squared_distances(_check_gram(gram, batched=False))
    n = d2.shape[-1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an integer with 1 <= k <= n - 1 = {n - 1} (n = {n} examples), got k = {k!r}")
    d2.diagonal().fill_(float("inf"))  # an example is not its own neighbour
    return d2.sort(dim=-1, stable=True).indices[:, :k]


def _check_neighbours(neighbours: Sequence[torch.Tensor], name: str) -> list[torch.Tensor]:
    """A non-empty list of (n, k) integer index tensors of one shape, indices in [0, n)."""
    sets = _check_list(neighbours, name, "neighbour indices (n, k)")
    n, k = sets[0].shape
    for i, s in enumerate(sets):
        if s.dtype.is_floating_point or s.dtype.is_complex or s.dtype == torch.bool:
            raise ValueError(f"{name}[{i}] must hold integer indices (neighbour_sets), got dtype {s.dtype}")
        if s.shape[1] != k:
            raise ValueError(f"{name}[{i}] holds k = {s.shape[1]} neighbours, {name}[0] k = {k}")
        if s.numel() and (s.min() < 0 or s.max() >= n):
            raise ValueError(f"{name}[{i}] holds indices outside [0, {n}) for n = {n} examples")
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be 1 <= k <= n - 1 = {n - 1} (n = {n} examples), got k = {k}")
    return sets


def _one_hot(sets: torch.Tensor, n: int) -> torch.Tensor:
    """(L, c n) float32 rows of 0/1 adjacency from (L, c, k) neighbour indices."""
    onehot = torch.zeros(*sets.shape[:2], n, dtype=torch.float32, device=sets.device)
    return onehot.scatter_(2, sets, 1.0).flatten(1)


def knn_matrix(neighbours: Sequence[torch.Tensor], other: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """(L, L') float64 (on the CPU) mutual k-nearest-neighbour alignment between every
    pair of layers, from their (n, k) ``neighbour_sets``.

    The alignment of a and b is the mean over examples i of |N_a(i) ∩ N_b(i)| / k (Huh
    et al. 2024, Sec. 2, with Euclidean distances where they use cosine). In [0, 1];
    about k / (n - 1) for unrelated representations, 1 for the same neighbourhoods.
    Only the ranks of distances count, so a few points far out change only their own
    neighbourhoods and those they enter. With other=None, the (L, L) matrix within one
    list (diagonal 1).

    The intersections of all pairs at once are one GEMM: with each layer's neighbours
    as one-hot adjacency rows A (L, n n), |N_a(i) ∩ N_b(i)| summed over i is (A A'^T)_ab.
    Done over blocks of examples to bound memory; float32 is exact, as every partial sum
    is an integer below 2^24.
    """
    rows = _check_neighbours(neighbours, "neighbours")
    cols = rows if other is None else _check_neighbours(other, "other")
    n, k = rows[0].shape
    if cols[0].shape[0] != n:
        raise ValueError(f"other holds {cols[0].shape[0]} examples, neighbours {n}")
    if cols[0].shape[1] != k:
        raise ValueError(f"other holds k = {cols[0].shape[1]} neighbours per example, neighbours k = {k}")
    a = torch.stack(rows).long()  # (L, n, k)
    b = a if other is None else torch.stack(cols).long().to(a.device)  # (L', n, k)
    block = max(1, min(_ONE_HOT_ELEMENTS // ((len(rows) + len(cols)) * n), _ONE_HOT_ELEMENTS // k))
    counts = torch.zeros(len(rows), len(cols), dtype=torch.float64, device=a.device)
    for start in range(0, n, block):
        hot_a = _one_hot(a[:, start:start + block], n)
        hot_b = hot_a if other is None else _one_hot(b[:, start:start + block], n)
        counts += (hot_a @ hot_b.T).double()
    return (counts / (n * k)).cpu()


def mutual_knn(x: ArrayLike, y: ArrayLike, k: int) -> float:
    """Mutual k-NN alignment (``knn_matrix``) of (n, p1) features x and (n, p2) features y."""
    kx, ky = _feature_grams(x, y)
    return float(knn_matrix([neighbour_sets(kx, k)], [neighbour_sets(ky, k)])[0, 0])
