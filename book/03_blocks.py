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
import matplotlib.pyplot as plt
import pandas as pd
from myst_nb import glue

from repsim import plots
from repsim.data import load_dataset
from repsim.grid import Run, block_change, block_summary, heatmap
from repsim.models import ResNetConfig
from repsim.profiles import get_profile

P = get_profile(profile)
S = P.blocks
device = device or P.device
data = load_dataset(P.dataset)
size_label = {None: "all 50,000 images"} | {n: f"{n:,} images" for n in S.train_sizes + (S.full_size,) if n}

# %% [markdown]
# ## Deeper and wider networks (Fig. 1)
#
# The top row makes the network deeper at the standard width; the bottom row makes a
# shallow network wider. Every panel is one model's minibatch CKA between all pairs of
# its layers (every convolution, batch norm, ReLU and residual add, the pool and the
# logits), with the first layer at the bottom left. The title gives the test accuracy.

# %%
depth_row = [heatmap(Run(ResNetConfig(d), S.full_size, seed), P, data, device=device) for d in S.depths]
width_row = [heatmap(Run(ResNetConfig(S.base_depth, w), S.full_size, seed), P, data, device=device) for w in S.widths]
fig = plots.heatmap_grid(
    [[m.cka for m in depth_row], [m.cka for m in width_row]],
    [[f"{m.run.model.name}\n{m.test_acc:.0%}" for m in row] for row in (depth_row, width_row)],
    row_labels=["deeper", "wider"],
)
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
width_grid = [[heatmap(Run(ResNetConfig(S.base_depth, w), n, seed), P, data, device=device) for w in S.widths] for n in sizes]
depth_grid = [[heatmap(Run(ResNetConfig(d), n, seed), P, data, device=device) for d in S.depths] for n in sizes]
for name, grid_maps in (("fig_2", width_grid), ("fig_d2", depth_grid)):
    fig = plots.heatmap_grid(
        [[m.cka for m in row] for row in grid_maps],
        [[f"{m.run.model.name}\n{m.test_acc:.0%}" for m in row] for row in grid_maps],
        row_labels=[size_label[n] for n in sizes],
    )
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
plain_row = [heatmap(Run(ResNetConfig(S.base_depth, w, residual=False), S.full_size, seed), P, data, device=device)
             for w in S.plain_widths]
fig = plots.heatmap_grid([[m.cka for m in plain_row]], [[f"{m.run.model.name}\n{m.test_acc:.0%}" for m in plain_row]])
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
seed_rows = [[heatmap(Run(config, S.full_size, seed + s), P, data, device=device) for s in range(S.seeds)]
             for config in S.seed_models]
fig = plots.heatmap_grid(
    [[m.cka for m in row] for row in seed_rows],
    [[f"seed {m.run.seed}, {m.test_acc:.0%}" for m in row] for row in seed_rows],
    row_labels=[config.name for config in S.seed_models],
)
glue("fig_d1", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_d1
# :name: paper-fig-d1
#
# (Paper Fig. D.1.) Different seeds of one deep (top) and one wide (bottom) model.
# ```
#
# ## Measuring the block
#
# The paper judges the block by eye. `repsim.blocks.find_block` makes it a number: the
# longest run of consecutive layers in which every pair of layers has CKA of at least
# {glue:text}`threshold` (the parameter `block_threshold`), reported as a fraction of
# the model's layers. The table lists it for every model of this chapter.

# %%
all_maps = depth_row + width_row + plain_row + [m for row in width_grid + depth_grid + seed_rows for m in row]
unique = {m.run: m for m in all_maps}  # runs shared between figures count once
table = pd.DataFrame(block_summary(list(unique.values()), block_threshold))
table["train_size"] = table["train_size"].map(lambda n: n or 50_000)
glue("threshold", block_threshold, display=False)
table.sort_values(["residual", "train_size", "width", "depth", "seed"]).style.format(
    {"test_acc": "{:.3f}", "block_fraction": "{:.2f}", "block_mean_cka": "{:.3f}"}, na_rep="-").hide(axis="index")

# %% [markdown]
# One plot summarises Figs. 1, 2 and D.2: block size against width (at depth
# {glue:text}`base_depth`) and against depth (at width 1x), one line per training-set
# size.

# %%
residual = table[table["residual"] & (table["seed"] == seed)]
by_width = residual[(residual["depth"] == S.base_depth)]
by_depth = residual[(residual["width"] == 1)]
fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3), layout="constrained", sharey=True)
plots.block_trend(by_width, x="width", hue="train_size", ax=axes[0], title=f"ResNet-{S.base_depth}, wider")
plots.block_trend(by_depth, x="depth", hue="train_size", ax=axes[1], title="width 1x, deeper")
glue("fig_block_trend", fig, display=False)
plt.close(fig)
smallest, largest = min(n or 50_000 for n in S.train_sizes), max(n or 50_000 for n in S.train_sizes)
widest, deepest = max(S.widths), max(S.depths)
glue("base_depth", S.base_depth, display=False)
for key, frame, column, value in (("wide", by_width, "width", widest), ("deep", by_depth, "depth", deepest),
                                  ("narrow", by_width, "width", min(S.widths)), ("shallow", by_depth, "depth", min(S.depths))):
    for size_name, size in (("small", smallest), ("large", largest)):
        picked = frame[(frame[column] == value) & (frame["train_size"] == size)]["block_fraction"]
        glue(f"block_{key}_{size_name}", f"{picked.iloc[0]:.2f}", display=False)
wider, deeper = block_change(by_width, "width", "train_size"), block_change(by_depth, "depth", "train_size")
# Negated: positive when the smallest training set gives the larger block.
less_data_w, less_data_d = -block_change(by_width, "train_size", "width"), -block_change(by_depth, "train_size", "depth")
for key, change in (("wider", wider), ("deeper", deeper), ("less_w", less_data_w), ("less_d", less_data_d)):
    glue(f"agree_{key}", f"{(change > 0).sum()} of {len(change)}", display=False)
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
# **Against the paper.** The paper's claims are that the block grows with width and
# with depth, and that less data lets it form in smaller networks. In this run, going
# from the narrowest to the widest model enlarges the block at
# {glue:text}`agree_wider` training-set sizes, and going from the shallowest to the
# deepest model at {glue:text}`agree_deeper`. Training on the smallest rather than the
# largest set enlarges it for {glue:text}`agree_less_w` widths and
# {glue:text}`agree_less_d` depths. Where a count falls short of all, the heatmaps
# above show which model departs; at the profile's scale (short schedules on few
# images) the models are far from the paper's accuracy, and the block measure depends
# on its threshold, so read these counts with the heatmaps, not instead of them.
