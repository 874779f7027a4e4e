"""Every figure can be read at the page's width: no text below 8 points as displayed."""

from __future__ import annotations

import inspect

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from repsim import legibility, plots  # noqa: E402
from repsim.models import ResNet, ResNetConfig, layer_names  # noqa: E402
from repsim.populations import PairPanel  # noqa: E402
from repsim.run_analyses import PCAnalysis, PCPanel, ProbePanel  # noqa: E402
from repsim.runs import Run  # noqa: E402

LAYERS = layer_names(ResNet(ResNetConfig(depth=20)))
RNG = np.random.default_rng(0)


def _cka(n: int = len(LAYERS)) -> np.ndarray:
    m = RNG.uniform(size=(n, n))
    return (m + m.T) / 2


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_a_wide_figure_is_shrunk_and_its_text_with_it():
    fig, ax = plt.subplots(figsize=(14.4, 3))
    ax.set_title("a title at 10 points")
    assert legibility.scale(fig) == pytest.approx(0.5)
    assert min(size for size, _ in legibility.displayed_sizes(fig)) == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"is 5.0 pt as displayed \(figure 14.4 in wide on a 7.2 in page\)"):
        legibility.check(fig)


def test_small_text_fails_even_on_a_narrow_figure_and_readable_text_passes():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1])
    assert legibility.check(fig) is fig  # 10-point defaults, at full size
    ax.tick_params(labelsize=6)
    with pytest.raises(ValueError, match="6.0 pt as displayed"):
        legibility.check(fig)
    ax.tick_params(labelsize=8)
    ax.text(0.5, 0.5, "", fontsize=2)  # empty text is not shown
    legibility.check(fig)


def test_every_drawing_function_checks_its_figure():
    helpers = {"figure", "pending_panel", "side_by_side"}  # the decorator, a panel filler, a layout helper
    drawing = [name for name, f in inspect.getmembers(plots, inspect.isfunction)
               if f.__module__ == plots.__name__ and not name.startswith("_") and name not in helpers]
    assert len(drawing) > 20
    assert [name for name in drawing if not hasattr(getattr(plots, name), "__wrapped__")] == []


def test_a_figure_made_illegible_is_refused_with_its_name():
    @plots.figure
    def tiny_text():
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.set_title("too small", fontsize=5)
        return fig

    with pytest.raises(ValueError, match="tiny_text: text 'too small' is 5.0 pt"):
        tiny_text()


# The widest inputs each figure gets in the book, and wider: they must still fit.
WIDEST = {
    "a row of six heatmaps": lambda: plots.heatmap_grid([[_cka()] * 6, [_cka(), None]], [list("abcdef"), ["g", "h"]],
                                                        row_labels=["width 1x", "depth 20"]),
    "block trends": lambda: plots.block_trends(pd.DataFrame({
        "depth": [20, 20, 56, 110], "width": [1, 4, 1, 1], "train_size": [3000, 50000, 3000, 50000],
        "block_fraction": [0.1, 0.5, 0.2, 0.4]}), base_depth=20),
    "estimators": lambda: plots.estimator_panels([8, 16, 32], {"biased": RNG.uniform(size=(3, 4)),
                                                               "unbiased": RNG.uniform(size=(3, 4))}, None, "a pair"),
    "Fig. 3": lambda: plots.pc_figure([PCPanel("ResNet-110 (1x)", PCAnalysis(Run(ResNetConfig(20)), LAYERS,
                                                                              RNG.uniform(size=len(LAYERS)), _cka(),
                                                                              _cka()), _cka(), (3, 12)),
                                       PCPanel("ResNet-26 (4x)", None, None, None)]),
    "Fig. D.5": lambda: plots.pc1_across_models(pd.DataFrame({
        "model": ["ResNet-20 (1x)", "ResNet-164 (1x)"] * 3, "training images": [3000, 12500, 50000] * 2,
        "pc1_variance": RNG.uniform(size=6), "block_fraction": RNG.uniform(size=6)}), 0.5),
    "Fig. 4, three models": lambda: plots.probe_figure([ProbePanel(f"model {i}", None, None) for i in range(3)]),
    "Fig. F.1, three pairs": lambda: plots.population_pairs([PairPanel(RNG.uniform(size=(6, 50)) > 0.3,
                                                                       RNG.uniform(size=(6, 50)) > 0.3,
                                                                       "ResNet-14 (2x)", "ResNet-62 (1x)", "a pair")] * 3),
    "Fig. F.4 on CIFAR-100": lambda: plots.class_differences(pd.DataFrame({
        "class": [f"class {i}" for i in range(100)], "difference": RNG.normal(size=100),
        "significant": RNG.uniform(size=100) < 0.1})),
    "removal": lambda: plots.removal_figure([{"removed": n, "images": kind, "block": 0.5, "block_cka": 0.9}
                                             for n in (0, 10, 100) for kind in ("dominant", "random")]),
    "images": lambda: plots.image_panels([RNG.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)] * 2, ["a", "b"]),
}


@pytest.mark.parametrize("name", sorted(WIDEST))
def test_each_figure_fits_the_page_at_its_widest(name):
    fig = WIDEST[name]()  # the decorator raises on illegible text
    assert fig.get_figwidth() <= plots.PAGE_WIDTH + 1e-9
    assert legibility.displayed_sizes(fig)[0][0] >= legibility.MIN_POINTS
