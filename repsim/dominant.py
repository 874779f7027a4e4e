"""Dominant images: how far each image lies out along a layer's first principal
component, what such images have in common, how two sets of them overlap against
chance, and CKA with chosen images left out (Nguyen, Raghu & Kornblith 2022).

Pure functions of arrays and models; ``origins`` runs them on the book's models and
caches the results.

- **Dominance.** With z_l = X_l v_1 the PC1 scores of N images at layer l (centred
  activations X_l, top right-singular vector v_1), image i scores
  d_i = mean_l |z_li| / rms_j(z_lj): how many typical projections it lies out along PC1.
- **Chance overlap.** Two independent uniformly random k-subsets of N items share a
  hypergeometric number X of them, E X = k^2 / N.
- **Removal.** CKA on ``model_cka``'s own minibatches with chosen images left out: the
  Gram of part of a batch is that part of the batch's Gram, and U-centring ignores the
  feature mean, so each batch's Grams are computed once for every removal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from .cka import MinibatchCKA
from .compare import GramCapture, minibatches
from .data import to_float
from .devices import resolve as resolve_device
from .models import layer_names


def layer_grams(model: nn.Module, layers: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{layer: batch_gram}`` of one forward pass of ``x`` (``compare.GramCapture``)."""
    return GramCapture(model, layers)(x)


def dominance_scores(pc_scores) -> np.ndarray:
    """(N,) mean over layers of |z_li| / rms_j(z_lj), for PC1 scores ``pc_scores`` (K, N)."""
    z = np.abs(np.asarray(pc_scores, dtype=float))
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"pc_scores must be (layers, N >= 2 images), got shape {z.shape}")
    rms = np.sqrt((z**2).mean(axis=1, keepdims=True))
    return (z / np.where(rms > 0, rms, 1.0)).mean(axis=0)


