"""Trained runs and their within-model heatmaps: the bookkeeping behind Secs. 3-5.

Both a run's model and its within-model CKA heatmap go through the store, so a later
chapter that asks for the same run gets both back without training or recomputing
anything, and a heatmap harvested on a GPU is read without the model's weights at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .blocks import find_block
from .compare import model_cka
from .data import ImageDataset, train_count
from .models import ResNetConfig, layer_names, stage_of
from .profiles import BlockChapter, Profile
from .runs import Run
from .store import Store
from .trained import train_run


@dataclass(frozen=True)
class Heatmap:
    run: Run
    cka: np.ndarray  # (L, L) within-model minibatch CKA
    layers: list[str]
    test_acc: float  # best test accuracy of the run (the analysed checkpoint)
    train_acc: float | None = None  # its accuracy on (up to 5,000 of) its training images, eval mode

    @property
    def title(self) -> str:
        """Architecture and test accuracy on two lines, a heatmap panel's title."""
        return f"{self.run.model.name}\n{self.test_acc:.0%}"


def heatmap_key(run: Run, profile: Profile, data) -> dict:
    """The store key of ``run``'s within-model heatmap under the profile's CKA protocol."""
    return run.key(profile, data, "within-model linear CKA", cka=profile.cka)


def heatmap(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None, device=None) -> Heatmap:
    """Within-model CKA of ``run`` with the profile's CKA protocol, cached in the store."""
    store = store or Store()

    def compute() -> tuple[dict, dict]:
        model, record = train_run(run, profile, data, store, device)
        images = data.test_images[: profile.cka.examples]
        cka = model_cka(model, images, batch_size=profile.cka.batch_size, passes=profile.cka.passes,
                        seed=run.seed, device=device or profile.device)
        metrics = record["metrics"]
        return {"cka": cka}, {"layers": layer_names(model), "test_acc": metrics["best_test_acc"],
                              "train_acc": metrics.get("train_acc")}

    state, record = store.load_or_train(heatmap_key(run, profile, data), compute)
    metrics = record["metrics"]
    return Heatmap(run, state["cka"].numpy(), metrics["layers"], metrics["test_acc"], metrics.get("train_acc"))


def block_runs(blocks: BlockChapter, seed: int = 0, num_classes: int = 10) -> list[Run]:
    """Every run of the Sec. 3 grid once, in a fixed order: the depth row (Fig. 1's depths
    on ``full_size``, ``grid_depths`` on every size), the width row (Fig. 1's widths on ``full_size``, ``grid_widths``
    on every size), the networks without residuals, and the extra seeds."""
    def config(depth, width=1, residual=True):
        return ResNetConfig(depth, width, residual, num_classes)

    runs = [Run(config(d), n, seed) for n in blocks.train_sizes
            for d in (blocks.depths if n == blocks.full_size else blocks.grid_depths)]
    runs += [Run(config(d), blocks.full_size, seed) for d in blocks.depths]
    runs += [Run(config(blocks.base_depth, w), blocks.full_size, seed) for w in blocks.widths]
    runs += [Run(config(blocks.base_depth, w), n, seed) for n in blocks.train_sizes for w in blocks.grid_widths]
    runs += [Run(config(blocks.base_depth, w, residual=False), blocks.full_size, seed) for w in blocks.plain_widths]
    runs += [Run(dataclasses.replace(m, num_classes=num_classes), blocks.full_size, seed + s)
             for m in blocks.seed_architectures for s in range(blocks.seed_count)]
    return list(dict.fromkeys(runs))


def grid_runs(blocks: BlockChapter, seeds: Sequence[int], num_classes: int = 10) -> list[Run]:
    """``block_runs`` for every one of ``seeds`` (the first's order first), each run once:
    the runs every comparison of chapter 3 is made over, seed by seed."""
    runs = block_runs(blocks, seeds[0], num_classes)
    runs += [run for seed in seeds[1:] for run in block_runs(blocks, seed, num_classes) if run.seed in seeds]
    return list(dict.fromkeys(runs))


