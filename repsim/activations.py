"""Capture what named modules return, with forward hooks: the one capture mechanism.

A layer is a module of the model, named as ``model.named_modules()`` names it (every
analysed layer of ``repsim.models.ResNet`` is one: ``repsim.models.layer_names``), with
two additions for models that are not the paper's:

- ``name_k`` is the module's (k+1)-th call in one forward pass and ``name`` its first,
  as torchvision's feature extraction (``get_graph_node_names``) names them: the ReLU
  that torchvision's ``BasicBlock`` calls twice is ``layer1.0.relu`` and
  ``layer1.0.relu_1``;
- ``name[i]`` or ``name[key]`` is one element of a module that returns a tuple or a
  dict (``self_attn[0]``: ``nn.MultiheadAttention``'s output without its weights).

A forward hook sees exactly what the module returns and keeps it the moment the module
returns: a clone, so that an in-place op later in the forward pass (``ReLU(inplace=True)``,
``out += x``) cannot change it, or whatever ``reduce`` makes of it (``repsim.compare``
keeps only each layer's Gram). Each example's activations are flattened, as the paper
does with convolution maps; a (batch, tokens, features) output is flattened or averaged
over its tokens (``tokens``), and a (tokens, batch, features) one, as
``nn.TransformerEncoder`` returns without ``batch_first``, is read batch first. A layer
that returns something other than a tensor, or a call that never happens, is refused by
name rather than captured ambiguously.
"""

from __future__ import annotations

import difflib
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

TOKENS = ("flatten", "mean")  # what a (batch, tokens, features) output becomes per example


@dataclass(frozen=True)
class Site:
    """Where a layer is read: a module, which of its calls in one forward pass, and which
    element of what it returns (None: the output itself, which must be a tensor)."""

    module: str
    call: int = 0
    element: int | str | None = None


def parse_layer(name: str, modules: Mapping[str, nn.Module]) -> Site | None:
    """The ``Site`` a layer name means among ``modules`` (by name), or None."""
    base, element = name, None
    indexed = re.fullmatch(r"(.+)\[([^\[\]]+)\]", name)
    if indexed:
        base, key = indexed.groups()
        element = int(key) if re.fullmatch(r"-?\d+", key) else key
    if base in modules:
        return Site(base, 0, element)
    repeated = re.fullmatch(r"(.+)_(\d+)", base)
    if repeated and repeated.group(1) in modules:
        return Site(repeated.group(1), int(repeated.group(2)), element)
    return None


def call_name(module: str, call: int) -> str:
    """The layer name of a module's (call+1)-th call, as torchvision names graph nodes."""
    return module if call == 0 else f"{module}_{call}"


def per_example(act: torch.Tensor, examples: int, name: str, tokens: str = "flatten") -> torch.Tensor:
    """A layer's output as (examples, features): batch first, tokens reduced, flattened."""
    if act.dim() >= 2 and act.shape[0] != examples and act.shape[1] == examples:
        act = act.transpose(0, 1)  # (tokens, batch, ...), as sequence-first transformers return
    if act.dim() == 0 or act.shape[0] != examples:
        raise ValueError(f"layer {name!r} returns shape {tuple(act.shape)}, with no dimension of the batch's "
                         f"{examples} examples first (or second, for a sequence-first output)")
    if act.dim() == 3 and tokens == "mean":
        act = act.mean(dim=1)
    return act.flatten(1) if act.dim() > 1 else act[:, None]


def select_element(output, site: Site, name: str) -> torch.Tensor:
    """The tensor a site reads from what its module returned."""
    if site.element is None:
        if not isinstance(output, torch.Tensor):
            hint = _element_hint(output, name)
            raise TypeError(f"layer {name!r} returns a {type(output).__name__}, not a tensor; capture one of the "
                            f"modules inside it instead{hint}")
        return output
    if isinstance(output, Mapping):
        if site.element not in output:
            raise KeyError(f"layer {name!r}: its module returns a {type(output).__name__} without the key "
                           f"{site.element!r}; its keys are {list(output)}")
        chosen = output[site.element]
    elif isinstance(output, (tuple, list)):
        if not isinstance(site.element, int) or not -len(output) <= site.element < len(output):
            raise KeyError(f"layer {name!r}: its module returns a {type(output).__name__} of {len(output)} "
                           f"elements; name one of them by its index, 0 to {len(output) - 1}")
        chosen = output[site.element]
    else:
        raise TypeError(f"layer {name!r} names element {site.element!r}, but its module returns a "
                        f"{type(output).__name__}, which has no elements")
    if not isinstance(chosen, torch.Tensor):
        raise TypeError(f"layer {name!r} is a {type(chosen).__name__}, not a tensor")
    return chosen


def _element_hint(output, name: str) -> str:
    if isinstance(output, Mapping):
        keys = [key for key, value in output.items() if isinstance(value, torch.Tensor)]
        return f", or name the tensor you want: {', '.join(repr(f'{name}[{key}]') for key in keys[:3])}" if keys else ""
    if isinstance(output, (tuple, list)):
        indices = [i for i, value in enumerate(output) if isinstance(value, torch.Tensor)]
        return f", or name the tensor you want: {', '.join(repr(f'{name}[{i}]') for i in indices[:3])}" if indices else ""
    return ""


