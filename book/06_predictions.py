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
# # Wide and deep networks make different mistakes
#
# Section 6 of {cite}`nguyen2021wide` leaves representations for outputs. A wide and a
# deep architecture whose average accuracies match still disagree, systematically, on
# *which* test examples they get right; two populations of the same architecture do
# not. And at the level of classes, some classes favour the wider model and others the
# deeper one (on ImageNet, scenes favour the wider).
#
# A single model is too noisy for such a comparison, so each architecture is trained as
# a population of models that differ only in their random seed. Every member's
# predictions on the test set are cached in the store.

# %% tags=["parameters"]
profile = "laptop"  # smoke | laptop | paper: see repsim/profiles.py
seed = 0  # seed of each population's first member (the baseline takes the seeds after the populations')
device = None  # None uses the profile's device
compute_missing = None  # None: the profile decides (paper: only on a GPU); False: stored and committed results only

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
from repsim.claims import markdown, prediction_claims
from repsim.data import is_available, load_dataset
from repsim.populations import (architecture_pairs, chapter_populations, class_tests, fig7_excess, fig7_panels,
                                pair_statistics, population_correct, population_table, wide_and_deep)
from repsim.book.prose import chapter6, glue_all
from repsim.session import Session

# %%
session = Session.open(profile, device, compute_missing)
P = session.profile
predictions = P.predictions  # this chapter's settings: populations and tests (profiles.PredictionChapter)
named = chapter_populations(predictions, seed)  # wide, deep, a second population of the baseline, and Figs. F.1-F.3's

# %% [markdown]
# ## The populations
#
# Three populations of {glue:text}`members` models each: a wide and a deep architecture,
# and a second population of the {glue:text}`baseline` one, trained with other seeds, as
# the baseline for how much two populations of *one* architecture differ. The table's
# last column says how the members were trained: alone, or several at once as one
# grouped network (`repsim.stacked`; the profile's `stack` decides, or a timing on the
# device does).

# %%
# Missing members are trained (several at once where that is faster on this device);
# each member's test predictions are cached in the store.
# {name: (members, test images) booleans}
correct = {name: session.get(population_correct, population) for name, population in named.items()}
table = pd.DataFrame(population_table(named, correct, P, session.data, session.store))
table.style.format({"mean test accuracy": "{:.1%}", "s.d. across models": "{:.1%}"}, na_rep="-").hide(axis="index")

# %% [markdown]
# ## Example by example (Fig. 7a, b)
#
# For every test image, count how many models of each population classify it
# correctly. If two populations made the same mistakes, the counts would lie along the
# diagonal up to the sampling noise of finite populations.

# %%
fig = plots.population_pairs(fig7_panels(named, correct, predictions.baseline), columns=2)
glue("fig_7", fig, display=False)
plt.close(fig)
excess = fig7_excess(correct, predictions.baseline)  # wide-vs-deep spread over the baseline's, with its jackknife error

# %% [markdown]
# ```{glue:figure} fig_7
# :name: paper-fig-7
#
# (Paper Fig. 7a, b.) Number of models of each population that classify a test image
# correctly, over the test set (colour: number of images, log scale). Left: wide
# against deep. Right: two populations of the {glue:text}`baseline` architecture.
# ```
#
# **The statistic.** Write $p_A(x)$ for the fraction of population $A$'s models that
# get image $x$ right. The *spread* between populations $A$ and $B$ estimates the mean
# over test images of $(p_A(x) - p_B(x))^2$ for the populations' true, infinitely many
# models: the observed squared difference minus each population's binomial sampling
# variance $\hat p(1 - \hat p)/(m - 1)$, so that two populations of the same
# architecture give zero on average. The spread between wide and deep is
# {glue:text}`spread`; between the two {glue:text}`baseline` populations it is
# {glue:text}`baseline_spread`. The excess, wide-vs-deep minus the baseline's, is
# {glue:text}`excess` (jackknife standard error, leaving out one model at a time), that
# is {glue:text}`z` standard errors from zero.
#
# ## Many pairs of architectures (Figs. F.1 to F.3)
#
# The same comparison for every pair among {glue:text}`f_models`, each a population
# of {glue:text}`members` models trained on the same images: pairs that differ only in
# depth (F.1), only in width (F.2), and pairs where one model is wider and the other
# deeper (F.3). Each panel's title gives the pair's spread with its jackknife standard
# error; the spread is debiased, so two populations of one architecture give zero up to
# that error.

# %%
pair_rows, pair_panels = pair_statistics(architecture_pairs(predictions.architectures), correct)
glue("fig_f1", plots.population_pairs(pair_panels["depth"]), display=False)
glue("fig_f2", plots.population_pairs(pair_panels["width"]), display=False)
glue("fig_f3", plots.population_pairs(pair_panels["wide vs deep"]), display=False)
plt.close("all")
pair_table = pd.DataFrame(pair_rows, columns=["figure", "pair", "x", "y", "accuracy x", "accuracy y", "spread",
                                              "standard_error", "z"])
pair_table.style.format({"accuracy x": "{:.1%}", "accuracy y": "{:.1%}", "spread": "{:.4f}",
                         "standard_error": "{:.4f}", "z": "{:.1f}"}).hide(axis="index")

