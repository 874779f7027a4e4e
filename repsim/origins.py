"""Where the block structure comes from: the follow-up of Nguyen, Raghu & Kornblith (2022).

*On the Origins of the Block Structure Phenomenon in Neural Network Representations*
(TMLR 2022) finds that the block forms early in training while its representation keeps
changing; that it is carried by *dominant images*, a few test images with very large
projections on the block's first principal component, which share a simple image
statistic; and that different seeds pick different dominant images. This module
measures each on runs of the Sec. 3 grid (``heatmaps.block_runs``); every expensive result
is a store entry with a ``*_key`` function beside it, as in ``run_analyses``.

- **Snapshots** (``repsim.snapshots``): the run's weights at log-spaced SGD steps, 0
  being the initialisation; each snapshot's heatmap, its layers' CKA with the final
  model and PC1's share of variance make the run's ``Trajectory``.
- **Dominant images** are scored on the PC1 of the block's layers, compared on simple
  image statistics, matched across seeds against chance, and left out of the heatmap,
  with the functions of ``dominant``.
- **Summaries** turn the cached results into the numbers chapter 7 quotes and plots:
  ``block_over_training``, ``formation``, ``dominance_summary``, ``seeds_summary``,
  ``removal_rows`` and ``removal_summary`` (None values while a result is pending), and
  the panels of its figures.

The verdicts on these numbers, with their thresholds, are ``claims.origin_claims``; the
words and tables of the page are ``repsim.book.prose.chapter7`` and ``formation_table``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .blocks import Block, find_block, mean_within
from .cka import MinibatchCKA, cka_from_hsic
from .compare import collect_activations
from .data import ImageDataset, test_count, to_float
from .devices import resolve as resolve_device
from .dominant import (
    chance_overlap,
    cka_without_images,
    compare_statistics,
    dominance_scores,
    image_statistics,
    jaccard,
    layer_grams,
    minibatches,
    overlap_p_value,
    pc1_share,
    pc1_variance,
    random_images,
    top_images,
)
from .heatmaps import block_runs, heatmap
from .models import ResNet, ResNetConfig, layer_names, stage_of
from .pca import layer_pcs
from .profiles import Profile
from .runs import Run
from .snapshots import total_steps, training_snapshots, training_snapshots_key
from .store import Store
from .trained import train_run

KINDS = ("with a block", "without a block")


# -- which runs --------------------------------------------------------------------------
def run_table(runs: Sequence[Run], profile: Profile, kinds: Sequence[str] = KINDS) -> list[dict]:
    """Rows (model, run, from chapter 3): whether each run is one of the Sec. 3 grid."""
    grid_runs = set(block_runs(profile.blocks, runs[0].seed))
    return [{"model": kind, "run": run.name, "from chapter 3": "yes" if run in grid_runs else "no: trained here"}
            for kind, run in zip(kinds, runs)]


def seed_runs(profile: Profile, seed: int = 0) -> list[Run]:
    """The with-block run at its seed and the next ones (``blocks.seed_count`` of them, at
    least two): Fig. D.1's seeds when it is a seed architecture."""
    run = profile.followed_runs(seed)[0]
    return [run.with_seed(run.seed + s) for s in range(max(profile.blocks.seed_count, 2))]


@dataclass(frozen=True)
class Trajectory:
    run: Run
    steps: np.ndarray  # (S,) SGD steps of the snapshots; 0 is the initialisation
    total_steps: int
    test_acc: np.ndarray  # (S,) on the snapshot images
    cka: np.ndarray  # (S, L, L) within-model CKA at each snapshot
    to_final: np.ndarray  # (S, L) CKA of each layer with the same layer of the final model
    final_cka: np.ndarray  # (L, L) the final model, same images and minibatches
    final_acc: float
    pc1_variance: np.ndarray  # (S, K) PC1's share of variance at the late block outputs
    layers: list[str]
    late_layers: list[str]  # the residual-block outputs of stages 2 and 3
    reproduces: bool | None


