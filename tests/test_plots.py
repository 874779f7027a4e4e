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


def test_block_trend_draws_one_line_per_group():
    table = pd.DataFrame({"width": [1, 2, 4, 1, 2, 4], "train_size": [1000] * 3 + [3000] * 3,
                          "block_fraction": [0.1, 0.3, 0.6, 0.0, 0.1, 0.2]})
    ax = plots.block_trend(table, x="width", hue="train_size")
    lines = [line for line in ax.lines if len(line.get_xdata()) == 3]
    assert sorted(tuple(line.get_ydata()) for line in lines) == [(0.0, 0.1, 0.2), (0.1, 0.3, 0.6)]
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
