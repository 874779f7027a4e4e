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
# # Probing the block structure
#
# Section 4 of {cite}`nguyen2021wide` asks what the block structure is. Its answers:
# inside the block, a single principal component dominates every layer's
# representation and is shared by all of them, so removing it erases the bright
# square; linear probes barely improve across the block's layers; and the block's
# residual blocks can be deleted at little cost in accuracy.
#
# This chapter reruns those analyses on the models trained in chapter 3,
# {doc}`03_blocks`: they are loaded from the store, not trained again.

# %% tags=["parameters"]
profile = "laptop"  # smoke | laptop | paper: see repsim/profiles.py
seed = 0  # first seed: the figures show it; the claims are judged over it and the profile's next seeds
device = None  # None uses the profile's device
compute_missing = None  # None: the profile decides (paper: only on a GPU); False: stored and committed results only
block_threshold = 0.9  # the block measure's threshold, as in chapter 3

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
from repsim.run_analyses import (D5_COLUMNS, chapter4_measured, chapter4_summary, deletion_accuracy, deletion_panels,
                                 first_pcs, late_pc_rows, pc_panels, probe_accuracy, probe_panels, spearman)
from repsim.claims import CALLED_AT, markdown, pc_claims
from repsim.figures import chapter4_runs
from repsim.heatmaps import grid_runs, heatmap
from repsim.book.prose import chapter4, glue_all
from repsim.session import Session

# %%
session = Session.open(profile, device, compute_missing)
P = session.profile
runs = chapter4_runs(P.probes, seed)  # {"with a block": run, "without a block": run}
maps = {kind: session.get(heatmap, run) for kind, run in runs.items()}  # chapter 3's heatmaps, from the store

# %% [markdown]
# The two models of this chapter are the {glue:text}`with_model` (test accuracy
# {glue:text}`with_acc`), whose block measure from chapter 3 covers
# {glue:text}`with_block` of its layers, and the {glue:text}`without_model`
# ({glue:text}`without_acc`), whose largest run of layers with pairwise CKA of at least
# {glue:text}`threshold` covers {glue:text}`without_block`.
#
# ## A dominant first principal component (Fig. 3)
#
# For every layer we centre the activations of the first {glue:text}`pc_examples`
# test images over the examples and take the singular values $s_1 \ge s_2 \ge \dots$ of the centred matrix (examples by
# features). The fraction of variance that the first principal component (PC1)
# explains is
#
# $$
# \frac{s_1^2}{\sum_i s_i^2}.
# $$
#
# PC1's scores, the projections of the centred examples on the top right-singular
# vector $v_1$, form a vector over the same test images for every layer, so two
# layers' first PCs can be compared by the cosine similarity of their scores (in
# absolute value, since a PC's sign is arbitrary). Removing PC1 replaces every centred
# activation $x$ by $x - (x \cdot v_1)\,v_1$; CKA is then computed as in chapter 3, on
# {glue:text}`cka_examples` test images.

