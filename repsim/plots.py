"""Plots of computed results. Each takes data and an optional ``ax``, returns the Axes
(or, for a whole figure, the Figure), computes nothing, and leaves matplotlib's global
settings alone.

Every figure fits a page: at most ``PAGE_WIDTH`` inches wide, tick labels and legends at
``SMALL`` points and other text at ``TEXT`` points (``STYLE``, applied while a figure is
drawn), so that no text is shown below 8 points; ``repsim.legibility`` checks each figure
made here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import legibility
from .claims import CALLED_AT
from .models import stage_of

if TYPE_CHECKING:  # the results drawn here; plots imports no analysis
    from .heatmaps import Heatmap
    from .run_analyses import ArchitecturePanel, DeletionPanel, PCPanel, ProbePanel, SeedPairPanel
    from .similarity import Similarity


PAGE_WIDTH = 7.0  # inches: a figure's width at most (the page's text column is about 7.2)
SMALL, TEXT = 8, 9  # points: tick labels, legends and notes; titles and axis labels
STYLE = {"font.size": TEXT, "axes.titlesize": TEXT, "axes.labelsize": TEXT, "xtick.labelsize": SMALL,
         "ytick.labelsize": SMALL, "legend.fontsize": SMALL, "legend.title_fontsize": SMALL, "figure.titlesize": TEXT}


def figure(function):
    """Draw with ``STYLE`` and check the result's legibility: a figure made here (not a
    panel drawn into a caller's ``ax``) must show no text below 8 points."""
    @functools.wraps(function)
    def draw(*args, **kwargs):
        with plt.rc_context(STYLE):
            made = function(*args, **kwargs)
        if kwargs.get("ax") is None:
            legibility.check(made if isinstance(made, Figure) else made.figure, function.__name__)
        return made
    return draw


def _axes(ax: Axes | None, size=(4.0, 3.6)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=size, layout="constrained")[1]


@figure
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
    colours from 0 to 1. With ``layers``, thin lines mark the stage boundaries. None:
    a pending panel."""
    ax = _axes(ax)
    if cka is None:
        return pending_panel(ax, title or "pending")
    cka = np.asarray(cka, dtype=float)
    image = ax.imshow(cka, origin="lower", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
    if layers is not None:
        stages = np.array([stage_of(name) for name in layers])
        for boundary in np.flatnonzero(np.diff(stages)) + 0.5:
            ax.axhline(boundary, color="white", lw=0.4, alpha=0.5)
            ax.axvline(boundary, color="white", lw=0.4, alpha=0.5)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if title:
        ax.set_title(title, fontsize=TEXT)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="CKA")
    return ax


@figure
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
        ax.set_title(title, fontsize=TEXT)
    ax.legend(fontsize=SMALL, frameon=False)
    return ax


@figure
def agreement(reference, estimate, ax: Axes | None = None, xlabel: str = "reference", ylabel: str = "estimate") -> Axes:
    """Scatter of two estimates of the same quantities, with the identity line (a pending
    panel while either is None)."""
    ax = _axes(ax, size=(3.6, 3.4))
    if reference is None or estimate is None:
        return pending_panel(ax, "")
    reference, estimate = np.ravel(reference), np.ravel(estimate)
    ax.scatter(reference, estimate, s=4, alpha=0.5, lw=0)
    low, high = min(reference.min(), estimate.min()), max(reference.max(), estimate.max())
    ax.plot([low, high], [low, high], color="0.4", lw=0.8, ls="--")
    ax.set(xlabel=xlabel, ylabel=ylabel, aspect="equal")
    return ax


def pending_panel(ax: Axes, title: str = "pending") -> Axes:
    """An empty panel that says its result is not computed yet."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("0.93")
    ax.text(0.5, 0.5, "pending", ha="center", va="center", transform=ax.transAxes, color="0.45", fontsize=SMALL)
    ax.set_title(title, fontsize=TEXT)
    return ax


