"""Linear probes on a frozen model's layers (Sec. 4, Fig. 4).

Every probe is a linear classifier on one layer's flattened activation. All of them
train at once: each minibatch goes through the frozen model a single time, and every
probe (one per layer and learning rate) takes a step on its layer's features. Features
are never stored, so any depth and width fit in memory.

The learning rate of each layer's probe is chosen on held-out training images; the
accuracy reported is on the test set, which played no part in the choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .activations import ActivationCapture
from .data import ImageDataset, to_float
from .devices import resolve as resolve_device
from .models import ResNet


def probe_layers(model: ResNet) -> list[str]:
    """The layers the paper probes: each residual add and the BN just before it."""
    if not model.config.residual:
        raise ValueError(f"{model.config.name} has no residual adds to probe")
    return [f"stage{s}.block{b}.{part}" for s in (1, 2, 3) for b in range(model.config.units_per_stage)
            for part in ("bn2", "add")]


def _pooled(act: torch.Tensor, max_features: int | None) -> torch.Tensor:
    """Flatten (n, C, H, W); halve H and W by average pooling until within ``max_features``."""
    if act.ndim == 4 and max_features is not None:
        while act[0].numel() > max_features and act.shape[-1] > 1:
            act = F.avg_pool2d(act, 2)
    return act.flatten(1)


class _Probes(nn.Module):
    """One linear head per (layer, learning rate), on standardised features.

    Layers of one width (all the probed layers of a stage) are stacked, so a minibatch
    takes one batched product per width and learning rate instead of one small product
    per layer: the same probes, each with its own weights, in a few dozen kernel launches.
    """

    def __init__(self, dims: dict[str, int], classes: int, lrs: Sequence[float]) -> None:
        super().__init__()
        self.layers = list(dims)
        self.lrs = list(lrs)
        self.groups = {}  # width -> layer names of that width, in order
        for name, dim in dims.items():
            self.groups.setdefault(dim, []).append(name)
        self.weight = nn.ParameterDict()
        self.bias = nn.ParameterDict()
        for dim, names in self.groups.items():
            for i in range(len(self.lrs)):
                bound = 1 / dim**0.5  # nn.Linear's initialisation
                self.weight[f"{dim}_{i}"] = nn.Parameter(torch.empty(len(names), dim, classes).uniform_(-bound, bound))
                self.bias[f"{dim}_{i}"] = nn.Parameter(torch.empty(len(names), 1, classes).uniform_(-bound, bound))
            self.register_buffer(f"mean_{dim}", torch.zeros(len(names), 1, dim))
            self.register_buffer(f"scale_{dim}", torch.ones(len(names), 1, dim))

    def params_for(self, lr_index: int) -> list[nn.Parameter]:
        return [p for dim in self.groups for p in (self.weight[f"{dim}_{lr_index}"], self.bias[f"{dim}_{lr_index}"])]

    def set_standardisation(self, feats: dict[str, torch.Tensor]) -> None:
        for dim, names in self.groups.items():
            stacked = torch.stack([feats[name] for name in names])  # (layers, n, dim)
            getattr(self, f"mean_{dim}").copy_(stacked.mean(1, keepdim=True))
            getattr(self, f"scale_{dim}").copy_(stacked.std(1, keepdim=True).clamp_min(1e-6))

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[int, list[torch.Tensor]]:
        """{width: [logits (layers, n, classes) for each learning rate]}."""
        out = {}
        for dim, names in self.groups.items():
            x = (torch.stack([feats[name] for name in names]) - getattr(self, f"mean_{dim}")) / getattr(self, f"scale_{dim}")
            out[dim] = [torch.baddbmm(self.bias[f"{dim}_{i}"], x, self.weight[f"{dim}_{i}"]) for i in range(len(self.lrs))]
        return out


def train_probes(
    model: ResNet,
    data: ImageDataset,
    layers: Sequence[str] | None = None,
    train_size: int = 45_000,
    val_size: int = 5_000,
    epochs: int = 10,
    batch_size: int = 256,
    lrs: Sequence[float] = (1e-3, 1e-2),
    max_features: int | None = None,
    test_examples: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> list[dict]:
    """Train a linear probe (Adam, cross-entropy) on each of ``layers`` of the frozen
    ``model`` and return one row per layer.

    Probes fit the first ``train_size`` training images and pick their learning rate
    from ``lrs`` on the next ``val_size``; rows give the validation accuracy of that
    choice and its accuracy on the first ``test_examples`` test images (None: all).
    Layers wider than ``max_features`` are average-pooled 2x2 until they fit (None: never).
    """
    layers = list(layers) if layers is not None else probe_layers(model)
    if train_size < 1 or val_size < 1:
        raise ValueError(f"train_size and val_size must be >= 1, got {train_size} and {val_size}")
    available = len(data.train_labels)
    if train_size + val_size > available:
        raise ValueError(f"train_size + val_size = {train_size + val_size:,} exceeds the {available:,} training images")
    if epochs < 1 or not lrs:
        raise ValueError("epochs must be >= 1 and lrs non-empty")
    device = resolve_device(device)
    model = model.to(device).eval()
    capture = ActivationCapture(model, layers, flatten=False)

    def features(images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {n: _pooled(a, max_features) for n, a in capture(to_float(images.to(device))).items()}

    fit_images, fit_labels = data.train_images[:train_size], data.train_labels[:train_size]
    first = features(fit_images[: min(train_size, 1024)])
    probes = _Probes({n: f.shape[1] for n, f in first.items()}, data.num_classes, lrs).to(device)
    probes.set_standardisation(first)
    del first
    optimizer = torch.optim.Adam([{"params": probes.params_for(i), "lr": lr} for i, lr in enumerate(lrs)])
    generator = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="probes", disable=not progress, leave=False):
        order = torch.randperm(train_size, generator=generator)
        for start in range(0, train_size, batch_size):
            idx = order[start : start + batch_size]
            labels = fit_labels[idx].to(device)
            outputs = probes(features(fit_images[idx]))
            # Each probe's own mean loss, summed: every probe gets its own gradient.
            loss = sum(F.cross_entropy(logits.flatten(0, 1), labels.repeat(len(logits)), reduction="sum") / len(labels)
                       for heads in outputs.values() for logits in heads)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    val = slice(train_size, train_size + val_size)
    val_acc = _accuracies(probes, features, data.train_images[val], data.train_labels[val], batch_size)
    test = slice(0, test_examples)
    test_acc = _accuracies(probes, features, data.test_images[test], data.test_labels[test], batch_size)
    rows = []
    for name in layers:
        best = max(range(len(lrs)), key=lambda i: val_acc[name][i])
        rows.append({"layer": name, "lr": lrs[best], "val_acc": val_acc[name][best], "test_acc": test_acc[name][best]})
    return rows


@torch.no_grad()
def _accuracies(probes: _Probes, features, images, labels, batch_size) -> dict[str, list[float]]:
    correct = {name: torch.zeros(len(probes.lrs)) for name in probes.layers}
    for start in range(0, len(labels), batch_size):
        target = labels[start : start + batch_size]
        for dim, heads in probes(features(images[start : start + batch_size])).items():
            for i, logits in enumerate(heads):
                hits = (logits.argmax(2).cpu() == target).sum(1)  # (layers,)
                for name, count in zip(probes.groups[dim], hits):
                    correct[name][i] += count
    return {name: (c / len(labels)).tolist() for name, c in correct.items()}


def unit_span(rows: Sequence[dict], block_layers) -> tuple[int, int] | None:
    """(first, last) residual unit, counted over the probed adds of ``rows`` (from
    ``run_analyses.probe_accuracy``), whose add is one of ``block_layers``; None if none is."""
    inside = set(block_layers)
    adds = [row["layer"] for row in rows if row["layer"].endswith(".add")]
    hits = [i for i, name in enumerate(adds) if name in inside]
    return (min(hits), max(hits)) if hits else None


def gain_per_unit(rows: Sequence[dict], span: tuple[int, int] | None, inside: bool) -> float:
    """Mean change in post-add probe accuracy from one residual unit to the next, over
    the steps inside ``span`` (from ``unit_span``) or over all other steps; NaN if none."""
    accuracies = [row["test_acc"] for row in rows if row["layer"].endswith(".add")]
    steps = [b - a for a, b in zip(accuracies, accuracies[1:])]
    # Step i goes from unit i to unit i + 1; it is inside when both ends are.
    in_span = [span is not None and span[0] <= i < span[1] for i in range(len(steps))]
    chosen = [step for step, flag in zip(steps, in_span) if flag == inside]
    return sum(chosen) / len(chosen) if chosen else float("nan")