# %%
pcs = {kind: session.get(first_pcs, run, without_pc1=True) for kind, run in runs.items()}
fig = plots.pc_figure(pc_panels(runs, pcs, maps, block_threshold))
glue("fig_3", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_3
# :name: paper-fig-3
#
# (Paper Fig. 3.) For the model with a block (top) and without one (bottom): cosine
# similarity of the first PCs of all pairs of layers, the variance PC1 explains at each
# layer (the measured block shaded), the CKA heatmap, and the CKA heatmap after PC1 is
# removed from every layer.
# ```
#
# Inside the block of the {glue:text}`with_model`, PC1 explains on average
# {glue:text}`var_in_block` of a layer's variance, against {glue:text}`var_outside`
# in its other layers and {glue:text}`var_no_block` across all layers of the model
# without a block. The mean CKA between the block's layers is
# {glue:text}`cka_in_block`; with PC1 removed from every layer it is
# {glue:text}`cka_in_block_without`.
#
# ## PC1 and the block across many models (Fig. D.5)
#
# The paper repeats the measurement over many seeds, depths and widths: PC1's variance
# explained in the last two stages is large exactly in the models with a block. Here it
# is for every residual network chapter 3 trained, averaged over the outputs of the
# residual blocks of stages 2 and 3 (one layer per block, which keeps the cost low), and
# set beside the block measure of the same model.

# %%
seeds = P.seed_list(seed)
d5_runs = [run for run in grid_runs(P.blocks, seeds) if run.model.residual]  # Fig. D.5 shows residual networks
late = [session.get(first_pcs, run, late_block_outputs=True) for run in d5_runs]
d5_maps = [session.get(heatmap, run) for run in d5_runs]
d5 = pd.DataFrame(late_pc_rows(d5_runs, late, d5_maps, block_threshold), columns=D5_COLUMNS)
rho = spearman(d5, "pc1_variance", "block_fraction")
rho_per_seed = [spearman(d5[d5["seed"] == s], "pc1_variance", "block_fraction") for s in seeds]
fig = plots.pc1_across_models(d5, rho)
glue("fig_d5", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_d5
# :name: paper-fig-d5
#
# (Paper Fig. D.5.) Left: variance explained by PC1, averaged over the block outputs
# of the last two stages, for each of the {glue:text}`d5_models` residual networks of
# chapter 3, sorted within each architecture (the marker gives the training-set size).
# Right: the same against the block measure of each model.
# ```
#
# Across these models the Spearman rank correlation between PC1's share of the
# variance and the block size is {glue:text}`d5_rho`.
#
# ## Linear probes across the block (Fig. 4)
#
# A linear probe is a linear classifier trained on one layer's frozen activations.
# `repsim.probes` trains one at every residual add and at the batch norm just before
# it (the residual branch's output before the shortcut is added), all at once on the
# device: every minibatch of training images passes through the frozen model a single
# time and every probe takes an Adam step on its own layer's standardised features.
# Each probe tries the learning rates {glue:text}`probe_lrs`, keeps the one with the
# best accuracy on {glue:text}`probe_val` held-out training images, and is scored on
# the test set, which played no part in that choice. The probes fit
# {glue:text}`probe_train` training images for {glue:text}`probe_epochs`.

# %% [markdown]
# {glue:md}`probe_pooling`

# %%
probes = {kind: session.get(probe_accuracy, run) for kind, run in runs.items()}
summary = chapter4_summary(maps, pcs, probes, {}, rho, len(d5), block_threshold)
fig = plots.probe_figure(probe_panels(runs, probes, summary["probe_spans"]))
glue("fig_4", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_4
# :name: paper-fig-4
#
# (Paper Fig. 4.) Linear-probe test accuracy at each residual block, on the BN output
# before the residual add and on the add's output, for the model with a block (left;
# the blocks inside the measured block shaded) and without (right).
# ```
#
# {glue:md}`probe_gains`
#
# In the {glue:text}`without_model` the average is {glue:text}`gain_none` points per
# block, from {glue:text}`probe_first` on average over the first stage's adds to
# {glue:text}`probe_last` over the last stage's.
#
# ## Deleting blocks (Fig. 5)
#
# `repsim.models.delete_residual_units` returns a copy of a model in which the residual
# branches of the last $k$ blocks of one stage are removed, so that each of those
# blocks passes its input through its shortcut alone; the original model is left as it
# was. Deleting blocks one by one from the end of each stage shows how much each stage's
# last blocks contribute.

# %%
deletion = {kind: session.get(deletion_accuracy, run) for kind, run in runs.items()}
fig = plots.deletion_figure(deletion_panels(runs, deletion))
glue("fig_5", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_5
# :name: paper-fig-5
#
# (Paper Fig. 5.) Test accuracy after deleting residual blocks from the end of each
# stage (one line per stage; 0 is the intact model), with a block (left) and without
# (right).
# ```
#
# Deleting the last half of stage 3 (the last {glue:text}`drop_with_count`) costs the
# {glue:text}`with_model` {glue:text}`drop_with` percentage points of test accuracy;
# deleting the last {glue:text}`drop_without_count` of stage 3 costs the
# {glue:text}`without_model` {glue:text}`drop_without` points.
#
# ## Against the paper

# %%
summary = chapter4_summary(maps, pcs, probes, deletion, rho, len(d5), block_threshold)  # the first seed's, for the prose
# The claims are judged seed by seed: each seed's pair of models, and its own D.5 correlation.
summaries = [chapter4_measured(session.get, chapter4_runs(P.probes, s), seed_rho, len(d5[d5["seed"] == s]),
                               block_threshold) for s, seed_rho in zip(seeds, rho_per_seed)]
display(Markdown(markdown(pc_claims(summaries))))

# %% tags=["remove-cell"]
glue_all({**chapter4(summary, runs, maps, P, session.data), "threshold": block_threshold,
          "seed_count": len(seeds), "called_at": f"{CALLED_AT:g}"})

# %% [markdown]
# Each verdict compares two numbers seed by seed, over the {glue:text}`seed_count`
# seeds of the profile, and is called only when the mean difference lies more than
# {glue:text}`called_at` standard errors of the seeds' differences from zero, and
# beyond a tolerance too small to matter; otherwise it is too close to call. The D.5
# correlation is computed within each seed's models. Small models trained on few
# images are far from the paper's, and the figures above are the evidence to weigh.

# %% [markdown]
# ## Exercises
#
# Solutions are folded under each exercise; `python -m repsim.book.student` writes copies of
# the notebooks without them, and without outputs, for a class.

# %% [markdown]
# **Exercise 1.** Let $X_c$ be centred activations with top right singular vector $v$ and top singular
# value $\sigma_1$ (left vector $u$). Show that removing the first principal component,
# $X' = X_c - X_c v v^\top$, changes the Gram matrix from $K = X_c X_c^\top$ to
# $K - \sigma_1^2 u u^\top$. Why does this make the block vanish from the heatmap when
# PC1 carries most of the variance?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 1
# :class: dropdown
#
# $X' X'^\top = X_c (I - v v^\top)(I - v v^\top) X_c^\top = X_c (I - v v^\top) X_c^\top$
# because $I - v v^\top$ is a projection, and $X_c v = \sigma_1 u$, so the result is
# $K - \sigma_1^2 u u^\top$. When $\sigma_1^2$ is most of $\operatorname{tr} K$, every
# layer's Gram is close to $\sigma_1^2 u u^\top$, and two layers whose $u$ agree (their
# first PCs score the examples alike) have CKA near 1 whatever their other
# directions do. Subtracting that term leaves the remaining directions, and CKA between
# them is what the heatmap without PC1 shows.
# ````

# %% [markdown]
# **Exercise 2.** A layer cannot contain more information about the label than the layer before it
# (the data processing inequality). Why can linear-probe accuracy still rise from layer
# to layer?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 2
# :class: dropdown
#
# The inequality is about information, not about what a *linear* classifier can read
# off. Later layers can make the label linearly separable where earlier ones hold the
# same information in a non-linear form, so a linear probe gains accuracy. Inside the
# block the probe barely gains: the layers are close to re-scaled rotations of each other
# (high CKA), and an invertible linear map does not change what a linear probe can
# separate.
# ````

# %% [markdown]
# **Exercise 3.** Deleting a residual block keeps its shortcut, so the block computes $x$ instead of
# $x + f(x)$. Propose a measurement, per block, that would predict from a single forward
# pass how much accuracy the deletion will cost.

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 3
# :class: dropdown
#
# Measure how much the residual branch changes its input on test images, for example
# $\lVert f(x) \rVert / \lVert x \rVert$ averaged over examples, or the CKA between the
# block's input and its output. A block whose branch adds little, or whose output is
# already nearly its input up to scale and rotation, should be cheap to delete; the
# paper's plateau inside the block structure is where these numbers say so.
# ````
