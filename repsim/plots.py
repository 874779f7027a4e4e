"""Plots of computed results. Each takes data and an optional ``ax``, returns the Axes,
computes nothing, and leaves matplotlib's global settings alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes

from .models import stage_of


def _axes(ax: Axes | None, size=(4.0, 3.6)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=size, layout="constrained")[1]


def cka_heatmap(
    cka,
    ax: Axes | None = None,
    title: str | None = None,
    layers: Sequence[str] | None = None,
    colorbar: bool = True,
    xlabel: str = "layer",
    ylabel: str = "layer",
) -> Axes:
    """Layer-by-layer CKA as in the paper's figures: layer 0 at the bottom left, magma
    colours from 0 to 1. With ``layers``, thin lines mark the stage boundaries."""
    ax = _axes(ax)
    cka = np.asarray(cka, dtype=float)
    image = ax.imshow(cka, origin="lower", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
    if layers is not None:
        stages = np.array([stage_of(name) for name in layers])
        for boundary in np.flatnonzero(np.diff(stages)) + 0.5:
            ax.axhline(boundary, color="white", lw=0.4, alpha=0.5)
            ax.axvline(boundary, color="white", lw=0.4, alpha=0.5)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if title:
        ax.set_title(title, fontsize="medium")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="CKA")
    return ax


def estimate_vs_sample_size(
    sizes: Sequence[int], estimates: Mapping[str, np.ndarray], ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Mean +- one s.d. over repeats of each estimator (``estimates[label]``: (sizes, repeats))
    against the number of examples, on a log axis."""
    ax = _axes(ax, size=(4.6, 3.4))
    for (label, values), color in zip(estimates.items(), sns.color_palette("colorblind")):
        values = np.asarray(values)
        mean, sd = values.mean(axis=1), values.std(axis=1)
        ax.plot(sizes, mean, marker="o", ms=3, color=color, label=label)
        ax.fill_between(sizes, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)
    ax.set_xscale("log", base=2)
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set(xlabel="examples n", ylabel="CKA")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small", frameon=False)
    return ax


def agreement(reference, estimate, ax: Axes | None = None, xlabel: str = "reference", ylabel: str = "estimate") -> Axes:
    """Scatter of two estimates of the same quantities, with the identity line."""
    ax = _axes(ax, size=(3.6, 3.4))
    reference, estimate = np.ravel(reference), np.ravel(estimate)
    ax.scatter(reference, estimate, s=4, alpha=0.5, lw=0)
    low, high = min(reference.min(), estimate.min()), max(reference.max(), estimate.max())
    ax.plot([low, high], [low, high], color="0.4", lw=0.8, ls="--")
    ax.set(xlabel=xlabel, ylabel=ylabel, aspect="equal")
    return ax
