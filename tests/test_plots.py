"""Plots draw what they are given and leave global matplotlib state alone."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from repsim import plots  # noqa: E402


def test_cka_heatmap_shows_the_matrix_with_layer_zero_at_the_bottom():
    cka = np.random.default_rng(0).uniform(size=(5, 5))
    before = dict(matplotlib.rcParams)
    ax = plots.cka_heatmap(cka, layers=["stem.conv", "stage1.block0.conv1", "stage1.block0.add", "pool", "fc"])
    image = ax.images[0]
    np.testing.assert_array_equal(image.get_array(), cka)
    assert image.origin == "lower" and image.get_clim() == (0.0, 1.0)
    assert len(ax.lines) == 2 * 2  # stage boundaries: stem|stage1, stage1|head, each as h and v line
    assert dict(matplotlib.rcParams) == before
    plt.close(ax.figure)


def test_heatmap_grid_leaves_short_rows_empty():
    rows = [[np.eye(3), np.eye(3), np.eye(3)], [np.eye(4)]]
    fig = plots.heatmap_grid(rows, [["a", "b", "c"], ["d"]], row_labels=["top", "bottom"])
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.images]
    assert [ax.get_title() for ax in visible] == ["a", "b", "c", "d"]
    plt.close(fig)


def test_block_trend_draws_the_seeds_mean_per_group_with_bars_of_two_standard_errors():
    seed0 = [0.1, 0.3, 0.6, 0.0, 0.1, 0.2]
    seed1 = [v + 0.1 for v in seed0]
    table = pd.DataFrame({"width": [1, 2, 4] * 4, "train_size": ([1000] * 3 + [3000] * 3) * 2,
                          "seed": [0] * 6 + [1] * 6, "block_fraction": seed0 + seed1})
    ax = plots.block_trend(table, x="width", hue="train_size")
    drawn = {tuple(np.round(np.asarray(line.get_ydata(), dtype=float), 6)) for line in ax.lines
             if len(line.get_xdata()) == 3}
    assert {(0.15, 0.35, 0.65), (0.05, 0.15, 0.25)} <= drawn  # the means
    # the bars' caps: two seeds 0.1 apart have a standard error of 0.05, and the bars reach 2 of them
    assert {(0.05, 0.25, 0.55), (0.25, 0.45, 0.75), (-0.05, 0.05, 0.15), (0.15, 0.25, 0.35)} <= drawn
    plt.close(ax.figure)
    ax = plots.block_trend(table, x="width", hue="train_size", legend_title="training images")
    assert ax.get_legend().get_title().get_text() == "training images"
    plt.close(ax.figure)


def test_variance_by_layer_shades_the_block_and_marks_stages():
    layers = ["stem.conv", "stage1.block0.conv1", "stage1.block0.add", "stage2.block0.add", "fc"]
    ax = plots.variance_by_layer([0.1, 0.2, 0.8, 0.9, 0.3], layers, block=(2, 4))
    assert list(ax.lines[0].get_ydata()) == [0.1, 0.2, 0.8, 0.9, 0.3]
    (span,) = ax.patches
    assert (span.get_x(), span.get_x() + span.get_width()) == (1.5, 3.5)
    assert len(ax.lines) == 1 + 3  # the curve and three stage boundaries
    plt.close(ax.figure)


def test_probe_accuracy_splits_before_and_after_the_add():
    rows = [{"layer": f"stage1.block{b}.{part}", "test_acc": acc}
            for b, (before, after) in enumerate([(0.3, 0.4), (0.5, 0.6)]) for part, acc in (("bn2", before), ("add", after))]
    ax = plots.probe_accuracy(rows, block=(1, 1))
    curves = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
    assert curves == {"before the add (BN)": [0.3, 0.5], "after the add": [0.4, 0.6]}
    assert len(ax.patches) == 1
    plt.close(ax.figure)


def test_deletion_curves_one_line_per_stage():
    table = pd.DataFrame({"stage": [1, 1, 2, 2], "deleted": [0, 1, 0, 1], "test_acc": [0.9, 0.8, 0.9, 0.5]})
    ax = plots.deletion_curves(table)
    lines = [tuple(line.get_ydata()) for line in ax.lines if len(line.get_xdata()) == 2]
    assert sorted(lines) == [(0.9, 0.5), (0.9, 0.8)]
    plt.close(ax.figure)


LAYERS = ["stem.conv", "stage1.block0.conv1", "stage1.block0.add", "pool", "fc"]


def _runs():
    from repsim.models import ResNetConfig
    from repsim.runs import Run

    return Run(ResNetConfig(8), 64), Run(ResNetConfig(14), 64)


def _heatmap(run, test_acc=0.5, cka=None):
    from repsim.heatmaps import Heatmap

    return Heatmap(run, np.eye(5) if cka is None else cka, LAYERS, test_acc)


def _pending(ax) -> bool:
    return [text.get_text() for text in ax.texts] == ["pending"]


def test_heatmap_rows_draws_heatmaps_titled_by_the_model_and_pending_panels():
    from repsim.heatmaps import seed_title

    a, b = _runs()
    fig = plots.heatmap_rows([[_heatmap(a, 0.91), None], [_heatmap(b)]], row_labels=["top", "bottom"])
    panels = [ax for ax in fig.axes if ax.axison and ax.get_title()]
    assert [ax.get_title() for ax in panels] == [f"{a.model.name}\n91%", "pending", f"{b.model.name}\n50%"]
    np.testing.assert_array_equal(panels[0].images[0].get_array(), np.eye(5))
    assert _pending(panels[1]) and panels[0].get_ylabel() == "top"
    plt.close(fig)
    fig = plots.heatmap_rows([[_heatmap(a.with_seed(1), 0.93)]], title=seed_title)
    assert fig.axes[0].get_title() == "seed 1, 93%"
    plt.close(fig)


def test_pc_figure_draws_a_row_per_model_from_pc_panels():
    from repsim.run_analyses import PCAnalysis, pc_panels

    a, b = _runs()
    pcs = PCAnalysis(a, LAYERS, np.linspace(0.1, 0.5, 5), np.eye(5), np.eye(5))
    runs = {"with a block": a, "without a block": b}
    fig = plots.pc_figure(pc_panels(runs, {"with a block": pcs}, {"with a block": _heatmap(a, cka=np.ones((5, 5)))}, 0.9))
    assert fig.axes[0].get_title() == f"{a.model.name}: PC1 cosine"
    (span,) = fig.axes[1].patches  # the block: all five layers
    assert (span.get_x(), span.get_x() + span.get_width()) == (-0.5, 4.5)
    assert all(_pending(ax) and ax.get_title() == b.model.name for ax in fig.axes[4:8])
    plt.close(fig)


def test_probe_and_deletion_figures_draw_each_model_or_a_pending_panel():
    from repsim.run_analyses import deletion_panels, probe_panels

    a, b = _runs()
    runs = {"with a block": a, "without a block": b}
    rows = [{"layer": f"stage1.block{i}.{part}", "test_acc": 0.5} for i in range(2) for part in ("bn2", "add")]
    left, right = plots.probe_figure(probe_panels(runs, {"with a block": rows}, {"with a block": (0, 1)})).axes
    assert left.get_title() == f"{a.model.name} (with a block)" and len(left.lines) == 2 and len(left.patches) == 1
    assert _pending(right) and right.get_title() == f"{b.model.name} (without a block)"
    deleted = [{"stage": 1, "deleted": k, "test_acc": acc} for k, acc in enumerate((0.9, 0.7))]
    left, right = plots.deletion_figure(deletion_panels(runs, {"without a block": deleted})).axes
    assert _pending(left) and [tuple(line.get_ydata()) for line in right.lines if len(line.get_xdata()) == 2] == [(0.9, 0.7)]
    plt.close("all")


def test_seed_pairs_and_architecture_figures_take_the_results_themselves():
    from repsim.run_analyses import CrossCKA, architecture_panels, seed_pair_panels

    a, b = _runs()
    cross = CrossCKA(np.full((5, 5), 0.3), LAYERS, LAYERS)
    fig = plots.seed_pairs_figure(seed_pair_panels([(a, a.with_seed(1)), (b, b.with_seed(1))],
                                                   [_heatmap(a), None], [cross, None]))
    within, across, *pending = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert within.get_title() == f"{a.label}\nseed 0 vs itself" and across.get_title() == "seed 0 vs seed 1"
    np.testing.assert_array_equal(across.images[0].get_array(), cross.cka)
    assert len(across.lines) == 2 * 2 and all(_pending(ax) for ax in pending)  # seed 0's stage boundaries
    plt.close(fig)
    wide = CrossCKA(np.zeros((5, 7)), LAYERS, LAYERS + ["x", "y"])
    fig = plots.cross_architecture_figure(architecture_panels([(a, b), (b, a)], [wide, None], [_heatmap(a, 0.9), None],
                                                              [None, None]))
    first, second = fig.axes
    assert first.get_ylabel() == f"{a.model.name} (90%)" and first.get_xlabel() == b.model.name
    assert first.images[0].get_array().shape == (5, 7) and _pending(second)
    plt.close(fig)


# -- chapter 7: figures legible at the page's width -------------------------------------
def _smallest_text(fig) -> float:
    """Points of the smallest visible text of a drawn figure, as shown ``plots.PAGE_WIDTH``
    inches wide (a wider figure is scaled down to the page)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    scale = min(1.0, plots.PAGE_WIDTH / fig.get_size_inches()[0])
    sizes = [text.get_fontsize() for text in fig.findobj(Text) if text.get_visible() and text.get_text()]
    return min(sizes) * scale


