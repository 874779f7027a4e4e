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
seed = 0  # seed of the models analysed (as in chapter 3)
device = None  # None uses the profile's device
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
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from repsim import plots
from repsim.analyses import deletion_accuracy, deletion_drop, first_pcs, probe_accuracy
from repsim.blocks import find_block, inside_outside, mean_within
from repsim.data import load_dataset
from repsim.grid import Run, block_runs, compare, heatmap
from repsim.probes import block_span, gain_per_block
from repsim.profiles import chapter_device, get_profile

P = get_profile(profile)
S = P.probes
device = chapter_device(device, P)  # on Colab: its GPU when there is one
data = load_dataset(P.dataset)
runs = {"with a block": Run(*S.with_block, seed), "without a block": Run(*S.without_block, seed)}
maps = {kind: heatmap(run, P, data, device=device) for kind, run in runs.items()}
blocks = {kind: find_block(m.cka, block_threshold) for kind, m in maps.items()}

for key, kind in (("with", "with a block"), ("without", "without a block")):
    glue(f"{key}_model", runs[kind].label, display=False)
    glue(f"{key}_block", f"{blocks[kind].fraction:.0%}", display=False)
    glue(f"{key}_acc", f"{maps[kind].test_acc:.0%}", display=False)
glue("threshold", block_threshold, display=False)
glue("pc_examples", f"{S.pc_examples or len(data.test_labels):,}", display=False)
glue("cka_examples", f"{P.cka.examples or len(data.test_labels):,}", display=False)

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

# %% tags=["hide-input"]
analyses = {kind: first_pcs(run, P, data, without_pc1=True, device=device) for kind, run in runs.items()}
fig, axes = plt.subplots(2, 4, figsize=(12.5, 6.0), layout="constrained")
for row, kind in zip(axes, runs):
    pcs, block = analyses[kind], blocks[kind]
    plots.cka_heatmap(pcs.pc_similarity, ax=row[0], layers=pcs.layers, colorbar=False,
                      title=f"{runs[kind].model.name}: PC1 cosine")
    plots.variance_by_layer(pcs.variance_explained, pcs.layers, ax=row[1], block=(block.start, block.stop),
                            title="variance explained by PC1")
    plots.cka_heatmap(maps[kind].cka, ax=row[2], layers=pcs.layers, colorbar=False, title="CKA")
    plots.cka_heatmap(pcs.cka_without_pc1, ax=row[3], layers=pcs.layers, title="CKA without PC1")
glue("fig_3", fig, display=False)
plt.close(fig)

pcs_with, block_with = analyses["with a block"], blocks["with a block"]
variance_in, variance_out = inside_outside(pcs_with.variance_explained, block_with)
cka_in, cka_without_in = mean_within(maps["with a block"].cka, block_with), mean_within(pcs_with.cka_without_pc1, block_with)
glue("var_in_block", f"{variance_in:.2f}", display=False)
glue("var_outside", f"{variance_out:.2f}", display=False)
glue("var_no_block", f"{analyses['without a block'].variance_explained.mean():.2f}", display=False)
glue("cka_in_block", f"{cka_in:.2f}", display=False)
glue("cka_in_block_without", f"{cka_without_in:.2f}", display=False)

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

# %% tags=["hide-input"]
late_rows = []
for run in block_runs(P.blocks, seed):
    if not run.model.residual:
        continue
    late = first_pcs(run, P, data, late_block_outputs=True, device=device)
    block = find_block(heatmap(run, P, data, device=device).cka, block_threshold)
    late_rows.append({"model": run.model.name, "train_size": run.train_size or 50_000, "seed": run.seed,
                      "pc1_variance": late.variance_explained.mean(), "block_fraction": block.fraction})
pcs_table = pd.DataFrame(late_rows).sort_values(["model", "train_size", "pc1_variance"])
pcs_table = pcs_table.rename(columns={"train_size": "training images"})
rho = pcs_table[["pc1_variance", "block_fraction"]].corr(method="spearman").iloc[0, 1]

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", gridspec_kw={"width_ratios": [1.6, 1]})
ordered = pcs_table.sort_values(["model", "pc1_variance"]).reset_index(drop=True)
sns.scatterplot(data=ordered, x=ordered.index, y="pc1_variance", hue="model", style="training images", ax=axes[0],
                s=40)
axes[0].set(xlabel="model (sorted by PC1 variance within each architecture)", ylabel="PC1 variance, last two stages",
            xticks=[])
axes[0].legend(fontsize="x-small", frameon=False, bbox_to_anchor=(1, 1), loc="upper left")
sns.scatterplot(data=pcs_table, x="block_fraction", y="pc1_variance", hue="model", style="training images", ax=axes[1],
                s=40, legend=False)
axes[1].set(xlabel="block size (fraction of layers)", ylabel="PC1 variance, last two stages",
            title=f"Spearman correlation {rho:.2f}")
glue("fig_d5", fig, display=False)
plt.close(fig)
glue("d5_models", len(pcs_table), display=False)
glue("d5_rho", f"{rho:.2f}", display=False)

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

