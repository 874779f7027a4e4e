"""CKA's properties shown on a trained network's activations (chapter 2).

Tensors in, tensors out: the chapter captures two layers of its model and these
functions measure what CKA does to them (invariances, the estimators' bias as the
number of examples shrinks, minibatch against full-batch estimates). While the model is
pending (a paper-scale model before a GPU window), each takes None and gives None or
rows of None, which the plots and the prose show as pending.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .cka import linear_cka, subsample_cka
from .compare import collect_activations, model_cka


def demo_layers(layers: Sequence[str]) -> tuple[str, str]:
    """The last residual block's output and the last block output of stage 2: two
    related but different representations."""
    outputs = [name for name in layers if name.endswith("relu2")]
    return outputs[-1], [name for name in outputs if name.startswith("stage2")][-1]


def demo_activations(model, images: torch.Tensor, names: tuple[str, str], device=None):
    """The two layers' flattened activations on ``images``, in float64 (None, None while
    the model is pending)."""
    if model is None:
        return None, None
    acts = collect_activations(model, images, list(names), device=device)
    return acts[names[0]].double(), acts[names[1]].double()


TRANSFORMS = ("none", "orthogonal  X Q", "isotropic scaling  7.3 X", "mean shift  X + 1 c^T", "feature-wise scaling  X D")


def invariance_rows(x: torch.Tensor | None, y: torch.Tensor | None, seed: int = 0) -> list[dict]:
    """Unbiased CKA(T(X), Y) for transforms T that CKA ignores (orthogonal map, isotropic
    scaling, a shift of every example) and one it does not (a random rescaling of each
    feature between 0.01 and 100), with the change from CKA(X, Y); None values while
    the activations are pending."""
    if x is None or y is None:
        return [{"transform": name, "CKA(T(X), Y)": None, "change": None} for name in TRANSFORMS]
    x, y = x.double(), y.double()
    p = x.shape[1]
    generator = torch.Generator().manual_seed(seed)
    orthogonal, _ = torch.linalg.qr(torch.randn(p, p, generator=generator, dtype=torch.float64))
    feature_scales = 10 ** (4 * torch.rand(p, generator=generator, dtype=torch.float64) - 2)
    transforms = dict(zip(TRANSFORMS, (x, x @ orthogonal, 7.3 * x,
                                       x + 50 * torch.rand(p, generator=generator, dtype=torch.float64),
                                       x * feature_scales)))
    values = {name: linear_cka(t, y, unbiased=True) for name, t in transforms.items()}
    return [{"transform": name, "CKA(T(X), Y)": value, "change": value - values["none"]} for name, value in values.items()]


def estimator_curves(x: torch.Tensor, y: torch.Tensor, sizes: Sequence[int], repeats: int,
                     seed: int = 0) -> tuple[list[int], dict, dict]:
    """Biased and unbiased CKA on random subsets of n examples ((sizes, repeats) each),
    for the layers as they are and with the rows of ``y`` shuffled (population CKA 0).
    Returns the sizes used (those up to the number of examples) and the two sets, which
    are None while the activations are pending."""
    if x is None or y is None:
        return list(sizes), None, None
    generator = torch.Generator().manual_seed(seed)
    shuffled = y[torch.randperm(len(y), generator=generator)]
    sizes = [s for s in sizes if s <= len(x)]
    curves = []
    for other in (y, shuffled):
        curves.append({"biased": subsample_cka(x, other, sizes, repeats, unbiased=False, seed=seed),
                       "unbiased": subsample_cka(x, other, sizes, repeats, unbiased=True, seed=seed)})
    return sizes, curves[0], curves[1]


def minibatch_against_full(model, images: torch.Tensor, batch_size: int, passes: int, seed: int = 0,
                           device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased CKA of every pair of layers from one Gram over all ``images``, and the
    minibatch estimate with ``batch_size`` and ``passes`` (None, None while the model is
    pending)."""
    if model is None:
        return None, None
    full = model_cka(model, images, batch_size=len(images), passes=1, device=device)
    minibatch = model_cka(model, images, batch_size=batch_size, passes=passes, seed=seed, device=device)
    return full, minibatch


def off_diagonal(matrix) -> np.ndarray:
    """The entries of a square matrix off its diagonal."""
    matrix = np.asarray(matrix)
    return matrix[~np.eye(len(matrix), dtype=bool)]