def top_images(scores, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, largest first (ties: lower index first)."""
    scores = np.asarray(scores, dtype=float)
    if not 0 <= k <= len(scores):
        raise ValueError(f"k must be in [0, {len(scores)}], got {k}")
    return np.argsort(-scores, kind="stable")[:k]


def pc1_share(pc_scores, indices) -> float:
    """Share of PC1's variance (sum of z_li^2 over images) that ``indices`` carry, averaged
    over the layers; k random images of N carry k/N on average."""
    z2 = np.asarray(pc_scores, dtype=float) ** 2
    totals = z2.sum(axis=1)
    return float(np.mean(np.where(totals > 0, z2[:, np.asarray(indices, dtype=int)].sum(axis=1) / totals, 0.0)))


def pc1_variance(x: torch.Tensor) -> float:
    """PC1's share of the variance of the rows of ``x`` (N, D), s_1^2 / sum_i s_i^2 of the
    centred x, from the eigenvalues of its smaller Gram matrix (exact, in float64, on
    x's device)."""
    centred = x.double() - x.double().mean(0)
    gram = centred @ centred.T if len(x) <= x.shape[1] else centred.T @ centred
    total = float(gram.trace())
    if total <= 0:
        return 0.0
    # On the CPU numpy's eigvalsh: torch's LAPACK call is ~100x slower on a busy 2-core machine.
    top = torch.linalg.eigvalsh(gram)[-1] if gram.is_cuda else np.linalg.eigvalsh(gram.numpy())[-1]
    return float(top) / total


def image_statistics(images) -> dict[str, np.ndarray]:
    """Simple statistics of uint8 images (N, 3, H, W), each (N,) in [0, 1]: brightness,
    contrast (s.d. of grey levels), saturation, the border's (outer 4 pixels) brightness
    and variation (s.d., low for a uniform background), and the mean of each channel."""
    x = torch.as_tensor(images).double() / 255
    grey = x.mean(1)  # (N, H, W)
    border = torch.ones(x.shape[-2:], dtype=torch.bool)
    border[4:-4, 4:-4] = False
    edge = grey[:, border]
    rows = {"brightness": grey.mean((1, 2)), "contrast": grey.flatten(1).std(1),
            "saturation": (x.amax(1) - x.amin(1)).mean((1, 2)), "border brightness": edge.mean(1),
            "border variation": edge.std(1)}
    rows.update({f"{colour} channel": x[:, c].mean((1, 2)) for c, colour in enumerate(("red", "green", "blue"))})
    return {name: value.numpy() for name, value in rows.items()}


def compare_statistics(statistics: dict[str, np.ndarray], chosen) -> list[dict]:
    """Rows (statistic, chosen, others, cohen_d, p, p_bonferroni), strongest |d| first:
    the chosen images against all the others, by Cohen's d (pooled s.d.) and a two-sided
    Mann-Whitney U test, Bonferroni-corrected for the number of statistics."""
    rows = []
    for name, values in statistics.items():
        mask = np.zeros(len(values), dtype=bool)
        mask[np.asarray(chosen, dtype=int)] = True
        a, b = values[mask], values[~mask]
        pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
        p = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
        rows.append({"statistic": name, "chosen": float(a.mean()), "others": float(b.mean()),
                     "cohen_d": float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0, "p": p,
                     "p_bonferroni": min(1.0, p * len(statistics))})
    return sorted(rows, key=lambda row: -abs(row["cohen_d"]))


def jaccard(a, b) -> float:
    """|A & B| / |A | B| of two index sets (1 for two empty sets)."""
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def chance_overlap(k: int, n: int) -> tuple[float, float]:
    """(expected overlap k^2 / n, expected Jaccard index) of two independent uniformly
    random k-subsets of n items; the overlap is hypergeometric (n, k, k)."""
    x = np.arange(k + 1)
    pmf = stats.hypergeom.pmf(x, n, k, k)
    return k * k / n, float(np.sum(pmf * np.where(x > 0, x / np.maximum(2 * k - x, 1), 0.0))) if k else 1.0


def overlap_p_value(overlap: int, k: int, n: int) -> float:
    """P(two random k-subsets of n share at least ``overlap`` items)."""
    return float(stats.hypergeom.sf(overlap - 1, n, k, k))


def random_images(n: int, k: int, seed: int) -> np.ndarray:
    """``k`` of ``n`` image indices drawn at random with ``seed``: the control for leaving
    out the ``k`` most dominant images."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()[:k]


def cka_without_images(model: nn.Module, images: torch.Tensor, removed: Sequence[Sequence[int]],
                       layers: Sequence[str] | None = None, batch_size: int = 256, passes: int = 1, seed: int = 0,
                       device=None) -> torch.Tensor:
    """(R, L, L) within-model CKA with the images ``removed[r]`` (indices into ``images``)
    left out of ``model_cka``'s minibatches; removing none gives ``model_cka`` itself."""
    return kernel_cka_without_images(model, images, removed, [None], layers, batch_size, passes, seed, device)[0]


@torch.no_grad()
def kernel_cka_without_images(model: nn.Module, images: torch.Tensor, removed: Sequence[Sequence[int]],
                              kernels: Sequence[Callable | None], layers: Sequence[str] | None = None,
                              batch_size: int = 256, passes: int = 1, seed: int = 0, device=None) -> torch.Tensor:
    """(K, R, L, L) ``cka_without_images`` under each of ``kernels``: a kernel maps the
    (L, n, n) linear Grams of a minibatch's kept images to the Grams whose CKA is taken
    (None: the linear Grams themselves; ``measures.rbf_gram`` for RBF CKA). Every kernel
    and every removal shares one forward pass per minibatch."""
    device = resolve_device(device)
    layers = list(layers) if layers is not None else layer_names(model)
    keep = torch.ones(len(removed), len(images), dtype=torch.bool)
    for r, indices in enumerate(removed):
        keep[r, torch.as_tensor(list(indices), dtype=torch.long)] = False
    accumulators = [[MinibatchCKA(layers) for _ in removed] for _ in kernels]
    for batch in minibatches(len(images), batch_size, passes, seed):
        grams = layer_grams(model.to(device), layers, to_float(images[batch].to(device)))
        stacked = torch.stack([grams[name] for name in layers])  # (L, n, n)
        for r, mask in enumerate(keep[:, batch]):  # masks on the CPU: no sync with the device
            kept = mask.nonzero().squeeze(1)
            if len(kept) < 4:  # the unbiased estimator needs 4 images
                continue
            kept = kept.to(device, non_blocking=True)
            linear = stacked.index_select(1, kept).index_select(2, kept)
            for kernel, row in zip(kernels, accumulators):
                row[r].update_grams(dict(zip(layers, linear if kernel is None else kernel(linear))))
    return torch.stack([torch.stack([a.compute() for a in row]) for row in accumulators])