class ActivationCapture:
    """Runs ``model`` in eval mode and returns ``{name: tensor}`` for ``layers``.

    Activations are flattened per example, ``(n, features)``, as the paper analyses them,
    with (batch, tokens, features) outputs reduced over their tokens as ``tokens`` says,
    unless ``flatten=False``. ``reduce(name, activation)``, if given, replaces each
    (flattened) activation by what it returns, computed inside the hook, so the
    activation itself is never kept.

    With ``reuse``, a layer that returns the very tensor another layer returned earlier in
    the pass, unchanged since (an identity shortcut, dropout in eval mode), gets that
    layer's result instead of a second computation of the same one: ``reduce`` must then
    not depend on the layer's name.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], flatten: bool = True,
                 reduce: Callable[[str, torch.Tensor], torch.Tensor] | None = None, tokens: str = "flatten",
                 reuse: bool = False) -> None:
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
        if tokens not in TOKENS:
            raise ValueError(f"tokens must be one of {TOKENS}, got {tokens!r}")
        modules = {name: module for name, module in model.named_modules() if name}
        sites = {name: parse_layer(name, modules) for name in layers}
        unknown = [name for name, site in sites.items() if site is None]
        if unknown:
            hints = "; ".join(f"{name!r}{suggest(name, modules)}" for name in unknown[:5])
            raise KeyError(f"unknown layer name(s) for {type(model).__name__}: {hints}. Layers are the model's "
                           f"modules (model.named_modules()), which start with {list(modules)[:6]}")
        self.model, self.layers, self.flatten, self.reduce, self.tokens = model, layers, flatten, reduce, tokens
        self.reuse = reuse
        self.sites = sites
        self.modules = {site.module: modules[site.module] for site in sites.values()}

    def _hook(self, module_name: str, out: dict, calls: dict, examples: list[int], seen: dict):
        wanted = {name: site for name, site in self.sites.items() if site.module == module_name}

        def hook(_module, _inputs, output):
            call = calls[module_name]
            calls[module_name] += 1
            for name, site in wanted.items():
                if site.call != call:
                    continue
                tensor = select_element(output, site, name)
                # The same tensor object, alive and not modified in place since (its
                # version counter unchanged), holds the same values: reuse its result.
                earlier = seen.get(id(tensor)) if self.reuse else None
                if earlier is not None and earlier[0]() is tensor and earlier[1] == tensor._version:
                    out[name] = earlier[2]
                    continue
                act = tensor.detach()
                if self.flatten:
                    act = per_example(act, examples[0], name, self.tokens)
                out[name] = self.reduce(name, act) if self.reduce is not None else act.clone()
                if self.reuse:
                    seen[id(tensor)] = (weakref.ref(tensor), tensor._version, out[name])

        return hook

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        calls = dict.fromkeys(self.modules, 0)
        examples, seen = [len(x)], {}
        handles = [m.register_forward_hook(self._hook(name, out, calls, examples, seen)) for name, m in self.modules.items()]
        try:
            with eval_mode(self.model):
                self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in self.layers if name not in out]
        if missing:
            never = [name for name in missing if calls[self.sites[name].module] == 0]
            if never:
                raise ValueError(f"layer(s) {never} did not run in the forward pass")
            runs = {name: calls[self.sites[name].module] for name in missing}
            raise ValueError(f"layer(s) {runs} name a call that did not happen: their modules ran only that many "
                             "times in the forward pass (name_k is the module's (k+1)-th call)")
        return {name: out[name] for name in self.layers}


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module of ``model`` in eval mode for the ``with`` body (BN's running
    statistics and no dropout, as in the paper); the caller's flags put back after. The
    flags are set directly: a traced graph's own ``eval()`` would swap in its other graph."""
    modes = {module: module.training for module in model.modules()}
    try:
        for module in modes:
            module.training = False
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def suggest(name: str, known: Sequence[str]) -> str:
    """" (did you mean 'a', 'b'?)" for the names of ``known`` closest to ``name``, or ""."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def capture(model: nn.Module, x: torch.Tensor, layers: Sequence[str], flatten: bool = True,
            tokens: str = "flatten") -> dict[str, torch.Tensor]:
    """One-off capture of ``layers`` for the batch ``x``; see ``ActivationCapture``."""
    return ActivationCapture(model, layers, flatten=flatten, tokens=tokens)(x)


def module_calls(model: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module] | None = None,
                 ) -> tuple[list[str], dict[str, str]]:
    """Every call of ``modules`` (by name; default: every leaf module, one without
    children) in one forward pass of ``x``, in the order they ran, named as
    ``ActivationCapture`` names layers. Returns the calls that give a tensor with the
    batch's examples first (or second), and, for the others, why not."""
    if modules is None:
        modules = {name: module for name, module in model.named_modules() if name and not any(module.children())}
    if not modules:
        raise ValueError(f"{type(model).__name__} has no submodules to read layers from: wrap the model in one")
    order: list[str] = []
    skipped: dict[str, str] = {}
    calls = dict.fromkeys(modules, 0)

    def hook_for(module_name: str):
        def hook(_module, _inputs, output):
            name = call_name(module_name, calls[module_name])
            calls[module_name] += 1
            if not isinstance(output, torch.Tensor):
                skipped[name] = f"returns a {type(output).__name__}{_element_hint(output, name)}"
            elif output.dim() == 0 or len(x) not in output.shape[:2]:
                skipped[name] = f"returns shape {tuple(output.shape)}, with no dimension of the {len(x)} examples"
            else:
                order.append(name)
        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
    try:
        with torch.no_grad(), eval_mode(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    never = [name for name, count in calls.items() if count == 0]
    for name in never:
        skipped[name] = "did not run in the forward pass"
    return order, skipped