# %% [markdown]
# ```{glue:figure} fig_f1
# :name: paper-fig-f1
#
# (Paper Fig. F.1.) Per-example agreement of populations that differ only in depth.
# ```
#
# ```{glue:figure} fig_f2
# :name: paper-fig-f2
#
# (Paper Fig. F.2.) Populations that differ only in width.
# ```
#
# ```{glue:figure} fig_f3
# :name: paper-fig-f3
#
# (Paper Fig. F.3.) Populations where one architecture is wider and the other deeper.
# ```
#
# Of the {glue:text}`f_pairs` pairs, {glue:text}`f_positive` have a spread more than two
# standard errors above zero: their populations get systematically different test
# images right.
#
# ## Class by class (Figs. 7c and F.4)
#
# The paper's ImageNet populations (ResNet-50 with a deeper or a wider third stage) are
# out of reach here; torchvision's `ImageFolder` with the standard ImageNet transforms
# would feed them to the same analysis. Here it runs on {glue:text}`class_data`: for
# every class, Welch's t-test compares the per-model class accuracies of the wide and
# the deep population.

# %%
classes = (Session.open(profile, device, compute_missing, data=load_dataset("cifar100"))
           if is_available("cifar100") else session)  # the paper's per-class analysis wants many classes
populations = wide_and_deep(predictions, classes.data.num_classes, seed)  # {"wide": ..., "deep": ...}
pair = {name: classes.get(population_correct, population) for name, population in populations.items()}
tests = pd.DataFrame(class_tests(pair, classes.data.test_labels.numpy(), classes.data.classes,
                                 predictions.significance))
fig = plots.class_differences(tests)
glue("fig_f4", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_f4
# :name: paper-fig-f4
#
# (Paper Figs. 7c and F.4, on {glue:text}`class_data`.) Per-class test accuracy of the
# wide population minus the deep one, sorted; coloured bars pass Welch's test at
# level {glue:text}`alpha`.
# ```
#
# Welch's test finds a difference in {glue:text}`significant` classes; with no real
# differences, about {glue:text}`chance` would pass by chance. The wide population is
# better on: {glue:text}`wide_better`; the deep one on: {glue:text}`deep_better`.
#
# ## Against the paper

# %%
verdicts = prediction_claims(excess, int(tests["significant"].sum()) if len(tests) else None,
                             len(classes.data.classes), predictions.significance, list(pair_table["z"]))
display(Markdown(markdown(verdicts)))

# %% tags=["remove-cell"]
glue_all(chapter6(predictions, correct, excess, tests, pair_table, classes.data))

# %% [markdown]
# The populations' members are the seeds, so every verdict here is already called
# beyond the spread between them: the excess only beyond two of its standard errors,
# the count of significant classes only beyond two standard errors of the count chance
# alone gives (a binomial over the classes), and each pair of Figs. F.1-F.3 only beyond
# two standard errors of its spread. The paper's populations have 100 models each and
# the paper's accuracy; this profile's have {glue:text}`members`, trained on few
# images, so its statistics have far less power.

# %% [markdown]
# ## Exercises
#
# Solutions are folded under each exercise; `python -m repsim.book.student` writes copies of
# the notebooks without them, and without outputs, for a class.

# %% [markdown]
# **Exercise 1.** Each population's accuracy on one test example is estimated from $m$
# models. Why is the plain mean squared difference of two populations' per-example
# accuracies too large, even for two populations of the same architecture, and by how
# much?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 1
# :class: dropdown
#
# If $\hat p_1$ and $\hat p_2$ are means of $m_1$ and $m_2$ independent Bernoulli
# outcomes with true rates $p_1, p_2$, then
# $\mathbb{E}(\hat p_1 - \hat p_2)^2 = (p_1 - p_2)^2 + p_1(1-p_1)/m_1 + p_2(1-p_2)/m_2$.
# The two variance terms are positive even when $p_1 = p_2$; the debiased spread
# subtracts their unbiased estimates $\hat p_k(1-\hat p_k)/(m_k - 1)$, so that two
# populations of one architecture give zero on average.
# ````

# %% [markdown]
# **Exercise 2.** The standard errors of this chapter come from a jackknife that
# leaves out one *model* at a time. Why is the model, and not the test image, the unit
# to resample, and what would happen to the errors, and to the verdicts, if you
# resampled test images instead?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 2
# :class: dropdown
#
# The claim is about architectures, and what varies from one trained model to the next
# is its seed; the test images are the same fixed set for every population. One model's
# outcomes on different images are not independent: replacing a model changes many of
# them at once. Resampling images treats thousands of correlated values as independent
# draws, so the errors come out far too small, and even two populations of one
# architecture would look "significantly" different. Leaving out one model at a time
# keeps that correlation inside each replicate, so the error shrinks only as
# populations grow.
# ````

# %% [markdown]
# **Exercise 3.** The paper runs Welch's t-test on each of ImageNet's 1,000 classes at
# $p < 0.05$ and finds 419 significant classes. How many would you expect if wide and
# deep models did not differ at all, and how would you control the false discoveries
# instead?

# %% [markdown] tags=["solution"]
# ````{admonition} Solution to exercise 3
# :class: dropdown
#
# Under the null each test rejects with probability 0.05, so about 50 of 1,000 classes
# (a binomial count with standard deviation about 7) would pass by chance; 419 is far
# beyond that. To say *which* classes differ, control the false discovery rate, for
# instance with the Benjamini-Hochberg procedure: sort the $p$-values and reject the
# $k$ smallest, where $k$ is the largest index with $p_{(k)} \le 0.05\,k/1000$.
# ````
