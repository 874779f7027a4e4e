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
# # Setup and background: CKA
#
# The paper compares *representations*: the outputs of a layer for a fixed set of
# inputs. This chapter sets up the measure it uses, linear centred kernel alignment
# (CKA) {cite}`kornblith2019similarity`, checks its properties on the activations of a
# real trained ResNet, and ends with the picture the rest of the book is built from:
# the CKA between every pair of layers of one network.

# %% tags=["parameters"]
profile = "laptop"  # smoke | laptop | paper: see repsim/profiles.py
seed = 0  # the model's training seed
device = None  # None uses the profile's device; "cpu", "cuda" or "auto" override it
compute_missing = None  # None: the profile decides (paper: only on a GPU); False: stored and committed results only
block_threshold = 0.8  # CKA that every pair of layers in a "block" must reach

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

# %% tags=["remove-cell"]
from repsim import plots
from repsim.blocks import find_block
from repsim.figures import background_run
from repsim.heatmaps import heatmap
from repsim.trained import train_run
from repsim.models import ResNet, layer_names
from repsim.profiles import differences_from_paper
from repsim.properties import demo_activations, demo_layers, estimator_curves, invariance_rows, minibatch_against_full
from repsim.book.prose import background_model, background_values, glue_all
from repsim.session import Session

# %% [markdown]
# ## Representations and their similarity
#
# Feed the same $n$ examples to a network and stack the outputs of one layer, each
# flattened to a vector, into a matrix $X \in \mathbb{R}^{n \times p_1}$; another layer
# (of the same network or of another one) gives $Y \in \mathbb{R}^{n \times p_2}$. The
# two layers need not have the same number of features, and their features need not
# correspond one to one, so we compare them through the similarity structure they
# impose on the examples: the Gram matrices $K = X X^\top$ and $L = Y Y^\top$, both
# $n \times n$.
#
# The Hilbert-Schmidt independence criterion {cite}`gretton2005measuring` measures how
# well two such kernels agree once the mean is removed. With the centring matrix
# $H = I_n - \tfrac{1}{n} \mathbf{1}\mathbf{1}^\top$,
#
# $$
# \mathrm{HSIC}_0(K, L) = \frac{\operatorname{tr}(K H L H)}{(n-1)^2}.
# $$
#
# HSIC grows with the scale of the features, so CKA normalises it:
#
# $$
# \mathrm{CKA}(K, L) = \frac{\mathrm{HSIC}(K, L)}{\sqrt{\mathrm{HSIC}(K, K)\,\mathrm{HSIC}(L, L)}} .
# $$
#
# With linear kernels this is $\lVert Y_c^\top X_c \rVert_F^2 / (\lVert X_c^\top X_c
# \rVert_F \lVert Y_c^\top Y_c \rVert_F)$ for the column-centred $X_c, Y_c$: a value in
# $[0, 1]$ that is 1 when the two representations agree up to a rotation and a scale.
#
# **The unbiased estimator.** $\mathrm{HSIC}_0$ is biased: for a finite $n$ it is
# positive even for independent representations, and the bias grows with the number
# of features. The paper uses instead the unbiased estimator of
# {cite}`song2012feature`. Write $\tilde K$ for the *U-centred* Gram: set the
# diagonal of $K$ to zero, then for $i \neq j$
#
# $$
# \tilde K_{ij} = K_{ij} - \frac{1}{n-2}\sum_{l} K_{il} - \frac{1}{n-2}\sum_{k} K_{kj}
#   + \frac{1}{(n-1)(n-2)} \sum_{k,l} K_{kl},
# \qquad \tilde K_{ii} = 0 .
# $$
#
# Then $\mathrm{HSIC}_1(K, L) = \langle \tilde K, \tilde L \rangle / (n(n-3))$, which
# needs $n \ge 4$ examples and has expectation exactly the population HSIC.
#
# **The minibatch estimator.** A Gram over all 10,000 test images of every layer would
# not fit in memory, so {cite}`nguyen2021wide` split the test set into minibatches of
# $m$ images, compute $\mathrm{HSIC}_1$ for every pair of layers on each batch, and sum
# over the $k$ batches before taking the ratio. The paper's released code sums the
# batches' unnormalised products $\langle \tilde K_b, \tilde L_b \rangle$, so each
# batch's $\mathrm{HSIC}_1$ counts with weight $n_b(n_b - 3)$:
#
# $$
# \mathrm{CKA}_{\text{minibatch}}(X, Y) = \frac{\sum_{b} n_b(n_b-3)\,\mathrm{HSIC}_1(K_b, L_b)}
#   {\sqrt{\sum_b n_b(n_b-3)\,\mathrm{HSIC}_1(K_b, K_b)\ \sum_b n_b(n_b-3)\,\mathrm{HSIC}_1(L_b, L_b)}} .
# $$
#
# On batches of one size the weights cancel and this is the plain sum; the paper's
# protocol (10,000 test images in batches of 256) ends every pass with a batch of 16,
# which these weights count for less, exactly as the released code does, and so does
# `repsim.cka.MinibatchCKA`. Because each term is unbiased, so is each sum, and the
# estimate does not depend on the batch size the way a biased one would.
# `MinibatchCKA` computes it for all pairs of layers at once: per batch, one Gram per
# layer and a single matrix product of the flattened Grams, plus two corrections from
# their row sums that give exactly the products of the U-centred Grams (Song et al.'s
# closed form of $\mathrm{HSIC}_1$); sums are kept in float64.
#
# ## The model
#
# We train one CIFAR-10 ResNet with the paper's recipe (SGD with momentum, cosine
# decay, L2 on kernels, crop-and-flip augmentation), scaled by the profile.