@figure
def heatmap_grid(rows: Sequence[Sequence], titles: Sequence[Sequence[str]], row_labels: Sequence[str] | None = None,
                 size: float = 2.1):
    """A figure of CKA heatmaps, one list of (L, L) matrices per row, with one shared
    colour bar. A None matrix is drawn as a pending panel; short rows leave their
    remaining panels empty. Returns the Figure."""
    ncols = max(len(row) for row in rows)
    size = min(size, (PAGE_WIDTH - 0.8) / ncols)  # a long row gets smaller panels, never a wider figure
    fig, axes = plt.subplots(len(rows), ncols, figsize=(size * ncols + 0.8, size * len(rows)),
                             layout="constrained", squeeze=False)
    for r, (row, row_titles) in enumerate(zip(rows, titles)):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(row):
                ax.axis("off")
            elif row[c] is None:
                pending_panel(ax, row_titles[c])
            else:
                cka_heatmap(row[c], ax=ax, title=row_titles[c], colorbar=False, xlabel="", ylabel="")
                ax.tick_params(labelsize=SMALL)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=SMALL)
    images = [ax.images[0] for ax in axes.flat if ax.images]
    if images:
        fig.colorbar(images[0], ax=axes, fraction=0.02, pad=0.01, label="CKA")
    return fig


@figure
def heatmap_rows(rows: Sequence[Sequence[Heatmap | None]], row_labels: Sequence[str] | None = None,
                 title: Callable[[Heatmap], str] | None = None, size: float = 2.1):
    """``heatmap_grid`` of rows of ``heatmaps.Heatmap`` (None: a pending panel, titled
    "pending"). ``title(heatmap)`` gives a panel's title (default: the heatmap's own,
    architecture and test accuracy). Returns the Figure."""
    matrices = [[m.cka if m is not None else None for m in row] for row in rows]
    titles = [[(title(m) if title is not None else m.title) if m is not None else "pending" for m in row] for row in rows]
    return heatmap_grid(matrices, titles, row_labels, size)


@figure
def block_trend(table, x: str, hue: str, ax: Axes | None = None, title: str | None = None,
                legend_title: str | None = None) -> Axes:
    """Block size (fraction of layers) against ``x``, one line per value of ``hue``: the
    mean over the seeds in ``table``, with bars of two standard errors where there are
    several (the margin a comparison must clear to be called, claims.CALLED_AT).
    ``table``: a DataFrame with a ``block_fraction`` column, as from heatmaps.block_summary."""
    ax = _axes(ax, size=(4.0, 3.2))
    sns.lineplot(data=table, x=x, y="block_fraction", hue=hue, marker="o", palette="viridis", ax=ax,
                 errorbar=("se", CALLED_AT), err_style="bars", err_kws={"capsize": 3})
    if ax.get_legend() is not None:
        ax.get_legend().set_title(legend_title or hue)
    ax.set(ylabel="block size (fraction of layers)", ylim=(-0.02, 1.02))
    ax.set_xticks(sorted(table[x].unique()))
    if title:
        ax.set_title(title, fontsize=TEXT)
    return ax


@figure
def variance_by_layer(variance_explained, layers: Sequence[str] | None = None, ax: Axes | None = None,
                      title: str | None = None, block: tuple[int, int] | None = None) -> Axes:
    """Fraction of variance explained by PC1 at each layer; ``block`` (start, stop)
    shades the layers of the measured block."""
    ax = _axes(ax, size=(4.0, 3.0))
    values = np.asarray(variance_explained, dtype=float)
    ax.plot(np.arange(len(values)), values, lw=1.0, color=sns.color_palette("colorblind")[0])
    if block is not None and block[1] > block[0]:
        ax.axvspan(block[0] - 0.5, block[1] - 0.5, color="0.85", zorder=0, label="block")
        ax.legend(fontsize=SMALL, frameon=False, loc="upper left")
    if layers is not None:
        stages = np.array([stage_of(name) for name in layers])
        for boundary in np.flatnonzero(np.diff(stages)) + 0.5:
            ax.axvline(boundary, color="0.6", lw=0.4)
    ax.set(xlabel="layer", ylabel="variance explained by PC1", ylim=(0, 1), xlim=(-0.5, len(values) - 0.5))
    if title:
        ax.set_title(title, fontsize=TEXT)
    return ax


