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


def heatmap_grid(rows: Sequence[Sequence], titles: Sequence[Sequence[str]], row_labels: Sequence[str] | None = None,
                 size: float = 2.1):
    """A figure of CKA heatmaps, one list of (L, L) matrices per row, with one shared
    colour bar. Short rows leave their remaining panels empty. Returns the Figure."""
    ncols = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(size * ncols + 0.8, size * len(rows)),
                             layout="constrained", squeeze=False)
    for r, (row, row_titles) in enumerate(zip(rows, titles)):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(row):
                ax.axis("off")
                continue
            cka_heatmap(row[c], ax=ax, title=row_titles[c], colorbar=False, xlabel="", ylabel="")
            ax.tick_params(labelsize="x-small")
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize="small")
    fig.colorbar(axes[0, 0].images[0], ax=axes, fraction=0.02, pad=0.01, label="CKA")
    return fig


def block_trend(table, x: str, hue: str, ax: Axes | None = None, title: str | None = None,
                legend_title: str | None = None) -> Axes:
    """Block size (fraction of layers) against ``x``, one line per value of ``hue``.
    ``table``: a DataFrame with a ``block_fraction`` column, as from grid.block_summary."""
    ax = _axes(ax, size=(4.0, 3.2))
    sns.lineplot(data=table, x=x, y="block_fraction", hue=hue, marker="o", palette="viridis", ax=ax,
                 errorbar=None)
    if ax.get_legend() is not None:
        ax.get_legend().set_title(legend_title or hue)
    ax.set(ylabel="block size (fraction of layers)", ylim=(-0.02, 1.02))
    ax.set_xticks(sorted(table[x].unique()))
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def variance_by_layer(variance_explained, layers: Sequence[str] | None = None, ax: Axes | None = None,
                      title: str | None = None, block: tuple[int, int] | None = None) -> Axes:
    """Fraction of variance explained by PC1 at each layer; ``block`` (start, stop)
    shades the layers of the measured block."""
    ax = _axes(ax, size=(4.0, 3.0))
    values = np.asarray(variance_explained, dtype=float)
    ax.plot(np.arange(len(values)), values, lw=1.0, color=sns.color_palette("colorblind")[0])
    if block is not None and block[1] > block[0]:
        ax.axvspan(block[0] - 0.5, block[1] - 0.5, color="0.85", zorder=0, label="block")
        ax.legend(fontsize="x-small", frameon=False, loc="upper left")
    if layers is not None:
        stages = np.array([stage_of(name) for name in layers])
        for boundary in np.flatnonzero(np.diff(stages)) + 0.5:
            ax.axvline(boundary, color="0.6", lw=0.4)
    ax.set(xlabel="layer", ylabel="variance explained by PC1", ylim=(0, 1), xlim=(-0.5, len(values) - 0.5))
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def probe_accuracy(rows, ax: Axes | None = None, title: str | None = None, block: tuple[int, int] | None = None) -> Axes:
    """Linear-probe test accuracy along the residual blocks, before the add (its BN) and
    after it. ``rows``: dicts with ``layer`` and ``test_acc``, two per block in order;
    ``block`` (first, last) shades the residual blocks inside the measured block."""
    ax = _axes(ax, size=(4.2, 3.0))
    colours = sns.color_palette("colorblind")
    for part, label, colour, marker in (("bn2", "before the add (BN)", colours[1], "v"),
                                        ("add", "after the add", colours[0], "o")):
        values = [row["test_acc"] for row in rows if row["layer"].endswith("." + part)]
        ax.plot(np.arange(len(values)), values, marker=marker, ms=3, lw=1.0, color=colour, label=label)
    if block is not None and block[1] >= block[0]:
        ax.axvspan(block[0] - 0.5, block[1] + 0.5, color="0.85", zorder=0)
    ax.set(xlabel="residual block", ylabel="probe test accuracy")
    ax.legend(fontsize="x-small", frameon=False)
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def deletion_curves(table, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Test accuracy against the number of residual blocks deleted from the end of each
    stage, one line per stage. ``table``: a DataFrame with stage, deleted, test_acc."""
    ax = _axes(ax, size=(4.0, 3.0))
    sns.lineplot(data=table, x="deleted", y="test_acc", hue="stage", marker="o", palette="colorblind", ax=ax,
                 errorbar=None)
    ax.set(xlabel="blocks deleted from the end of the stage", ylabel="test accuracy", ylim=(0, None))
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def per_example_counts(correct_x, correct_y, ax: Axes | None = None, xlabel: str = "x", ylabel: str = "y",
                       title: str | None = None, colorbar: bool = True) -> Axes:
    """Paper Fig. 7a, b: for every test image, how many models of population x (columns)
    and of population y (rows) classify it correctly; colour: images, log scale.

    ``correct_*``: boolean (members, N). Two populations that make the same mistakes put
    their images along the diagonal, up to the sampling noise of finite populations.
    """
    from matplotlib.colors import LogNorm

    ax = _axes(ax)
    correct_x, correct_y = np.asarray(correct_x, dtype=bool), np.asarray(correct_y, dtype=bool)
    m_x, m_y = len(correct_x), len(correct_y)
    table, _, _ = np.histogram2d(correct_y.sum(0), correct_x.sum(0), bins=(np.arange(m_y + 2) - 0.5, np.arange(m_x + 2) - 0.5))
    image = ax.imshow(np.ma.masked_equal(table, 0), origin="lower", cmap="viridis",
                      norm=LogNorm(vmin=1, vmax=correct_x.shape[1]), interpolation="nearest")
    ax.plot([0, m_x], [0, m_y], color="white", lw=0.6, alpha=0.6)
    ax.set(xlabel=f"{xlabel}: models correct (of {m_x})", ylabel=f"{ylabel}: models correct (of {m_y})")
    if title:
        ax.set_title(title, fontsize="medium")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.8, label="test images")
    return ax


def over_training(rows, y: str, ax: Axes | None = None, ylabel: str | None = None, title: str | None = None,
                  ylim=None, mark: float | None = None, legend: bool = True) -> Axes:
    """``y`` against the SGD step, one line per ``model``; ``rows``: dicts (or a DataFrame)
    with step, model and ``y``. The step axis is linear up to 1 and logarithmic beyond, so
    the initialisation (step 0) shows beside log-spaced snapshots. ``mark``: a step to
    mark with a dashed line."""
    import pandas as pd

    ax = _axes(ax, size=(4.0, 3.0))
    table = pd.DataFrame(rows)
    if len(table):
        sns.lineplot(data=table, x="step", y=y, hue="model", marker="o", palette="colorblind", ax=ax, errorbar=None,
                     legend=legend)
    if mark is not None:
        ax.axvline(mark, color="0.5", lw=0.8, ls="--")
    ax.set_xscale("symlog", linthresh=1)
    ax.set(xlabel="SGD step (0: initialisation)", ylabel=y if ylabel is None else ylabel, ylim=ylim)
    ax.set_xlim(left=-0.3)
    if ax.get_legend() is not None:
        ax.get_legend().set_title(None)
        ax.legend(fontsize="x-small", frameon=False)
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def removal_curves(rows, y: str = "block", ax: Axes | None = None, ylabel: str | None = None,
                   title: str | None = None) -> Axes:
    """``y`` (e.g. the block measure) against the number of test images left out, one line
    for the most dominant images and one for random ones. ``rows``: dicts with removed,
    images ("dominant" or "random") and ``y``."""
    import pandas as pd

    ax = _axes(ax, size=(4.0, 3.0))
    table = pd.DataFrame(rows)
    if len(table):
        sns.lineplot(data=table, x="removed", y=y, hue="images", style="images", markers=True, palette="colorblind",
                     ax=ax, errorbar=None)
    ax.set(xlabel="test images left out", ylabel=y if ylabel is None else ylabel)
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def image_grid(images, ax: Axes | None = None, columns: int = 10, title: str | None = None) -> Axes:
    """uint8 images (k, 3, H, W) as one mosaic of ``columns`` per row, in order."""
    ax = _axes(ax, size=(0.6 * columns, 0.6 * max(1, -(-len(images) // columns)) + 0.4))
    images = np.asarray(images)
    k, _, h, w = images.shape if images.ndim == 4 else (0, 3, 32, 32)
    rows = max(1, -(-k // columns))
    mosaic = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        mosaic[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image.transpose(1, 2, 0)
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def image_panels(sets: Sequence, titles: Sequence[str], columns: int = 10, size: float = 0.55):
    """One ``image_grid`` per set of images, stacked; returns the Figure."""
    heights = [max(1, -(-len(images) // columns)) for images in sets]
    fig, axes = plt.subplots(len(sets), 1, figsize=(size * columns, size * sum(heights) + 0.45 * len(sets)),
                             layout="constrained", squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, images, title in zip(axes[:, 0], sets, titles):
        image_grid(images, ax=ax, columns=columns, title=title)
    return fig


def placeholder(text: str, ax: Axes | None = None) -> Axes:
    """An empty panel that says ``text``, for a figure whose results are pending."""
    ax = _axes(ax, size=(4.0, 1.2))
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_axis_off()
    return ax
