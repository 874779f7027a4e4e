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
# # Where the block comes from
#
# {cite}`nguyen2021wide` describe the block structure but leave open how it arises. Their
# follow-up, {cite}`nguyen2022origins`, answers in three parts. The block takes shape
# early in training, while the representation inside it keeps changing. It is carried
# by *dominant datapoints*: a small group of images whose activations lie very far out
# along the first principal component of the block's layers, and which share a simple
# image statistic such as the colour of the background. And different seeds pick
# different dominant images, which is why the block of one model is unlike the block of
# another (chapter {doc}`05_across_models`).
#
# This chapter goes beyond the paper: it checks those findings on two models of the
# grid of chapter {doc}`03_blocks`, one with a block and one without, at the scale of
# the profile.

# %% tags=["parameters"]
profile = "laptop"  # smoke | laptop | paper: see repsim/profiles.py
seed = 0  # seed of the models followed (as in chapter 3)
device = None  # None uses the profile's device
compute_missing = None  # None: the profile decides; False: read stored and harvested results only
block_threshold = 0.9  # CKA that every pair of layers in a block must reach, as in chapter 3
formed_overlap = 0.5  # the block has taken shape once it keeps at least this overlap with the final block

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

from repsim import origins, plots
from repsim.book import prose
from repsim.book.prose import glue_all
from repsim.claims import CALLED_AT, markdown, origin_claims
from repsim.session import Session

# %% [markdown]
# The models are the profile's `origins` runs, both from chapter 3's grid
# (`Profile.followed_runs`). A profile may name them; by default they are the first
# architecture of Fig. D.1 (the paper's models with a block, trained with several seeds)
# and the shallowest network on the largest training set. The table says which.

# %%
session = Session.open(profile, device, compute_missing)
P, O = session.profile, session.profile.origins
runs = P.followed_runs(seed)
pd.DataFrame(origins.run_table(runs, P)).set_index("model")

# %% [markdown]
# (block-over-training)=
# ## The block over training
#
# Both runs are trained with *snapshots*: their weights are kept at $S$ SGD steps
# $0 = t_0 < t_1 < \dots < t_{S-1} = T$, spaced evenly in $\log t$ (step 0 is the
# initialisation, $T$ the last step), as one store entry beside the model. Snapshots are
# an option of `repsim.train.train_models` that only reads the weights, so the run
# trained with them is the run trained without them (a test checks it bit for bit), and
# chapter 3 trains these two runs that way the first time. A run stored without
# snapshots is trained again; on the CPU, with a fixed number of threads, that gives the
# stored model bit for bit. For the model with a block here: {glue:text}`reproduces`.
# At each snapshot, on the first {glue:text}`snapshot_examples` test images, we measure
#
# - the **block measure** $b(t)$: the share of the $L$ layers in the longest run of
#   consecutive layers whose pairwise CKA all reach $\tau = $ {glue:text}`threshold`
#   (`repsim.blocks.find_block`, as in chapter 3);
# - **PC1's share of variance** $v(t) = \frac{1}{|\mathcal{K}|}\sum_{\ell \in \mathcal{K}}
#   s_{\ell,1}^2 / \sum_i s_{\ell,i}^2$, averaged over the residual-block outputs
#   $\mathcal{K}$ of the last two stages (as for Fig. D.5 in chapter 4);
# - how far the block has still to go: the **cross-snapshot CKA**
#   $c(t) = \frac{1}{|B|}\sum_{\ell \in B} \mathrm{CKA}\big(X_\ell(t), X_\ell(T^*)\big)$
#   between each layer $\ell$ of the final model's block $B$ at step $t$ and the same
#   layer of the final model $T^*$ (the analysed checkpoint);
# - the **overlap** of the block $B(t)$ found at step $t$ with the final model's block
#   $B^*$, the Jaccard index of their layers $o(t) = |B(t) \cap B^*| / |B(t) \cup B^*|$,
#   which is 1 only when the two blocks cover the same layers;
# - and the test accuracy, on the same test images.
#
# The block has *taken shape* at the first snapshot $t_f$ from which $o(t)$ stays at or
# above {glue:text}`formed_overlap`: from then on the network has a block, and it is
# roughly where the final one is.

