"""Models and examples named on the command line of ``python -m repsim.similarity``.

A model is one of:

- ``torchvision:NAME``: any model of ``torchvision.models.get_model`` (``resnet18``,
  ``vit_b_16``, ...), built without pretrained weights, with ``--arg KEY=VALUE`` passed
  to its builder (``--arg image_size=32`` for a vision transformer on CIFAR);
- ``cifar-resnet:DEPTH[xWIDTH]``: the paper's CIFAR ResNet (``cifar-resnet:20x1``);
- ``PACKAGE.MODULE:ATTRIBUTE``: a module, or a class or function that returns one
  (called with the ``--arg`` values), importable from the current directory.

``--weights FILE`` loads a state dict saved with ``torch.save`` (also one inside a
checkpoint dict under ``state_dict`` or ``model``). Examples are the test images of
CIFAR-10 or CIFAR-100 (``repsim.data``), or a tensor saved in a ``.pt`` or ``.npy`` file.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..activations import suggest
from ..data import SPLIT_SIZES, load_dataset
from ..models import ResNet, ResNetConfig


def parse_args(pairs: list[str]) -> dict:
    """``["image_size=32", "dropout=0.1"]`` -> ``{"image_size": 32, "dropout": 0.1}``
    (values read as Python literals where they are one, else kept as strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--arg takes KEY=VALUE with KEY a Python name, got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def load_model(spec: str, weights: str | os.PathLike | None = None, args: dict | None = None) -> nn.Module:
    """The model ``spec`` names (see the module's docstring), with ``weights`` loaded."""
    kind, sep, name = spec.partition(":")
    if not sep or not name:
        raise ValueError(f"a model is torchvision:NAME, cifar-resnet:DEPTHxWIDTH or MODULE:ATTRIBUTE, got {spec!r}")
    args = dict(args or {})
    if kind == "torchvision":
        import torchvision

        known = torchvision.models.list_models()
        if name not in known:
            raise ValueError(f"torchvision has no model {name!r}{suggest(name, known)}; "
                             "torchvision.models.list_models() names them all")
        model = torchvision.models.get_model(name, weights=None, **args)
    elif kind == "cifar-resnet":
        depth, _, width = name.partition("x")
        if not depth.isdigit() or not (width or "1").isdigit():
            raise ValueError(f"cifar-resnet takes DEPTH or DEPTHxWIDTH, such as 20x1 or 26x4, got {name!r}")
        model = ResNet(ResNetConfig(depth=int(depth), width=int(width or 1), **args))
    else:
        sys.path.insert(0, os.getcwd())  # a module of the user's, where the command runs
        try:
            target = getattr(importlib.import_module(kind), name)
        except ModuleNotFoundError as err:
            raise ValueError(f"cannot import {kind!r} for the model {spec!r}: {err}") from err
        except AttributeError:
            raise ValueError(f"module {kind!r} has no attribute {name!r} (model {spec!r})") from None
        finally:
            sys.path.remove(os.getcwd())
        model = target if isinstance(target, nn.Module) else target(**args)
        if not isinstance(model, nn.Module):
            raise TypeError(f"{spec} gave a {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit {type(model).__name__}: {err}") from None


def load_examples(data: str, images: int, source: str | None = None) -> torch.Tensor:
    """``images`` examples: the first test images of ``data`` ("cifar10" or "cifar100",
    from ``source`` or as ``repsim.data`` finds them) or the first rows of a tensor saved
    in the ``.pt`` or ``.npy`` file ``data``."""
    if data in SPLIT_SIZES:
        available = load_dataset(data, source).test_images
    elif data.endswith((".pt", ".npy")):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"no examples file {path}")
        available = torch.from_numpy(np.load(path)) if path.suffix == ".npy" else torch.load(path, weights_only=True)
        if not isinstance(available, torch.Tensor):
            raise ValueError(f"{path} holds a {type(available).__name__}, not a tensor of examples")
    else:
        raise ValueError(f"--data is cifar10, cifar100 or a .pt or .npy file of examples, got {data!r}")
    if not 4 <= images <= len(available):
        raise ValueError(f"--images must be between 4 and the {len(available)} examples of {data}, got {images}")
    return available[:images]
