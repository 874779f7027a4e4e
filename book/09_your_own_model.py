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
# # Your own model
#
# The chapters so far measure the paper's CIFAR ResNets. The measure itself asks
# nothing of the architecture: any network that maps the same examples to
# representations can be compared layer by layer, with itself or with another one. This
# page does that for two models that are not the paper's: torchvision's ResNet-18 and a
# small vision transformer {cite}`dosovitskiy2021image`, both trained here on CIFAR-10
# for a few minutes (no pretrained weights are fetched), and compares each with
# chapter 2's ResNet. Everything goes through one call of the package:
#
# ```python
# from repsim.similarity import similarity
#
# result = similarity(model, images)                   # every leaf module of one model
# result = similarity(model, images, other=model2)     # rows: model, columns: model2
# result.plot()                                        # layer names on both axes
# result.save("cka.csv")                               # or .npz
# ```
#
# and the same from a shell, for a model of torchvision's by name or a module of your
# own with its state dict:
#
# ```bash
# python -m repsim.similarity --model torchvision:resnet18 --arg num_classes=10 \
#     --weights resnet18.pt --data cifar10 --images 2048 --out cka-resnet18
# ```
#
# The estimator is the paper's minibatch CKA of chapter 2, within about $10^{-8}$ of a
# float64 reference; `benchmarks/README.md` measures it against the CKA packages on
# PyPI.

# %% tags=["parameters"]
profile = "laptop"  # smoke | laptop | paper: see repsim/profiles.py
seed = 0  # chapter 2's model's training seed
device = None  # None uses the profile's device; "cpu", "cuda" or "auto" override it
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
from myst_nb import glue

# %% tags=["remove-cell"]
from repsim import plots
from repsim.figures import background_run
from repsim.models import layer_names, ResNet
from repsim.own_models import block_layers, similarity_if_ready, summary_rows, trained_own_model
from repsim.book.prose import glue_all
from repsim.claims import formatted
from repsim.session import Session
from repsim.trained import train_run

# %% [markdown]
# ## Three models
#
# ResNet-18 is torchvision's ImageNet network unchanged: a 7 x 7 stride-2 stem and a
# max pool, so that on 32 x 32 images its four stages see maps of 8, 4, 2 and 1 pixels.
# The transformer is torchvision's `VisionTransformer` at CIFAR's resolution: 4 x 4
# patches make 64 tokens and a class token. Both are trained from scratch on the first
# images of the CIFAR-10 training set, ResNet-18 with SGD and the transformer with
# AdamW, as the profile sets. Chapter 2's ResNet comes from the book's stacked trainer,
# which keeps no training time per model.

# %%
session = Session.open(profile, device, compute_missing)
P, data = session.profile, session.data
resnet18, resnet18_record = session.get(trained_own_model, P.own.resnet18) or (None, None)
vit, vit_record = session.get(trained_own_model, P.own.vit) or (None, None)
paper_run = background_run(P, seed)
paper, paper_record = session.get(train_run, paper_run) or (None, None)
pd.DataFrame(summary_rows([
    (P.own.resnet18.label, resnet18_record, P.own.resnet18.fit.train_size or 50_000, P.own.resnet18.fit.epochs),
    (P.own.vit.label, vit_record, P.own.vit.fit.train_size or 50_000, P.own.vit.fit.epochs),
    (paper_run.model.name, paper_record, paper_run.train_size or 50_000, paper_run.recipe(P).epochs),
])).set_index("model")

# %% [markdown]
# ## One model, every layer
#
# Without `layers`, `similarity` takes every leaf module (one without submodules) that
# returns a tensor with one row per example, in the order they run. A module called
# twice in one forward pass is two layers, named as torchvision's feature extraction
# names them: the ReLU of each of ResNet-18's blocks runs after the first convolution
# (`layer1.0.relu`) and again after the residual addition (`layer1.0.relu_1`).

# %%
images = data.test_images[: P.own.cka.examples]
protocol = {"batch_size": P.own.cka.batch_size, "passes": P.own.cka.passes, "seed": seed, "device": session.device}
resnet18_cka = similarity_if_ready(resnet18, images, names=(P.own.resnet18.label, ""), **protocol)
fig = plots.similarity_panels([resnet18_cka], [P.own.resnet18.label], height=4.6)
glue("fig_resnet18", fig, display=False)
plt.close(fig)

# %% tags=["remove-cell"]
glue_all({"r18_layers": formatted("{}", resnet18_cka and len(resnet18_cka.layers)),
          "cka_images": f"{len(images):,}", "cka_batch": P.own.cka.batch_size,
          "r18_relus": formatted("{:.2f}", resnet18_cka and resnet18_cka["layer1.0.relu", "layer1.0.relu_1"])})

