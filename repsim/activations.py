"""Capture what named modules return, with forward hooks: the one capture mechanism.

A layer is a module of the model, named as ``model.named_modules()`` names it (every
analysed layer of ``repsim.models.ResNet`` is one: ``repsim.models.layer_names``). A
forward hook sees exactly what the module returns, containers included, and keeps it
the moment the module returns: a clone, so that an in-place op later in the forward pass
(``ReLU(inplace=True)``, ``out += x``) cannot change it, or whatever ``reduce`` makes of
it (``repsim.compare`` keeps only each layer's Gram). A module that runs more than once
per forward pass, or returns something other than a tensor, is refused by name rather
than captured ambiguously.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import torch
from torch import nn


class ActivationCapture:
    """Runs ``model`` in eval mode and returns ``{name: tensor}`` for ``layers``.

    Activations are flattened per example, ``(n, features)``, as the paper analyses them,
    unless ``flatten=False``. ``reduce(name, activation)``, if given, replaces each
    (flattened) activation by what it returns, computed inside the hook, so the
    activation itself is never kept.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], flatten: bool = True,
                 reduce: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> None:
        if isinstance(layers, str):  # list("fc") would ask for layers "f" and "c"
            raise TypeError(f"layers must be a list of layer names, got the string {layers!r}; use [{layers!r}]")
        layers = list(layers)
        if not layers:
            raise ValueError("layers is empty: name at least one layer to capture")
        bad = [name for name in layers if not isinstance(name, str)]
        if bad:
            raise TypeError(f"layers must be strings (layer names), got {bad[:3]}")
        if len(set(layers)) != len(layers):
            duplicates = sorted({name for name in layers if layers.count(name) > 1})
            raise ValueError(f"layers contains duplicate names: {duplicates}")
        modules = {name: module for name, module in model.named_modules() if name}
        unknown = [name for name in layers if name not in modules]
        if unknown:
            hints = "; ".join(f"{name!r}{_suggest(name, list(modules))}" for name in unknown[:5])
            raise KeyError(f"unknown layer name(s) for {type(model).__name__}: {hints}. Layers are the model's "
                           f"modules (model.named_modules()), which start with {list(modules)[:6]}")
        self.model, self.layers, self.flatten, self.reduce = model, layers, flatten, reduce
        self.modules = [modules[name] for name in layers]

    def _hook(self, name: str, out: dict, calls: dict):
        def hook(_module, _inputs, output):
            calls[name] += 1
            if calls[name] > 1:
                return  # reported after the pass, with the count
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns a {type(output).__name__}, not a tensor; capture one of the "
                                "modules inside it instead")
            act = output.detach()
            if self.flatten and act.dim() > 1:
                act = act.flatten(1)
            out[name] = self.reduce(name, act) if self.reduce is not None else act.clone()

        return hook

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        calls = dict.fromkeys(self.layers, 0)
        handles = [m.register_forward_hook(self._hook(name, out, calls)) for name, m in zip(self.layers, self.modules)]
        # BN in inference mode, as in the paper; the caller's modes are put back.
        modes = {module: module.training for module in self.model.modules()}
        try:
            self.model.eval()(x)
        finally:
            for handle in handles:
                handle.remove()
            for module, training in modes.items():
                module.training = training
        twice = {name: count for name, count in calls.items() if count > 1}
        if twice:
            raise ValueError(f"layer(s) {twice} run more than once per forward pass, so their names are ambiguous; "
                             "capture the modules around them instead")
        never = [name for name, count in calls.items() if count == 0]
        if never:
            raise ValueError(f"layer(s) {never} did not run in the forward pass")
        return {name: out[name] for name in self.layers}


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def capture(model: nn.Module, x: torch.Tensor, layers: Sequence[str], flatten: bool = True) -> dict[str, torch.Tensor]:
    """One-off capture of ``layers`` for the batch ``x``; see ``ActivationCapture``."""
    return ActivationCapture(model, layers, flatten=flatten)(x)
