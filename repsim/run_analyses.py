"""Per-model analyses of a trained run (Secs. 4 and 5), each cached in the store.

Every function takes a ``runs.Run`` (architecture, training-set prefix, seed), loads the
run's model from the store (training it only if no earlier chapter did, and only where
the store may compute), and caches its result under a key that names the analysis and
its settings, so a second execution recomputes nothing. Each analysis has a ``*_key``
function beside it: the harvest plans with the very keys the chapters look up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from .blocks import diagonal_inside_outside, find_block, inside_outside, mean_within
from .compare import model_cka
from .data import ImageDataset, test_count, train_count
from .heatmaps import Heatmap, heatmap
from .models import delete_residual_units, layer_names, stage_of
from .pca import cka_without_first_pc, layer_pcs, pc_cosine_similarity
from .probes import gain_per_unit, probe_layers, train_probes, unit_span
from .profiles import Profile
from .runs import Run
from .store import Store
from .train import accuracy
from .trained import train_run


def _cached(key: dict, compute, store: Store | None):
    state, record = (store or Store()).load_or_train(key, compute)
    return state, record["metrics"]


def training_metrics_key(run: Run, profile: Profile, data) -> dict:
    return run.key(profile, data, "training metrics")


def training_metrics(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None, device=None) -> dict:
    """The run's training metrics (accuracies, epochs, history, time, device), cached on
    their own so that they outlive the weights (a harvest brings back no weights)."""

    def compute():
        _, record = train_run(run, profile, data, store, device)
        return {}, dict(record["metrics"])

    return _cached(training_metrics_key(run, profile, data), compute, store)[1]


@dataclass(frozen=True)
class PCAnalysis:
    run: Run
    layers: list[str]
    variance_explained: np.ndarray  # (L,) s_1^2 / sum s_i^2 per layer
    pc_similarity: np.ndarray  # (L, L) |cosine| between the layers' first-PC scores
    cka_without_pc1: np.ndarray | None  # (L, L) minibatch CKA after removing PC1, if asked for


def first_pcs_key(run: Run, profile: Profile, data, late_block_outputs: bool = False, without_pc1: bool = False) -> dict:
    examples = test_count(data, profile.probes.pc_examples)
    return run.key(profile, data, "first principal components", late_block_outputs=late_block_outputs,
                   without_pc1=without_pc1, examples=examples, cka=profile.cka)


def first_pcs(run: Run, profile: Profile, data: ImageDataset, late_block_outputs: bool = False,
              without_pc1: bool = False, store: Store | None = None, device=None) -> PCAnalysis:
    """PC1 of every layer, on the profile's ``pc_examples`` test images; optionally the
    CKA heatmap with PC1 removed from every layer, with the profile's CKA protocol.

    ``late_block_outputs`` restricts the layers to the output of each residual block in
    the last two stages, the summary Fig. D.5 needs, at a fraction of the cost.
    """
    device = device or profile.device
    images = data.test_images[: profile.probes.pc_examples]

    def compute():
        model, _ = train_run(run, profile, data, store, device)
        layers = layer_names(model)
        if late_block_outputs:
            layers = [name for name in layers if stage_of(name) in (2, 3) and name.endswith(".relu2")]
        pcs = layer_pcs(model, images, layers, device=device, max_bytes=profile.probes.pca_max_bytes)
        state = {"variance_explained": torch.tensor([pcs[n].variance_explained for n in layers], dtype=torch.float64),
                 "pc_similarity": torch.from_numpy(pc_cosine_similarity([pcs[n] for n in layers]))}
        if without_pc1:
            cka_images = data.test_images[: profile.cka.examples]
            state["cka_without_pc1"] = cka_without_first_pc(
                model, cka_images, pcs, batch_size=profile.cka.batch_size, passes=profile.cka.passes, seed=run.seed,
                device=device)
        return state, {"layers": layers}

    state, metrics = _cached(first_pcs_key(run, profile, data, late_block_outputs, without_pc1), compute, store)
    without = state.get("cka_without_pc1")
    return PCAnalysis(run, metrics["layers"], state["variance_explained"].numpy(), state["pc_similarity"].numpy(),
                      without.numpy() if without is not None else None)


_PROBE_SETTINGS = ("probe_train_size", "probe_val_size", "probe_epochs", "probe_lrs", "probe_max_features", "test_examples")


def probe_accuracy_key(run: Run, profile: Profile, data) -> dict:
    return run.key(profile, data, "linear probes", **{name: getattr(profile.probes, name) for name in _PROBE_SETTINGS})


def probe_accuracy(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None, device=None) -> list[dict]:
    """Rows (layer, lr, val_acc, test_acc) of linear probes at each residual add and the
    BN before it, trained with the profile's probe settings (``ProbeChapter``)."""
    device = device or profile.device
    probes = profile.probes

    def compute():
        model, _ = train_run(run, profile, data, store, device)
        rows = train_probes(model, data, probe_layers(model), train_size=probes.probe_train_size,
                            val_size=probes.probe_val_size, epochs=probes.probe_epochs, lrs=probes.probe_lrs,
                            max_features=probes.probe_max_features, test_examples=probes.test_examples,
                            seed=run.seed, device=device)
        return {}, {"rows": rows}

    return _cached(probe_accuracy_key(run, profile, data), compute, store)[1]["rows"]


