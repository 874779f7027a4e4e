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
seed = 0  # first seed: the figures show it; every comparison uses it and the profile's next seeds
device = None  # None uses the profile's device
compute_missing = None  # None: the profile decides (paper: only on a GPU); False: stored and committed results only
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
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

# %% tags=["remove-cell"]
from repsim import plots
from repsim.claims import CALLED_AT, block_claims, markdown
from repsim.data import is_available, load_dataset
from repsim.figures import fig1_rows, fig2_rows, figc1_row, figd1_rows, figd2_rows, seed_labels, size_label, size_labels
from repsim.heatmaps import block_table, extremes, grid_runs, heatmap, schedule, seed_title
from repsim.profiles import grid_vs_paper
from repsim.book.prose import full_size_note, glue_all, regime, thinning
from repsim.session import Session, coverage

# %% [markdown]
# ## The grid of models
#
# The paper trains every model for 300 epochs on up to all 50,000 training images, for
# depths up to ResNet-164 and widths up to 10x. The profile {glue:text}`profile_name`
# trains the grid below; where it is smaller than the paper's, the figures are thinned
# accordingly, and the training recipe is shortened (chapter 2 lists every setting that
# differs from the paper's).

# %%
session = Session.open(profile, device, compute_missing)
P = session.profile
blocks = P.blocks  # this chapter's settings: the grid of models (profiles.BlockChapter)
display(Markdown(thinning(P)))
pd.DataFrame(grid_vs_paper(blocks)).set_index(["figure", "grid"])

# %% tags=["remove-cell"]
glue_all({"profile_name": P.name, "base_depth": blocks.base_depth, "fig1_data": size_label(blocks.full_size),
          "fig1_note": Markdown(full_size_note(blocks))})

# %% [markdown]
# Each training-set size gets this schedule. Within each comparison of
# {numref}`paper-fig-2` and {numref}`paper-fig-d2` the epochs are the same for every
# size, as in the paper, so a model trained on more images also takes more SGD steps:

# %%
pd.DataFrame(schedule(P, blocks.train_sizes)).set_index("training images")

# %% [markdown]
# ## Deeper and wider networks (Fig. 1)
#
# The top row makes the network deeper at the standard width; the bottom row makes a
# shallow network wider. Every panel is one model's minibatch CKA between all pairs of
# its layers (every convolution, batch norm, ReLU and residual add, the pool and the
# logits), with the first layer at the bottom left. The title gives the test accuracy.

# %% [markdown]
# {glue:md}`fig1_note`

