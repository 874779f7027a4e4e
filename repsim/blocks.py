"""Measure the block structure instead of judging it by eye.

The paper calls a *block* a large set of consecutive layers whose representations are
all very similar: a bright square on the diagonal of the layer-by-layer CKA heatmap.
``find_block`` makes that precise: the longest run of consecutive layers in which
every pair has CKA at or above a threshold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Block:
    start: int  # first layer of the block (index into the heatmap)
    stop: int  # one past the last layer
    num_layers: int  # layers in the heatmap
    mean_cka: float | None  # mean CKA over the block's distinct pairs; None without a block

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def fraction(self) -> float:
        """Block size as a fraction of the layers."""
        return self.size / self.num_layers


def find_block(cka, threshold: float = 0.9, min_size: int = 2) -> Block:
    """The largest contiguous run of layers whose pairwise CKA all reach ``threshold``.

    cka: (L, L) symmetric CKA matrix of one model. Ties go to the earliest run. Runs
    shorter than ``min_size`` do not count: with none, the Block has size 0 and
    ``mean_cka`` None.
    """
    cka = np.asarray(cka, dtype=float)
    if cka.ndim != 2 or cka.shape[0] != cka.shape[1]:
        raise ValueError(f"cka must be a square (L, L) matrix, got shape {cka.shape}")
    if not np.isfinite(cka).all():
        raise ValueError("cka contains NaN or Inf")
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    num_layers = cka.shape[0]
    similar = cka >= threshold
    # Two pointers: if [start, stop) is a block then so is [start + 1, stop), so the
    # best stop for each start never decreases. O(L^2) comparisons in all.
    best_start, best_stop, stop = 0, 0, 0
    for start in range(num_layers):
        stop = max(stop, start + 1)
        while stop < num_layers and similar[stop, start:stop].all() and similar[start:stop, stop].all():
            stop += 1
        if stop - start > best_stop - best_start:
            best_start, best_stop = start, stop
    if best_stop - best_start < min_size:
        return Block(0, 0, num_layers, None)
    block = Block(best_start, best_stop, num_layers, None)
    return dataclasses.replace(block, mean_cka=mean_within(cka, block))


def mean_within(cka, block: Block) -> float:
    """Mean of ``cka`` over the block's distinct pairs of layers (off the diagonal); a
    one-layer block gives its diagonal entry."""
    cka = np.asarray(cka, dtype=float)
    _check_shape(cka, block)
    inner = cka[block.start:block.stop, block.start:block.stop]
    size = block.size
    return float((inner.sum() - np.trace(inner)) / (size * (size - 1))) if size > 1 else float(inner[0, 0])


def inside_outside(per_layer, block: Block) -> tuple[float, float]:
    """Mean of a per-layer quantity over the block's layers, and over all other layers
    (NaN for a side with no layers)."""
    values = np.asarray(per_layer, dtype=float)
    if values.shape != (block.num_layers,):
        raise ValueError(f"need one value per layer ({block.num_layers}), got shape {values.shape}")
    inside = np.zeros(len(values), dtype=bool)
    inside[block.start:block.stop] = True
    mean = lambda chosen: float(chosen.mean()) if len(chosen) else float("nan")  # noqa: E731
    return mean(values[inside]), mean(values[~inside])


def _check_shape(cka: np.ndarray, block: Block) -> None:
    if cka.ndim != 2 or cka.shape[0] != cka.shape[1] or cka.shape[0] != block.num_layers:
        raise ValueError(f"cka must be ({block.num_layers}, {block.num_layers}) to match the block's model, "
                         f"got shape {cka.shape}")


def diagonal_inside_outside(cka, block: Block) -> tuple[float, float]:
    """Mean of the diagonal of ``cka`` (layer i of one model against layer i of another
    with the same layers) over the block's layers, and over all other layers.

    ``block`` comes from one of the two models' own heatmap. A side with no layers gives
    NaN.
    """
    cka = np.asarray(cka, dtype=float)
    _check_shape(cka, block)
    return inside_outside(np.diag(cka), block)