def trajectory_key(run: Run, profile: Profile, data) -> dict:
    return run.key(profile, data, "block over training", snapshots=training_snapshots_key(run, profile, data)["settings"],
                   examples=test_count(data, profile.origins.snapshot_examples),
                   batch_size=profile.cka.batch_size)


def trajectory(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None, device=None,
               graphs: bool = False, deadline: float | None = None) -> Trajectory:
    """Each snapshot's heatmap, its layers' CKA with the final model, PC1's share of
    variance at the late block outputs and its test accuracy, all on the first
    ``snapshot_examples`` test images (one pass of the profile's CKA minibatches).
    ``graphs`` and ``deadline``: how the snapshots' run trains (``training_snapshots``)."""
    store, device = store or Store(), device or profile.device

    def compute():
        snaps = training_snapshots(run, profile, data, store, device, graphs=graphs, deadline=deadline)
        on = resolve_device(device)  # "auto" is not a torch device
        models = [_model(run.model, state) for state in snaps.states]
        final = _model(run.model, snaps.final)
        images = data.test_images[: profile.origins.snapshot_examples]
        labels = data.test_labels[: profile.origins.snapshot_examples]
        cka, to_final, final_cka = snapshot_cka(models, final, images, batch_size=profile.cka.batch_size,
                                                seed=run.seed, device=device)
        late = [name for name in layer_names(final) if stage_of(name) in (2, 3) and name.endswith(".relu2")]
        variance, scored = [], []
        for model in models + [final]:  # one forward pass each: the late layers and the logits
            acts = collect_activations(model, images, late + ["fc"], device=device, keep_on_device=True)
            variance.append([pc1_variance(acts[name].to(on)) for name in late])
            scored.append((acts["fc"].argmax(1).cpu() == labels).double().mean().item())
        state = {"steps": torch.tensor(snaps.steps), "test_acc": torch.tensor(scored[:-1]), "cka": cka,
                 "to_final": to_final, "final_cka": final_cka, "pc1_variance": torch.tensor(variance[:-1])}
        return state, {"layers": layer_names(final), "late_layers": late, "final_acc": scored[-1],
                       "total_steps": total_steps(run, profile, data), "reproduces": snaps.reproduces}

    state, record = store.load_or_train(trajectory_key(run, profile, data), compute)
    m = record["metrics"]
    return Trajectory(run, state["steps"].numpy(), m["total_steps"], state["test_acc"].numpy(), state["cka"].numpy(),
                      state["to_final"].numpy(), state["final_cka"].numpy(), m["final_acc"],
                      state["pc1_variance"].numpy(), m["layers"], m["late_layers"], m["reproduces"])


def _model(config: ResNetConfig, state: dict) -> ResNet:
    model = ResNet(config)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def snapshot_cka(snapshots: Sequence[nn.Module], final: nn.Module, images: torch.Tensor, batch_size: int = 256,
                 passes: int = 1, seed: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, L, L) within-model CKA of each snapshot, (S, L) CKA between each layer of each
    snapshot and the same layer of ``final``, and ``final``'s (L, L) heatmap; one pass
    over the minibatches of ``model_cka``, ``final``'s Grams computed once per batch."""
    device = resolve_device(device)
    layers = layer_names(final)
    accumulators = [MinibatchCKA(layers, layers) for _ in snapshots]
    own = MinibatchCKA(layers)
    for batch in minibatches(len(images), batch_size, passes, seed):
        x = to_float(images[batch].to(device))
        reference = layer_grams(final.to(device), layers, x)
        own.update_grams(reference)
        for model, accumulator in zip(snapshots, accumulators):
            accumulator.update_grams(layer_grams(model.to(device), layers, x), reference)
            model.cpu()  # one snapshot on the device at a time
    n = len(layers)
    within, to_final = [], []
    for accumulator in accumulators:
        s = accumulator.hsic_.cpu()  # (2L, 2L): the snapshot's layers, then the final model's
        diag = s.diagonal()
        within.append(cka_from_hsic(s[:n, :n], diag[:n, None], diag[None, :n]))
        to_final.append(cka_from_hsic(s[:n, n:].diagonal(), diag[:n], diag[n:]))
    return torch.stack(within), torch.stack(to_final), own.compute()


