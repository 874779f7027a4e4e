"""Capture named layer outputs with torchvision's FX feature extractor.

torchvision's extractor returns the tensors that the traced graph produced. If a later
op in the graph works in place (``ReLU(inplace=True)``, ``out += x``), the returned
tensor would already be overwritten. ``ActivationCapture`` therefore rewrites the graph
so that each requested output is cloned the moment it is computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import fx, nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from .models import Add


def graph_node_names(model: nn.Module) -> list[str]:
    """All capturable node names of ``model`` in forward order (eval-mode graph)."""
    _, eval_nodes = get_graph_node_names(model, tracer_kwargs={"leaf_modules": [Add]})
    return eval_nodes


class ActivationCapture(nn.Module):
    """Runs ``model`` in eval mode and returns ``{name: (n, features) tensor}``.

    ``layers`` are node names as given by ``repsim.models.layer_names`` (or
    ``graph_node_names`` for any traceable model). The returned activations are
    flattened per example, as the paper analyses them, unless ``flatten=False``.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], flatten: bool = True) -> None:
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ValueError("layers is empty: name at least one layer to capture")
        if len(set(layers)) != len(layers):
            raise ValueError("layers contains duplicate names")
        known = graph_node_names(model)
        unknown = [name for name in layers if name not in known and not _is_module_prefix(name, known)]
        if unknown:
            raise KeyError(
                f"unknown layer name(s) {unknown[:5]} for {type(model).__name__}; "
                f"capturable names start with {known[:6]}"
            )
        self.layers = layers
        self.flatten = flatten
        extractor = create_feature_extractor(
            model, return_nodes={name: name for name in layers}, tracer_kwargs={"leaf_modules": [Add]}
        )
        self.extractor = _clone_outputs(extractor)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # BN in inference mode, as in the paper; the modules are the caller's, so their
        # train/eval modes are put back afterwards.
        modes = {module: module.training for module in self.extractor.modules()}
        try:
            out = self.extractor.eval()(x)
        finally:
            for module, training in modes.items():
                module.training = training
        if self.flatten:
            out = {name: t.flatten(1) for name, t in out.items()}
        return out


def _is_module_prefix(name: str, known: list[str]) -> bool:
    # A container module (e.g. "pool") names the output of its last node.
    return any(k.startswith(name + ".") for k in known)


def _clone_outputs(gm: fx.GraphModule) -> fx.GraphModule:
    """Clone every returned node right after it runs, before any in-place op can touch it.

    torchvision keeps one graph per mode (train and eval): rewrite both.
    """
    graphs = [getattr(gm, name) for name in ("train_graph", "eval_graph") if hasattr(gm, name)] or [gm.graph]
    for graph in graphs:
        output = next(node for node in graph.nodes if node.op == "output")
        returned = output.args[0]
        clones = {}
        for node in dict.fromkeys(returned.values()):
            with graph.inserting_after(node):
                clones[node] = graph.call_function(torch.clone, (node,))
        output.args = ({key: clones[node] for key, node in returned.items()},)
        graph.lint()
    gm.recompile()
    return gm


@torch.no_grad()
def capture(model: nn.Module, x: torch.Tensor, layers: Sequence[str], flatten: bool = True) -> dict[str, torch.Tensor]:
    """One-off capture of ``layers`` for the batch ``x``; see ``ActivationCapture``."""
    return ActivationCapture(model, layers, flatten=flatten)(x)