def test_wrapped_heatmaps_wrap_long_rows_and_stay_legible_at_the_page_width():
    rows = [[np.eye(30)] * 10, [np.eye(20)] * 8]
    titles = [[f"step {i:,}" for i in range(10)], [f"step {i:,}" for i in range(8)]]
    fig = plots.wrapped_heatmaps(rows, titles, ["with", "without"])
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == titles[0] + titles[1]
    grid = [(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start) for ax in panels]
    assert grid[:10] == [(r, c) for r in (0, 1) for c in range(5)]  # ten snapshots: two lines of five
    assert grid[10:] == [(r, c) for r in (2, 3) for c in range(4)]  # eight: two lines of four
    assert [panels[i].get_ylabel() for i in (0, 5, 10, 14)] == ["with", "with", "without", "without"]
    assert fig.get_size_inches()[0] <= plots.PAGE_WIDTH and _smallest_text(fig) >= 8
    plt.close(fig)
    fig = plots.wrapped_heatmaps([[np.eye(4), None, np.eye(4)]], [["all", "pending", "random"]])
    assert sum(_pending(ax) for ax in fig.axes) == 1 and _smallest_text(fig) >= 8
    plt.close(fig)


def test_over_training_figure_draws_five_measures_and_a_legend_at_the_page_width():
    rows = [{"model": model, "step": step, "block": 0.1 * i, "overlap": 0.2 * i, "pc1": 0.3, "to_final": 0.5 + 0.1 * i,
             "test_acc": 0.1 * i} for model in ("a", "b") for i, step in enumerate((0, 1, 10, 100))]
    fig = plots.over_training_figure(rows, mark=10)
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == [title for _, title in plots.OVER_TRAINING]
    assert all(ax.get_xscale() == "symlog" and any(list(line.get_xdata()) == [10, 10] for line in ax.lines)
               for ax in panels)  # every panel marks the step
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert [text.get_text() for text in legend.get_texts()] == ["a", "b"]
    assert fig.get_size_inches()[0] <= plots.PAGE_WIDTH and _smallest_text(fig) >= 8
    plt.close(fig)
    fig = plots.removal_figure([{"removed": k, "images": which, "block": 0.5, "block_cka": 0.7}
                                for which in ("dominant", "random") for k in (0, 4, 8)])
    assert [ax.get_ylabel() for ax in fig.axes] == ["block measure", "mean CKA, original block"]
    assert fig.get_size_inches()[0] <= plots.PAGE_WIDTH and _smallest_text(fig) >= 8
    plt.close(fig)