@figure
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
    ax.legend(fontsize=SMALL, frameon=False)
    if title:
        ax.set_title(title, fontsize=TEXT)
    return ax


@figure
def deletion_curves(rows, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Test accuracy against the number of residual blocks deleted from the end of each
    stage, one line per stage. ``rows``: dicts (or a DataFrame) with stage, deleted,
    test_acc, as from ``run_analyses.deletion_accuracy``."""
    import pandas as pd

    ax = _axes(ax, size=(4.0, 3.0))
    table = pd.DataFrame(rows)
    sns.lineplot(data=table, x="deleted", y="test_acc", hue="stage", marker="o", palette="colorblind", ax=ax,
                 errorbar=None)
    ax.set(xlabel="blocks deleted from the end of the stage", ylabel="test accuracy", ylim=(0, None))
    if title:
        ax.set_title(title, fontsize=TEXT)
    return ax


@figure
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
        ax.set_title(title, fontsize=TEXT)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.8, label="test images")
    return ax


@figure
def block_trends(table, base_depth: int):
    """Block size against width (at ``base_depth``) and against depth (at 1x), one line
    per training-set size, over the seeds in ``table`` (``block_trend``); ``table``:
    ``heatmaps.block_summary`` rows of residual networks. Returns the Figure."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.0), layout="constrained", sharey=True)
    for ax, frame, x, title in ((axes[0], table[table["depth"] == base_depth], "width", f"ResNet-{base_depth}, wider"),
                                (axes[1], table[table["width"] == 1], "depth", "width 1x, deeper")):
        if frame.empty:
            pending_panel(ax, title)
        else:
            block_trend(frame, x=x, hue="train_size", ax=ax, title=title, legend_title="training images")
    return fig


@figure
def estimator_panels(sizes: Sequence[int], aligned: Mapping[str, np.ndarray], shuffled: Mapping[str, np.ndarray],
                     title: str):
    """Chapter 2: biased and unbiased CKA against n, for a pair of layers (``title``, above
    both panels) as they are (left) and with the rows of one shuffled (right); pending
    panels while they are None. Returns the Figure."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.0), layout="constrained", sharey=True)
    fig.suptitle(title)
    for ax, curves, name in ((axes[0], aligned, "as they are"), (axes[1], shuffled, "rows shuffled")):
        if curves is None:
            pending_panel(ax, name)
        else:
            estimate_vs_sample_size(sizes, curves, ax=ax, title=name)
    return fig


@figure
def pc_figure(models: Sequence[PCPanel]):
    """Paper Fig. 3, two rows of two panels per model (``run_analyses.PCPanel``): PC1
    cosine similarity between layers, PC1's share of variance per layer (the block
    shaded), the CKA heatmap, and the heatmap without PC1; pending panels while its PCs
    or its heatmap are. Returns the Figure."""
    fig, axes = plt.subplots(2 * len(models), 2, figsize=(PAGE_WIDTH * 0.8, 5.2 * len(models)), layout="constrained",
                             squeeze=False)
    for row, model in zip(axes.reshape(len(models), 4), models):
        pcs = model.pcs
        if pcs is None or model.cka is None:
            for ax in row:
                pending_panel(ax, model.name)
            continue
        cka_heatmap(pcs.pc_similarity, ax=row[0], layers=pcs.layers, colorbar=False, title=f"{model.name}: PC1 cosine")
        variance_by_layer(pcs.variance_explained, pcs.layers, ax=row[1], block=model.block,
                          title="variance explained by PC1")
        cka_heatmap(model.cka, ax=row[2], layers=pcs.layers, colorbar=False, title="CKA")
        cka_heatmap(pcs.cka_without_pc1, ax=row[3], layers=pcs.layers, title="CKA without PC1")
    return fig


@figure
def pc1_across_models(table, rho: float | None):
    """Paper Fig. D.5: PC1's share of variance in the last two stages for every model,
    sorted within each architecture (left), and against the model's block size (right).
    ``table``: rows with model, training images, pc1_variance, block_fraction."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.4), layout="constrained", gridspec_kw={"width_ratios": [1.6, 1]})
    if table.empty:
        pending_panel(axes[0], "PC1 variance")
        pending_panel(axes[1], "against the block size")
        return fig
    ordered = table.sort_values(["model", "pc1_variance"]).reset_index(drop=True)
    sns.scatterplot(data=ordered, x=ordered.index, y="pc1_variance", hue="model", style="training images", ax=axes[0], s=40)
    axes[0].set(xlabel="model (sorted by PC1 variance within each architecture)", ylabel="PC1 variance, last two stages",
                xticks=[])
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].get_legend().remove()  # one legend for both panels, inside the figure's width
    fig.legend(handles, labels, loc="outside right upper", frameon=False)
    sns.scatterplot(data=table, x="block_fraction", y="pc1_variance", hue="model", style="training images", ax=axes[1],
                    s=40, legend=False)
    axes[1].set(xlabel="block size (fraction of layers)", ylabel="PC1 variance, last two stages",
                title=f"Spearman correlation {rho:.2f}" if rho is not None and np.isfinite(rho) else "")
    return fig