def deletion_accuracy_key(run: Run, profile: Profile, data) -> dict:
    examples = test_count(data, profile.probes.test_examples)
    return run.key(profile, data, "block deletion", examples=examples)


def deletion_accuracy(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None, device=None) -> list[dict]:
    """Rows (stage, deleted, test_acc): test accuracy after deleting the last ``deleted``
    residual blocks of one stage, for every stage and every count (0 is the intact model)."""
    device = device or profile.device
    images, labels = data.test_images[: profile.probes.test_examples], data.test_labels[: profile.probes.test_examples]

    def compute():
        model, _ = train_run(run, profile, data, store, device)
        intact = accuracy(model, images, labels, device)
        rows = []
        for stage in (1, 2, 3):
            rows.append({"stage": stage, "deleted": 0, "test_acc": intact})
            for count in range(1, run.model.units_per_stage + 1):
                pruned = delete_residual_units(model, stage, count)
                rows.append({"stage": stage, "deleted": count, "test_acc": accuracy(pruned, images, labels, device)})
        return {}, {"rows": rows}

    return _cached(deletion_accuracy_key(run, profile, data), compute, store)[1]["rows"]


def deletion_drop(rows: list[dict], stage: int = 3, fraction: float = 0.5) -> tuple[float, int]:
    """Test accuracy lost by deleting the last ``fraction`` of a stage's blocks (at least
    one), from ``deletion_accuracy``'s rows; returns (drop, blocks deleted)."""
    accuracy = {row["deleted"]: row["test_acc"] for row in rows if row["stage"] == stage}
    if not accuracy:
        raise ValueError(f"no deletion results for stage {stage}")
    count = max(1, int(fraction * max(accuracy)))
    return accuracy[0] - accuracy[count], count


def cross_cka_key(run: Run, other: Run, profile: Profile, data) -> dict:
    examples = test_count(data, profile.cka.examples)
    return run.key(profile, data, "cross-model linear CKA", other=other.key(profile, data), cka=profile.cka,
                   examples=examples)


@dataclass(frozen=True)
class CrossCKA:
    cka: np.ndarray  # (L1, L2): layers of the first model (rows) against the second's
    layers: list[str]
    other_layers: list[str]


def cross_cka(run: Run, other: Run, profile: Profile, data: ImageDataset, store: Store | None = None,
              device=None) -> CrossCKA:
    """Minibatch CKA between every layer of ``run``'s model (rows) and every layer of
    ``other``'s (columns), on the profile's CKA test images and protocol; cached."""
    device = device or profile.device
    images = data.test_images[: profile.cka.examples]

    def compute():
        model, _ = train_run(run, profile, data, store, device)
        other_model, _ = train_run(other, profile, data, store, device)
        cka = model_cka(model, images, other=other_model, batch_size=profile.cka.batch_size,
                        passes=profile.cka.passes, seed=run.seed, device=device)
        return {"cka": cka}, {"layers": layer_names(model), "other_layers": layer_names(other_model)}

    state, metrics = _cached(cross_cka_key(run, other, profile, data), compute, store)
    return CrossCKA(state["cka"].numpy(), metrics["layers"], metrics["other_layers"])


def late_pc_rows(runs, late: list, maps: list, threshold: float) -> list[dict]:
    """Fig. D.5's table: for each residual run whose late-stage PCs and heatmap exist,
    PC1's mean share of variance over the block outputs of the last two stages, and the
    run's block size."""
    rows = []
    for run, pcs, heat in zip(runs, late, maps):
        if pcs is None or heat is None or not run.model.residual:
            continue
        rows.append({"model": run.model.name, "training images": train_count(run.train_size), "seed": run.seed,
                     "pc1_variance": float(np.mean(pcs.variance_explained)),
                     "block_fraction": find_block(heat.cka, threshold).fraction})
    return rows