# -- dominant images ------------------------------------------------------------------------
def scored_layers(layers: Sequence[str], block: Block, max_layers: int) -> list[str]:
    """The block's layers, evenly thinned to at most ``max_layers``; without a block, the
    residual-block outputs of stage 3."""
    chosen = list(layers[block.start : block.stop]) if block.size else [
        name for name in layers if stage_of(name) == 3 and name.endswith(".relu2")]
    picks = np.unique(np.rint(np.linspace(0, len(chosen) - 1, min(max_layers, len(chosen)))).astype(int))
    return [chosen[i] for i in picks]


@dataclass(frozen=True)
class Dominance:
    run: Run
    layers: list[str]  # the block's layers whose PC1 scores the images
    pc_scores: np.ndarray  # (K, N) PC1 scores of the first N test images at each layer
    variance_explained: np.ndarray  # (K,)
    block: tuple[int, int]  # (start, stop) of the block in the model's heatmap

    @property
    def scores(self) -> np.ndarray:
        return dominance_scores(self.pc_scores)

    def top(self, k: int) -> np.ndarray:
        return top_images(self.scores, k)


def dominance_key(run: Run, profile: Profile, data, threshold: float = 0.9) -> dict:
    return run.key(profile, data, "dominant images", threshold=threshold, max_layers=profile.origins.max_layers,
                   examples=test_count(data, profile.cka.examples), cka=profile.cka)


def dominance(run: Run, profile: Profile, data: ImageDataset, threshold: float = 0.9, store: Store | None = None,
              device=None) -> Dominance:
    """PC1 scores of the CKA test images at the layers of the run's block (its chapter 3
    heatmap at ``threshold``), from which ``Dominance.scores`` ranks the images."""
    store, device = store or Store(), device or profile.device

    def compute():
        cka = heatmap(run, profile, data, store, device)
        block = find_block(cka.cka, threshold)
        layers = scored_layers(cka.layers, block, profile.origins.max_layers)
        model, _ = train_run(run, profile, data, store, device)
        pcs = layer_pcs(model, data.test_images[: profile.cka.examples], layers, device=device,
                        max_bytes=profile.probes.pca_max_bytes)
        state = {"pc_scores": torch.stack([pcs[name].scores for name in layers]),
                 "variance_explained": torch.tensor([pcs[name].variance_explained for name in layers])}
        return state, {"layers": layers, "block": [block.start, block.stop]}

    state, record = store.load_or_train(dominance_key(run, profile, data, threshold), compute)
    return Dominance(run, record["metrics"]["layers"], state["pc_scores"].numpy(),
                     state["variance_explained"].numpy(), tuple(record["metrics"]["block"]))


# -- across seeds -------------------------------------------------------------------------
def seed_overlaps(dominances: Sequence[Dominance], k: int) -> list[dict]:
    """Rows (seed_a, seed_b, overlap, jaccard, chance_overlap, chance_jaccard, p) for every
    pair of seeds: how far their top-k dominant sets agree beyond chance."""
    rows = []
    for a, b in itertools.combinations(dominances, 2):
        n = a.pc_scores.shape[1]
        top_a, top_b = a.top(k), b.top(k)
        overlap = len(set(top_a.tolist()) & set(top_b.tolist()))
        expected, expected_jaccard = chance_overlap(k, n)
        rows.append({"seed_a": a.run.seed, "seed_b": b.run.seed, "overlap": overlap, "jaccard": jaccard(top_a, top_b),
                     "chance_overlap": expected, "chance_jaccard": expected_jaccard,
                     "p": overlap_p_value(overlap, k, n)})
    return rows


