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

from .compare import model_cka
from .data import ImageDataset
from .grid import train_run
from .models import delete_blocks, layer_names, stage_of
from .pca import cka_without_first_pc, layer_pcs, pc_cosine_similarity
from .probes import probe_layers, train_probes
from .profiles import Profile
from .runs import Run
from .store import Store
from .train import accuracy

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
    examples = min(profile.probes.pc_examples or 10**9, _test_size(data))
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
    examples = min(profile.probes.test_examples or 10**9, _test_size(data))
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
            for count in range(1, run.model.blocks_per_stage + 1):
                pruned = delete_blocks(model, stage, count)
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
    examples = min(profile.cka.examples or 10**9, _test_size(data))
    return run.key(profile, data, "cross-model linear CKA", other=other.key(profile, data), cka=profile.cka,
                   examples=examples)


def cross_cka(run: Run, other: Run, profile: Profile, data: ImageDataset, store: Store | None = None,
              device=None) -> tuple[np.ndarray, list[str], list[str]]:
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
    return state["cka"].numpy(), metrics["layers"], metrics["other_layers"]


def _test_size(data) -> int:
    """Test images of ``data`` (10,000 when only a fingerprint is at hand, as for CIFAR)."""
    return len(data.test_labels) if hasattr(data, "test_labels") else 10_000