# %% [markdown]
# ```{glue:figure} fig_resnet18
# :name: fig-resnet18
#
# Linear CKA between the {glue:text}`r18_layers` leaf layers of ResNet-18 on
# {glue:text}`cka_images` test images, in minibatches of {glue:text}`cka_batch`: the
# first layer at the bottom left.
# ```
#
# The two calls of the first block's ReLU, two rows of {numref}`fig-resnet18`, have a
# CKA of {glue:text}`r18_relus`. A forward hook on the module alone would see both
# calls under one name; `similarity` keeps them apart.
#
# ## Tokens: flattened or averaged
#
# A transformer block returns a sequence: one vector per token. Flattened, as the
# paper flattens a convolution's feature maps, each example is all of its tokens side
# by side, and their positions count; averaged over the tokens, each example is one
# vector, and they do not. The two are different questions, so `similarity` takes the
# choice as `tokens="flatten"` or `tokens="mean"` and records it in its result.

# %%
vit_layers, vit_names = block_layers(P.own.vit), (P.own.vit.label, "")
vit_flat = similarity_if_ready(vit, images, layers=vit_layers, tokens="flatten", names=vit_names, **protocol)
vit_mean = similarity_if_ready(vit, images, layers=vit_layers, tokens="mean", names=vit_names, **protocol)
fig = plots.similarity_panels([vit_flat, vit_mean], ["tokens flattened", "tokens averaged"], height=4.2)
glue("fig_vit", fig, display=False)
plt.close(fig)

# %% tags=["remove-cell"]
glue_all({"vit_name": P.own.vit.label, "vit_first": vit_layers[1], "vit_last": vit_layers[-3],
          "vit_flat": formatted("{:.2f}", vit_flat and vit_flat[vit_layers[1], vit_layers[-3]]),
          "vit_mean": formatted("{:.2f}", vit_mean and vit_mean[vit_layers[1], vit_layers[-3]])})

# %% [markdown]
# ```{glue:figure} fig_vit
# :name: fig-vit
#
# Linear CKA between the patch embedding, the encoder blocks, the final norm and the
# head of the {glue:text}`vit_name`, with each block's tokens flattened (left) or
# averaged (right).
# ```
#
# Between the first and the last encoder block ({glue:text}`vit_first` and
# {glue:text}`vit_last`) the CKA is {glue:text}`vit_flat` with the tokens flattened and
# {glue:text}`vit_mean` with them averaged ({numref}`fig-vit`).
#
# ## Two models side by side
#
# Across two models the heatmap is no longer square: rows are the layers of one,
# columns those of the other, and both see the same test images. Here each of the two
# new models faces chapter 2's ResNet.

# %%
paper_layers = layer_names(ResNet(paper_run.model))
cross = {"other_layers": paper_layers, "wanted_other": True, **protocol}
resnet18_paper = similarity_if_ready(resnet18, images, layers=block_layers(P.own.resnet18), other=paper,
                                     names=(P.own.resnet18.label, paper_run.model.name), **cross)
vit_paper = similarity_if_ready(vit, images, layers=vit_layers, other=paper, tokens="mean",
                                names=(P.own.vit.label, paper_run.model.name), **cross)
fig = plots.similarity_panels([resnet18_paper, vit_paper], ["ResNet-18's blocks", "the transformer's blocks"],
                              height=3.4, stacked=True)
glue("fig_cross", fig, display=False)
plt.close(fig)

# %% tags=["remove-cell"]
glue_all({"paper_name": paper_run.model.name,
          "logits_r18": formatted("{:.2f}", resnet18_paper and resnet18_paper["fc", "fc"]),
          "logits_vit": formatted("{:.2f}", vit_paper and vit_paper["heads.head", "fc"])})

# %% [markdown]
# ```{glue:figure} fig_cross
# :name: fig-cross
#
# Linear CKA between the blocks of ResNet-18 (top) or of the vision transformer
# (bottom, tokens averaged) and every sub-layer of {glue:text}`paper_name`.
# ```
#
# The two ResNets' logits have a CKA of {glue:text}`logits_r18`, the transformer's and
# the paper ResNet's {glue:text}`logits_vit` ({numref}`fig-cross`).
#
# ## What this page can and cannot show
#
# These models are trained on a few thousand images for minutes (the table above), far
# from the accuracy of their published versions, so their heatmaps say how *these*
# networks represent CIFAR-10, not how a fully trained ResNet-18 or ViT does. The page
# makes no claim of the paper's: it shows the tools. With weights of your own, the
# command above gives the same heatmaps for your model.
