# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Depth, width and the block structure
#
# Section 3 of {cite}`nguyen2021wide` makes two claims. First, as a ResNet gets wider
# or deeper, a large set of consecutive layers, mostly in the later stages, comes to
# share nearly the same representation: a bright square in the layer-by-layer CKA
# heatmap, the *block structure*. Second, what matters is capacity relative to the
# data: trained on less data, narrower and shallower networks show the block too.
#
# This chapter trains the grids of models behind the paper's Figs. 1, 2, C.1, D.1 and
# D.2 at the scale of the profile, draws their heatmaps, and then measures the block
# in each of them instead of judging it by eye.

# %% tags=["parameters"]
profile = "laptop"  # smoke | laptop | paper: see repsim/profiles.py
seed = 0  # seed of every model except the extra seeds of Fig. D.1
device = None  # None uses the profile's device
block_threshold = 0.9  # CKA that every pair of layers in a block must reach

# %% tags=["remove-cell"]
# Outside this repository (on Colab or Binder) repsim is not installed yet: install it
# from the book's repository.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("repsim") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "git+https://github.com/repsim-book/wide-deep-repsim@main"], check=True)
    importlib.invalidate_caches()

# %% tags=["remove-cell"]
from functools import partial

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from repsim import plots
from repsim.data import is_available, load_dataset
from repsim.grid import block_change, block_summary, heatmap_row, verdict
from repsim.models import ResNetConfig
from repsim.profiles import chapter_device, get_profile, grid_vs_paper

P = get_profile(profile)
S = P.blocks
device = chapter_device(device, P)  # on Colab: its GPU when there is one
data = load_dataset(P.dataset)
size_label = {None: "all 50,000 images"} | {n: f"{n:,} images" for n in S.train_sizes + (S.full_size,) if n}

# Within-model CKA heatmaps of a list of architectures (trained once, then loaded from the store).
row = partial(heatmap_row, profile=P, data=data, train_size=S.full_size, seed=seed, device=device)


# %% [markdown]
# ## The grid of models
#
# The paper trains every model for 300 epochs on up to all 50,000 training images, for
# depths up to ResNet-164 and widths up to 10x. The profile {glue:text}`profile_name`
# trains the grid below; where it is smaller than the paper's, the figures are thinned
# accordingly, and the training recipe (see {doc}`02_cka`) is shortened to at least
# {glue:text}`min_steps` SGD steps per model.

# %%
glue("profile_name", P.name, display=False)
glue("min_steps", f"{P.min_steps:,}", display=False)
pd.DataFrame(grid_vs_paper(S)).set_index(["figure", "grid"])

# %% [markdown]
# Each training-set size gets this schedule (a smaller set is passed over more often,
# so that every model takes at least the profile's number of SGD steps; a larger set
# is therefore seen fewer times, which at small budgets also means less trained):

