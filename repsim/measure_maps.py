"""Chapter 8, beyond the paper: is the block a property of the network or of linear CKA?

Every heatmap of the paper is linear CKA, which a few points far out can drive towards
any value (Davari et al. 2023), and the follow-up traces the block to a few dominant
images (chapter 7). So each of chapter 8's runs (``Profile.measured_runs``) gets its
layer-by-layer heatmap under four measures of ``repsim.measures``, at the stem, every
residual-block output and the pooled features (``measured_layers``):

- **linear CKA** and **RBF CKA** with the profile's CKA protocol (unbiased HSIC summed
  over the same minibatches as chapter 3's heatmap, whose layers' entries linear CKA
  repeats, unless ``measures.passes`` makes fewer passes);
- **Procrustes** and **mutual k-NN**, which need every pair of examples at once, on the
  first ``measures.subset`` test images.

For chapter 7's model with a block, each is computed again without its most dominant
images (the largest of ``origins.removal_counts``) and without as many random ones. One
store entry per run (``measure_maps``) holds all of them.

A threshold of 0.9 means different things for different measures, so the block of each
measure is found at the threshold that as many pairs of layers reach, over every model
and seed of the chapter, as reach 0.9 under linear CKA (``matched_thresholds``): each
measure then ranks the same number of pairs as "very similar", and where it puts them
decides where its blocks are. ``block_rows`` turns the maps into the block measure,
position and overlap with linear CKA's block; ``claims.measure_claims`` judges them.
``rank_agreement`` compares the heatmaps without any threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from scipy import stats

from .blocks import find_block
from .compare import GramCapture
from .data import ImageDataset, test_count, to_float
from .devices import resolve as resolve_device
from .dominant import kernel_cka_without_images, random_images
from .measures import MEASURES, knn_matrix, neighbour_sets, procrustes_factors, procrustes_matrix, rbf_gram
from .models import layer_names
from .origins import block_overlap, dominance, dominance_key
from .profiles import Profile
from .runs import Run
from .store import Store
from .trained import train_run

CONDITIONS = ("all images", "without the dominant images", "without random images")
_SLUGS = {"linear CKA": "linear", "RBF CKA": "rbf", "Procrustes": "procrustes", "mutual k-NN": "knn"}


def measured_layers(layers: Sequence[str]) -> list[str]:
    """The stem's output, every residual-block output and the pooled features, in order:
    the representations between blocks, where the paper's heatmaps show the block."""
    return [name for name in layers if name in ("stem.relu", "pool") or name.endswith(".relu2")]


@dataclass(frozen=True)
class MeasureMaps:
    run: Run
    layers: list[str]
    conditions: list[str]  # CONDITIONS[:1], or all three for the model whose dominant images are left out
    maps: dict[str, np.ndarray]  # measure -> (conditions, L, L)
    removed: int  # images left out of the minibatches' images in the last two conditions
    subset_removed: list[int]  # images left out of the subset in each condition

    def matrix(self, measure: str, condition: str = CONDITIONS[0]) -> np.ndarray:
        return self.maps[measure][self.conditions.index(condition)]


def removes_dominant(run: Run, profile: Profile) -> bool:
    """Whether ``run`` is chapter 7's model with a block (any seed), whose dominant
    images chapter 8 leaves out."""
    return run == profile.followed_runs()[0].with_seed(run.seed)


def measure_maps_key(run: Run, profile: Profile, data, threshold: float = 0.9) -> dict:
    settings = {"measures": profile.measures, "cka": profile.cka}
    if removes_dominant(run, profile):
        settings.update(removed=max(profile.origins.removal_counts),
                        dominance=dominance_key(run, profile, data, threshold)["settings"])
    return run.key(profile, data, "other similarity measures", **settings)


def measure_maps(run: Run, profile: Profile, data: ImageDataset, threshold: float = 0.9, store: Store | None = None,
                 device=None) -> MeasureMaps:
    """The run's heatmaps under every measure of ``measures.MEASURES``; for chapter 7's
    model with a block (``removes_dominant``) also without its dominant images (chapter
    7's, at block ``threshold``) and without as many random ones."""
    store, device = store or Store(), device or profile.device
    m = profile.measures

    def compute():
        model, _ = train_run(run, profile, data, store, device)
        layers = measured_layers(layer_names(model))
        images = data.test_images[: test_count(data, profile.cka.examples)]
        left_out = [np.zeros(0, dtype=int)]
        if removes_dominant(run, profile):
            k = max(profile.origins.removal_counts)
            left_out += [dominance(run, profile, data, threshold, store, device).top(k),
                         random_images(len(images), k, run.seed)]
        kernels = [None, partial(rbf_gram, fraction=m.rbf_fraction)]  # linear CKA, RBF CKA
        linear, rbf = kernel_cka_without_images(model, images, left_out, kernels, layers, profile.cka.batch_size,
                                                m.passes or profile.cka.passes, run.seed, device)
        size = min(m.subset, len(images))
        in_subset = [indices[indices < size] for indices in left_out]
        procrustes, knn = subset_maps(model, images[:size], layers, in_subset, m.neighbours, device)
        state = {"linear": linear, "rbf": rbf, "procrustes": procrustes, "knn": knn}
        return state, {"layers": layers, "conditions": list(CONDITIONS[: len(left_out)]),
                       "removed": int(max(len(i) for i in left_out)), "subset_removed": [len(i) for i in in_subset]}

    state, record = store.load_or_train(measure_maps_key(run, profile, data, threshold), compute)
    r = record["metrics"]
    return MeasureMaps(run, r["layers"], r["conditions"], {name: state[_SLUGS[name]].numpy() for name in MEASURES},
                       r["removed"], r["subset_removed"])


