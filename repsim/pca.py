"""The first principal component of each layer, and CKA with it projected out (Sec. 4).

For one layer, X is the (N, D) matrix of flattened activations on N images, centred
over the examples (each feature has mean zero). With singular values s_1 >= s_2 >= ...
of the centred X:

- the *variance explained by PC1* is s_1^2 / sum_i s_i^2;
- the *first PC* of the layer, as a vector over the N examples, is X v_1 = s_1 u_1
  (its scores). Scores of different layers live in the same space, so their cosine
  similarity compares the layers' first PCs even though the layers' widths differ;
- *removing PC1* replaces each centred activation x by x - (x . v_1) v_1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .activations import ActivationCapture
from .compare import collect_activations, model_cka
from .data import to_float
from .devices import resolve as resolve_device


@dataclass(frozen=True)
class FirstPC:
    mean: torch.Tensor  # (D,) feature means over the examples
    direction: torch.Tensor  # (D,) unit vector v_1
    scores: torch.Tensor  # (N,) projections of the centred examples on v_1: s_1 u_1
    variance_explained: float  # s_1^2 / sum of s_i^2


def first_pc(x: torch.Tensor, oversample: int = 8, iterations: int = 4) -> FirstPC:
    """First principal component of the rows of ``x`` (N, D), centred over the rows.

    Uses randomised subspace iteration (``torch.svd_lowrank``): far cheaper than a full
    SVD on wide layers, and accurate for s_1 to float32 precision. Where s_1 and s_2
    nearly tie, the direction itself is ill-determined and so is any method's answer.
    """
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"x must be (N >= 2 examples, D >= 1 features), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or Inf")
    x = x.float()
    mean = x.mean(0)
    centred = x - mean
    total = float(centred.pow(2).sum(dtype=torch.float64))
    if total == 0.0:  # a constant layer has no principal direction
        return FirstPC(mean, torch.zeros_like(mean), torch.zeros(len(x)), 0.0)
    rank = min(x.shape)
    if rank <= 64:  # small: exact
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        direction = vh[0]
    else:
        _, s, v = torch.svd_lowrank(centred, q=min(1 + oversample, rank), niter=iterations)
        direction = v[:, 0]
    scores = centred @ direction
    # Fix the arbitrary sign so that repeated runs agree: the largest score is positive.
    if scores[scores.abs().argmax()] < 0:
        direction, scores = -direction, -scores
    return FirstPC(mean, direction, scores, float(s[0].double() ** 2 / total))


def layer_pcs(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str],
    batch_size: int = 500,
    device: str | torch.device | None = None,
    max_bytes: int = 2**30,
) -> dict[str, FirstPC]:
    """``first_pc`` of each of ``layers`` over all ``images`` (uint8, (N, 3, 32, 32)).

    Layers are captured a group at a time, each group's activations fitting in
    ``max_bytes`` of float32, so deep and wide models need no more memory than that.
    """
    device = resolve_device(device)
    layers = list(layers)
    with torch.no_grad():
        probe = ActivationCapture(model.to(device), layers)(to_float(images[:2].to(device)))
    widths = {name: act.shape[1] for name, act in probe.items()}
    groups: list[list[str]] = [[]]
    used = 0
    for name in layers:
        size = 4 * len(images) * widths[name]
        if groups[-1] and used + size > max_bytes:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    pcs: dict[str, FirstPC] = {}
    for group in groups:
        acts = collect_activations(model, images, group, batch_size=batch_size, device=device, keep_on_device=True)
        for name in group:
            pc = first_pc(acts.pop(name).to(device))
            pcs[name] = FirstPC(pc.mean.cpu(), pc.direction.cpu(), pc.scores.cpu(), pc.variance_explained)
    return pcs


def pc_cosine_similarity(pcs: Sequence[FirstPC]) -> np.ndarray:
    """(L, L) absolute cosine similarity between the layers' first-PC scores.

    Absolute, because the sign of a principal component is arbitrary.
    """
    scores = torch.stack([pc.scores.double() for pc in pcs])
    norms = scores.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, scores / norms.clamp_min(1e-300), torch.zeros_like(scores))
    return (unit @ unit.T).abs().numpy()


def remove_first_pc(x: torch.Tensor, pc: FirstPC) -> torch.Tensor:
    """``x`` (n, D) centred with the PC's mean, with its component along v_1 removed."""
    centred = x.float() - pc.mean.to(x.device)
    direction = pc.direction.to(x.device)
    return centred - torch.outer(centred @ direction, direction)


def cka_without_first_pc(
    model: nn.Module,
    images: torch.Tensor,
    pcs: dict[str, FirstPC],
    batch_size: int = 256,
    passes: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Minibatch CKA between the layers of ``pcs`` after removing each layer's PC1."""
    return model_cka(model, images, layers=list(pcs), batch_size=batch_size, passes=passes, seed=seed,
                     device=device, transform=lambda name, x: remove_first_pc(x, pcs[name]))