def spearman(table, x: str, y: str) -> float | None:
    """Spearman correlation of two columns (None with fewer than 3 rows)."""
    if len(table) < 3:
        return None
    return float(stats.spearmanr(table[x], table[y]).statistic)


def chapter4_summary(maps: dict, pcs: dict, probes: dict, deletion: dict, d5_rho: float | None, d5_models: int,
                     threshold: float) -> dict:
    """The numbers chapter 4 quotes and judges, each None while its inputs are pending.

    ``maps``, ``pcs``, ``probes``, ``deletion``: {"with a block": ..., "without a block":
    ...} from ``heatmaps.heatmap``, ``first_pcs(without_pc1=True)``, ``probe_accuracy`` and
    ``deletion_accuracy``."""
    with_map, with_pcs = maps.get("with a block"), pcs.get("with a block")
    out: dict = {"d5_rho": d5_rho, "d5_models": d5_models}
    blocks = {kind: find_block(m.cka, threshold) if m is not None else None for kind, m in maps.items()}
    out["block_with"], out["block_without"] = (blocks.get(k) for k in ("with a block", "without a block"))
    if with_map is not None and with_pcs is not None:
        out["variance_in_block"], out["variance_outside_block"] = inside_outside(with_pcs.variance_explained,
                                                                                 blocks["with a block"])
        out["cka_in_block"] = mean_within(with_map.cka, blocks["with a block"])
        out["cka_in_block_without_pc1"] = mean_within(with_pcs.cka_without_pc1, blocks["with a block"])
    if pcs.get("without a block") is not None:
        out["variance_without_block"] = float(np.mean(pcs["without a block"].variance_explained))
    spans = {kind: unit_span(probes[kind], maps[kind].layers[blocks[kind].start:blocks[kind].stop])
             if probes.get(kind) is not None and maps.get(kind) is not None else None for kind in maps}
    out["probe_spans"] = spans
    if probes.get("with a block") is not None and maps.get("with a block") is not None:
        out["gain_inside"] = gain_per_unit(probes["with a block"], spans["with a block"], inside=True)
        out["gain_outside"] = gain_per_unit(probes["with a block"], spans["with a block"], inside=False)
    if probes.get("without a block") is not None:
        rows = probes["without a block"]
        out["gain_no_block"] = gain_per_unit(rows, None, inside=False)
        out["probe_first_stage"], out["probe_last_stage"] = stage_means(rows, "add", (1, 3))
    for kind, key in (("with a block", "drop_with_block"), ("without a block", "drop_without_block")):
        if deletion.get(kind) is not None:
            out[key], out[f"{key}_blocks"] = deletion_drop(deletion[kind], stage=3, fraction=0.5)
    return {k: (float(v) if isinstance(v, (np.floating, float)) and not isinstance(v, bool) else v) for k, v in out.items()}


def chapter4_measured(get, runs: dict, d5_rho: float | None, d5_models: int, threshold: float) -> dict:
    """``chapter4_summary`` of one seed's pair of models, each analysis read or computed
    through ``get`` (``Session.get``): chapter 4 judges its claims over every seed's."""
    measured = [{kind: get(analysis, run, **settings) for kind, run in runs.items()}
                for analysis, settings in ((heatmap, {}), (first_pcs, {"without_pc1": True}), (probe_accuracy, {}),
                                           (deletion_accuracy, {}))]
    return chapter4_summary(*measured, d5_rho, d5_models, threshold)


def stage_means(rows, part: str, stages: tuple[int, ...]) -> tuple[float, ...]:
    """Mean probe test accuracy of the ``part`` layers ("add" or "bn2") of each stage."""
    return tuple(float(np.mean([r["test_acc"] for r in rows if r["layer"].startswith(f"stage{s}.")
                                and r["layer"].endswith("." + part)])) for s in stages)


def seed_rows(pairs, within: list, across: list, threshold: float) -> list[dict]:
    """Chapter 5's table: for each pair of seeds, the block of the first seed (from its
    own heatmap) and the mean cross-seed CKA of each layer with the same layer of the
    other seed, inside the block and outside it (None where pending, NaN without a
    block)."""
    rows = []
    for (a, _), own, cross in zip(pairs, within, across):
        if own is None or cross is None:
            rows.append({"model": a.label, "block_fraction": None, "inside_block": None, "outside_block": None})
            continue
        block = find_block(own.cka, threshold)
        inside, outside = diagonal_inside_outside(cross.cka, block)
        rows.append({"model": a.label, "block_fraction": block.fraction, "inside_block": inside, "outside_block": outside})
    return rows


