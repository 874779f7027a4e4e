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
from repsim.analyses import cross_cka
from repsim.blocks import diagonal_inside_outside, find_block
from repsim.data import load_dataset
from repsim.grid import Run, compare, heatmap
from repsim.profiles import chapter_device, get_profile

P = get_profile(profile)
S = P.across
device = chapter_device(device, P)  # on Colab: its GPU when there is one
data = load_dataset(P.dataset)
first, second = S.seeds
glue("seed_a", first, display=False)
glue("seed_b", second, display=False)


# %% [markdown]
# ## Across seeds (Fig. 6)
#
# For a small, a wide and a deep model, the left panel is the heatmap of seed
# {glue:text}`seed_a` against itself; the right panel compares layer $i$ of seed
# {glue:text}`seed_a` (vertical axis) with layer $j$ of seed {glue:text}`seed_b`
# (horizontal axis).

# %% tags=["hide-input"]
pairs = [(Run(config, size, first), Run(config, size, second)) for config, size in S.seed_models]
within = [heatmap(a, P, data, device=device) for a, _ in pairs]
across = [cross_cka(a, b, P, data, device=device)[0] for a, b in pairs]
fig, axes = plt.subplots(len(pairs), 2, figsize=(6.2, 3.0 * len(pairs)), layout="constrained", squeeze=False)
for (a, b), own, cross, row in zip(pairs, within, across, axes):
    plots.cka_heatmap(own.cka, ax=row[0], layers=own.layers, colorbar=False,
                      title=f"{a.label}\nseed {a.seed} vs itself", xlabel=f"seed {a.seed}", ylabel=f"seed {a.seed}")
    plots.cka_heatmap(cross, ax=row[1], layers=own.layers, title=f"seed {a.seed} vs seed {b.seed}",
                      xlabel=f"seed {b.seed}", ylabel=f"seed {a.seed}")
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

# %% tags=["hide-input"]
rows = []
for (a, b), own, cross in zip(pairs, within, across):
    block = find_block(own.cka, block_threshold)
    inside, outside = diagonal_inside_outside(cross, block)
    rows.append({"model": a.label, "block_fraction": block.fraction, "inside_block": inside,
                 "outside_block": outside})
seeds_table = pd.DataFrame(rows)
fig, ax = plt.subplots(figsize=(4.2, 3.8), layout="constrained")
sns.scatterplot(data=seeds_table, x="outside_block", y="inside_block", hue="model", s=60, ax=ax)
ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
ax.set(xlim=(0, 1.02), ylim=(0, 1.02), aspect="equal", xlabel="cross-seed CKA, layers outside the block",
       ylabel="cross-seed CKA, layers inside the block")
ax.legend(fontsize="x-small", frameon=False, loc="lower left")
glue("fig_seed_block", fig, display=False)
plt.close(fig)
glue("threshold", block_threshold, display=False)
seeds_table.style.format({"block_fraction": "{:.2f}", "inside_block": "{:.3f}", "outside_block": "{:.3f}"},
                         na_rep="no block").hide(axis="index")

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

# %% tags=["hide-input"]
arch_pairs = [(Run(*a, first), Run(*b, first)) for a, b in S.architecture_pairs]
fig, axes = plt.subplots(1, len(arch_pairs), figsize=(3.6 * len(arch_pairs) + 0.6, 3.4), layout="constrained",
                         squeeze=False)
arch_rows = []
for (a, b), ax in zip(arch_pairs, axes[0]):
    cross, layers, other_layers = cross_cka(a, b, P, data, device=device)
    map_a, map_b = heatmap(a, P, data, device=device), heatmap(b, P, data, device=device)
    plots.cka_heatmap(cross, ax=ax, colorbar=ax is axes[0, -1], xlabel=f"{b.model.name} ({map_b.test_acc:.0%})",
                      ylabel=f"{a.model.name} ({map_a.test_acc:.0%})")
    ax.set_aspect("auto")  # two depths: a rectangle, stretched to the panel
    arch_rows.append({"pair": f"{a.label} / {b.label}", "accuracies": f"{map_a.test_acc:.1%} / {map_b.test_acc:.1%}",
                      "blocks": f"{find_block(map_a.cka, block_threshold).fraction:.2f} / "
                                f"{find_block(map_b.cka, block_threshold).fraction:.2f}",
                      "max CKA per layer (mean)": cross.max(axis=1).mean()})
glue("fig_e1", fig, display=False)
plt.close(fig)
pd.DataFrame(arch_rows).style.format({"max CKA per layer (mean)": "{:.3f}"}).hide(axis="index")

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

# %% tags=["remove-input"]
with_block = seeds_table.dropna(subset=["inside_block"])
lines = [f"- {row.model}: cross-seed CKA inside the block {row.inside_block:.3f}, outside it "
         f"{row.outside_block:.3f}; the claim that the block is less similar across seeds "
         f"**{compare(row.outside_block, row.inside_block, 0.01)}**." for row in with_block.itertuples()]
if len(with_block) < len(seeds_table):
    lines.append(f"- {len(seeds_table) - len(with_block)} model(s) have no block at this threshold and are not judged.")
display(Markdown("\n".join(lines)))

# %% [markdown]
# Differences within 0.01 are called too close to call. As in the previous chapters,
# models trained briefly on few images are far from the paper's, and the heatmaps above
# are the evidence to weigh.

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
