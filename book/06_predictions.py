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
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from matplotlib.colors import LogNorm
from myst_nb import glue

from repsim.data import is_available, load_dataset
from repsim.grid import compare
from repsim.populations import Population, class_accuracies, population_predictions, spread_excess, welch_per_class
from repsim.profiles import get_profile

P = get_profile(profile)
S = P.predictions
device = device or P.device
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
# for how much two populations of *one* architecture differ.

# %% tags=["hide-input"]
predictions = {name: population_predictions(pop, P, data, device=device, progress=False).numpy()
               for name, pop in populations.items()}
labels = data.test_labels[: S.test_examples].numpy()
correct = {name: preds == labels[None, :] for name, preds in predictions.items()}
summary = pd.DataFrame([{"population": name, "model": pop.model.name,
                         "training images": f"{pop.train_size or 50_000:,}", "models": len(pop.seeds),
                         "mean test accuracy": correct[name].mean(), "s.d. across models": correct[name].mean(1).std(ddof=1)}
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
fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.9), layout="constrained", sharey=True)
for ax, (x_name, y_name) in zip(axes, (("deep", "wide"), ("deep", "deep, second population"))):
    counts = pd.DataFrame({x_name: correct[x_name].sum(0), y_name: correct[y_name].sum(0)})
    table = counts.value_counts().unstack(fill_value=0).reindex(index=range(m + 1), columns=range(m + 1), fill_value=0)
    sns.heatmap(table.T, ax=ax, cmap="viridis", norm=LogNorm(vmin=1, vmax=len(labels)), square=True,
                cbar=ax is axes[-1], cbar_kws={"label": "test images"})
    ax.invert_yaxis()
    ax.set(xlabel=f"{x_name}: models correct (of {m})", ylabel=f"{y_name}: models correct (of {m})")
    ax.set_title(f"{populations[y_name].model.name} vs {populations[x_name].model.name}", fontsize="medium")
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
]
display(Markdown("\n".join(lines)))

# %% [markdown]
# The paper's populations have 100 models each and the paper's accuracy; this profile's
# have {glue:text}`members`, trained briefly, so its statistics have far less power.
# Figs. F.1 to F.3 (many more depth and width pairs) are not regenerated yet.
