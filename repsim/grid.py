"""Grids of trained models and their heatmaps: the bookkeeping behind Secs. 3-5.

A ``Run`` names one trained model (architecture, training-set prefix, seed). Both the
model and its within-model CKA heatmap go through the store, so a later chapter that
asks for the same run gets both back without training or recomputing anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .blocks import find_block
from .compare import model_cka
from .data import ImageDataset
from .models import ResNet, ResNetConfig, layer_names, stage_of
from .profiles import BlockChapter, Profile
from .runs import Run
from .store import Store
from .train import trained_model


@dataclass(frozen=True)
class Heatmap:
    run: Run
    cka: np.ndarray  # (L, L) within-model minibatch CKA
    layers: list[str]
    test_acc: float  # best test accuracy of the run (the analysed checkpoint)

    @property
    def title(self) -> str:
        """Architecture and test accuracy on two lines, a heatmap panel's title."""
        return f"{self.run.model.name}\n{self.test_acc:.0%}"


def train_run(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None, device=None) -> tuple[ResNet, dict]:
    """The run's model (trained once, then loaded from the store) and its record.

    The two runs chapter 7 follows through training (``origins.origin_runs``) are trained
    with snapshots the first time (``origins.training_snapshots``, which stores the model
    too), so that chapter 7 need not train them again.
    """
    store = store or Store()
    if store.compute:
        from . import origins  # chapter 7's module, which builds on this one

        if run in origins.origin_runs(profile) and store.load(run.key(profile, data)) is None:
            origins.training_snapshots(run, profile, data, store, device or profile.device)
    return trained_model(run.model, run.recipe(profile), data, run.seed, store, device or profile.device,
                         progress=False)


def heatmap(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None, device=None) -> Heatmap:
    """Within-model CKA of ``run`` with the profile's CKA protocol, cached in the store.

    A cached heatmap is returned without loading the model's weights at all.
    """
    store = store or Store()
    key = heatmap_key(run, profile, data)

    def compute() -> tuple[dict, dict]:
        model, record = train_run(run, profile, data, store, device)
        images = data.test_images[: profile.cka.examples]
        cka = model_cka(model, images, batch_size=profile.cka.batch_size, passes=profile.cka.passes,
                        seed=run.seed, device=device or profile.device)
        return {"cka": cka}, {"layers": layer_names(model), "test_acc": record["metrics"]["best_test_acc"]}

    state, record = store.load_or_train(key, compute)
    return Heatmap(run, state["cka"].numpy(), record["metrics"]["layers"], record["metrics"]["test_acc"])


def heatmap_key(run: Run, profile: Profile, data) -> dict:
    """The store key of ``run``'s within-model heatmap under the profile's CKA protocol."""
    return run.key(profile, data, "within-model linear CKA", cka=profile.cka)


def heatmap_row(configs: Iterable[ResNetConfig], profile: Profile, data: ImageDataset, train_size: int | None,
                seed: int = 0, store: Store | None = None, device=None) -> list[Heatmap]:
    """Heatmaps of several architectures trained on one data set (a row of a figure).

    Each model gets the data set's number of classes, so one grid serves CIFAR-10 and
    CIFAR-100 alike.
    """
    return [heatmap(Run(dataclasses.replace(config, num_classes=data.num_classes), train_size, seed),
                    profile, data, store, device) for config in configs]


def block_runs(blocks: BlockChapter, seed: int = 0, num_classes: int = 10) -> list[Run]:
    """Every run of the Sec. 3 grid once, in a fixed order: the depth row at every
    training-set size, the width row (Fig. 1's widths on ``full_size``, ``grid_widths``
    on every size), the networks without residuals, and the extra seeds."""
    def config(depth, width=1, residual=True):
        return ResNetConfig(depth, width, residual, num_classes)

    runs = [Run(config(d), n, seed) for n in blocks.train_sizes for d in blocks.depths]
    runs += [Run(config(blocks.base_depth, w), blocks.full_size, seed) for w in blocks.widths]
    runs += [Run(config(blocks.base_depth, w), n, seed) for n in blocks.train_sizes for w in blocks.grid_widths]
    runs += [Run(config(blocks.base_depth, w, residual=False), blocks.full_size, seed) for w in blocks.plain_widths]
    runs += [Run(dataclasses.replace(m, num_classes=num_classes), blocks.full_size, seed + s)
             for m in blocks.seed_architectures for s in range(blocks.seed_count)]
    return list(dict.fromkeys(runs))


def block_summary(maps: list[Heatmap], threshold: float) -> list[dict]:
    """One row per heatmap: the run's settings, its accuracy and its block (``find_block``)."""
    rows = []
    for m in maps:
        block = find_block(m.cka, threshold=threshold)
        rows.append({
            "depth": m.run.model.depth,
            "width": m.run.model.width,
            "residual": m.run.model.residual,
            "classes": m.run.model.num_classes,
            "train_size": m.run.train_size,
            "seed": m.run.seed,
            "test_acc": m.test_acc,
            "block_fraction": block.fraction,
            "block_layers": block.size,
            "block_mean_cka": block.mean_cka,
            "block_stage": stage_of(m.layers[block.start]) if block.size else None,
            "block_from": m.layers[block.start] if block.size else None,
            "block_to": m.layers[block.stop - 1] if block.size else None,
        })
    return rows


def block_change(table, vary: str, within: str):
    """For each value of ``within``: block fraction at the largest ``vary`` minus at the
    smallest (a pandas Series). ``table``: a DataFrame of ``block_summary`` rows."""
    grouped = table.sort_values(vary).groupby(within)["block_fraction"]
    return grouped.last() - grouped.first()


def verdict(changes) -> str:
    """How a set of signed changes bears on a claim that each is positive, in words."""
    changes = list(changes)
    if not changes:
        raise ValueError("no comparisons to judge: the grid has a single value along this axis")
    agreeing = sum(change > 0 for change in changes)
    if agreeing == len(changes):
        return f"agrees ({agreeing} of {len(changes)})"
    if agreeing == 0:
        return f"does not agree (0 of {len(changes)})"
    return f"agrees only in part ({agreeing} of {len(changes)})"


def compare(claimed_larger: float, claimed_smaller: float, tolerance: float = 0.0) -> str:
    """Whether a claim "the first exceeds the second" holds, in words; differences
    within ``tolerance`` are too small to count either way."""
    if not (np.isfinite(claimed_larger) and np.isfinite(claimed_smaller)):
        return "not measurable"
    difference = claimed_larger - claimed_smaller
    if difference > tolerance:
        return "agrees"
    if difference < -tolerance:
        return "does not agree"
    return "too close to call"