# %%
session = Session.open(profile, device, compute_missing)
P, data = session.profile, session.data
run = background_run(P, seed)
model, record = session.get(train_run, run) or (None, None)  # trained once, then read; None while pending
layers, recipe = layer_names(ResNet(run.model)), run.recipe(P)
about = background_model(run, record, recipe, data, layers)
print(f"{run.model.name}: {len(layers)} layers, best test accuracy {about['test_acc']} "
      f"at epoch {about['best_epoch']} of {recipe.epochs}")

# %% tags=["remove-cell"]
glue_all(about)

# %% [markdown]
# The profile shortens the paper's recipe to fit its hardware. Every setting that
# differs from the paper's is listed here: `eval_size` is the number of test images
# scored to pick the best epoch, `evaluations` how many epochs are scored, and `cka_*`
# is the CKA protocol of the heatmaps. With schedules far shorter than the paper's 300
# epochs, the profiles raise the peak learning rate, reach it by a linear warm-up
# (`warmup_epochs`) and decay it to zero along a cosine stepped every batch
# (`lr_steps`), with Nesterov momentum; the CPU profiles also raise the BatchNorm
# momentum: the paper's 0.01 averages over about a hundred steps, and in a run of a few
# hundred steps the running statistics would then lag the weights and cost test
# accuracy. None of these changes the architecture, and nothing that is known to change
# the learned representations (label smoothing, special initialisations) is used. The
# table gives this profile's values.

# %%
pd.DataFrame(differences_from_paper(P, run.train_size, changed_only=True)).set_index("setting")

# %% [markdown]
# The model is a {glue:text}`model_name` trained on {glue:text}`train_images`
# CIFAR-10 images for {glue:text}`epochs` epochs; it reaches {glue:text}`test_acc`
# test accuracy (on the test images used to select the epoch). We analyse the output
# of each of its {glue:text}`n_layers` sub-layers: every convolution, batch norm,
# ReLU and residual add, the global pool and the logits.
#
# ## What CKA is invariant to
#
# CKA compares representations through their Gram matrices, so anything that leaves
# $X X^\top$ unchanged up to a scale leaves CKA unchanged: an orthogonal transform
# $X \mapsto X Q$ and an isotropic scaling $X \mapsto c X$. Centring removes a shift of
# every example by the same vector. A general invertible linear map $X \mapsto X A$
# changes the Gram, and with it CKA; this is deliberate, since a measure invariant to
# all invertible maps cannot tell apart any two representations with more features
# than examples {cite}`kornblith2019similarity`.
#
# We take the last block's output and the last block of the second stage on
# held-out test images, and apply each transform to the first.

# %%
x_name, y_name = demo_layers(layers)
probe_images = data.test_images[-P.background.probe_examples:]  # not used by the heatmaps below
x, y = demo_activations(model, probe_images, (x_name, y_name), session.device)  # None while pending
invariance = pd.DataFrame(invariance_rows(x, y, seed)).set_index("transform")
invariance.style.format({"CKA(T(X), Y)": "{:.6f}", "change": "{:+.1e}"}, na_rep="pending")

# %% tags=["remove-cell"]
glue_all({"x_name": x_name, "y_name": y_name})