def seed_statistics(dominances: Sequence[Dominance], images, k: int) -> list[dict]:
    """Per seed: the statistic that best separates its top-k images from the rest (row of
    ``compare_statistics``), and the effect of the first seed's strongest statistic."""
    tables = [compare_statistics(image_statistics(images[: d.pc_scores.shape[1]]), d.top(k)) for d in dominances]
    reference = tables[0][0]["statistic"]
    return [{"seed": d.run.seed, "strongest": table[0]["statistic"], "cohen_d": table[0]["cohen_d"],
             "p_bonferroni": table[0]["p_bonferroni"], "reference": reference,
             "reference_d": next(row["cohen_d"] for row in table if row["statistic"] == reference)}
            for d, table in zip(dominances, tables)]


# -- removing them ---------------------------------------------------------------------
@dataclass(frozen=True)
class Removal:
    run: Run
    counts: list[int]
    dominant: np.ndarray  # (C, L, L) heatmaps without the top counts[c] dominant images
    random: np.ndarray  # (C, L, L) heatmaps without counts[c] random images
    layers: list[str]


def removal_key(run: Run, profile: Profile, data, threshold: float = 0.9) -> dict:
    return run.key(profile, data, "heatmaps without dominant images", counts=list(profile.origins.removal_counts),
                   dominance=dominance_key(run, profile, data, threshold)["settings"])


def removal_heatmaps(run: Run, profile: Profile, data: ImageDataset, threshold: float = 0.9,
                     store: Store | None = None, device=None) -> Removal:
    """The run's heatmap (profile's CKA protocol) without its top-k dominant images, and
    without k random ones (seeded by the run's seed), for each k of ``removal_counts``."""
    store, device = store or Store(), device or profile.device
    counts = list(profile.origins.removal_counts)

    def compute():
        ranked = dominance(run, profile, data, threshold, store, device).top(max(counts))
        images = data.test_images[: profile.cka.examples]
        shuffled = random_images(len(images), max(counts), run.seed)
        model, _ = train_run(run, profile, data, store, device)
        cka = cka_without_images(model, images, [ranked[:k] for k in counts] + [shuffled[:k] for k in counts],
                                 batch_size=profile.cka.batch_size, passes=profile.cka.passes, seed=run.seed,
                                 device=device)
        return {"dominant": cka[: len(counts)], "random": cka[len(counts) :]}, {"layers": layer_names(model)}

    state, record = store.load_or_train(removal_key(run, profile, data, threshold), compute)
    return Removal(run, counts, state["dominant"].numpy(), state["random"].numpy(), record["metrics"]["layers"])


# -- summaries for the chapter -------------------------------------------------------------
def block_overlap(block: Block, other: Block) -> float:
    """Jaccard index of the layers of two blocks of one model (0 when either is empty)."""
    union = max(block.stop, other.stop) - min(block.start, other.start)
    inter = max(0, min(block.stop, other.stop) - max(block.start, other.start))
    return inter / (block.size + other.size - inter) if block.size and other.size and union else 0.0


def block_over_training(trajectories: Sequence[Trajectory | None], threshold: float) -> list[dict]:
    """Rows (model, step, block, overlap, pc1, to_final, test_acc) per snapshot of each
    trajectory: the block measure, the overlap of its block with the final model's
    (``block_overlap``), PC1's mean share at the late block outputs, the mean CKA of the
    final block's layers (all layers without one) with the final model's, and test accuracy."""
    rows = []
    for t in trajectories:
        if t is None:
            continue
        final = find_block(t.final_cka, threshold)
        span = slice(final.start, final.stop) if final.size else slice(None)
        for s, step in enumerate(t.steps):
            block = find_block(t.cka[s], threshold)
            rows.append({"model": t.run.label, "step": int(step), "block": block.fraction,
                         "overlap": block_overlap(block, final), "pc1": float(t.pc1_variance[s].mean()),
                         "to_final": float(t.to_final[s, span].mean()), "test_acc": float(t.test_acc[s])})
    return rows