def architecture_rows(pairs, cross: list, maps_a: list, maps_b: list, threshold: float) -> list[dict]:
    """Fig. E.1's table: accuracies, block sizes and, for each layer of the first model,
    its best match in the second, averaged over layers (pairs with a pending part are
    listed as pending)."""
    rows = []
    for (a, b), c, ma, mb in zip(pairs, cross, maps_a, maps_b):
        if c is None or ma is None or mb is None:
            rows.append({"pair": f"{a.label} / {b.label}", "accuracies": "pending", "blocks": "pending",
                         "max CKA per layer (mean)": float("nan")})
            continue
        rows.append({"pair": f"{a.label} / {b.label}", "accuracies": f"{ma.test_acc:.1%} / {mb.test_acc:.1%}",
                     "blocks": f"{find_block(ma.cka, threshold).fraction:.2f} / {find_block(mb.cka, threshold).fraction:.2f}",
                     "max CKA per layer (mean)": float(c.cka.max(axis=1).mean())})
    return rows


D5_COLUMNS = ("model", "training images", "seed", "pc1_variance", "block_fraction")


def _span(block):
    return (block.start, block.stop) if block is not None else None


@dataclass(frozen=True)
class PCPanel:
    """One row of Fig. 3 (``plots.pc_figure``); its parts are None while pending."""
    name: str  # the model's name
    pcs: PCAnalysis | None  # with cka_without_pc1
    cka: np.ndarray | None  # (L, L) the model's within-model heatmap
    block: tuple[int, int] | None  # (start, stop) of its block in the heatmap


def pc_panels(runs: dict, pcs: dict, maps: dict, threshold: float) -> list[PCPanel]:
    """Fig. 3's rows: each model's PCs, heatmap and block."""
    return [PCPanel(run.model.name, pcs.get(kind), maps[kind].cka if maps.get(kind) is not None else None,
                    _span(find_block(maps[kind].cka, threshold)) if maps.get(kind) is not None else None)
            for kind, run in runs.items()]


@dataclass(frozen=True)
class ProbePanel:
    """One panel of Fig. 4 (``plots.probe_figure``)."""
    title: str
    rows: list[dict] | None  # probe_accuracy's rows; None while pending
    block: tuple[int, int] | None  # (first, last) residual block inside the measured block


def probe_panels(runs: dict, probes: dict, spans: dict) -> list[ProbePanel]:
    """Fig. 4's panels."""
    return [ProbePanel(f"{run.model.name} ({kind})", probes.get(kind), spans.get(kind)) for kind, run in runs.items()]


@dataclass(frozen=True)
class DeletionPanel:
    """One panel of Fig. 5 (``plots.deletion_figure``)."""
    title: str
    rows: list[dict] | None  # deletion_accuracy's rows; None while pending


def deletion_panels(runs: dict, deletion: dict) -> list[DeletionPanel]:
    """Fig. 5's panels."""
    return [DeletionPanel(f"{run.model.name} ({kind})", deletion.get(kind)) for kind, run in runs.items()]


@dataclass(frozen=True)
class SeedPairPanel:
    """One row of Fig. 6 (``plots.seed_pairs_figure``): seed a against itself and against
    seed b."""
    label: str  # the architecture
    seeds: tuple[int, int]  # (a, b)
    within: Heatmap | None  # seed a's heatmap; None while pending
    cross: CrossCKA | None  # seed a (rows) against seed b; None while pending


def seed_pair_panels(pairs, within: list, across: list) -> list[SeedPairPanel]:
    """Fig. 6's rows, from ``fig6_pairs`` and the heatmaps and cross-seed CKA of each pair."""
    return [SeedPairPanel(a.label, (a.seed, b.seed), own, cross) for (a, b), own, cross in zip(pairs, within, across)]


@dataclass(frozen=True)
class ArchitecturePanel:
    """One panel of Fig. E.1 (``plots.cross_architecture_figure``)."""
    cross: CrossCKA | None  # the first model (rows) against the second; None while pending
    xlabel: str  # the second model, with its test accuracy where known
    ylabel: str  # the first model, likewise


def architecture_panels(pairs, cross: list, maps_a: list, maps_b: list) -> list[ArchitecturePanel]:
    """Fig. E.1's panels: the cross-model CKA, each axis labelled with its model and test
    accuracy."""
    def label(run, heat):
        return f"{run.model.name} ({heat.test_acc:.0%})" if heat is not None else run.model.name

    return [ArchitecturePanel(c, label(b, mb), label(a, ma)) for (a, b), c, ma, mb in zip(pairs, cross, maps_a, maps_b)]