# %% tags=["remove-input"]
display(Markdown("Layers are probed at full size, without pooling." if S.probe_max_features is None else
                 f"Layers with more than {S.probe_max_features:,} features are average-pooled 2x2 (repeatedly) until "
                 "they have at most that many, which keeps the probes of the widest early layers affordable."))

# %% tags=["hide-input"]
probe_rows = {kind: probe_accuracy(run, P, data, device=device) for kind, run in runs.items()}

spans = {kind: block_span(probe_rows[kind], maps[kind].layers[blocks[kind].start:blocks[kind].stop]) for kind in runs}

fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.3), layout="constrained", sharey=True)
for ax, kind in zip(axes, runs):
    plots.probe_accuracy(probe_rows[kind], ax=ax, block=spans[kind], title=f"{runs[kind].model.name} ({kind})")
glue("fig_4", fig, display=False)
plt.close(fig)

# %% tags=["remove-cell"]
glue("probe_lrs", " and ".join(f"{lr:g}" for lr in S.probe_lrs), display=False)
glue("probe_val", f"{S.probe_val_size:,}", display=False)
glue("probe_train", f"{S.probe_train_size:,}", display=False)
glue("probe_epochs", f"{S.probe_epochs} epoch{'s' if S.probe_epochs > 1 else ''}", display=False)

gain_in = gain_per_block(probe_rows["with a block"], spans["with a block"], inside=True)
gain_out = gain_per_block(probe_rows["with a block"], spans["with a block"], inside=False)
glue("gain_in", f"{100 * gain_in:+.1f}", display=False)
glue("gain_out", f"{100 * gain_out:+.1f}", display=False)
glue("gain_none", f"{100 * gain_per_block(probe_rows['without a block'], spans['without a block'], inside=False):+.1f}",
     display=False)

# %% [markdown]
# ```{glue:figure} fig_4
# :name: paper-fig-4
#
# (Paper Fig. 4.) Linear-probe test accuracy at each residual block, on the BN output
# before the residual add and on the add's output, for the model with a block (left;
# the blocks inside the measured block shaded) and without (right).
# ```
#
# In the {glue:text}`with_model`, the probe accuracy after the add changes by
# {glue:text}`gain_in` percentage points per residual block inside the block, against
# {glue:text}`gain_out` per block elsewhere in the network; in the
# {glue:text}`without_model` the average is {glue:text}`gain_none` points per block.
#
# ## Deleting blocks (Fig. 5)
#
# `repsim.models.delete_blocks` returns a copy of a model in which the residual
# branches of the last $k$ blocks of one stage are removed, so that each of those
# blocks passes its input through its shortcut alone; the original model is left as it
# was. Deleting blocks one by one from the end of each stage shows how much each stage's
# last blocks contribute.

# %% tags=["hide-input"]
deletion = {kind: pd.DataFrame(deletion_accuracy(run, P, data, device=device)) for kind, run in runs.items()}
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.3), layout="constrained", sharey=True)
for ax, kind in zip(axes, runs):
    plots.deletion_curves(deletion[kind], ax=ax, title=f"{runs[kind].model.name} ({kind})")
glue("fig_5", fig, display=False)
plt.close(fig)

drops = {kind: deletion_drop(deletion[kind].to_dict("records"), stage=3, fraction=0.5) for kind in runs}
for key, kind in (("with", "with a block"), ("without", "without a block")):
    drop, count = drops[kind]
    glue(f"drop_{key}", f"{100 * drop:.1f}", display=False)
    glue(f"drop_{key}_count", "block" if count == 1 else f"{count} blocks", display=False)

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

# %% tags=["remove-input"]
var_without = analyses["without a block"].variance_explained.mean()
drop_with, drop_without = drops["with a block"][0], drops["without a block"][0]
# Each claim compares two numbers; differences within the tolerance count as too close to call.
claims = [
    ("PC1 explains more of the variance inside the block than in the model without a block",
     compare(variance_in, var_without, 0.02), f"{variance_in:.2f} against {var_without:.2f}"),
    ("Removing PC1 lowers the CKA between the block's layers",
     compare(cka_in, cka_without_in, 0.01), f"{cka_in:.3f} to {cka_without_in:.3f}"),
    ("Across models, PC1's variance explained goes with the block size (Spearman correlation above 0)",
     compare(rho, 0.0, 0.1), f"rho = {rho:.2f} over {len(pcs_table)} models"),
    ("Probe accuracy improves less per residual block inside the block than outside it",
     compare(gain_out, gain_in, 0.005), f"{100 * gain_in:+.2f} against {100 * gain_out:+.2f} points per block"),
    ("Deleting the end of the last stage costs the model with a block less than the one without",
     compare(drop_without, drop_with, 0.01), f"{100 * drop_with:.1f} against {100 * drop_without:.1f} points"),
]
display(Markdown("\n".join(f"- {claim}: **{verdict}** ({numbers})." for claim, verdict, numbers in claims)))

# %% [markdown]
# Each verdict compares two numbers of this run (differences smaller than a set
# tolerance are called too close to call), so it can flip with the profile, the seed
# and the block threshold; small models trained briefly on few images are far
# from the paper's, and the figures above are the evidence to weigh.

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