def formation(t: Trajectory | None, threshold: float, share: float = 0.5) -> dict:
    """When the block takes shape: the first snapshot from which every later one has a
    block whose overlap with the final model's block (``block_overlap``) is at least
    ``share`` (``step`` None if there is none, or if the final model has no block), with
    the numbers at that step (``init_*`` at initialisation, ``final_*`` at the end; the
    final model's CKA with itself and overlap with its own block are 1 by definition).
    All None if pending."""
    keys = ("step", "total_steps", "fraction_of_training", "init_block", "init_overlap", "init_to_final", "init_acc",
            "init_pc1", "block", "overlap", "final_block", "to_final", "test_acc", "final_acc", "pc1", "final_pc1",
            "reproduces")
    if t is None:
        return dict.fromkeys(keys)
    final = find_block(t.final_cka, threshold)
    blocks = [find_block(c, threshold) for c in t.cka]
    overlaps = np.array([block_overlap(block, final) for block in blocks])
    formed = overlaps >= share
    later = np.flip(np.logical_and.accumulate(np.flip(formed)))  # formed here and at every later snapshot
    index = int(np.argmax(later)) if later.any() else None
    span = slice(final.start, final.stop) if final.size else slice(None)
    at = (lambda values: float(values[index])) if index is not None else (lambda values: None)  # noqa: E731
    to_final, pc1 = t.to_final[:, span].mean(axis=1), t.pc1_variance.mean(axis=1)
    return {"step": None if index is None else int(t.steps[index]), "total_steps": t.total_steps,
            "fraction_of_training": None if index is None else float(t.steps[index] / t.total_steps),
            "init_block": blocks[0].fraction, "init_overlap": float(overlaps[0]), "init_to_final": float(to_final[0]),
            "init_acc": float(t.test_acc[0]), "init_pc1": float(pc1[0]),
            "block": at([block.fraction for block in blocks]), "overlap": at(overlaps), "final_block": final.fraction,
            "to_final": at(to_final), "test_acc": at(t.test_acc), "final_acc": t.final_acc,
            "pc1": at(pc1), "final_pc1": float(pc1[-1]), "reproduces": t.reproduces}


def dominance_summary(d: Dominance | None, data: ImageDataset, k: int) -> dict:
    """The top-k images' share of PC1's variance (and k/N, what k random images carry), and
    the image statistic that separates them best from the others (``compare_statistics``)."""
    keys = ("k", "n", "share", "random_share", "variance", "statistic", "chosen", "others", "cohen_d",
            "p_bonferroni", "table", "top", "random")
    if d is None:
        return {**dict.fromkeys(keys), "k": k, "table": [], "top": np.zeros(0, dtype=int), "random": np.zeros(0, dtype=int)}
    n = d.pc_scores.shape[1]
    top = d.top(k)
    table = compare_statistics(image_statistics(data.test_images[:n]), top)
    random = random_images(n, k, d.run.seed)
    strongest = table[0]
    return {"k": k, "n": n, "share": pc1_share(d.pc_scores, top), "random_share": k / n,
            "variance": float(d.variance_explained.mean()), "statistic": strongest["statistic"],
            "chosen": strongest["chosen"], "others": strongest["others"], "cohen_d": strongest["cohen_d"],
            "p_bonferroni": strongest["p_bonferroni"], "table": table, "top": top, "random": random}


def seeds_summary(dominances: Sequence[Dominance | None], data: ImageDataset, k: int) -> dict:
    """Overlap of the seeds' top-k sets against chance, and whether their strongest image
    statistic is the same (pending seeds are left out; None values when fewer than two)."""
    present = [d for d in dominances if d is not None]
    if len(present) < 2:
        return {**dict.fromkeys(("pairs", "jaccard", "chance_jaccard", "overlap", "chance_overlap", "max_p",
                                 "same_statistic")), "overlaps": [], "statistics": [], "seeds": len(present)}
    overlaps = seed_overlaps(present, k)
    statistics = seed_statistics(present, data.test_images, k)
    return {"pairs": len(overlaps), "jaccard": float(np.mean([r["jaccard"] for r in overlaps])),
            "chance_jaccard": overlaps[0]["chance_jaccard"], "overlap": float(np.mean([r["overlap"] for r in overlaps])),
            "chance_overlap": overlaps[0]["chance_overlap"], "max_p": max(r["p"] for r in overlaps),
            "same_statistic": len({r["strongest"] for r in statistics}) == 1, "overlaps": overlaps,
            "statistics": statistics, "seeds": len(present)}


