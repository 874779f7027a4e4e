"""CKA between the layers of trained models over a data set: capture, then accumulate.

This is the glue between ``activations`` (which knows models) and ``cka`` (which knows
only tensors): stream minibatches of test images through the model(s), capture every
layer, and feed a ``MinibatchCKA``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from .activations import ActivationCapture
from .cka import MinibatchCKA
from .data import to_float
from .models import layer_names
from .train import resolve_device


def model_cka(
    model: nn.Module,
    images: torch.Tensor,
    other: nn.Module | None = None,
    layers: Sequence[str] | None = None,
    other_layers: Sequence[str] | None = None,
    batch_size: int = 256,
    passes: int = 1,
    unbiased: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """All-pairs minibatch CKA of ``model``'s layers (or ``model`` against ``other``).

    ``transform(layer, activations)``, if given, edits ``model``'s flattened
    activations of each batch before they enter CKA (e.g. to project a direction out).

    images: uint8 (N, 3, 32, 32). Each pass shuffles the images (seeded) and splits them
    into minibatches of ``batch_size``; a last batch smaller than 4 is dropped, since
    the unbiased estimator needs 4 examples. Returns a float64 (L, L) or (L1, L2) matrix.
    """
    device = resolve_device(device)
    layers = list(layers) if layers is not None else layer_names(model)
    capture = ActivationCapture(model.to(device), layers)
    if other is not None:
        other_layers = list(other_layers) if other_layers is not None else layer_names(other)
        other_capture = ActivationCapture(other.to(device), other_layers)
    accumulator = MinibatchCKA(layers, other_layers if other is not None else None, unbiased=unbiased)
    generator = torch.Generator().manual_seed(seed)
    batches = [
        order[i : i + batch_size]
        for order in (torch.randperm(len(images), generator=generator) for _ in range(passes))
        for i in range(0, len(images), batch_size)
    ]
    batches = [b for b in batches if len(b) >= 4]
    for idx in tqdm(batches, desc="CKA", disable=not progress, leave=False):
        # float32 forward (no bf16 autocast): CKA should see the activations at full precision
        x = to_float(images[idx].to(device))
        acts = capture(x)
        if transform is not None:
            acts = {name: transform(name, act) for name, act in acts.items()}
        accumulator.update(acts, other_capture(x) if other is not None else None)
    return accumulator.compute()


def collect_activations(
    model: nn.Module, images: torch.Tensor, layers: Sequence[str], batch_size: int = 500, device=None
) -> dict[str, torch.Tensor]:
    """Flattened activations {layer: (N, features)} of ``layers`` for all ``images``, on CPU."""
    device = resolve_device(device)
    capture = ActivationCapture(model.to(device), layers)
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for start in range(0, len(images), batch_size):
        for name, act in capture(to_float(images[start : start + batch_size].to(device))).items():
            chunks[name].append(act.float().cpu())
    return {name: torch.cat(parts) for name, parts in chunks.items()}
