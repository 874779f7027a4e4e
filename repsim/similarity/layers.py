"""Which layers of a model to compare, and how to read them.

A selection is one of:

- ``None``: every call of every leaf module (one without children) that returns a
  tensor with one row per example, in the order they ran;
- a module type, or a tuple of them (``nn.Conv2d``): every call of every module of
  that type, in the order they ran;
- a list of names: module names (``model.named_modules()``), ``name_k`` for a module's
  (k+1)-th call and ``name[i]`` or ``name[key]`` for an element of what it returns
  (``repsim.activations``), or the node names of torchvision's feature extraction
  (``torchvision.models.feature_extraction.get_graph_node_names``), which also name
  operations that are not modules, such as a residual ``add``.

Modules are read with forward hooks, each layer's Gram computed as it runs. Only when a
name is a graph node and not a module is the model traced (torch.fx, through
torchvision's ``create_feature_extractor``) and every layer read from the traced graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..activations import (
    ActivationCapture,
    Site,
    eval_mode,
    module_calls,
    parse_layer,
    per_example,
    select_element,
    suggest,
)
from ..cka import GramMaker
from ..compare import GramCapture

Selection = None | Sequence[str] | type | tuple[type, ...]


@dataclass
class Choice:
    """The layers chosen, whether they are read from torchvision's traced graph rather
    than with hooks, and the leaf calls a default selection left out (with why)."""

    names: list[str]
    graph: bool = False
    skipped: dict[str, str] = field(default_factory=dict)


def choose_layers(model: nn.Module, selection: Selection, probe: torch.Tensor, what: str = "model") -> Choice:
    """Resolve ``selection`` for ``model``, running it once on ``probe`` (a few examples)
    where the choice depends on what runs."""
    if selection is None:
        names, skipped = module_calls(model, probe)
        if not names:
            raise ValueError(f"no leaf module of the {what} ({type(model).__name__}) returns a tensor with one row per "
                             f"example: {dict(list(skipped.items())[:5])}; name the layers")
        return Choice(names, skipped=skipped)
    if _is_types(selection):
        types = (selection,) if isinstance(selection, type) else tuple(selection)
        modules = {name: module for name, module in model.named_modules() if name and isinstance(module, types)}
        if not modules:
            present = sorted({type(module).__name__ for module in model.modules()})
            raise ValueError(f"the {what} ({type(model).__name__}) has no module of type "
                             f"{', '.join(t.__name__ for t in types)}; it has {present[:12]}")
        names, skipped = module_calls(model, probe, modules)
        if not names:
            raise ValueError(f"no module of type {', '.join(t.__name__ for t in types)} in the {what} returns a tensor "
                             f"with one row per example: {dict(list(skipped.items())[:5])}")
        return Choice(names, skipped=skipped)
    if isinstance(selection, str):  # list("fc") would ask for layers "f" and "c"
        raise TypeError(f"layers must be a list of layer names, got the string {selection!r}; use [{selection!r}]")
    names = list(selection)
    if not names:
        raise ValueError(f"no layers given for the {what}: name at least one, or pass None for every leaf module")
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise TypeError(f"layer names must be strings, got {bad[:3]} for the {what}")
    if len(set(names)) != len(names):
        raise ValueError(f"the {what}'s layers name some twice: {sorted({n for n in names if names.count(n) > 1})}")
    modules = {name: module for name, module in model.named_modules() if name}
    if all(parse_layer(name, modules) is not None for name in names):
        return Choice(names)
    nodes, why_not = graph_nodes(model)
    unknown = [name for name in names if name not in nodes]
    if unknown:
        known = list(modules) + [node for node in nodes if node not in modules]
        hints = "; ".join(f"{name!r}{suggest(name, known)}" for name in unknown[:5])
        graph = ("or node names of torchvision's feature extraction (get_graph_node_names)" if why_not is None else
                 f"(torchvision's feature extraction could not trace the model for graph node names: {why_not})")
        raise KeyError(f"unknown layer name(s) for the {what} ({type(model).__name__}): {hints}. Layers are module "
                       f"names (model.named_modules()), name_k for a module's later calls, name[i] for an element "
                       f"of what a module returns, {graph}")
    return Choice(names, graph=True)


def graph_nodes(model: nn.Module) -> tuple[list[str], str | None]:
    """The node names of torchvision's feature extraction for ``model`` in eval mode, or
    no names and why the model could not be traced."""
    from torchvision.models.feature_extraction import get_graph_node_names

    try:
        _, nodes = get_graph_node_names(model)
    except Exception as err:  # torch.fx fails on data-dependent control flow, among others
        return [], f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return nodes, None


def _copying(extractor: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The feature extractor with each returned node copied the moment it is computed:
    otherwise an in-place op later in the graph (torchvision's ``out += identity``, then
    ``ReLU(inplace=True)``) would change the returned tensor, as the hooks' clone
    prevents for modules."""
    graph = extractor.graph
    output = next(node for node in graph.nodes if node.op == "output")
    copies = {}
    for key, node in output.args[0].items():
        with graph.inserting_after(node):
            copies[key] = graph.call_function(_clone, (node,))
    output.args = (copies,)
    graph.lint()
    extractor.recompile()
    return extractor


def _clone(value):
    return value.clone() if isinstance(value, torch.Tensor) else value


def _is_types(selection) -> bool:
    if isinstance(selection, type):
        return True
    return isinstance(selection, tuple) and bool(selection) and all(isinstance(t, type) for t in selection)


class LayerReader:
    """Reads the chosen layers of a model for a batch: as Grams (``grams``, computed
    as each layer runs, for the CKA sums) or as (n, features) activations
    (``activations``, to name a layer with NaN or Inf, or to rescale an overflow)."""

    def __init__(self, model: nn.Module, choice: Choice, tokens: str) -> None:
        self.names, self.tokens = choice.names, tokens
        if choice.graph:
            from torchvision.models.feature_extraction import create_feature_extractor

            self.graph = _copying(create_feature_extractor(model, return_nodes=list(choice.names)).eval())
            self.make_gram = GramMaker()
        else:
            self.graph = None
            self.hooked_grams = GramCapture(model, choice.names, tokens=tokens)
            self.hooked_activations = ActivationCapture(model, choice.names, tokens=tokens)

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.graph is None:
            return self.hooked_activations(x)
        with eval_mode(self.graph):  # the graph shares the model's modules: eval for this pass only
            outputs = self.graph(x)
        return {name: per_example(select_element(outputs[name], Site(name), name), len(x), name, self.tokens)
                for name in self.names}

    def grams(self, x: torch.Tensor, batches: int = 1) -> dict[str, torch.Tensor]:
        """{layer: (n, n) Gram}, or (batches, n, n) when x holds that many minibatches."""
        if self.graph is None:
            return self.hooked_grams(x, batches)
        grams = {}
        for name, act in self.activations(x).items():
            k = self.make_gram(name, act.unflatten(0, (batches, -1)))
            grams[name] = k if batches > 1 else k[0]
        return grams
