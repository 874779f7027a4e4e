"""Layer-by-layer CKA of any PyTorch model, or of two models side by side.

    from repsim.similarity import similarity
    result = similarity(model, images)                 # every leaf module of one model
    result = similarity(model, images, other=model2)   # rows: model, columns: model2
    result.plot(); result.save("cka.csv")

The estimator is the paper's minibatch CKA (Nguyen et al. 2021): the unbiased HSIC_1
(Song et al. 2012) of every pair of layers, summed over minibatches of ``batch_size``
examples, then HSIC_xy / sqrt(HSIC_xx HSIC_yy). Every minibatch counts (a last one of
fewer than 4 examples, which the unbiased estimator cannot use, is dropped); Grams are
float32 and centred as ``repsim.cka.GramMaker`` says, and the sums are float64, so the
result agrees with a float64 reference to about 1e-8 (``tests/test_similarity.py``
holds it to 1e-6). Layers are
chosen as ``repsim.similarity.layers`` says: by name, by module type, by torchvision's
graph node names, or every leaf module. See ``python -m repsim.similarity --help`` for
the command.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..activations import TOKENS
from ..cka import MinibatchCKA, NonFiniteGramError
from ..compare import forward_group, group_batches, minibatches
from ..data import to_float
from ..devices import resolve as resolve_device
from .layers import Choice, LayerReader, Selection, choose_layers
from .result import Similarity

__all__ = ["similarity", "Similarity", "NonFiniteActivationError", "MIN_BATCH"]

MIN_BATCH = 4  # the unbiased HSIC estimator needs n >= 4 examples in a minibatch
PROBE_EXAMPLES = 5  # examples of the one forward pass that chooses the layers


class NonFiniteActivationError(ValueError):
    """A layer produced NaN or Inf: which layer, of which model, in which minibatch."""


def similarity(
    model: nn.Module,
    inputs,
    layers: Selection = None,
    other: nn.Module | None = None,
    other_layers: Selection = None,
    *,
    other_inputs=None,
    batch_size: int = 256,
    passes: int = 1,
    tokens: str = "flatten",
    unbiased: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    names: tuple[str, str] | None = None,
) -> Similarity:
    """Minibatch CKA between every pair of ``layers`` of ``model``, or between ``layers``
    of ``model`` (rows) and ``other_layers`` of ``other`` (columns).

    inputs: a tensor (N, ...) of what the model takes (uint8 images are scaled to
    [0, 1] as ``repsim.data.to_float`` does; anything else is passed as it is), or a
    map-style dataset whose items are an input or an (input, label, ...) tuple.
    ``other_inputs`` gives ``other`` its own view of the same N examples (another
    resolution, say); by default both models see ``inputs``.

    Each pass shuffles the examples (seeded) into minibatches of ``batch_size``.
    ``tokens`` says what a (batch, tokens, features) output becomes per example:
    ``"flatten"`` (all tokens, as convolution maps are flattened) or ``"mean"`` (the
    average over tokens); the choice is recorded in the result. The models are moved to
    ``device`` (None: a GPU if there is one) and run in eval mode under
    ``torch.no_grad``; their training flags are put back afterwards. ``names``
    labels the models in the result (default: their class names).
    """
    _check_settings(batch_size, passes, tokens, seed)
    if other is None and (other_layers is not None or other_inputs is not None):
        raise ValueError("other_layers or other_inputs given without other: pass the second model as other=")
    examples = Examples(inputs, "inputs")
    other_examples = examples if other_inputs is None else Examples(other_inputs, "other_inputs")
    if len(other_examples) != len(examples):
        raise ValueError(f"the two models are given different numbers of examples: inputs has {len(examples)}, "
                         f"other_inputs {len(other_examples)}; CKA compares the same examples through both")
    if len(examples) < MIN_BATCH:
        raise ValueError(f"inputs holds {len(examples)} example(s): the unbiased HSIC estimator needs at least "
                         f"{MIN_BATCH} per minibatch")
    device = resolve_device(device)
    probe = torch.arange(min(len(examples), PROBE_EXAMPLES))
    choice = choose_layers(model.to(device), layers, examples.batch(probe).to(device), "model")
    readers = [LayerReader(model, choice, tokens)]
    other_choice: Choice | None = None
    if other is not None:
        other_choice = choose_layers(other.to(device), other_layers, other_examples.batch(probe).to(device), "other model")
        readers.append(LayerReader(other, other_choice, tokens))

    labels = names or (type(model).__name__, type(other).__name__)
    if labels[1] == labels[0]:
        labels = (labels[0], f"{labels[1]} (other)")
    accumulator = MinibatchCKA(choice.names, other_choice.names if other_choice else None, unbiased=unbiased)
    batches = minibatches(len(examples), batch_size, passes, seed)
    done, bar = 0, tqdm(total=len(batches), desc="CKA", unit="batch", disable=not progress)
    for chunk in group_batches(batches, forward_group(device)):
        index = torch.cat(chunk)
        xs = [examples.batch(index).to(device)]
        if other is not None:
            xs.append(xs[0] if other_examples is examples else other_examples.batch(index).to(device))
        try:
            accumulator.update_grams(*(reader.grams(x, len(chunk)) for reader, x in zip(readers, xs)))
        except NonFiniteGramError:
            # These minibatches again, one at a time, through the activations: a layer with
            # NaN or Inf is named with its minibatch; an overflowed Gram is rescaled.
            for part, batch in enumerate(chunk):
                parts = [x.split(len(chunk[0]))[part] for x in xs]
                acts = [reader.activations(x) for reader, x in zip(readers, parts)]
                for which, found in zip(("model", "other model"), acts):
                    _check_finite(found, which, done + part, len(batches), batch, len(examples), passes)
                accumulator.update(*acts)
        done += len(chunk)
        bar.update(len(chunk))
    bar.close()
    return Similarity(
        cka=accumulator.compute().numpy(), layers=choice.names, other_layers=other_choice.names if other_choice else None,
        model=labels[0], other=labels[1] if other is not None else None,
        examples=len(examples), batch_size=batch_size, passes=passes, unbiased=unbiased, tokens=tokens,
        notes=_notes(accumulator, choice, other_choice),
    )


def _check_settings(batch_size: int, passes: int, tokens: str, seed: int) -> None:
    for name, value, least in (("batch_size", batch_size, MIN_BATCH), ("passes", passes, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
        if value < least:
            why = " (the unbiased HSIC estimator needs n >= 4 examples in each minibatch)" if name == "batch_size" else ""
            raise ValueError(f"{name} must be at least {least}, got {value}{why}")
    if tokens not in TOKENS:
        raise ValueError(f"tokens must be one of {TOKENS}, got {tokens!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")


class Examples:
    """The examples as the models take them, gathered by index: from a tensor (uint8
    images scaled to [0, 1]) or from a map-style dataset (the first element of tuple
    items, stacked)."""

    def __init__(self, source, what: str) -> None:
        if isinstance(source, np.ndarray):
            source = torch.from_numpy(source)
        if isinstance(source, torch.Tensor):
            if source.dim() == 0:
                raise ValueError(f"{what} is a scalar; give a tensor with one row per example")
        elif not (hasattr(source, "__getitem__") and hasattr(source, "__len__")):
            raise TypeError(f"{what} must be a tensor, a numpy array or a map-style dataset (with __getitem__ and "
                            f"__len__), got {type(source).__name__}")
        self.source, self.what = source, what

    def __len__(self) -> int:
        return len(self.source)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        if isinstance(self.source, torch.Tensor):
            x = self.source[index]
        else:
            items = [self.source[int(i)] for i in index]
            items = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
            x = torch.stack([torch.as_tensor(item) for item in items])
        return to_float(x) if x.dtype == torch.uint8 else x


def _check_finite(acts: dict[str, torch.Tensor], which: str, batch_number: int, batches: int, index: torch.Tensor,
                  examples: int, passes: int) -> None:
    for name, act in acts.items():
        finite = torch.isfinite(act).all(dim=1)
        if not finite.all():
            bad = index[~finite.cpu()].tolist()
            rounds = f", pass {batch_number // (batches // passes) + 1} of {passes}" if passes > 1 else ""
            raise NonFiniteActivationError(
                f"layer {name!r} of the {which} has NaN or Inf activations in minibatch {batch_number + 1} of "
                f"{batches}{rounds}, for {len(bad)} of its examples (indices into the {examples} inputs: {bad[:8]})")


def _notes(accumulator: MinibatchCKA, choice: Choice, other_choice: Choice | None) -> list[str]:
    notes = []
    for picked, which in ((choice, "model"), (other_choice, "other model")):
        if picked is not None and picked.skipped:
            left = "; ".join(f"{name} ({why})" for name, why in list(picked.skipped.items())[:4])
            more = f" and {len(picked.skipped) - 4} more" if len(picked.skipped) > 4 else ""
            notes.append(f"{len(picked.skipped)} leaf call(s) of the {which} left out: {left}{more}")
    names = choice.names + (other_choice.names if other_choice else [])
    self_hsic = accumulator.hsic_.diagonal().cpu()
    empty = [name for name, value in zip(names, self_hsic.tolist()) if value <= 0]
    if empty:
        notes.append(f"{len(empty)} layer(s) have no positive self-HSIC (constant over the examples, or too few "
                     f"examples), so their CKA with every layer is 0: {empty[:5]}")
    cka = accumulator.compute()
    negative = int((cka < 0).sum())
    if negative:
        notes.append(f"{negative} value(s) are negative (lowest {cka.min().item():.2g}): the unbiased estimator is "
                     "unbiased, not non-negative, so unrelated layers can score slightly below 0; kept, not clamped")
    return notes