# %% [markdown]
# Between {glue:text}`x_name` and {glue:text}`y_name` the unbiased CKA is
# {glue:text}`inv_base`. Rotating, rescaling or shifting the first representation
# moves it by at most {glue:text}`inv_max_invariant` (floating-point round-off), while
# rescaling each feature by its own random factor between 0.01 and 100, an invertible
# linear map $X \mapsto X D$, moves it to {glue:text}`inv_general`. (A random Gaussian
# matrix would make a poor example: in high dimension it is close to a scaled
# orthogonal one.)
#
# ## Biased and unbiased estimates as $n$ shrinks
#
# With a handful of examples and thousands of features, the biased estimator finds
# similarity where there is none. Below, the same pair of layers is compared on random
# subsets of $n$ examples, once as is and once with the rows of $Y$ shuffled, which
# pairs each example's $X$ with another example's $Y$: a population CKA of zero.

# %%
sizes, aligned, shuffled = estimator_curves(x, y, P.background.sample_sizes, P.background.repeats, seed)
fig = plots.estimator_panels(sizes, aligned, shuffled, title=f"{x_name} vs {y_name}")
glue("fig_estimators", fig, display=False)
plt.close(fig)


# %% [markdown]
# ```{glue:figure} fig_estimators
# :name: fig-estimators
#
# Biased ($\mathrm{HSIC}_0$) and unbiased ($\mathrm{HSIC}_1$) linear CKA on random
# subsets of $n$ test images: mean $\pm$ one standard deviation over subsets. Left:
# the two layers as they are. Right: the rows of the second layer shuffled, so the
# true similarity is zero.
# ```
#
# With unrelated examples ({numref}`fig-estimators`, right) and $n =$
# {glue:text}`small_n`, the biased estimate averages {glue:text}`bias_small_n`; the
# unbiased one averages {glue:text}`unbiased_small_n` and stays near zero at every $n$,
# at the price of more variance. This is why the paper, which computes CKA on
# minibatches of 256 examples of layers with up to $16{,}384 k$ features, uses the
# unbiased estimator.
#
# ## Minibatch CKA against CKA on all the examples
#
# On the same held-out images we compute the unbiased CKA of every pair of layers
# twice: once from a single Gram over all of them, once with the minibatch estimator
# and the profile's batch size.

# %%
full, minibatch = minibatch_against_full(model, probe_images, P.cka.batch_size, P.cka.passes, seed, session.device)
ax = plots.agreement(full, minibatch, xlabel=f"CKA, one batch of {len(probe_images)}",
                     ylabel=f"minibatch CKA, batches of {P.cka.batch_size}")
glue("fig_minibatch", ax.figure, display=False)
plt.close(ax.figure)

# %% tags=["remove-cell"]
glue_all({"mb_examples": len(probe_images)})

# %% [markdown]
# ```{glue:figure} fig_minibatch
# :name: fig-minibatch
#
# Each point is one pair of layers: unbiased CKA from one Gram over all the held-out
# images (horizontal) against the minibatch estimate (vertical).
# ```
#
# Over all pairs of layers the two estimates differ by {glue:text}`mb_mean_diff` on
# average and by at most {glue:text}`mb_max_diff` ({numref}`fig-minibatch`), with
# batches of {glue:text}`mb_batch` out of {glue:text}`mb_examples` images. Both
# estimate the same quantity, and the differences are the sampling noise of estimates
# from a finite set of examples: the minibatch estimator lets us use every test image
# while holding only one batch of Grams in memory.
#
# ## The layer-by-layer CKA heatmap
#
# The paper's figures show the CKA between every pair of layers of a model as a
# heatmap, with the input side at the bottom left. Here is the heatmap of our model,
# over the test set with the profile's minibatch protocol.

# %%
within = session.get(heatmap, run)  # the profile's CKA protocol, cached in the store; None while pending
block = find_block(within.cka, threshold=block_threshold) if within is not None else None
ax = plots.cka_heatmap(within.cka if within is not None else None, layers=layers, title=run.model.name)
glue("fig_heatmap", ax.figure, display=False)
plt.close(ax.figure)

# %% tags=["remove-cell"]
glue_all(background_values(invariance, sizes, shuffled, full, minibatch, within, block,
                           P.cka.examples or len(data.test_labels), P.cka.batch_size, P.cka.passes, block_threshold))

