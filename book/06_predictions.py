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
device = None  # None uses the profile's device

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
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from repsim import plots
from repsim.data import is_available, load_dataset
from repsim.grid import compare, verdict
from repsim.populations import (Population, architecture_pairs, class_accuracies, describe_training, population_predictions,
                                spread_excess, spread_with_error, train_members_stacked, training_summary, welch_per_class)
from repsim.profiles import chapter_device, get_profile

P = get_profile(profile)
S = P.predictions
device = chapter_device(device, P)  # on Colab: its GPU when there is one
data = load_dataset(P.dataset)
m = S.members
populations = {
    "wide": Population(S.wide[0], S.wide[1], tuple(range(m))),
    "deep": Population(S.deep[0], S.deep[1], tuple(range(m))),
    "deep, second population": Population(S.deep[0], S.deep[1], tuple(range(m, 2 * m))),
}

# %% [markdown]
# ## The populations
#
# Three populations of {glue:text}`members` models each: a wide and a deep architecture,
# and a second population of the deep one, trained with other seeds, as the baseline
# for how much two populations of *one* architecture differ. The table's last column
# says how the members were trained: alone, or several at once as one grouped network
# (`repsim.stacked`; the profile's `stack` decides, or a timing on the device does).

# %% tags=["hide-input"]
# Members missing from the store are trained several at once where that is faster on
# this device (repsim.stacked); the profile's `stack` fixes how many, or None measures it.
for pop in populations.values():
    train_members_stacked(pop, P, data, device=device, progress=False)
predictions = {name: population_predictions(pop, P, data, device=device, progress=False).numpy()
               for name, pop in populations.items()}
labels = data.test_labels[: S.test_examples].numpy()
correct = {name: preds == labels[None, :] for name, preds in predictions.items()}
summary = pd.DataFrame([{"population": name, "model": pop.model.name,
                         "training images": f"{pop.train_size or 50_000:,}", "models": len(pop.seeds),
                         "mean test accuracy": correct[name].mean(), "s.d. across models": correct[name].mean(1).std(ddof=1),
                         "trained": describe_training(training_summary(pop, P, data))}
                        for name, pop in populations.items()])
glue("members", m, display=False)
glue("acc_wide", f"{correct['wide'].mean():.1%}", display=False)
glue("acc_deep", f"{correct['deep'].mean():.1%}", display=False)
summary.style.format({"mean test accuracy": "{:.1%}", "s.d. across models": "{:.1%}"}).hide(axis="index")

# %% [markdown]
# ## Example by example (Fig. 7a, b)
#
# For every test image, count how many models of each population classify it
# correctly. If two populations made the same mistakes, the counts would lie along the
# diagonal up to the sampling noise of finite populations.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.9), layout="constrained")
for ax, (x_name, y_name) in zip(axes, (("deep", "wide"), ("deep", "deep, second population"))):
    plots.per_example_counts(correct[x_name], correct[y_name], ax=ax, xlabel=x_name, ylabel=y_name,
                             title=f"{populations[y_name].model.name} vs {populations[x_name].model.name}",
                             colorbar=ax is axes[-1])
glue("fig_7", fig, display=False)
plt.close(fig)
result = spread_excess(correct["wide"], correct["deep"], correct["deep, second population"], correct["deep"])
glue("spread", f"{result['spread']:.4f}", display=False)
glue("baseline_spread", f"{result['baseline_spread']:.4f}", display=False)
glue("excess", f"{result['excess']:.4f} ± {result['standard_error']:.4f}", display=False)
glue("z", f"{result['z']:.1f}", display=False)

# %% [markdown]
# ```{glue:figure} fig_7
# :name: paper-fig-7
#
# (Paper Fig. 7a, b.) Number of models of each population that classify a test image
# correctly, over the test set (colour: number of images, log scale). Left: wide
# against deep. Right: two populations of the deep architecture.
# ```
#
# **The statistic.** Write $p_A(x)$ for the fraction of population $A$'s models that
# get image $x$ right. The *spread* between populations $A$ and $B$ estimates the mean
# over test images of $(p_A(x) - p_B(x))^2$ for the populations' true, infinitely many
# models: the observed squared difference minus each population's binomial sampling
# variance $\hat p(1 - \hat p)/(m - 1)$, so that two populations of the same
# architecture give zero on average. The spread between wide and deep is
# {glue:text}`spread`; between the two deep populations it is
# {glue:text}`baseline_spread`. The excess, wide-vs-deep minus deep-vs-deep, is
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

# %% tags=["hide-input"]
family = {arch: Population(arch[0], arch[1], tuple(range(m))) for arch in S.architectures}
family_correct = {arch: population_predictions(pop, P, data, device=device, progress=False).numpy() == labels[None, :]
                  for arch, pop in family.items()}