def seed_summaries(get, runs: Sequence[Run], data: ImageDataset, threshold: float, formed_overlap: float,
                   k: int) -> tuple[list[dict], list[dict], list[dict]]:
    """``formation``, ``dominance_summary`` and ``removal_summary`` of each of ``runs``
    (one architecture's seeds), each analysis read or computed through ``get``
    (``Session.get``): chapter 7 judges the follow-up's findings over every seed."""
    formed = [formation(get(trajectory, run), threshold, formed_overlap) for run in runs]
    dominant = [dominance_summary(get(dominance, run, threshold=threshold), data, k) for run in runs]
    removed = [removal_summary(get(removal_heatmaps, run, threshold=threshold), threshold) for run in runs]
    return formed, dominant, removed


def removal_rows(removal: Removal | None, threshold: float) -> list[dict]:
    """Rows (removed, images, block, block_cka) per heatmap: the block measure and the mean
    CKA over the layers of the block with nothing removed."""
    if removal is None:
        return []
    reference = find_block(removal.dominant[removal.counts.index(0)] if 0 in removal.counts else removal.dominant[0],
                           threshold)
    rows = []
    for which, maps in (("dominant", removal.dominant), ("random", removal.random)):
        for k, cka in zip(removal.counts, maps):
            rows.append({"removed": k, "images": which, "block": find_block(cka, threshold).fraction,
                         "block_cka": mean_within(cka, reference) if reference.size else float("nan")})
    return rows


def removal_summary(removal: Removal | None, threshold: float) -> dict:
    """The block measure with nothing removed, and without the most dominant and the most
    random images (the largest count), with the mean CKA over the original block."""
    rows = removal_rows(removal, threshold)
    if not rows:
        return dict.fromkeys(("k", "before", "dominant", "random", "cka_before", "cka_dominant", "cka_random"))
    k = max(removal.counts)
    pick = {(r["removed"], r["images"]): r for r in rows}
    before = pick[(min(removal.counts), "dominant")]
    return {"k": k, "before": before["block"], "dominant": pick[(k, "dominant")]["block"],
            "random": pick[(k, "random")]["block"], "cka_before": before["block_cka"],
            "cka_dominant": pick[(k, "dominant")]["block_cka"], "cka_random": pick[(k, "random")]["block_cka"]}


def snapshot_panels(trajectories: Sequence[Trajectory | None], kinds: Sequence[str] = KINDS):
    """(rows, titles, row labels) for ``plots.wrapped_heatmaps``: each trajectory's snapshot
    heatmaps, titled by step; pending trajectories are left out."""
    present = [(t, kind) for t, kind in zip(trajectories, kinds) if t is not None]
    return ([list(t.cka) for t, _ in present], [[f"step {step:,}" for step in t.steps] for t, _ in present],
            [f"{t.run.model.name}\n({kind})" for t, kind in present])


def removal_panels(removal: Removal | None):
    """(rows, titles) for ``plots.wrapped_heatmaps``: the heatmap with all images, without the
    most dominant and without as many random ones (the largest count); empty if pending."""
    if removal is None:
        return [], []
    k = max(removal.counts)
    first = removal.counts.index(min(removal.counts))
    return ([[removal.dominant[first], removal.dominant[-1], removal.random[-1]]],
            [["all images" if removal.counts[first] == 0 else f"without {removal.counts[first]}",
              f"without the top {k:,}", f"without {k:,} random"]])


def seed_panels(dominances: Sequence[Dominance | None], images, k: int):
    """(image sets, titles) for ``plots.image_panels``: each seed's top-k images."""
    present = [d for d in dominances if d is not None]
    return [images[d.top(k)] for d in present], [f"{d.run.name}: top {k}" for d in present]
