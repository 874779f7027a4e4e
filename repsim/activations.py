"""Capture named layer outputs with torchvision's FX feature extractor.

torchvision's extractor returns the tensors that the traced graph produced. If a later
op in the graph works in place (``ReLU(inplace=True)``, ``out += x``), the returned
tensor would already be overwritten. ``ActivationCapture`` therefore rewrites the graph
so that each requested output is cloned the moment it is computed.

Names follow torchvision's convention. A module that runs more than once in one forward
pass (one ``nn.ReLU`` reused, as torchvision's own ResNet blocks do) gives one node per
call: ``name`` is its first call, ``name_1`` its second, and so on, each captured
separately; nothing is overwritten. A module that is traced through (a container) names
the last operation inside it, which is verified against the module's real output on the
first batch, so a container returning a tuple, or whose last op is not its output, is an
error rather than a silently wrong activation.
"""

from __future__ import annotations

import difflib
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
        known = graph_node_names(model)
        unknown = [name for name in layers if name not in known and not _is_module_prefix(name, known)]
        if unknown:
            hints = "; ".join(f"{name!r}{_suggest(name, known)}" for name in unknown[:5])
            raise KeyError(
                f"unknown layer name(s) for {type(model).__name__}: {hints}. "
                f"Capturable names (repsim.activations.graph_node_names) start with {known[:6]}"
            )
        self.layers = layers
        self.flatten = flatten
        # A container names its last node (torchvision's rule). Resolved here, so that a
        # container and that node requested together share one capture: torchvision would
        # give the node to one name and hand the other an earlier node, or none.
        self._nodes = {name: name if name in known else [k for k in known if k.startswith(name + ".")][-1]
                       for name in layers}
        unique = list(dict.fromkeys(self._nodes.values()))
        extractor = create_feature_extractor(
            model, return_nodes={node: node for node in unique}, tracer_kwargs={"leaf_modules": [Add]}
        )
        self.extractor = _clone_outputs(extractor)
        # Containers whose captured node is not obviously their output, checked on the
        # first batch. A tuple, not a dict of modules, so they are not registered twice.
        self._unverified = tuple(
            (name, model.get_submodule(name)) for name in layers
            if name not in known and not _last_op_is_output(model.get_submodule(name), name, known)
        )
        self._model = (model,)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # BN in inference mode, as in the paper; the modules are the caller's, so their
        # train/eval modes are put back afterwards.
        modes = {module: module.training for module in self.extractor.modules()}
        modes.update({module: module.training for module in self._model[0].modules()})
        try:
            by_node = self.extractor.eval()(x)
            out = {name: by_node[node] for name, node in self._nodes.items()}
            if self._unverified:
                _verify_containers(self._model[0].eval(), x, self._unverified, out)
                self._unverified = ()
        finally:
            for module, training in modes.items():
                module.training = training
        if self.flatten:
            out = {name: t.flatten(1) for name, t in out.items()}
        return out


def _suggest(name: str, known: list[str]) -> str:
    prefixes = {k.rsplit(".", i)[0] for k in known for i in range(1, k.count(".") + 1)}
    close = difflib.get_close_matches(name, sorted(set(known) | prefixes), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _is_module_prefix(name: str, known: list[str]) -> bool:
    # A container module (e.g. "pool") names the output of its last node.
    return any(k.startswith(name + ".") for k in known)


def _last_op_is_output(module: nn.Module, name: str, known: list[str]) -> bool:
    """Whether a container's last traced node is its output by construction: a
    Sequential returns what its last child returns."""
    if name in known:
        return True
    if isinstance(module, nn.Sequential) and len(module):
        last = list(module._modules)[-1]
        return _last_op_is_output(module[-1], f"{name}.{last}", known)
    return False


def _verify_containers(model: nn.Module, x: torch.Tensor, containers: tuple, captured: dict) -> None:
    """Run ``model`` once with hooks on ``containers`` and compare their real outputs with
    the captured nodes."""
    seen: dict[str, list] = {name: [] for name, _ in containers}

    def keep(name, output):  # cloned: an in-place op downstream must not change it
        seen[name].append(output.clone() if isinstance(output, torch.Tensor) else output)

    handles = [module.register_forward_hook(lambda m, i, o, name=name: keep(name, o)) for name, module in containers]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    for name, outputs in seen.items():
        if len(outputs) != 1:
            raise ValueError(
                f"layer {name!r} is a module that runs {len(outputs)} times per forward pass, so its name is "
                f"ambiguous; capture a node inside it instead (graph_node_names lists them)"
            )
        real = outputs[0]
        if not isinstance(real, torch.Tensor):
            raise TypeError(
                f"layer {name!r} returns a {type(real).__name__}, not a tensor; capture one of the tensors it "
                f"computes instead (graph_node_names lists the nodes inside it, named {name!r} + '.<op>')"
            )
        if real.shape != captured[name].shape or not torch.allclose(real, captured[name], rtol=1e-5, atol=1e-6):
            raise ValueError(
                f"layer {name!r} is a module whose last operation is not its output, so its name would capture "
                f"the wrong tensor; capture a node inside it instead (graph_node_names lists them)"
            )


def _clone_output(value, name: str) -> torch.Tensor:
    """A copy of one captured value, which must be a tensor."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"layer {name!r} outputs a {type(value).__name__}, not a tensor; capture a tensor-valued node instead, "
            f"such as one of the 'getitem' nodes that index its output (graph_node_names lists them)"
        )
    return value.clone()


def _clone_outputs(gm: fx.GraphModule) -> fx.GraphModule:
    """Clone every returned node right after it runs, before any in-place op can touch it.

    torchvision keeps one graph per mode (train and eval): rewrite both.
    """
    graphs = [getattr(gm, name) for name in ("train_graph", "eval_graph") if hasattr(gm, name)] or [gm.graph]
    for graph in graphs:
        output = next(node for node in graph.nodes if node.op == "output")
        returned = output.args[0]
        clones = {}
        for key, node in returned.items():
            if node not in clones:
                with graph.inserting_after(node):
                    clones[node] = graph.call_function(_clone_output, (node, key))
        output.args = ({key: clones[node] for key, node in returned.items()},)
        graph.lint()
    gm.recompile()
    return gm


@torch.no_grad()
def capture(model: nn.Module, x: torch.Tensor, layers: Sequence[str], flatten: bool = True) -> dict[str, torch.Tensor]:
    """One-off capture of ``layers`` for the batch ``x``; see ``ActivationCapture``."""
    return ActivationCapture(model, layers, flatten=flatten)(x)