def side_by_side(count: int, size=(4.75, 3.3), sharey: bool = True):
    """(Figure, row of ``count`` Axes) for panels of ``size`` each, side by side."""
    width = min(size[0] * count, PAGE_WIDTH)
    fig, axes = plt.subplots(1, count, figsize=(width, size[1]), layout="constrained", sharey=sharey, squeeze=False)
    return fig, axes[0]


@figure
def similarity_panels(results: Sequence[Similarity | None], titles: Sequence[str], height: float = 3.6,
                      stacked: bool = False):
    """``Similarity`` heatmaps side by side (``stacked``: one above the other, for long
    layer names) with layer names on their axes, one colour scale for all (down to the
    lowest value if some are negative); None: a pending panel. Returns the Figure."""
    if stacked:
        fig, axes = plt.subplots(len(results), 1, figsize=(PAGE_WIDTH, height * len(results)), layout="constrained")
        axes = np.atleast_1d(axes)
    else:
        fig, axes = side_by_side(len(results), size=(PAGE_WIDTH / len(results), height), sharey=False)
    present = [result for result in results if result is not None]
    vmin = min([0.0, *(float(result.cka.min()) for result in present)])
    for ax, result, title in zip(axes, results, titles):
        if result is None:
            pending_panel(ax, title)
        else:
            result.plot(ax=ax, title=title, colorbar=False, vmin=vmin)
    if present:
        drawn = next(ax.images[0] for ax in axes if ax.images)
        fig.colorbar(drawn, ax=list(axes), fraction=0.04, pad=0.02, label="CKA")
    return fig


@figure
def probe_figure(panels: Sequence[ProbePanel]):
    """Paper Fig. 4: probe accuracy along the residual blocks for each model
    (``run_analyses.ProbePanel``), or a pending panel. Returns the Figure."""
    fig, axes = side_by_side(len(panels))
    for ax, panel in zip(axes, panels):
        if panel.rows is None:
            pending_panel(ax, panel.title)
        else:
            probe_accuracy(panel.rows, ax=ax, block=panel.block, title=panel.title)
    return fig


@figure
def deletion_figure(panels: Sequence[DeletionPanel]):
    """Paper Fig. 5: accuracy after deleting blocks, for each model
    (``run_analyses.DeletionPanel``), or a pending panel. Returns the Figure."""
    fig, axes = side_by_side(len(panels))
    for ax, panel in zip(axes, panels):
        if panel.rows is None:
            pending_panel(ax, panel.title)
        else:
            deletion_curves(panel.rows, ax=ax, title=panel.title)
    return fig