@torch.no_grad()
def subset_maps(model, images: torch.Tensor, layers: Sequence[str], left_out: Sequence[np.ndarray], neighbours: int,
                device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, L, L) Procrustes and (R, L, L) mutual k-NN heatmaps of ``images`` (all at once:
    neither measure is a sum over minibatches), with ``left_out[r]`` left out for the r-th;
    one forward pass, each layer's Gram kept in float64."""
    on = resolve_device(device)
    grams = GramCapture(model.to(on), layers)(to_float(images.to(on)))
    grams = [grams[name].double() for name in layers]
    procrustes, knn = [], []
    for indices in left_out:
        kept = torch.from_numpy(np.setdiff1d(np.arange(len(images)), indices)).to(on)
        sub = [k.index_select(0, kept).index_select(1, kept) for k in grams]
        procrustes.append(procrustes_matrix([procrustes_factors(k) for k in sub]).cpu())
        knn.append(knn_matrix([neighbour_sets(k, neighbours) for k in sub]).cpu())
    return torch.stack(procrustes), torch.stack(knn)


# -- summaries for the chapter -------------------------------------------------------------
def _pairs(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(len(matrix), k=1)]


def matched_thresholds(maps: Sequence[MeasureMaps | None], threshold: float) -> dict[str, float]:
    """Each measure's block threshold: the value that as many pairs of layers reach, over
    ``maps`` (all images), as reach ``threshold`` under linear CKA (whose own is
    ``threshold``). Every measure is computed on the same pairs, so the count carries
    over exactly; with no pair at ``threshold``, no measure finds a block (inf)."""
    present = [m for m in maps if m is not None]
    if not present:
        return dict.fromkeys(MEASURES, threshold)
    pooled = {name: np.concatenate([_pairs(m.matrix(name)) for m in present]) for name in MEASURES}
    count = int((pooled[MEASURES[0]] >= threshold).sum())
    matched = {name: float(np.sort(values)[::-1][count - 1]) if count else float("inf")
               for name, values in pooled.items()}
    return {**matched, MEASURES[0]: threshold}


def block_rows(maps: Sequence[MeasureMaps | None], thresholds: dict[str, float]) -> list[dict]:
    """Rows (model, run, seed, measure, condition, block, start, stop, overlap) for every
    heatmap: the block measure at the measure's threshold, the block's first and last
    layer, and its overlap (Jaccard index of the layers) with linear CKA's block in the
    same heatmap (None where linear CKA finds none)."""
    rows = []
    for m in maps:
        if m is None:
            continue
        for condition in m.conditions:
            reference = find_block(m.matrix(MEASURES[0], condition), thresholds[MEASURES[0]])
            for name in MEASURES:
                block = find_block(m.matrix(name, condition), thresholds[name])
                rows.append({"model": m.run.model.name, "run": m.run.label, "seed": m.run.seed, "measure": name,
                             "condition": condition, "block": block.fraction,
                             "start": m.layers[block.start] if block.size else None,
                             "stop": m.layers[block.stop - 1] if block.size else None,
                             "overlap": block_overlap(block, reference) if reference.size else None})
    return rows


def rank_agreement(maps: Sequence[MeasureMaps | None]) -> list[dict]:
    """Rows (run, seed, measure, spearman) for each measure other than linear CKA: the
    Spearman rank correlation of its heatmap's pairs of layers with linear CKA's (all
    images), which says whether it orders the pairs alike, whatever its scale and
    whatever the thresholds."""
    rows = []
    for m in maps:
        if m is None:
            continue
        reference = _pairs(m.matrix(MEASURES[0]))
        for name in MEASURES[1:]:
            rho = stats.spearmanr(reference, _pairs(m.matrix(name))).statistic
            rows.append({"run": m.run.label, "seed": m.run.seed, "measure": name, "spearman": float(rho)})
    return rows


def panels(maps: Sequence[MeasureMaps | None], condition: str = CONDITIONS[0]):
    """(rows, titles, row labels) for ``plots.wrapped_heatmaps``: one row per run, one
    panel per measure; pending runs are left out."""
    present = [m for m in maps if m is not None and condition in m.conditions]
    return ([[m.matrix(name, condition) for name in MEASURES] for m in present], [list(MEASURES) for _ in present],
            [m.run.model.name for m in present])


def condition_panels(maps: Sequence[MeasureMaps | None], run: Run):
    """(rows, titles, row labels) for ``plots.wrapped_heatmaps``: ``run``'s maps (among
    ``maps``) with all images, without its dominant images and without random ones, one
    row per condition and one panel per measure; empty while pending."""
    found = [m for m in maps if m is not None and m.run == run]
    if not found:
        return [], [], []
    m = found[0]
    labels = {CONDITIONS[0]: "all images", CONDITIONS[1]: "without\ndominant", CONDITIONS[2]: "without\nrandom"}
    return ([[m.matrix(name, condition) for name in MEASURES] for condition in m.conditions],
            [list(MEASURES) for _ in m.conditions], [labels[condition] for condition in m.conditions])
