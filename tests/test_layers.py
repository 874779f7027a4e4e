"""The package is a house in layers: a module imports only from its own layer or below.

The order, bottom to top (README, "Layout"):

1. primitives: files, devices, progress, models, CKA, the block measure, hooks. They
   import nothing of repsim but each other.
2. inputs: the data, what names a run, the claims' verdict rules, prediction statistics.
3. measurement: CKA between layers and models, PCs, probes, dominant images. They
   import neither training nor storage.
4. storage: the model store and the committed results.
5. training: one loop for one model or a stack, snapshots, a run's trained model.
6. experiments: profiles, the chapters' analyses, figures, plots, sessions.
7. applications: the GPU harvest and the book.

Imports are read from the source (also those inside functions; not those only for type
checkers), so a late import cannot hide an upward edge, and no two modules may import
each other through any path.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "repsim"

LAYERS = (
    ("repsim", "files", "devices", "progress", "models", "cka", "measures", "blocks", "activations", "legibility"),
    ("data", "runs", "claims", "prediction_stats"),
    ("compare", "pca", "probes", "dominant", "properties", "similarity"),
    ("results", "store"),
    ("steps", "stacked", "train", "throughput", "snapshots", "trained", "fit"),
    ("own_models", "profiles", "heatmaps", "run_analyses", "origins", "measure_maps", "populations", "engines", "figures",
     "plots", "session"),
    ("harvest", "book"),
)
MEASUREMENT = ("activations", "cka", "compare", "blocks", "pca", "probes", "dominant", "similarity")
TRAINING_AND_STORAGE = ("results", "store", "steps", "stacked", "train", "throughput", "snapshots", "trained", "fit")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            hidden.update(id(child) for child in ast.walk(node))
    return hidden


def imports_of(path: Path) -> set[str]:
    """The repsim modules that ``path`` imports anywhere, as dotted names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    hidden = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "repsim")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if base.split(".")[0] != "repsim":
                continue
            for alias in node.names:  # "from repsim import store" imports the module repsim.store
                candidate = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                found.add(candidate if is_module else base)
    return found - {name}


GRAPH = {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer index of a dotted module name (subpackages by their top part)."""
    short = module.removeprefix("repsim.").split(".")[0] if module != "repsim" else "repsim"
    for index, layer in enumerate(LAYERS):
        if short in layer:
            return index
    raise LookupError(f"{module} has no layer: add it to LAYERS in tests/test_layers.py and README's layout")


def test_the_graph_was_read():
    assert len(GRAPH) > 40 and "repsim.files" in GRAPH["repsim.store"]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_every_module_has_a_layer(module):
    layer_of(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_from_a_higher_layer(module):
    upward = sorted(other for other in GRAPH[module] if layer_of(other) > layer_of(module))
    assert not upward, f"{module} (layer {layer_of(module) + 1}) imports from higher layers: {upward}"


def test_the_bottom_layer_imports_nothing_above_it():
    bottom = [m for m in GRAPH if layer_of(m) == 0]
    assert "repsim.files" in bottom
    assert GRAPH["repsim.files"] == set(), "repsim.files is the leaf of file primitives: it imports nothing of repsim"


@pytest.mark.parametrize("module", MEASUREMENT)
def test_measurement_imports_neither_training_nor_storage(module):
    reached, todo = set(), [f"repsim.{module}"]
    while todo:  # everything it loads, not only its own imports
        for other in GRAPH[todo.pop()] - reached:
            reached.add(other)
            todo.append(other)
    loaded = sorted(m for m in reached if m.removeprefix("repsim.") in TRAINING_AND_STORAGE)
    assert not loaded, f"repsim.{module} loads {loaded}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for other in sorted(graph.get(module, ())):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state and (cycle := visit(other, path + [other])):
                return cycle
        state[module] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