@figure
def seed_pairs_figure(pairs: Sequence[SeedPairPanel]):
    """Paper Fig. 6, one row per architecture (``run_analyses.SeedPairPanel``): seed a
    against itself, and seed a against seed b, both with seed a's stage boundaries.
    Returns the Figure."""
    fig, axes = plt.subplots(len(pairs), 2, figsize=(6.2, 3.0 * len(pairs)), layout="constrained", squeeze=False)
    for row, pair in zip(axes, pairs):
        a, b = pair.seeds
        layers = pair.within.layers if pair.within is not None else None
        if pair.within is None:
            pending_panel(row[0], pair.label)
        else:
            cka_heatmap(pair.within.cka, ax=row[0], layers=layers, colorbar=False,
                        title=f"{pair.label}\nseed {a} vs itself", xlabel=f"seed {a}", ylabel=f"seed {a}")
        if pair.cross is None:
            pending_panel(row[1], f"seed {a} vs seed {b}")
        else:
            cka_heatmap(pair.cross.cka, ax=row[1], layers=layers, title=f"seed {a} vs seed {b}",
                        xlabel=f"seed {b}", ylabel=f"seed {a}")
    return fig


@figure
def inside_outside(table, ax: Axes | None = None) -> Axes:
    """Cross-seed CKA of each layer with the same layer of the other seed, averaged inside
    the block (vertical) and outside it (horizontal), one point per model."""
    ax = _axes(ax, size=(4.2, 3.8))
    if not table.empty:
        sns.scatterplot(data=table, x="outside_block", y="inside_block", hue="model", s=60, ax=ax)
        ax.legend(fontsize=SMALL, frameon=False)
    ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
    ax.set(xlabel="cross-seed CKA outside the block", ylabel="inside the block", xlim=(0, 1.02), ylim=(0, 1.02))
    return ax


@figure
def cross_architecture_figure(pairs: Sequence[ArchitecturePanel]):
    """Paper Fig. E.1: CKA between every layer of one architecture (rows) and of another
    (columns), one panel per pair (``run_analyses.ArchitecturePanel``), the colour bar
    beside the last. Returns the Figure."""
    fig, axes = side_by_side(len(pairs), size=(3.6, 3.4), sharey=False)
    for index, (ax, pair) in enumerate(zip(axes, pairs)):
        if pair.cross is None:
            pending_panel(ax, "pending")
            continue
        cka_heatmap(pair.cross.cka, ax=ax, colorbar=index == len(pairs) - 1, xlabel=pair.xlabel, ylabel=pair.ylabel)
        ax.set_aspect("auto")  # two depths: a rectangle, stretched to the panel
    return fig