# %%
# Each model is trained once, then read from the store; a pending one is None.
fig1 = [[session.get(heatmap, run) for run in row] for row in fig1_rows(blocks, seed)]
fig = plots.heatmap_rows(fig1, row_labels=["deeper", "wider"])
glue("fig_1", fig, display=False)
glue("fig1_coverage", coverage("Fig. 1", [m for row in fig1 for m in row]), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_1
# :name: paper-fig-1
#
# (Paper Fig. 1.) Within-model CKA as depth grows at width 1x (top) and as width grows
# at ResNet-{glue:text}`base_depth` (bottom), all trained on {glue:text}`fig1_data`
# of CIFAR-10. {glue:text}`fig1_coverage`
# ```

# %% [markdown]
# ## Less data (Figs. 2 and D.2)
#
# The paper's second lever: the same architectures trained on fixed prefixes of the
# training set. Down each column the training set shrinks.

# %%
fig2 = [[session.get(heatmap, run) for run in row] for row in fig2_rows(blocks, seed)]
figd2 = [[session.get(heatmap, run) for run in row] for row in figd2_rows(blocks, seed)]
fig = plots.heatmap_rows(fig2, row_labels=size_labels(blocks))
glue("fig_2", fig, display=False)
plt.close(fig)
fig = plots.heatmap_rows(figd2, row_labels=size_labels(blocks))
glue("fig_d2", fig, display=False)
plt.close(fig)
glue("fig2_coverage", coverage("Figs. 2 and D.2", [m for row in fig2 + figd2 for m in row]), display=False)

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
# {glue:text}`fig2_coverage`
# ```

# %% [markdown]
# ## Without residual connections (Fig. C.1)
#
# The block is not a side effect of the skip connections: the paper finds it in wide
# networks without them too. Here are the same networks with the residual add removed.

# %%
plain = [session.get(heatmap, run) for run in figc1_row(blocks, seed)]
fig = plots.heatmap_rows([plain])
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
figd1 = [[session.get(heatmap, run) for run in row] for row in figd1_rows(blocks, seed)]
fig = plots.heatmap_rows(figd1, row_labels=seed_labels(blocks), title=seed_title)  # "seed 1, 93%"
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

# %%
maps100 = []
if is_available("cifar100"):
    cifar100 = Session.open(profile, device, compute_missing, data=load_dataset("cifar100"))
    maps100 = [[cifar100.get(heatmap, run) for run in row] for row in fig1_rows(blocks, seed, num_classes=100)]
    display(plots.heatmap_rows(maps100, row_labels=["deeper", "wider"]))
else:
    display(Markdown("CIFAR-100 is not available to this run, so this section is empty. Download it "
                     "through torchvision (`repsim.data.load_dataset('cifar100')` with internet access) "
                     "and run the chapter again to fill it."))

# %% [markdown]
# ## Measuring the block
#
# The paper judges the block by eye. `repsim.blocks.find_block` makes it a number.
# Number a model's $L$ layers $0, \dots, L-1$ in forward order, as along the heatmap's
# axes, write $C_{ij}$ for the CKA between layers $i$ and $j$, and $\tau$ for the
# threshold (the parameter `block_threshold`, here {glue:text}`threshold`). A run of
# consecutive layers $[a, b) = \{a, a+1, \dots, b-1\}$ *qualifies* when every pair of
# distinct layers in it reaches the threshold:
#
# $$
# C_{ij} \ge \tau \quad \text{for all } i \neq j \text{ in } [a, b).
# $$
#
# The block $[a^*, b^*)$ is the longest qualifying run (of equally long ones, the first),
# and the block fraction is its share of the layers, counted only when it holds at
# least two layers:
#
# $$
# [a^*, b^*) = \operatorname*{arg\,max}_{[a, b) \text{ qualifies}} (b - a), \qquad
# \text{block fraction} = \begin{cases} (b^* - a^*)/L & \text{if } b^* - a^* \ge 2, \\
# 0 & \text{otherwise (no block).} \end{cases}
# $$
#
# The table lists, for every model of this chapter and every seed of the profile
# ({glue:text}`seed_count`: the figures above show the first), the block fraction, the
# number of the block's layers $m = b^* - a^*$ (`block_layers`, 0 without a block), their
# mean CKA over distinct pairs, $\frac{1}{m(m-1)} \sum_{i \neq j \in [a^*, b^*)} C_{ij}$
# (`block_mean_cka`), the stage of the first of them, and the first and last layers.

# %%
seeds = P.seed_list(seed)
every_seed = [session.get(heatmap, run) for run in grid_runs(blocks, seeds)]
table = block_table(every_seed + [m for row in maps100 for m in row], block_threshold)
glue_all({"threshold": block_threshold, "seed_count": len(seeds)})
table.style.format({"train_acc": "{:.3f}", "test_acc": "{:.3f}", "block_fraction": "{:.2f}", "block_mean_cka": "{:.3f}"},
                   na_rep="-").hide(axis="index")

# %% tags=["remove-cell"]
glue_all(regime(table, [m for m in every_seed if m is not None]))

# %% [markdown]
# The table gives each model's accuracy on its own training images (`train_acc`, in
# evaluation mode, without augmentation, on up to 5,000 of them) beside its test
# accuracy, so the reader can see how well each model fits its data. Across the
# {glue:text}`regime_models` models and seeds it ranges from {glue:text}`train_min` to
# {glue:text}`train_max` on their training images, and from {glue:text}`test_min` to
# {glue:text}`test_max` on test images. One plot summarises Figs. 1, 2 and D.2: block
# size against width (at depth {glue:text}`base_depth`) and against depth (at width
# 1x), one line per training-set size, each point the mean over the seeds.

# %%
cifar10 = table[table["residual"] & table["seed"].isin(seeds) & (table["classes"] == session.data.num_classes)]
fig = plots.block_trends(cifar10, blocks.base_depth)
glue("fig_block_trend", fig, display=False)
plt.close(fig)

# %% tags=["remove-cell"]
glue_all(extremes(cifar10, blocks))

# %% [markdown]
# ```{glue:figure} fig_block_trend
# :name: block-trend
#
# Block size (the longest run of layers with pairwise CKA $\ge$
# {glue:text}`threshold`, as a fraction of all layers) against width and depth, for
# each training-set size: the mean over {glue:text}`seed_count` seeds, with bars of
# two standard errors (none with one seed).
# ```
#
# | | {glue:text}`smallest` images | {glue:text}`largest` images |
# |---|---|---|
# | narrowest, ResNet-{glue:text}`base_depth` (1x) | {glue:text}`block_narrow_small` | {glue:text}`block_narrow_large` |
# | widest ({glue:text}`widest`x) | {glue:text}`block_wide_small` | {glue:text}`block_wide_large` |
# | shallowest at 1x | {glue:text}`block_shallow_small` | {glue:text}`block_shallow_large` |
# | deepest (ResNet-{glue:text}`deepest`) | {glue:text}`block_deep_small` | {glue:text}`block_deep_large` |
#
# The table gives the block size of the extreme models of {numref}`block-trend` (mean
# and standard error over the seeds).
#
# ## Against the paper
#
# Each of the paper's claims becomes a set of comparisons between models of this run,
# each made seed by seed: for example, the block fraction of the widest network minus
# that of the narrowest, trained with the same seed. A comparison is called only when
# the mean of its seeds' differences lies more than {glue:text}`called_at` standard
# errors from zero ("agrees" above, "does not agree" below); otherwise it is "too close
# to call". With one seed there is no spread, and the verdict says it rests on one seed.
# The verdict counts the comparisons that go the paper's way, and each seed's
# difference is listed beside it. The list is computed from the table above, so it
# changes with the profile and the threshold.

# %%
verdicts = block_claims(table[table["classes"] == session.data.num_classes], blocks.base_depth, seeds,
                        blocks.seed_architectures, blocks.full_size)
glue("called_at", f"{CALLED_AT:g}", display=False)
display(Markdown(markdown(verdicts)))

# %% [markdown]
# **What this scale can and cannot test.** The paper's mechanism is about models that
# fit their training set, with capacity large relative to it. Where every model above
# fits its training images (the table's `train_acc`), the relative claims (wider,
# deeper, less data, with or without residuals, across seeds) are tested in that
# regime. What the profile cannot test: models with few weights per training image (a
# few hundred training images give every model here at least {glue:text}`min_ratio`
# weights per image, where the paper's range starts at {glue:text}`paper_min_ratio`,
# ResNet-20 on all 50,000), so the paper's models without a block have no counterpart
# here; the paper's accuracies (about 95% on all 50,000 images; these models reach the
# test accuracies above); depths beyond ResNet-{glue:text}`deepest` and widths beyond
# {glue:text}`widest`x; differences smaller than the spread between seeds, which are
# called too close to call; and CIFAR-100 where it is not available. The block measure also depends on its threshold: read the verdicts
# together with the heatmaps above, not instead of them.

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
# deepest = fig1[0][-1]  # the last model of Fig. 1's depth row (None while pending)
# [find_block(deepest.cka, threshold=t).size for t in (0.7, 0.8, 0.9, 0.95)]
# ```
# ````

# %% [markdown]
# **Exercise 2.** In this book, as in the paper, every training-set size of
# {numref}`paper-fig-2` gets the same number of epochs, so a model trained on four times
# the images also takes four times the SGD steps. Is the comparison then about the data
# or about the steps, and what pair of runs would separate them?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 2
# :class: dropdown
#
# Both change together: more images means more distinct examples *and* more updates.
# Two comparisons pull them apart: the large training set trained for fewer epochs, so
# that it takes as many steps as the small one (`P.with_overrides(train=...)` with
# `epochs` reduced), and the small training set trained for more epochs, so that it
# takes as many steps as the large one. If the block follows the number of images at a
# fixed number of steps, it is the data that matters; if it follows the steps, it is
# how long the model trained. (An earlier version of this book gave every size the
# same number of steps, and its larger sets were then seen only once: its "less data"
# comparisons mixed both effects.)
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