def seed_title(m: Heatmap) -> str:
    """A panel title for one of several seeds, "seed 1, 93%" (``plots.heatmap_rows``'s
    ``title``)."""
    return f"seed {m.run.seed}, {m.test_acc:.0%}"


BLOCK_COLUMNS = ("depth", "width", "residual", "classes", "train_size", "seed", "train_acc", "test_acc", "block_fraction",
                 "block_layers", "block_mean_cka", "block_stage", "block_from", "block_to")


def block_table(maps: Sequence[Heatmap | None], threshold: float):
    """``block_summary`` as a DataFrame (with its columns even when every map is pending),
    sorted by classes, residual, training-set size, width, depth and seed."""
    import pandas as pd

    table = pd.DataFrame(block_summary(maps, threshold), columns=list(BLOCK_COLUMNS))
    # Typed even when empty: an untyped empty "residual" column would select columns, not rows.
    table = table.astype({"depth": int, "width": int, "residual": bool, "classes": int, "train_size": int, "seed": int})
    return table.sort_values(["classes", "residual", "train_size", "width", "depth", "seed"]).reset_index(drop=True)


def block_summary(maps: Sequence[Heatmap | None], threshold: float) -> list[dict]:
    """One row per heatmap (pending ones and repeats skipped): the run's settings, its
    accuracies (training-set size as a number of images) and its block (``find_block``)."""
    rows = []
    for m in {m.run: m for m in maps if m is not None}.values():
        block = find_block(m.cka, threshold=threshold)
        rows.append({
            "depth": m.run.model.depth,
            "width": m.run.model.width,
            "residual": m.run.model.residual,
            "classes": m.run.model.num_classes,
            "train_size": train_count(m.run.train_size),
            "seed": m.run.seed,
            "train_acc": m.train_acc if m.train_acc is not None else float("nan"),
            "test_acc": m.test_acc,
            "block_fraction": block.fraction,
            "block_layers": block.size,
            "block_mean_cka": block.mean_cka,
            "block_stage": stage_of(m.layers[block.start]) if block.size else None,
            "block_from": m.layers[block.start] if block.size else None,
            "block_to": m.layers[block.stop - 1] if block.size else None,
        })
    return rows


def schedule(profile: Profile, sizes: Sequence[int | None]) -> list[dict]:
    """The training schedule of each training-set size: epochs, SGD steps, batch."""
    rows = []
    for n in sorted(sizes, key=train_count):
        recipe = profile.training(n)
        images = train_count(n)
        rows.append({"training images": f"{images:,}", "epochs": recipe.epochs,
                     "SGD steps": recipe.epochs * (images // recipe.batch_size), "batch": recipe.batch_size})
    return rows


def _mean_and_spread(values) -> str:
    """"0.42" for one seed, "0.42 ± 0.03" (standard error) for several, "-" for none."""
    if len(values) == 0:
        return "-"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1) / len(values) ** 0.5:.2f}"


def extremes(table, blocks: BlockChapter) -> dict[str, str]:
    """Block fractions of the narrowest and widest, shallowest and deepest models on the
    smallest and largest training sets (mean ± standard error over the seeds in ``table``;
    "-" where pending or not in the grid), and those extremes, for the prose."""
    residual = table[table["residual"]] if len(table) else table
    sizes = [train_count(n) for n in blocks.train_sizes]
    out = {"smallest": f"{min(sizes):,}", "largest": f"{max(sizes):,}", "widest": max(blocks.widths),
           "deepest": max(blocks.depths)}
    for key, column, value, fixed, fixed_value in (
            ("wide", "width", max(blocks.widths), "depth", blocks.base_depth),
            ("narrow", "width", min(blocks.widths), "depth", blocks.base_depth),
            ("deep", "depth", max(blocks.depths), "width", 1), ("shallow", "depth", min(blocks.depths), "width", 1)):
        for size_name, size in (("small", min(sizes)), ("large", max(sizes))):
            picked = residual[(residual[column] == value) & (residual[fixed] == fixed_value)
                              & (residual["train_size"] == size)]["block_fraction"] if len(residual) else []
            out[f"block_{key}_{size_name}"] = _mean_and_spread(picked)
    return out
