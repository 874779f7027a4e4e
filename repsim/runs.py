"""What names a trained model, and the one place its store keys are built.

A ``Run`` is an architecture, a training-set prefix and a seed. With a profile (which
gives the training recipe for that prefix) and a data set (through its fingerprint) it
names exactly one trained model, and every analysis of that model is keyed by the
model's key plus the analysis' name and settings. Profiles, chapters, the harvest and
the store all build keys here, so a result computed on a GPU is found again by a chapter
executed anywhere else.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

from .files import as_config, config_key
from .models import ResNetConfig


@dataclass(frozen=True)
class Run:
    model: ResNetConfig
    train_size: int | None = None  # training-set prefix; None is all of it
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model, ResNetConfig):
            raise TypeError(f"a Run's model must be a ResNetConfig, got {type(self.model).__name__} {self.model!r}")
        size = self.train_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 2):
            raise ValueError(f"train_size must be an integer >= 2 or None (all images), got {size!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise TypeError(f"seed must be an integer, got {self.seed!r}")

    @property
    def label(self) -> str:
        """"ResNet-56 (1x) on 1,000 images", for titles and prose."""
        data = "all training images" if self.train_size is None else f"{self.train_size:,} images"
        return f"{self.model.name} on {data}"

    @property
    def name(self) -> str:
        """A short unique name: "ResNet-56 (1x) on 1,000 images, seed 0"."""
        return f"{self.label}, seed {self.seed}"

    def with_seed(self, seed: int) -> "Run":
        return dataclasses.replace(self, seed=seed)

    def recipe(self, profile):
        """The profile's training recipe for this run's training-set prefix."""
        return profile.training(self.train_size)

    def key(self, profile, data, analysis: str | None = None, **settings: Any) -> dict:
        """The store key of this run's model, or of one analysis of it (``analysis`` names
        it, ``settings`` are whatever changes its result). ``data``: an ``ImageDataset``
        or its fingerprint."""
        key = model_key(self.model, self.recipe(profile), self.seed, data)
        if analysis is not None:
            key.update(analysis=analysis, settings=as_config(**settings))
        return key


def model_key(model: ResNetConfig, recipe, seed: int, data) -> dict:
    """The store key of one trained model: architecture, recipe, seed and data."""
    fingerprint = data if isinstance(data, str) else data.fingerprint
    key = as_config(model, recipe, seed=int(seed), data=fingerprint)
    if key["TrainConfig"].get("precision", "") is None:  # the device's default: keys from before the field hold
        del key["TrainConfig"]["precision"]
    return key


def describe_key(config: dict) -> str:
    """"ResNet-56 (1x) on 1,000 images, seed 0" for a key built by ``Run.key``,
    "resnet18 on 5,000 images, seed 0" for one of ``fit.classifier_key``; the key's hash
    for any other configuration."""
    if "classifier" in config and "FitConfig" in config:  # repsim.fit's keys
        size = config["FitConfig"]["train_size"]
        data = "all training images" if size is None else f"{size:,} images"
        return f"{config['classifier'].get('torchvision', 'a classifier')} on {data}, seed {config['seed']}"
    try:
        model = ResNetConfig(**config["ResNetConfig"])
        return Run(model, config["TrainConfig"]["train_size"], config["seed"]).name
    except (KeyError, TypeError, ValueError):
        return f"store entry {config_key(config)}"