pair_rows = []
for kind, (number, pairs) in zip(("depth", "width", "wide vs deep"), enumerate(architecture_pairs(S.architectures).values(), 1)):
    if not pairs:
        glue(f"fig_f{number}", "(no such pair in this profile)", display=False)
        continue
    columns = min(len(pairs), 3)
    rows = -(-len(pairs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns + 0.8, 3.2 * rows), layout="constrained", squeeze=False)
    for ax, (x, y) in zip(axes.flat, pairs):
        stat = spread_with_error(family_correct[x], family_correct[y])
        pair_rows.append({"figure": f"F.{number}", "pair": kind, "x": x[0].name, "y": y[0].name,
                          "accuracy x": family_correct[x].mean(), "accuracy y": family_correct[y].mean(), **stat})
        plots.per_example_counts(family_correct[x], family_correct[y], ax=ax, xlabel=x[0].name, ylabel=y[0].name,
                                 title=f"spread {stat['spread']:.4f} ± {stat['standard_error']:.4f}",
                                 colorbar=ax is axes.flat[len(pairs) - 1])
    for ax in axes.flat[len(pairs):]:
        ax.axis("off")
    glue(f"fig_f{number}", fig, display=False)
    plt.close(fig)
pair_table = pd.DataFrame(pair_rows)
glue("f_models", ", ".join(f"{arch[0].name}" for arch in S.architectures)
     + f" (on {S.architectures[0][1] or 50_000:,} training images)", display=False)
glue("f_pairs", len(pair_table), display=False)
glue("f_positive", int((pair_table["z"] > 2).sum()), display=False)
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
# The paper's ImageNet populations (ResNet-50 with a deeper or a wider third stage,
# `repsim.imagenet`) are out of reach here. The same analysis runs on
# {glue:text}`class_data`: for every class, Welch's t-test compares the per-model class
# accuracies of the wide and the deep population.

# %% tags=["hide-input"]
if is_available("cifar100"):
    class_data = load_dataset("cifar100")
    wide100 = Population(dataclasses.replace(S.wide[0], num_classes=100), S.wide[1], tuple(range(m)))
    deep100 = Population(dataclasses.replace(S.deep[0], num_classes=100), S.deep[1], tuple(range(m)))
    class_preds = [population_predictions(pop, P, class_data, device=device, progress=False).numpy()
                   for pop in (wide100, deep100)]
else:
    class_data = data
    class_preds = [predictions["wide"], predictions["deep"]]
class_labels = class_data.test_labels[: S.test_examples].numpy()
per_class = [class_accuracies(preds, class_labels, class_data.num_classes) for preds in class_preds]
tests = pd.DataFrame(welch_per_class(*per_class, class_data.classes, alpha=S.significance))
tests = tests.sort_values("difference").reset_index(drop=True)
fig, ax = plt.subplots(figsize=(min(2.5 + 0.35 * len(tests), 14), 3.4), layout="constrained")
colours = np.where(tests["significant"], "C0", "0.75")
ax.bar(tests.index, tests["difference"], color=colours)
ax.axhline(0, color="0.3", lw=0.8)
ax.set_xticks(tests.index, tests["class"], rotation=90, fontsize="x-small" if len(tests) > 20 else "small")
ax.set(ylabel="accuracy, wide minus deep")
glue("fig_f4", fig, display=False)
plt.close(fig)
significant = int(tests["significant"].sum())
glue("class_data", f"{ {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100'}[class_data.name]} "
                   f"({class_data.num_classes} classes)", display=False)
glue("significant", f"{significant} of {len(tests)}", display=False)
glue("chance", f"{S.significance * len(tests):.1f}", display=False)
glue("alpha", S.significance, display=False)
glue("wide_better", ", ".join(tests[tests["significant"] & (tests["difference"] > 0)]["class"]) or "none", display=False)
glue("deep_better", ", ".join(tests[tests["significant"] & (tests["difference"] < 0)]["class"]) or "none", display=False)

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

# %% tags=["remove-input"]
lines = [
    f"- Wide and deep populations differ per example more than two populations of one architecture: "
    f"**{compare(result['excess'], 0.0, 2 * result['standard_error'])}** (excess {result['excess']:.4f}, "
    f"{result['z']:.1f} standard errors; called only beyond 2).",
    f"- More classes differ significantly than chance would give: "
    f"**{compare(significant, S.significance * len(tests), 0.0)}** ({significant} against "
    f"{S.significance * len(tests):.1f} expected).",
    f"- Architectures that differ in depth, width or both get different examples right (Figs. F.1 to F.3; spread "
    f"more than 2 standard errors above zero): **{verdict(pair_table['z'] - 2)}**.",
]
display(Markdown("\n".join(lines)))

# %% [markdown]
# The paper's populations have 100 models each and the paper's accuracy; this profile's
# have {glue:text}`members`, trained briefly, so its statistics have far less power.

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