# %% [markdown]
# ```{glue:figure} fig_heatmap
# :name: fig-cka-heatmap
#
# Linear CKA (unbiased, minibatch) between all pairs of layers of the trained model.
# Layers are in forward order from the bottom left; thin lines mark the stem, the
# three stages and the head.
# ```
#
# {numref}`fig-cka-heatmap` uses {glue:text}`heatmap_examples` test images and
# {glue:text}`heatmap_passes` pass(es). Off the diagonal the CKA averages
# {glue:text}`heatmap_mean`, and its smallest value is {glue:text}`heatmap_min`.
# Neighbouring layers are similar, so a bright band runs along the diagonal, and
# similarity falls off with the distance between layers, though not evenly: the
# heatmap breaks into squares that follow the stages.
#
# The paper reads *block structure* off such heatmaps by eye. To put a number on it,
# `repsim.blocks.find_block` finds the longest run of consecutive layers in which every
# pair has CKA of at least {glue:text}`block_threshold`. Here that run holds
# {glue:text}`block_size` layers ({glue:text}`block_percent` of them), from
# {glue:text}`block_first` to {glue:text}`block_last`. The next chapter follows this
# measure as networks get wider and deeper and as the training set shrinks, which is
# where the paper finds large blocks in the later stages.

# %% [markdown]
# ## Exercises
#
# Solutions are folded under each exercise; `python -m repsim.book.student` writes copies of
# the notebooks without them, and without outputs, for a class.

# %% [markdown]
# **Exercise 1.** Starting from the linear form
# $\mathrm{CKA}(X, Y) = \lVert Y_c^\top X_c \rVert_F^2 / (\lVert X_c^\top X_c \rVert_F \lVert Y_c^\top Y_c \rVert_F)$,
# show that CKA does not change when $X$ is replaced by $X Q$ with $Q$ orthogonal, or by
# $c X$ with $c \neq 0$. Which step fails for a general invertible $A$?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 1
# :class: dropdown
#
# Centring commutes with a right multiplication, so $(XQ)_c = X_c Q$. The numerator
# becomes $\lVert Y_c^\top X_c Q \rVert_F^2 = \lVert Y_c^\top X_c \rVert_F^2$, because
# the Frobenius norm is unchanged by multiplying with an orthogonal matrix, and in the
# denominator $\lVert Q^\top X_c^\top X_c Q \rVert_F = \lVert X_c^\top X_c \rVert_F$ for
# the same reason. Scaling by $c$ multiplies the numerator by $c^2$ and
# $\lVert X_c^\top X_c \rVert_F$ by $c^2$, which cancel. For a general $A$ neither
# $\lVert Y_c^\top X_c A \rVert_F$ nor $\lVert A^\top X_c^\top X_c A \rVert_F$ is
# preserved: that is the feature-wise scaling in the table above.
# ````

# %% [markdown]
# **Exercise 2.** The unbiased estimator $\mathrm{HSIC}_1$ needs at least four examples. Where in its
# formula does $n = 3$ break it?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 2
# :class: dropdown
#
# The U-centring divides by $n - 2$ and by $(n-1)(n-2)$, and the estimate itself by
# $n(n-3)$: with $n = 3$ that last factor is zero. (With fewer than four examples there
# are also not enough distinct index quadruples for an unbiased U-statistic of this
# order.)
# ````

# %% [markdown]
# **Exercise 3.** The minibatch estimator sums $\mathrm{HSIC}_1$ over batches and only then takes the
# ratio. Why not average the CKA of each batch instead? Try it: split the heatmap's
# test images (`data.test_images[:P.cka.examples]`) into batches of the profile's size,
# compute `repsim.compare.model_cka` on each with `batch_size` equal to the batch, and
# compare the mean of the per-batch matrices with `within.cka`.

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 3
# :class: dropdown
#
# Each batch's sum of $\mathrm{HSIC}_1$ terms is an unbiased estimate of the
# population HSIC, so the sums are too, and their ratio converges to the population CKA
# as the number of batches grows. A ratio of noisy estimates is not an unbiased estimate
# of the ratio, and averaging per-batch ratios keeps that bias however many batches are
# used; on small batches the per-batch ratios are also very noisy. A sketch:
#
# ```python
# import torch
# from repsim.compare import model_cka
#
# images, b = data.test_images[: P.cka.examples], P.cka.batch_size
# per_batch = [model_cka(model, images[i:i + b], batch_size=b, passes=1, device=session.device)
#              for i in range(0, len(images) - b + 1, b)]
# averaged = torch.stack(per_batch).mean(0).cpu().numpy()
# abs(averaged - within.cka).max()
# ```
# ````
