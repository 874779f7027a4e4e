"""CKA between the layers of trained models over a data set: capture, then accumulate.

This is the glue between ``activations`` (which knows models) and ``cka`` (which knows
only tensors): stream minibatches of test images through the model(s) and feed a
``MinibatchCKA``. Each layer's Gram is computed in the capture's forward hook the moment
the layer returns (``GramCapture``), so no activation is kept: memory holds one layer's
activations and the (n, n) Grams, not every layer of the batch. Several minibatches go
through the model at once and each layer's Grams of all of them are one batched
product. A batch whose Grams hold NaN or Inf is captured again as activations, so that
the error names the layer, or an overflowed Gram is recomputed from rescaled features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from .activations import ActivationCapture
from .cka import GramMaker, MinibatchCKA, NonFiniteGramError
from .data import to_float
from .devices import resolve as resolve_device
from .models import layer_names


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
    group: int | None = None,
) -> torch.Tensor:
    """All-pairs minibatch CKA of ``model``'s layers (or ``model`` against ``other``).

    ``transform(layer, activations)``, if given, edits ``model``'s flattened
    activations of each batch before they enter CKA (e.g. to project a direction out).

    images: uint8 (N, 3, 32, 32). Each pass shuffles the images (seeded) and splits them
    into minibatches of ``batch_size``; a last batch smaller than 4 is dropped, since
    the unbiased estimator needs 4 examples. Up to ``group`` consecutive minibatches of
    one size go through the model in one forward pass, and each layer's Grams of all of
    them are one batched product: the same minibatches and the same sums, in a fraction
    of the kernel launches (None: ``forward_group(device)``). Returns a float64 (L, L) or
    (L1, L2) matrix.
    """
    device = resolve_device(device)
    group = forward_group(device) if group is None else group
    layers = list(layers) if layers is not None else layer_names(model)
    capture, grams = ActivationCapture(model.to(device), layers), GramCapture(model, layers, transform)
    if other is not None:
        other_layers = list(other_layers) if other_layers is not None else layer_names(other)
        other_capture, other_grams = ActivationCapture(other.to(device), other_layers), GramCapture(other, other_layers)
    accumulator = MinibatchCKA(layers, other_layers if other is not None else None, unbiased=unbiased)
    batches = minibatches(len(images), batch_size, passes, seed)
    if not batches:
        raise ValueError(
            f"images holds {len(images)} image(s) and batch_size is {batch_size}: the unbiased HSIC estimator "
            "needs batches of at least 4 images"
        )
    images = images.to(device)  # uint8, once (10,000 CIFAR images: 30 MB); batches are indexed there
    for chunk in tqdm(group_batches(batches, group), desc="CKA", disable=not progress, leave=False):
        # float32 forward (no bf16 autocast): CKA should see the activations at full precision
        x = to_float(images[torch.cat(chunk).to(device)])
        try:
            accumulator.update_grams(grams(x, len(chunk)), other_grams(x, len(chunk)) if other is not None else None)
            continue
        except NonFiniteGramError:
            pass  # these batches again, through the activations: names the layer, or rescales
        for part in x.split(len(chunk[0])):
            acts = capture(part)
            if transform is not None:
                acts = {name: transform(name, act) for name, act in acts.items()}
            accumulator.update(acts, other_capture(part) if other is not None else None)
    return accumulator.compute()


def minibatches(n: int, batch_size: int, passes: int, seed: int = 0) -> list[torch.Tensor]:
    """The minibatches of ``model_cka``: each pass a seeded shuffle of ``n`` images cut
    into batches of ``batch_size``; batches under 4 images (too few for the unbiased
    estimator) dropped."""
    generator = torch.Generator().manual_seed(seed)
    batches = [order[i : i + batch_size] for order in (torch.randperm(n, generator=generator) for _ in range(passes))
               for i in range(0, n, batch_size)]
    return [batch for batch in batches if len(batch) >= 4]


def forward_group(device: torch.device) -> int:
    """Minibatches per forward pass: 8 on a GPU, where fewer launches pay; 1 on a CPU,
    where one minibatch's activations stay in cache (25% faster than 8 for ResNet-20 on
    2 cores, benchmarks/README.md)."""
    return 8 if device.type == "cuda" else 1


def group_batches(batches: list[torch.Tensor], group: int) -> list[list[torch.Tensor]]:
    """Consecutive minibatches of one size, at most ``group`` at a time."""
    chunks: list[list[torch.Tensor]] = []
    for batch in batches:
        if chunks and len(chunks[-1]) < group and len(chunks[-1][0]) == len(batch):
            chunks[-1].append(batch)
        else:
            chunks.append([batch])
    return chunks


def collect_activations(
    model: nn.Module, images: torch.Tensor, layers: Sequence[str], batch_size: int = 500, device=None,
    keep_on_device: bool = False,
) -> dict[str, torch.Tensor]:
    """Flattened float32 activations {layer: (N, features)} of ``layers`` for all
    ``images``: on the CPU, or with ``keep_on_device`` where they were computed (no round
    trip through host memory for a caller that goes on computing there). Each batch is
    written into its rows of one preallocated tensor per layer."""
    device = resolve_device(device)
    capture = ActivationCapture(model.to(device), layers)
    home = device if keep_on_device else torch.device("cpu")
    images = images.to(device)  # uint8, once: no copy from host memory between batches
    out: dict[str, torch.Tensor] = {}
    for start in range(0, len(images), batch_size):
        for name, act in capture(to_float(images[start : start + batch_size])).items():
            if name not in out:
                out[name] = torch.empty(len(images), act.shape[1], dtype=torch.float32, device=home)
            out[name][start : start + len(act)].copy_(act)
    return out


class GramCapture:
    """``{layer: batch_gram}`` for one forward pass, computed in the capture's hooks: (n, n)
    per layer, or (batches, n, n) when the input holds several minibatches of n images
    one after the other. ``transform(layer, activations)`` edits each layer's flattened
    activations first; ``tokens`` is ``ActivationCapture``'s."""

    def __init__(self, model: nn.Module, layers: Sequence[str], transform: Callable | None = None,
                 tokens: str = "flatten") -> None:
        self.transform, self.batches, self.make_gram = transform, 1, GramMaker()
        # A layer that returns another's very tensor (an identity shortcut) shares its
        # Gram, unless a transform edits the layers one by one.
        self.capture = ActivationCapture(model, layers, reduce=self._gram, tokens=tokens, reuse=transform is None)

    def _gram(self, name: str, act: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            act = self.transform(name, act)
        grams = self.make_gram(name, act.unflatten(0, (self.batches, -1)))
        return grams if self.batches > 1 else grams[0]

    def __call__(self, x: torch.Tensor, batches: int = 1) -> dict[str, torch.Tensor]:
        self.batches = batches
        return self.capture(x)
