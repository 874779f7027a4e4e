# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The block under other similarity measures
#
# Every heatmap of {cite}`nguyen2021wide`, and of this book, is linear CKA. Two later
# results make that a live question. The authors' follow-up {cite}`nguyen2022origins`
# (chapter {doc}`07_origins`) traces the block to a few *dominant images* whose
# activations lie far out along the first principal component. And
# {cite}`davari2023reliability` prove that moving a small subset of the images far away
# can drive linear CKA towards a value set by that subset alone, and train networks whose
# layer-by-layer CKA takes any shape they choose, a block included, at unchanged accuracy.
# So the block might be what linear CKA makes of a few extreme images.
#
# This chapter goes beyond the paper: it recomputes the heatmaps of chapter
# {doc}`03_blocks`'s models with and without a block under three other measures, one of
# which a few points cannot drive, and asks three questions. Does the block appear in the
# same models under every measure? At the same layers? And does it survive leaving out
# chapter 7's dominant images?

# %% tags=["parameters"]
profile = "laptop"  # smoke | laptop | paper: see repsim/profiles.py
seed = 0  # first seed of the models (as in chapter 3)
device = None  # None uses the profile's device
compute_missing = None  # None: the profile decides; False: read stored and harvested results only
block_threshold = 0.9  # linear CKA that every pair of layers in a block must reach, as in chapter 3

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
from myst_nb import glue

from repsim import measure_maps, measures, plots
from repsim.book import prose
from repsim.book.prose import glue_all
from repsim.claims import CALLED_AT, markdown, measure_claims
from repsim.session import Session

# %% [markdown]
# The models are the profile's `measured_runs`: models of chapter 3 that the paper shows
# with a block (by default the architectures of Fig. D.1) and chapter 7's model without
# one, each with the profile's seeds. Chapter 7's model with a block is among them, and
# it is the one whose dominant images are left out below.

# %%
session = Session.open(profile, device, compute_missing)
P = session.profile
runs = P.measured_runs(seed)
removal_run = P.followed_runs(seed)[0]
pd.DataFrame([{"model": run.label, "chapter 7's dominant images left out": run == removal_run} for run in runs])

# %% [markdown]
# ## Four measures
#
# Let $X \in \mathbb{R}^{n \times p_1}$ and $Y \in \mathbb{R}^{n \times p_2}$ be two
# layers' activations on the same $n$ images, centred over the images, with Gram
# matrices $K = XX^\top$ and $L = YY^\top$. Every measure below is computed from the Grams
# alone, so a layer of 65,536 features costs no more than one of 64 (`repsim.measures`).
#
# - **Linear CKA**, the paper's: $\mathrm{HSIC}(K, L) / \sqrt{\mathrm{HSIC}(K, K)\,
#   \mathrm{HSIC}(L, L)}$ with the unbiased $\mathrm{HSIC}_1$, summed over the minibatches
#   of the profile's protocol (chapter {doc}`02_cka`).
# - **RBF CKA** {cite}`kornblith2019similarity`: the same with the kernel
#   $K_{ij} = \exp\!\big(-\lVert x_i - x_j\rVert^2 / 2\sigma^2\big)$, whose bandwidth
#   $\sigma$ is {glue:text}`rbf_fraction` times the median distance between the images
#   of the minibatch. Far-out points only see each other, so they weigh less than in the
#   linear kernel, where they dominate every inner product.
# - **Procrustes** {cite}`williams2021generalized`: after scaling both to unit Frobenius
#   norm, how well an orthogonal map aligns one representation with the other,
#   $\max_{Q^\top Q = I} \langle X, YQ \rangle = \lVert X^\top Y\rVert_*$, the sum of the
#   singular values; the angular Procrustes distance is its arc cosine. With $K = F_K
#   F_K^\top$ from an eigendecomposition, $\lVert X^\top Y\rVert_* = \lVert F_K^\top
#   F_L\rVert_*$, so it too needs only the Grams. Like linear CKA it is made of inner
#   products, so far-out images weigh as much in it.
# - **Mutual $k$-NN** {cite}`huh2024platonic`: for each image, the share of its $k =$
#   {glue:text}`neighbours` nearest images (by Euclidean distance) that are the same in
#   both layers, averaged over the images; about $k/(n-1)$ for unrelated layers. It
#   depends only on the ranks of the distances, so a few far-out images change only the
#   neighbourhoods they leave or enter: a few points cannot drive it.
#
# Procrustes and mutual $k$-NN are not sums over minibatches, so they are computed on the
# first {glue:text}`subset` test images at once; the two CKAs use
# {glue:text}`protocol`. All four are 1 for identical representations and
# unchanged by rotating or rescaling one of them (`tests/test_measures.py` checks each
# against an independent reference and these invariances). The layers are the stem, each
# residual block's output and the pooled features, where the paper's heatmaps show the
# block.

