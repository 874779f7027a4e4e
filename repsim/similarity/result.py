"""What ``repsim.similarity.similarity`` returns: the CKA matrix with the names of its
layers on both axes and how it was computed; it draws itself, and saves as CSV or NPZ."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from .. import legibility

MOST_TICKS = 24  # layer names shown on an axis; with more layers, every k-th


@dataclass
class Similarity:
    """Linear CKA between the layers of one model (square, symmetric) or between the
    layers of ``model`` (rows) and ``other`` (columns).

    The unbiased estimator can give a slightly negative CKA for two unrelated layers:
    its HSIC estimates are unbiased, not non-negative. Such values are kept, not
    clamped to 0, and ``notes`` says how many there are. A layer that is constant over
    the examples has no variance to compare: its CKA with every layer is 0.
    """

    cka: np.ndarray
    layers: list[str]
    other_layers: list[str] | None = None
    model: str = "model"
    other: str | None = None
    examples: int = 0
    batch_size: int = 0
    passes: int = 1
    unbiased: bool = True
    tokens: str = "flatten"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cka = np.asarray(self.cka, dtype=np.float64)
        columns = self.layers if self.other_layers is None else self.other_layers
        if self.cka.shape != (len(self.layers), len(columns)):
            raise ValueError(f"a CKA matrix of shape {self.cka.shape} does not fit {len(self.layers)} x "
                             f"{len(columns)} layer names")

    @property
    def column_layers(self) -> list[str]:
        return self.layers if self.other_layers is None else self.other_layers

    def __getitem__(self, pair: tuple[str, str]) -> float:
        """``result["layer1.0.conv1", "fc"]``: the CKA of two layers, by name."""
        row, column = pair
        return float(self.cka[_index(self.layers, row, self.model), _index(self.column_layers, column, self.other or self.model)])

    def __repr__(self) -> str:
        across = f" x {self.other} ({len(self.column_layers)} layers)" if self.other else ""
        lines = [f"Similarity: linear CKA ({'unbiased' if self.unbiased else 'biased'} minibatch estimator) of "
                 f"{self.model} ({len(self.layers)} layers){across} on {self.examples} examples, batches of "
                 f"{self.batch_size}, {self.passes} pass(es); token outputs: {self.tokens}"]
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])

    def plot(self, ax: Axes | None = None, title: str | None = None, colorbar: bool = True,
             vmin: float | None = None) -> Axes:
        """The heatmap as the paper draws it: first layer at the bottom left, magma from 0
        to 1 (down to the lowest value if some are negative), layer names on both axes
        (every k-th, to stay legible). ``vmin`` fixes the bottom of the colour scale, for
        panels that share one."""
        made = ax is None
        if made:
            side = min(6.0, 3.0 + 0.05 * max(self.cka.shape))  # plus 1 in for the colour bar: at most 7 in wide
            ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")[1]
        image = ax.imshow(self.cka, origin="lower", cmap="magma", vmin=min(0.0, float(self.cka.min())) if vmin is None else vmin, vmax=1.0,
                          interpolation="nearest", aspect="auto")
        for axis, names in ((ax.yaxis, self.layers), (ax.xaxis, self.column_layers)):
            step = max(1, int(np.ceil(len(names) / MOST_TICKS)))
            axis.set_ticks(range(0, len(names), step), [names[i] for i in range(0, len(names), step)], fontsize=8)
        ax.tick_params(axis="x", labelrotation=90)
        ax.set_ylabel(self.model, fontsize=9)
        ax.set_xlabel(self.other or self.model, fontsize=9)
        if title:
            ax.set_title(title, fontsize=9)
        if colorbar:
            bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
            bar.set_label("CKA", fontsize=9)
            bar.ax.tick_params(labelsize=8)
        if made:
            legibility.check(ax.figure, "Similarity.plot")
        return ax

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.csv`` (the matrix, row and column headers the layer names; how it was
        computed in ``#`` lines above it) or ``.npz`` (the matrix, both name lists and
        the same description, read back by ``Similarity.load``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npz":
            np.savez(path, cka=self.cka, layers=np.array(self.layers), other_layers=np.array(self.column_layers),
                     description=json.dumps(self._description()))
        elif path.suffix == ".csv":
            with path.open("w", newline="") as file:
                for key, value in self._description().items():
                    file.write(f"# {key}: {json.dumps(value)}\n")
                writer = csv.writer(file)
                writer.writerow(["layer", *self.column_layers])
                writer.writerows([name, *(f"{value:.10g}" for value in row)] for name, row in zip(self.layers, self.cka))
        else:
            raise ValueError(f"save writes .csv or .npz, not {path.suffix or 'a file without a suffix'}: {path}")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Similarity":
        """A result saved by ``save(...npz)``."""
        with np.load(path) as saved:
            description = json.loads(str(saved["description"]))
            cross = description["other"] is not None
            return cls(cka=saved["cka"], layers=saved["layers"].tolist(),
                       other_layers=saved["other_layers"].tolist() if cross else None, **description)

    def _description(self) -> dict:
        """How the matrix was computed: every field but the matrix and the layer names."""
        kept = asdict(self)
        for bulky in ("cka", "layers", "other_layers"):
            kept.pop(bulky)
        return kept


def _index(names: list[str], name: str, model: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise KeyError(f"{name!r} is not among the layers of {model}") from None