@figure
def population_pairs(pairs: Sequence, columns: int = 3):
    """Per-example counts (``per_example_counts``) for several pairs of populations
    (``populations.PairPanel``). Returns the Figure."""
    if not pairs:
        fig, ax = plt.subplots(figsize=(3.3, 1.2), layout="constrained")
        ax.axis("off")
        ax.text(0.5, 0.5, "no such pair in this profile", ha="center", va="center", color="0.45")
        return fig
    columns = min(len(pairs), columns)
    rows = -(-len(pairs) // columns)
    width = min(3.3 * columns + 0.8, PAGE_WIDTH)
    fig, axes = plt.subplots(rows, columns, figsize=(width, (width - 0.8) / columns * 0.97 * rows), layout="constrained",
                             squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(pairs):
            ax.axis("off")
            continue
        pair = pairs[index]
        if pair.x is None or pair.y is None:
            pending_panel(ax, pair.title)
        else:
            per_example_counts(pair.x, pair.y, ax=ax, xlabel=pair.xlabel, ylabel=pair.ylabel, title=pair.title,
                               colorbar=index == len(pairs) - 1)
    return fig


NAMED_CLASSES = 30


@figure
def class_differences(tests, ylabel: str = "accuracy, wide minus deep"):
    """Paper Figs. 7c, F.4: per-class accuracy differences, sorted; bars that pass the
    test coloured. ``tests``: ``prediction_stats.welch_per_class`` rows as a DataFrame.
    Beyond ``NAMED_CLASSES`` classes (CIFAR-100) only the coloured bars are named: a
    hundred names do not fit a page."""
    if tests.empty:
        return pending_panel(plt.subplots(figsize=(4, 2.4), layout="constrained")[1], "per-class differences").figure
    tests = tests.sort_values("difference").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(min(2.5 + 0.35 * len(tests), PAGE_WIDTH), 3.4), layout="constrained")
    ax.bar(tests.index, tests["difference"], color=np.where(tests["significant"], "C0", "0.75"))
    ax.axhline(0, color="0.3", lw=0.8)
    named = tests if len(tests) <= NAMED_CLASSES else tests[tests["significant"]]
    ax.set_xticks(named.index, named["class"], rotation=90, fontsize=SMALL)
    if len(named) < len(tests):
        ax.set_xlabel(f"{len(tests)} classes, sorted; the significant ones named", fontsize=SMALL)
    ax.set(ylabel=ylabel)
    return fig


@figure
def over_training(rows, y: str, ax: Axes | None = None, ylabel: str | None = None, title: str | None = None,
                  ylim=None, mark: float | None = None, legend: bool = True,
                  xlabel: str = "SGD step (0: initialisation)") -> Axes:
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
    ax.set(xlabel=xlabel, ylabel=y if ylabel is None else ylabel, ylim=ylim)
    ax.set_xlim(left=-0.3)
    if ax.get_legend() is not None:
        ax.get_legend().set_title(None)
        ax.legend(fontsize=SMALL, frameon=False)
    if title:
        ax.set_title(title, fontsize=TEXT)
    return ax


@figure
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
        ax.set_title(title, fontsize=TEXT)
    return ax


OVER_TRAINING = (("block", "block measure"), ("overlap", "overlap with the final block"),
                 ("pc1", "PC1 share, last two stages"), ("to_final", "CKA with the final model"),
                 ("test_acc", "test accuracy"))


@figure
def over_training_figure(rows, mark: float | None = None, width: float = PAGE_WIDTH):
    """The five curves of ``OVER_TRAINING`` against the SGD step (``over_training``), in
    two rows of three panels ``width`` inches wide; the sixth panel holds the legend.
    ``mark``: a step marked with a dashed line in every panel. Returns the Figure."""
    fig, axes = plt.subplots(2, 3, figsize=(width, 4.6), layout="constrained")
    for ax, (y, title) in zip(axes.flat, OVER_TRAINING):
        over_training(rows, y, ax=ax, ylabel="", title=title, ylim=(-0.02, 1.02) if y == "block" else None, mark=mark,
                      legend=ax is axes[0, 0], xlabel="SGD step")
        _legible(ax)
    axes[1, 2].axis("off")
    if axes[0, 0].get_legend() is not None:  # moved to the spare panel
        handles, labels = axes[0, 0].get_legend_handles_labels()
        axes[0, 0].get_legend().remove()
        axes[1, 2].legend(handles, labels, loc="center", frameon=False, fontsize=TEXT)
    return fig


@figure
def removal_figure(rows, width: float = PAGE_WIDTH):
    """``removal_curves`` of the block measure and of the mean CKA over the original
    block, side by side, ``width`` inches wide. Returns the Figure."""
    fig, axes = plt.subplots(1, 2, figsize=(width, 2.9), layout="constrained")
    removal_curves(rows, "block", ax=axes[0], ylabel="block measure")
    removal_curves(rows, "block_cka", ax=axes[1], ylabel="mean CKA, original block")
    for ax in axes:
        _legible(ax)
    return fig


@figure
def wrapped_heatmaps(rows: Sequence[Sequence], titles: Sequence[Sequence[str]], row_labels: Sequence[str] | None = None,
                     columns: int = 5, width: float = PAGE_WIDTH, bar_label: str = "CKA"):
    """CKA heatmaps, one list of (L, L) matrices (None: pending) per row, as
    ``heatmap_grid`` draws them but legible at a page's width: a row longer than
    ``columns`` is wrapped into lines of equal length, each labelled with the row's label,
    and the figure is at most ``width`` inches wide; ``bar_label`` names the colour bar.
    Returns the Figure."""
    lines = []  # (matrices, titles, label) of each line of panels
    for r, (row, row_titles) in enumerate(zip(rows, titles)):
        per_line = -(-len(row) // -(-len(row) // columns))  # len(row) over as few lines as fit, evenly
        lines += [(row[i : i + per_line], row_titles[i : i + per_line], row_labels[r] if row_labels else None)
                  for i in range(0, len(row), per_line)]
    ncols = max(len(matrices) for matrices, _, _ in lines)
    panel = min(1.6, (width - 1.0) / ncols)  # inches; the rest holds the row labels and the colour bar
    fig, axes = plt.subplots(len(lines), ncols, figsize=(panel * ncols + 1.0, (panel + 0.3) * len(lines)),
                             layout="constrained", squeeze=False)
    for ax_row, (matrices, line_titles, label) in zip(axes, lines):
        for c, ax in enumerate(ax_row):
            if c >= len(matrices):
                ax.axis("off")
            elif matrices[c] is None:
                pending_panel(ax, line_titles[c])
            else:
                cka_heatmap(matrices[c], ax=ax, title=line_titles[c], colorbar=False, xlabel="", ylabel="")
            _legible(ax)
        if label is not None:
            ax_row[0].set_ylabel(label, fontsize=TEXT)
    images = [ax.images[0] for ax in axes.flat if ax.images]
    if images:
        bar = fig.colorbar(images[0], ax=axes, fraction=0.02, pad=0.01)
        bar.set_label(bar_label, fontsize=TEXT)
        bar.ax.tick_params(labelsize=SMALL)
    return fig


def _legible(ax: Axes) -> None:
    """Chapter 7's text sizes on one panel: ticks at ``SMALL``, the rest at ``TEXT``."""
    ax.tick_params(labelsize=SMALL)
    ax.title.set_fontsize(TEXT)
    ax.xaxis.label.set_fontsize(TEXT)
    ax.yaxis.label.set_fontsize(TEXT)
    if ax.get_legend() is not None:
        for text in [*ax.get_legend().get_texts(), ax.get_legend().get_title()]:
            text.set_fontsize(TEXT)


@figure
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
        ax.set_title(title, fontsize=TEXT)
    return ax


@figure
def image_panels(sets: Sequence, titles: Sequence[str], columns: int = 10, size: float = 0.55):
    """One ``image_grid`` per set of images, stacked; returns the Figure."""
    heights = [max(1, -(-len(images) // columns)) for images in sets]
    fig, axes = plt.subplots(len(sets), 1, figsize=(size * columns, size * sum(heights) + 0.45 * len(sets)),
                             layout="constrained", squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, images, title in zip(axes[:, 0], sets, titles):
        image_grid(images, ax=ax, columns=columns, title=title)
    return fig


@figure
def placeholder(text: str, ax: Axes | None = None) -> Axes:
    """An empty panel that says ``text``, for a figure whose results are pending."""
    ax = _axes(ax, size=(4.0, 1.2))
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_axis_off()
    return ax


@figure
def measure_blocks_figure(rows, removal_run: str | None = None, width: float = PAGE_WIDTH):
    """Chapter 8: the block measure under each similarity measure. Left, every run with
    all images (one point per seed, the bar their mean); right, ``removal_run`` with all
    images, without its dominant images and without as many random ones. ``rows``: dicts
    with run, measure, condition and block (``measure_maps.block_rows``). Returns the Figure."""
    import pandas as pd

    table = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(width, 3.2), layout="constrained", sharey=True)
    for ax, data, hue in ((axes[0], table[table["condition"] == "all images"] if len(table) else table, "run"),
                          (axes[1], table[table["run"] == removal_run] if len(table) else table, "condition")):
        if len(data):
            sns.barplot(data=data, x="measure", y="block", hue=hue, errorbar=None, alpha=0.5, palette="colorblind", ax=ax)
            sns.stripplot(data=data, x="measure", y="block", hue=hue, dodge=True, palette="colorblind", ax=ax,
                          legend=False, size=4)
            ax.legend(fontsize=SMALL, title=None, loc="upper right")
        else:
            pending_panel(ax)
        ax.set(xlabel="", ylabel="block measure (share of layers)", ylim=(0, 1))
        ax.tick_params(axis="x", labelrotation=20)
        _legible(ax)
    axes[0].set_title("every model, all images")
    axes[1].set_title(removal_run or "without the dominant images")
    return fig
