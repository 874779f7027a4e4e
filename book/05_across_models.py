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
# # Representations across models
#
# Section 5 of {cite}`nguyen2021wide` compares layers of *different* models. Outside
# the block structure, two networks trained from different random seeds, and even
# networks of different widths and depths, learn similar representations at the same
# relative depth. Inside the block they do not: each network's block representation is
# its own, and two seeds of one architecture disagree there.
#
# CKA between two models works as within one: the same test images go through both, and
# the minibatch estimator compares every layer of the first with every layer of the
# second. The models are those of chapter 3, {doc}`03_blocks`, loaded from the store.

# %% tags=["parameters"]
profile = "laptop"  # smoke | laptop | paper: see repsim/profiles.py
seed = 0  # added to every model's seed: Fig. 6 shows seed_pair's seeds, the claims use the profile's seeds from it
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

from repsim import plots
from repsim.run_analyses import architecture_panels, architecture_rows, cross_cka, seed_pair_panels, seed_rows
from repsim.claims import CALLED_AT, markdown, seed_claims
from repsim.figures import fig6_pairs, fige1_pairs, seed_pairs
from repsim.heatmaps import heatmap
from repsim.book.prose import glue_all
from repsim.session import Session

# %%
session = Session.open(profile, device, compute_missing)
P = session.profile  # this chapter's settings are P.across (profiles.AcrossChapter)
first, second = (s + seed for s in P.across.seed_pair)

# %% tags=["remove-cell"]
glue_all({"seed_a": first, "seed_b": second, "threshold": block_threshold, "seed_count": P.seeds,
          "called_at": f"{CALLED_AT:g}"})

# %% [markdown]
# ## Across seeds (Fig. 6)
#
# For a small, a wide and a deep model, the left panel is the heatmap of seed
# {glue:text}`seed_a` against itself; the right panel compares layer $i$ of seed
# {glue:text}`seed_a` (vertical axis) with layer $j$ of seed {glue:text}`seed_b`
# (horizontal axis).