# %% tags=["hide-input"]
schedule = []
for n in sorted(S.train_sizes, key=lambda n: n or 50_000):
    recipe = P.training(n)
    images = n or 50_000
    schedule.append({"training images": f"{images:,}", "epochs": recipe.epochs,
                     "SGD steps": recipe.epochs * -(-images // recipe.batch_size), "batch": recipe.batch_size})
pd.DataFrame(schedule).set_index("training images")

# %% [markdown]
# ## Deeper and wider networks (Fig. 1)
#
# The top row makes the network deeper at the standard width; the bottom row makes a
# shallow network wider. Every panel is one model's minibatch CKA between all pairs of
# its layers (every convolution, batch norm, ReLU and residual add, the pool and the
# logits), with the first layer at the bottom left. The title gives the test accuracy.

# %% tags=["remove-input"]
if S.full_size is not None:
    display(Markdown(f"Where the paper trains these models on all 50,000 training images, this profile uses "
                     f"{S.full_size:,}: at its scale, few images are what lets narrow networks show the block "
                     "(the lever of Figs. 2 and D.2)."))

# %%
depth_row = row([ResNetConfig(d) for d in S.depths])
width_row = row([ResNetConfig(S.base_depth, w) for w in S.widths])
fig = plots.heatmap_grid([[m.cka for m in depth_row], [m.cka for m in width_row]],
                         [[m.title for m in depth_row], [m.title for m in width_row]], row_labels=["deeper", "wider"])
glue("fig_1", fig, display=False)
glue("fig1_data", size_label[S.full_size], display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_1
# :name: paper-fig-1
#
# (Paper Fig. 1.) Within-model CKA as depth grows at width 1x (top) and as width grows
# at ResNet-{glue:text}`base_depth` (bottom), all trained on {glue:text}`fig1_data`
# of CIFAR-10.
# ```

# %% [markdown]
# ## Less data (Figs. 2 and D.2)
#
# The paper's second lever: the same architectures trained on fixed prefixes of the
# training set. Down each column the training set shrinks.

# %%
sizes = sorted(S.train_sizes, key=lambda n: n or 10**9, reverse=True)
width_grid = [row([ResNetConfig(S.base_depth, w) for w in S.widths], train_size=n) for n in sizes]
depth_grid = [row([ResNetConfig(d) for d in S.depths], train_size=n) for n in sizes]
for name, grid_maps in (("fig_2", width_grid), ("fig_d2", depth_grid)):
    fig = plots.heatmap_grid([[m.cka for m in maps] for maps in grid_maps], [[m.title for m in maps] for maps in grid_maps],
                             row_labels=[size_label[n] for n in sizes])
    glue(name, fig, display=False)
    plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_2
# :name: paper-fig-2
#
# (Paper Fig. 2.) Width grows along each row; the training set shrinks down the
# columns (the row label gives its size).
# ```
#
# ```{glue:figure} fig_d2
# :name: paper-fig-d2
#
# (Paper Fig. D.2.) As {numref}`paper-fig-2`, with depth growing along each row.
# ```

# %% [markdown]
# ## Without residual connections (Fig. C.1)
#
# The block is not a side effect of the skip connections: the paper finds it in wide
# networks without them too. Here are the same networks with the residual add removed.

# %%
plain_row = row([ResNetConfig(S.base_depth, w, residual=False) for w in S.plain_widths])
fig = plots.heatmap_grid([[m.cka for m in plain_row]], [[m.title for m in plain_row]])
glue("fig_c1", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_c1
# :name: paper-fig-c1
#
# (Paper Fig. C.1.) Within-model CKA of networks without residual connections, as
# width grows.
# ```
#
# ## Across seeds (Fig. D.1)
#
# One deep and one wide model, trained from different random initialisations (and data
# orders). The paper finds the block in every seed, at a position and size that vary.

# %%
seed_rows = [[m for s in range(S.seeds) for m in row([config], seed=seed + s)] for config in S.seed_models]
fig = plots.heatmap_grid([[m.cka for m in maps] for maps in seed_rows],
                         [[f"seed {m.run.seed}, {m.test_acc:.0%}" for m in maps] for maps in seed_rows],
                         row_labels=[config.name for config in S.seed_models])
glue("fig_d1", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_d1
# :name: paper-fig-d1
#
# (Paper Fig. D.1.) Different seeds of one deep (top) and one wide (bottom) model.
# ```
#
# ## CIFAR-100
#
# The paper's appendix repeats the heatmaps on CIFAR-100. When CIFAR-100 is available
# (downloaded through torchvision, or beside CIFAR-10 in the folder `REPSIM_DATA`
# names), this section trains the grid of {numref}`paper-fig-1` on it, with 100-way
# classifiers.

# %% tags=["remove-input"]
cifar100_maps = []
if is_available("cifar100"):
    data100 = load_dataset("cifar100")
    depth_row100 = row([ResNetConfig(d) for d in S.depths], data=data100)
    width_row100 = row([ResNetConfig(S.base_depth, w) for w in S.widths], data=data100)
    cifar100_maps = depth_row100 + width_row100
    fig = plots.heatmap_grid([[m.cka for m in depth_row100], [m.cka for m in width_row100]],
                             [[m.title for m in depth_row100], [m.title for m in width_row100]], row_labels=["deeper", "wider"])
    display(Markdown(f"The grid of Fig. 1 trained on {size_label[S.full_size]} of CIFAR-100:"))
    plt.show()
else:
    display(Markdown("CIFAR-100 is not available to this run, so this section is empty. Download it "
                     "through torchvision (`repsim.data.load_dataset('cifar100')` with internet access) "
                     "and run the chapter again to fill it."))

# %% [markdown]
# ## Measuring the block
#
# The paper judges the block by eye. `repsim.blocks.find_block` makes it a number: the
# longest run of consecutive layers in which every pair of layers has CKA of at least
# {glue:text}`threshold` (the parameter `block_threshold`), reported as a fraction of
# the model's layers. The table lists it for every model of this chapter.

# %%
all_maps = depth_row + width_row + plain_row + [m for maps in width_grid + depth_grid + seed_rows for m in maps]
unique = {m.run: m for m in all_maps + cifar100_maps}  # runs shared between figures count once
table = pd.DataFrame(block_summary(list(unique.values()), block_threshold))
table["train_size"] = table["train_size"].map(lambda n: n or 50_000)
glue("threshold", block_threshold, display=False)
table.sort_values(["classes", "residual", "train_size", "width", "depth", "seed"]).style.format(
    {"test_acc": "{:.3f}", "block_fraction": "{:.2f}", "block_mean_cka": "{:.3f}"}, na_rep="-").hide(axis="index")

# %% [markdown]
# One plot summarises Figs. 1, 2 and D.2: block size against width (at depth
# {glue:text}`base_depth`) and against depth (at width 1x), one line per training-set
# size.

# %% tags=["hide-input"]
residual = table[table["residual"] & (table["seed"] == seed) & (table["classes"] == data.num_classes)]
by_width = residual[(residual["depth"] == S.base_depth)]
by_depth = residual[(residual["width"] == 1)]
fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3), layout="constrained", sharey=True)
plots.block_trend(by_width, x="width", hue="train_size", ax=axes[0], title=f"ResNet-{S.base_depth}, wider",
                  legend_title="training images")
plots.block_trend(by_depth, x="depth", hue="train_size", ax=axes[1], title="width 1x, deeper",
                  legend_title="training images")
glue("fig_block_trend", fig, display=False)
plt.close(fig)

# %% tags=["remove-cell"]
smallest, largest = min(n or 50_000 for n in S.train_sizes), max(n or 50_000 for n in S.train_sizes)
widest, deepest = max(S.widths), max(S.depths)
glue("base_depth", S.base_depth, display=False)
for key, frame, column, value in (("wide", by_width, "width", widest), ("deep", by_depth, "depth", deepest),
                                  ("narrow", by_width, "width", min(S.widths)), ("shallow", by_depth, "depth", min(S.depths))):
    for size_name, size in (("small", smallest), ("large", largest)):
        picked = frame[(frame[column] == value) & (frame["train_size"] == size)]["block_fraction"]
        glue(f"block_{key}_{size_name}", f"{picked.iloc[0]:.2f}", display=False)
glue("smallest", f"{smallest:,}", display=False)
glue("largest", f"{largest:,}", display=False)
glue("widest", widest, display=False)
glue("deepest", deepest, display=False)

# %% [markdown]
# ```{glue:figure} fig_block_trend
# :name: block-trend
#
# Block size (the longest run of layers with pairwise CKA $\ge$
# {glue:text}`threshold`, as a fraction of all layers) against width and depth, for
# each training-set size.
# ```
#
# | | {glue:text}`smallest` images | {glue:text}`largest` images |
# |---|---|---|
# | narrowest, ResNet-{glue:text}`base_depth` (1x) | {glue:text}`block_narrow_small` | {glue:text}`block_narrow_large` |
# | widest ({glue:text}`widest`x) | {glue:text}`block_wide_small` | {glue:text}`block_wide_large` |
# | shallowest at 1x | {glue:text}`block_shallow_small` | {glue:text}`block_shallow_large` |
# | deepest (ResNet-{glue:text}`deepest`) | {glue:text}`block_deep_small` | {glue:text}`block_deep_large` |
#
# The table gives the block size of the extreme models of {numref}`block-trend`.
#
# ## Against the paper
#
# Each of the paper's claims becomes a set of comparisons between models of this run,
# and the verdict counts how many of them go the paper's way. The list is computed from
# the table above, so it changes with the profile and the threshold.

# %% tags=["remove-input"]
plain = table[~table["residual"] & (table["classes"] == data.num_classes)].sort_values("width")
seeds = table[table["classes"] == data.num_classes]
seeds = [seeds[(seeds["depth"] == c.depth) & (seeds["width"] == c.width) & seeds["residual"]
               & (seeds["train_size"] == (S.full_size or 50_000))] for c in S.seed_models]
with_block = residual[residual["block_layers"] > 0]
late = (with_block["block_stage"] >= 2).sum()
claims = [
    ("Wider networks have a larger block (widest against narrowest, at each training-set size)",
     verdict(block_change(by_width, "width", "train_size"))),
    ("Deeper networks have a larger block (deepest against shallowest, at each training-set size)",
     verdict(block_change(by_depth, "depth", "train_size"))),
    # Negated: positive when the smallest training set gives the larger block.
    ("Less data gives a larger block (smallest against largest training set, at each width)",
     verdict(-block_change(by_width, "train_size", "width"))),
    ("Less data gives a larger block (smallest against largest training set, at each depth)",
     verdict(-block_change(by_depth, "train_size", "depth"))),
    ("Without residual connections, the wider network still has the larger block",
     verdict([plain["block_fraction"].iloc[-1] - plain["block_fraction"].iloc[0]]) if len(plain) > 1 else "not tested"),
    ("The block starts in one of the last two stages",
     f"{late} of {len(with_block)} residual networks"),
]
lines = [f"- {claim}: **{outcome}**." for claim, outcome in claims]
for config, frame in zip(S.seed_models, seeds):
    lines.append(f"- Across {len(frame)} seeds of {config.name}, the block spans "
                 f"{frame['block_fraction'].min():.0%} to {frame['block_fraction'].max():.0%} of the layers and starts at "
                 f"{', '.join(sorted(set(frame['block_from'].fillna('no block'))))}.")
display(Markdown("\n".join(lines)))

# %% [markdown]
# At the profile's scale (short schedules, often on few images) the models are far
# from the paper's accuracy, and the block measure depends on its threshold: read the
# verdicts together with the heatmaps above, not instead of them.

# %% [markdown]
# ## Exercises
#
# Solutions are folded under each exercise; `python -m repsim.book.student` writes copies of
# the notebooks without them, and without outputs, for a class.

# %% [markdown]
# **Exercise 1.** `repsim.blocks.find_block` depends on its threshold. Without running anything, argue
# that the block it finds can only shrink (or stay the same) as the threshold rises.
# Then check it on the deepest model of {numref}`paper-fig-1`.

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 1
# :class: dropdown
#
# A run of layers counts as a block when every pair in it reaches the threshold. Any
# run that passes a higher threshold passes every lower one, so the set of qualifying
# runs only loses members as the threshold rises, and the longest of them cannot grow.
#
# ```python
# from repsim.blocks import find_block
#
# [find_block(depth_row[-1].cka, threshold=t).size for t in (0.7, 0.8, 0.9, 0.95)]
# ```
# ````

# %% [markdown]
# **Exercise 2.** In this book a smaller training set is also passed over more often, so that every
# model takes the profile's minimum number of SGD steps. Why does that make "less data"
# and "more epochs" hard to tell apart, and what pair of runs would separate them?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 2
# :class: dropdown
#
# With a fixed number of steps, halving the data doubles how often each image is
# seen, so a block that appears on the small set could come from the repetition (more
# fitting of the same images) rather than from the amount of data. Two comparisons pull
# them apart: the same training set with different numbers of steps (say
# `P.with_overrides(min_steps=...)`), and different training sets with the same number
# of epochs. If the block follows the data size in the second comparison but not the
# step count in the first, it is the data that matters.
# ````

# %% [markdown]
# **Exercise 3.** The paper shows the block also in networks without residual connections
# ({numref}`paper-fig-c1`). What explanation of the block does this rule out?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 3
# :class: dropdown
#
# That the block is produced by the skip connections themselves, for example by
# residual branches that add almost nothing so that consecutive layers copy their input.
# A plain network has no identity path to copy along, yet its later layers still come
# to share one representation, so the cause has to lie in what the layers learn.
# ````