# %% [markdown]
# ## The heatmaps

# %% tags=["hide-input"]
seed_maps = [[session.get(measure_maps.measure_maps, run, threshold=block_threshold) for run in P.measured_runs(s)]
             for s in P.seed_list(seed)]
rows, titles, labels = measure_maps.panels(seed_maps[0])
fig = (plots.wrapped_heatmaps(rows, titles, labels, columns=4, bar_label="similarity") if rows
       else plots.placeholder("pending").figure)
glue("fig_measures", fig, display=False)
plt.close(fig)
prose.pending_note("The heatmaps", seed_maps[0])

# %% [markdown]
# ```{glue:figure} fig_measures
# :name: measures-fig-heatmaps
#
# Each model's layers (stem, residual-block outputs, pooled features) against each
# other under the four measures, first seed, on one colour scale from 0 to 1.
# ```
#
# Before any threshold: do the measures order the pairs of layers alike? For each model
# and seed, the Spearman rank correlation between a measure's values on the pairs of
# layers and linear CKA's (`measure_maps.rank_agreement`), averaged over the seeds:

# %% tags=["hide-input"]
every_map = [m for maps in seed_maps for m in maps]
agreement = measure_maps.rank_agreement(every_map)
table = pd.DataFrame(agreement, columns=["run", "seed", "measure", "spearman"])
table.pivot_table(index="run", columns="measure", values="spearman").round(3)

# %% [markdown]
# Over every model and seed, the rank correlation with linear CKA is
# {glue:text}`rho_rbf` for RBF CKA, {glue:text}`rho_procrustes` for Procrustes and
# {glue:text}`rho_mutual` for mutual $k$-NN (mean, and the lowest to the highest).
#
# ## The block under each measure
#
# A threshold of {glue:text}`threshold` means different things to different measures,
# which spread their values over different ranges (the colours of the figure). So each
# measure's block is found (`repsim.blocks.find_block`) at its own threshold: the value
# that as many pairs of layers reach, over every model and seed of this chapter, as reach
# {glue:text}`threshold` under linear CKA (`measure_maps.matched_thresholds`). Each
# measure then calls the same number of pairs "very similar"; where it puts them decides
# its blocks. The thresholds are linear CKA {glue:text}`threshold_linear`, RBF CKA
# {glue:text}`threshold_rbf`, Procrustes {glue:text}`threshold_procrustes` and mutual
# $k$-NN {glue:text}`threshold_mutual`.