# %% tags=["hide-input"]
trajectories = [session.get(origins.trajectory, run) for run in runs]
rows, titles, labels = origins.snapshot_panels(trajectories)
fig = plots.wrapped_heatmaps(rows, titles, labels) if rows else plots.placeholder("snapshots pending").figure
glue("fig_snapshots", fig, display=False)
plt.close(fig)
prose.pending_note("Fig. 7.1", trajectories)

# %% [markdown]
# ```{glue:figure} fig_snapshots
# :name: origins-fig-snapshots
#
# Within-model CKA at each snapshot of the model with a block (top rows) and of the
# model without one (bottom rows), from the initialisation to the last SGD step (left to
# right, then on the next row).
# ```

# %% tags=["hide-input"]
table = origins.block_over_training(trajectories, block_threshold)
formed = origins.formation(trajectories[0], block_threshold, formed_overlap)
formed_without = origins.formation(trajectories[1], block_threshold, formed_overlap)
fig = plots.over_training_figure(table, mark=formed["step"])
glue("fig_over_training", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_over_training
# :name: origins-fig-over-training
#
# Against the SGD step (0 is the initialisation; linear up to 1, logarithmic beyond):
# the block measure, the overlap of the block with the final model's, PC1's share of
# variance at the residual-block outputs of the last two stages, the mean CKA of the
# final block's layers with the same layers of the final model, and test accuracy on the
# snapshots' {glue:text}`snapshot_examples` test images. The dashed line marks the step
# at which the block of the model with a block has taken shape. The final model is the
# analysed checkpoint (the epoch of best test accuracy), which need not be the last step.
# ```
#
# The block of the {glue:text}`with_model` has taken shape by step
# {glue:text}`formed_step` of {glue:text}`total_steps` ({glue:text}`formed_fraction` of
# training). The table gives each measure of both models at initialisation, at that
# step and for the final model; the CKA of the block's layers with the final model's
# says how much of their representation is still to change.

# %% tags=["hide-input"]
prose.formation_table([formed, formed_without], runs)

# %% [markdown]
# (dominant-images)=
# ## Dominant images
#
# Inside the block, the paper finds, one principal component carries much of each
# layer's variance (chapter {doc}`04_probes` measures it). Which images make it so? For every layer $\ell$ of the block
# (evenly thinned to at most {glue:text}`max_layers` layers) we take PC1 of the
# centred activations of the {glue:text}`n_images` test images that the heatmap uses
# (`repsim.pca.first_pc`), and its scores $z_{\ell i} = (x_{\ell i} - \bar x_\ell) \cdot
# v_{\ell,1}$. An image's **dominance** is how many typical projections it lies out along
# PC1, averaged over the block's layers:
#
# $$
# d_i = \frac{1}{|B|}\sum_{\ell \in B} \frac{|z_{\ell i}|}{\sqrt{\frac{1}{N}\sum_j z_{\ell j}^2}} .
# $$
#
# The $k$ images of largest $d_i$ are the dominant ones; their **share of PC1's
# variance** is $\frac{1}{|B|}\sum_\ell \sum_{i \in \text{top } k} z_{\ell i}^2 /
# \sum_i z_{\ell i}^2$, which is $k/N$ on average for $k$ random images. To see what
# the dominant images have in common, we compare simple statistics of theirs with those
# of all other images: brightness, contrast, saturation, the brightness and the
# variation of the border (a uniform background varies little), and the mean of each
# colour channel. Each comparison gives Cohen's $d$ (the difference of means over the
# pooled standard deviation) and a two-sided Mann-Whitney $U$ test, whose $p$-value is
# multiplied by the number of statistics tried (Bonferroni), since we report the
# strongest.

# %% tags=["hide-input"]
dominant = session.get(origins.dominance, runs[0], threshold=block_threshold)
summary = origins.dominance_summary(dominant, session.data, O.top_k)
images = session.data.test_images
fig = plots.image_panels([images[summary["top"]], images[summary["random"]]],
                         [f"the {O.top_k} most dominant images", f"{O.top_k} random images"])
glue("fig_dominant", fig, display=False)
plt.close(fig)
pd.DataFrame(summary["table"]).round(3)

# %% [markdown]
# ```{glue:figure} fig_dominant
# :name: origins-fig-dominant
#
# Top: the test images with the largest projections on the first principal components
# of the block's layers, most dominant first. Bottom: as many random test images.
# ```
#
# In the block of the {glue:text}`with_model`, PC1 explains on average
# {glue:text}`block_variance` of a layer's variance. The {glue:text}`top_k` most
# dominant of {glue:text}`n_images` images carry {glue:text}`top_share` of PC1's
# variance, against the {glue:text}`random_share` that as many random images carry on
# average. The statistic that separates them best from the other images is
# **{glue:text}`statistic`**: {glue:text}`stat_chosen` on average against
# {glue:text}`stat_others`, Cohen's $d$ = {glue:text}`stat_d`, $p$ =
# {glue:text}`stat_p` after the correction. The table lists every statistic, strongest
# first; which one wins is this run's finding, not a rule.
#
# (dominant-across-seeds)=
# ## Across seeds
#
# If the dominant images were a property of the data alone, every seed would pick the
# same ones. For two seeds with top-$k$ sets $A$ and $B$ of $N$ images, the Jaccard
# index $|A \cap B| / |A \cup B|$ is 1 for the same set. Two independent random
# $k$-subsets share $X$ images with $X$ hypergeometric, $\mathbb{E}X = k^2/N$; the
# expected Jaccard index $\mathbb{E}[X/(2k - X)]$, close to $k/(2N - k)$, is what chance
# gives, and $P(X \ge x)$ is the $p$-value of an observed overlap $x$.

# %% tags=["hide-input"]
seed_dominance = [session.get(origins.dominance, run, threshold=block_threshold) for run in origins.seed_runs(P, seed)]
sets, set_titles = origins.seed_panels(seed_dominance, images, O.top_k)
fig = plots.image_panels(sets, set_titles) if sets else plots.placeholder("seeds pending").figure
glue("fig_seeds", fig, display=False)
plt.close(fig)
prose.pending_note("Across seeds", seed_dominance)

# %% [markdown]
# The overlap of each pair of seeds' top-$k$ sets, against chance:

# %% tags=["hide-input"]
seeds = origins.seeds_summary(seed_dominance, session.data, O.top_k)
pd.DataFrame(seeds["overlaps"]).round(4)

# %% [markdown]
# For each seed, the statistic that best separates its dominant images from the rest,
# and the effect size of the first seed's strongest statistic in every seed:

# %% tags=["hide-input"]
pd.DataFrame(seeds["statistics"]).round(3)

# %% [markdown]
# ```{glue:figure} fig_seeds
# :name: origins-fig-seeds
#
# The most dominant test images of each seed of the model with a block.
# ```
#
# Across {glue:text}`seed_count` seeds, the top-{glue:text}`top_k` sets share
# {glue:text}`overlap` images on average (chance: {glue:text}`chance_overlap`), a
# Jaccard index of {glue:text}`jaccard` against {glue:text}`chance_jaccard` by chance
# (the largest $p$-value of the pairs: {glue:text}`overlap_p`). The strongest image
# statistic is {glue:text}`same_statistic` in every seed.
#
# (block-without-dominant)=
# ## Removing them
#
# If the dominant images make the block, the heatmap computed without them should lose
# it. We recompute the heatmap of the {glue:text}`with_model` with the profile's CKA
# protocol, on the same minibatches, leaving out the top $k$ dominant images, for
# $k \in$ {glue:text}`removal_counts`; as the control, the same without $k$ random
# images. Leaving images out needs no new forward pass: the Gram matrix of part of a
# minibatch is that part of the minibatch's Gram matrix (`repsim.dominant.cka_without_images`).
# Besides the block measure, we follow the mean CKA over the layers of the block found
# with all images.

# %% tags=["hide-input"]
removal = session.get(origins.removal_heatmaps, runs[0], threshold=block_threshold)
removed = origins.removal_summary(removal, block_threshold)
fig = plots.removal_figure(origins.removal_rows(removal, block_threshold))
glue("fig_removal", fig, display=False)
plt.close(fig)

# %% tags=["hide-input"]
rows, titles = origins.removal_panels(removal)
fig = plots.wrapped_heatmaps(rows, titles) if rows else plots.placeholder("heatmaps pending").figure
glue("fig_removal_maps", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_removal
# :name: origins-fig-removal
#
# The block measure (left) and the mean CKA over the original block's layers (right)
# of the model with a block, against the number of test images left out: the most
# dominant ones, or random ones.
# ```
#
# ```{glue:figure} fig_removal_maps
# :name: origins-fig-removal-maps
#
# The heatmap with every test image, without the {glue:text}`k_max` most dominant
# ones, and without {glue:text}`k_max` random ones.
# ```
#
# With every image the block covers {glue:text}`block_before` of the layers (mean CKA
# {glue:text}`cka_before` over its layers). Without the {glue:text}`k_max` most
# dominant images it covers {glue:text}`block_dominant` (mean CKA over the same layers
# {glue:text}`cka_dominant`); without {glue:text}`k_max` random images,
# {glue:text}`block_random` ({glue:text}`cka_random`).
#
# ## Against the follow-up
#
# One row per finding of {cite}`nguyen2022origins`, each verdict computed by
# `repsim.claims.origin_claims` from the numbers above and the same numbers for the
# profile's other seeds of the model with a block ({glue:text}`claim_seeds` in all).
# Each part of a finding is a margin over a fixed threshold, taken seed by seed and
# called only beyond {glue:text}`called_at` standard errors of the seeds' margins.

# %% tags=["hide-input"]
# Every seed of the model with a block (the first is the one above), so that each finding is judged beyond their spread.
with_block = [P.followed_runs(s)[0] for s in P.seed_list(seed)]
formed_all, dominant_all, removed_all = origins.seed_summaries(session.get, with_block, session.data, block_threshold,
                                                               formed_overlap, O.top_k)
prose.MarkdownText(markdown(origin_claims(formed_all, dominant_all, seeds, removed_all)))

# %% tags=["remove-cell"]
glue_all(prose.chapter7(P, runs, trajectories[0], formed, summary, seeds, removed, len(seed_dominance),
                        threshold=block_threshold, formed_overlap=formed_overlap))
glue_all({"claim_seeds": len(with_block), "called_at": f"{CALLED_AT:g}"})

# %% [markdown]
# A two-part claim agrees "only in part" when one part holds and the other does not,
# and is too close to call when no part is called against it but one is too close. The rules are fixed in
# `repsim.claims`: "early" is within the first {glue:text}`early` of the SGD steps, and a
# block that is already in place at initialisation makes the claim not measurable, since
# training did not create it; "still changing" is a mean CKA below
# {glue:text}`still_changing` with the final block; the dominant images must carry at
# least {glue:text}`carry` times their share $k/N$ of PC1's variance and differ in some
# statistic at $p <$ {glue:text}`level` after the correction; two seeds' sets "differ"
# when their Jaccard index is below {glue:text}`different`; and removing the dominant
# images must leave at most {glue:text}`halved` of the block measure, and at least
# {glue:text}`margin` less than removing as many random images. Small models trained
# briefly on few images are far from the follow-up's, so each verdict can flip with the
# profile, the seed and the thresholds; the figures are the evidence to weigh.

# %% [markdown]
# ## Exercises
#
# Solutions are folded under each exercise; `python -m repsim.book.student` writes copies of
# the notebooks without them, and without outputs, for a class.

# %% [markdown]
# **Exercise 1.** Let two layers' centred representations be $X = a\,u\,p^\top + E_X$ and
# $Y = b\,u\,q^\top + E_Y$, where $u \in \mathbb{R}^N$ is a unit vector over the images,
# $p$ and $q$ are unit feature directions, and the noise terms $E_X$, $E_Y$ are
# independent of each other with Frobenius norms much smaller than $a$ and $b$. Show
# that linear CKA between $X$ and $Y$ tends to 1 as $a, b \to \infty$, however different
# $E_X$ and $E_Y$ are. What does this say about a few images with huge projections
# (large entries of $u$)?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 1
# :class: dropdown
#
# The Gram matrices are $K = XX^\top = a^2 uu^\top + O(a\lVert E_X\rVert) + E_XE_X^\top$
# and likewise $L = b^2 uu^\top + \dots$. Linear CKA is
# $\langle K, L\rangle_F / (\lVert K\rVert_F \lVert L\rVert_F)$ (after centring, which
# $u$ already satisfies), and as $a, b$ grow both Grams approach multiples of
# $uu^\top$, whose CKA with itself is 1. So CKA is high whenever two layers share one
# dominant direction over the images, whatever else they hold. If $u$ is concentrated
# on a few images (the dominant ones), those few images alone make the layers look
# alike, which is the follow-up's explanation of the block; leaving them out removes
# the shared direction and lets the rest of the representation speak.
# ````

# %% [markdown]
# **Exercise 2.** Show that the expected overlap of two independent uniformly random
# $k$-subsets of $N$ items is $k^2/N$, and that for $k \ll N$ the expected Jaccard index
# is close to $k/(2N - k)$. With $k = 20$ and $N = 2{,}048$, what overlap would make you
# doubt that the two seeds chose independently?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 2
# :class: dropdown
#
# Each of the $k$ items of $A$ is in $B$ with probability $k/N$, so by linearity
# $\mathbb{E}|A \cap B| = k^2/N$. For $k \ll N$ the overlap $X$ is nearly always 0 or
# small, so $\mathbb{E}[X/(2k - X)] \approx \mathbb{E}X / (2k) = k/(2N)$, and the exact
# value is slightly larger, close to $k/(2N - k)$. With $k = 20$, $N = 2{,}048$ the
# expected overlap is about 0.2 images; `repsim.dominant.overlap_p_value(x, 20, 2048)`
# gives $P(X \ge x)$: about 0.18 for $x = 1$, 0.015 for $x = 2$ and $8 \times 10^{-4}$ for
# $x = 3$, so two or more shared images are unlikely by chance.
# ````

# %% [markdown]
# **Exercise 3.** Why compare the heatmap without the dominant images with the heatmap
# without as many *random* images, rather than with the heatmap on all images? Which
# artefact of the unbiased CKA estimator would the comparison with all images mix in?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 3
# :class: dropdown
#
# Leaving images out changes the estimate by itself: each minibatch gets smaller, so
# every HSIC estimate is noisier, and the unbiased estimator's minibatch sums weigh
# each batch by $n(n-3)$. Removing $k$ random images changes exactly those things and
# nothing else, so the difference between the two curves isolates the effect of *which*
# images were removed. Against the heatmap on all images, a drop could also come from
# the smaller sample.
# ````

# %% [markdown]
# **Exercise 4.** In {numref}`origins-fig-snapshots`, the heatmaps at initialisation are
# already bright over many layers, before a single SGD step. Give two reasons why the
# layers of a randomly initialised ResNet of this book can have high CKA with each other,
# and say how you would test each.

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 4
# :class: dropdown
#
# First, the inputs are scaled to $[0, 1]$ and not centred (as in the paper's code), so
# every image carries a large positive mean, and the images differ most in their overall
# brightness and colour; a random network passes that common direction on from layer to
# layer, and one shared dominant direction over the images is enough for high CKA
# (exercise 1). Test: centre and whiten the inputs, or score the images by brightness and
# compare with PC1 of a random network's layers. Second, in a residual network each block
# adds its branch to a stream that carries everything before it; at initialisation the
# branches are random and roughly as large as each other, so consecutive block outputs
# share most of their content. Test: compare the heatmap at initialisation with and
# without residual connections (the networks of Fig. C.1), or scale the branches down.
# ````