# %%
pairs = fig6_pairs(P.across, seed)  # each architecture with both seeds
within = [session.get(heatmap, a) for a, _ in pairs]
across = [session.get(cross_cka, a, b) for a, b in pairs]
fig = plots.seed_pairs_figure(seed_pair_panels(pairs, within, across))
glue("fig_6", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_6
# :name: paper-fig-6
#
# (Paper Fig. 6.) Within-model CKA (left) and CKA between two seeds of the same
# architecture (right), for each model.
# ```
#
# ## Inside the block and outside it
#
# The paper's claim, measured: take the block of seed {glue:text}`seed_a` from its own
# heatmap (chapter 3's measure, threshold {glue:text}`threshold`), and average the
# cross-seed CKA of each layer with *the same layer* of the other seed, once over the
# layers inside the block and once over the rest.

# %%
seeds_table = pd.DataFrame(seed_rows(pairs, within, across, block_threshold))
ax = plots.inside_outside(seeds_table.dropna())
glue("fig_seed_block", ax.figure, display=False)
plt.close(ax.figure)
seeds_table.style.format({"block_fraction": "{:.2f}", "inside_block": "{:.3f}", "outside_block": "{:.3f}"},
                         na_rep="-").hide(axis="index")

# %% [markdown]
# ```{glue:figure} fig_seed_block
# :name: seed-block
#
# Mean cross-seed CKA of corresponding layers inside the block against outside it, one
# point per model. Points below the dashed line are models whose block layers agree
# across seeds less than their other layers do, as the paper claims.
# ```
#
# ## Across architectures (Fig. E.1)
#
# Models of different widths and depths but similar test accuracy, compared layer by
# layer. The paper finds them similar where neither has a block, and dissimilar where
# their blocks lie.

# %%
arch_pairs = fige1_pairs(P.across)
cross = [session.get(cross_cka, a, b) for a, b in arch_pairs]
maps_a, maps_b = [session.get(heatmap, a) for a, _ in arch_pairs], [session.get(heatmap, b) for _, b in arch_pairs]
fig = plots.cross_architecture_figure(architecture_panels(arch_pairs, cross, maps_a, maps_b))
glue("fig_e1", fig, display=False)
plt.close(fig)
pd.DataFrame(architecture_rows(arch_pairs, cross, maps_a, maps_b, block_threshold)).style.format(
    {"max CKA per layer (mean)": "{:.3f}"}, na_rep="-").hide(axis="index")

# %% [markdown]
# ```{glue:figure} fig_e1
# :name: paper-fig-e1
#
# (Paper Fig. E.1.) CKA between the layers of two architectures of similar accuracy
# (test accuracy in the axis labels). The table gives the block size of each model and,
# for each layer of the first, its best match in the second, averaged over layers.
# ```
#
# ## Against the paper

# %%
# Every pair of the profile's seeds of each architecture, so that the claim is judged beyond their spread.
all_pairs = seed_pairs(P.across, P.seed_list(seed))
all_rows = seed_rows(all_pairs, [session.get(heatmap, a) for a, _ in all_pairs],
                     [session.get(cross_cka, a, b) for a, b in all_pairs], block_threshold)
display(Markdown(markdown(seed_claims(all_rows))))

# %% [markdown]
# For each architecture, outside minus inside is taken for every pair of its
# {glue:text}`seed_count` seeds (consecutive seeds, in a cycle) and called only beyond
# {glue:text}`called_at` standard errors over the pairs, and beyond 0.01; otherwise it
# is too close to call. The pairs share seeds, so their spread understates the
# uncertainty somewhat. As in the previous chapters, models trained on few images are
# far from the paper's, and the heatmaps above are the evidence to weigh.

# %% [markdown]
# ## Exercises
#
# Solutions are folded under each exercise; `python -m repsim.book.student` writes copies of
# the notebooks without them, and without outputs, for a class.

# %% [markdown]
# **Exercise 1.** Two ResNets of different depths have different numbers of layers. How would you pair
# their layers "at the same relative depth", and which of this chapter's figures relies
# on such a pairing when it is read along its diagonal?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 1
# :class: dropdown
#
# Map layer $i$ of a model with $L$ layers to $i / (L - 1)$ and pair layers whose
# fractions are closest, or, more faithfully to the architecture, pair the same position
# within the same stage. In {numref}`paper-fig-e1` the cross-architecture heatmap is not
# square; the bright band from the bottom left to the top right is this pairing, and
# where it fades is where the two models' representations stop agreeing.
# ````

# %% [markdown]
# **Exercise 2.** Suppose each of two seeds has a block whose representation is almost rank one: the
# block's layers are dominated by one direction, with scores $a \in \mathbb{R}^n$ over the
# test images in one model and $b$ in the other. What is the CKA between the two blocks,
# and why can it be low even though each block is "simple"?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 2
# :class: dropdown
#
# With rank-one, centred representations $X \approx a s^\top$ and $Y \approx b t^\top$,
# the Grams are $a a^\top$ and $b b^\top$ up to scale, and linear CKA becomes
# $(a^\top b)^2 / (\lVert a \rVert^2 \lVert b \rVert^2)$: the squared correlation of the
# two score vectors over the examples. If the two seeds' dominant directions single out
# different images, this is small. Follow-up work traced the dominant component to a
# few dominant data points that differ between seeds {cite}`nguyen2022origins`.
# ````

# %% [markdown]
# **Exercise 3.** The chapter compares two seeds of one architecture. Why is that the right baseline
# before comparing two different architectures?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 3
# :class: dropdown
#
# Two seeds share everything but the randomness of initialisation and data order, so
# their CKA is the most two models of that architecture can be expected to agree.
# Disagreement between architectures only says something about width or depth where it
# exceeds the disagreement between seeds.
# ````