# %% tags=["hide-input"]
thresholds = measure_maps.matched_thresholds(every_map, block_threshold)
block_rows = measure_maps.block_rows(every_map, thresholds)
fig = plots.measure_blocks_figure(block_rows, removal_run.label)
glue("fig_blocks", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_blocks
# :name: measures-fig-blocks
#
# The block measure, the share of layers in the longest run of consecutive layers whose
# pairs all reach the measure's threshold. Left: every model with all images (points are
# seeds, bars their mean). Right: chapter 7's model with a block with all images, without
# its {glue:text}`removed` most dominant images and without as many random ones.
# ```
#
# For the first seed, each block, where it starts and ends, and its overlap with linear
# CKA's block in the same heatmap (the Jaccard index of their layers; empty where linear
# CKA finds none):

# %% tags=["hide-input"]
table = pd.DataFrame(block_rows, columns=["model", "run", "seed", "measure", "condition", "block", "start", "stop",
                                         "overlap"])
table[table["seed"] == seed].drop(columns=["model", "seed"]).set_index(["run", "condition", "measure"]).round(3)

# %% [markdown]
# ## Without the dominant images
#
# Chapter 7 left the {glue:text}`removed` most dominant of {glue:text}`n_images` images of
# the {glue:text}`removal_model` out of its heatmap. Here the same images are left out
# under every measure (for Procrustes and $k$-NN, those among the first
# {glue:text}`subset`: {glue:text}`subset_removed` images, dominant and random), and as
# the control as many random images.

# %% tags=["hide-input"]
rows, titles, labels = measure_maps.condition_panels(seed_maps[0], removal_run)
fig = (plots.wrapped_heatmaps(rows, titles, labels, columns=4, bar_label="similarity") if rows
       else plots.placeholder("pending").figure)
glue("fig_removal", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_removal
# :name: measures-fig-removal
#
# The {glue:text}`removal_model` under each measure with all images (top), without its
# most dominant images (middle) and without as many random ones (bottom), first seed.
# ```
#
# ## The verdicts
#
# Each question, for each measure, seed by seed over {glue:text}`seed_count` seeds and
# called only beyond {glue:text}`called_at` standard errors of the seeds' differences
# (`repsim.claims.measure_claims`). "Larger block" compares each model with a block with
# the {glue:text}`without_model`; "at linear CKA's layers" asks for an overlap of at least
# {glue:text}`same_layers`; "shrinks more" asks that leaving out the dominant images
# removes at least {glue:text}`margin` more of the block than leaving out random ones.

# %% tags=["hide-input"]
verdicts = measure_claims(block_rows, measures.MEASURES, [run.label for run in runs[:-1]], runs[-1].label,
                          removal_run.label)
prose.MarkdownText(markdown(verdicts))

# %% tags=["remove-cell"]
glue_all(prose.chapter8(P, runs, removal_run, thresholds, seed_maps[0], agreement, len(seed_maps), block_threshold))
glue_all({"called_at": f"{CALLED_AT:g}", "meaning": prose.measure_meaning(
    {name: row["verdict"] for name, row in zip(measures.MEASURES, verdicts)})})

# %% [markdown]
# ## What it means for the paper
#
# {glue:text}`meaning`
#
# The verdicts rest on this profile's models: small networks trained briefly, on few
# images in the laptop profile, with weaker blocks than the paper's (chapter
# {doc}`03_blocks`), so each can flip with the scale, the seeds and the threshold. The
# matched thresholds make the measures comparable, not identical: a measure whose values
# spread differently over the layers can find a block of another size for the same
# structure, which is why the chapter also asks where the block is, and shows the maps.

# %% [markdown]
# ## Exercises
#
# Solutions are folded under each exercise; `python -m repsim.book.student` writes copies of
# the notebooks without them, and without outputs, for a class.

# %% [markdown]
# **Exercise 1.** Take two unrelated representations $X$ and $Y$ of $n$ images and move
# the same $m \ll n$ images far out along one direction in each: $x_i \mapsto x_i + a\,u$
# and $y_i \mapsto y_i + b\,v$ for $i \le m$. Show that linear CKA tends to 1 as
# $a, b \to \infty$, and explain why mutual $k$-NN stays near $k/(n-1)$.

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 1
# :class: dropdown
#
# After centring, both representations are dominated by the rank-one terms $a\,s u^\top$
# and $b\,s v^\top$, where $s$ is the same vector over the images ($1 - m/n$ on the moved
# images, $-m/n$ on the others). Their Grams tend to multiples of $ss^\top$, whose CKA
# with itself is 1, whatever the rest of $X$ and $Y$. Mutual $k$-NN only asks which
# images are nearest to each image. The $n - m$ images that did not move keep their
# neighbours among themselves (the moved ones are far away), and those neighbourhoods are
# unrelated in $X$ and $Y$; only the $m$ moved images now have each other as neighbours
# in both. So the score moves by at most about $m/n$ from chance.
# `tests/test_measures.py` runs this with 4 of 200 images.
# ````

# %% [markdown]
# **Exercise 2.** Show that the Procrustes similarity $\lVert X^\top Y\rVert_*$ of
# unit-norm $X$ and $Y$ equals $\operatorname{tr}\big((K^{1/2} L K^{1/2})^{1/2}\big)$
# with $K = XX^\top$ and $L = YY^\top$, and that it is 1 exactly when $Y = XQ$ for an
# orthogonal $Q$ (for $p_1 = p_2$).

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 2
# :class: dropdown
#
# The singular values of $X^\top Y$ are the square roots of the eigenvalues of
# $X^\top Y Y^\top X$, whose non-zero eigenvalues are those of $X X^\top Y Y^\top = KL$,
# and these are the eigenvalues of the positive semi-definite $K^{1/2} L K^{1/2}$. Summing
# their square roots gives the trace of its square root. By the Cauchy-Schwarz
# inequality, $\langle X, YQ \rangle \le \lVert X\rVert_F \lVert YQ\rVert_F = 1$, with
# equality exactly when $X = YQ$; the maximum over $Q$ is the nuclear norm (von Neumann's
# trace inequality), so it is 1 exactly when such a $Q$ exists.
# ````

# %% [markdown]
# **Exercise 3.** The thresholds of the measures are matched on the number of pairs of
# layers that reach them, pooled over every model. Why pool over the models rather than
# match each model separately? What would matching within each model do to the question
# "does the block appear in the same models"?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 3
# :class: dropdown
#
# Matched within each model, every model would get a threshold that its own pairs reach
# as often as under linear CKA: a model whose layers are all dissimilar under a measure
# would still find "very similar" pairs at a lower threshold, and its block size would be
# copied from linear CKA's. Pooled, a measure has one threshold for all models, so it can
# put the very similar pairs in other models than linear CKA does, which is exactly what
# the question asks about.
# ````
