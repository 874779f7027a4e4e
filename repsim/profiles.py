"""Execution profiles: every knob that differs between a CI smoke run, a laptop and a GPU.

A profile is plain data. Chapters read it and never branch on its name, so adding a
profile or changing a scale is an edit here alone.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

from .models import ResNetConfig
from .train import TrainConfig


@dataclass(frozen=True)
class CKASettings:
    examples: int | None = None  # test images used (None: all 10,000)
    batch_size: int = 256  # the paper's minibatch
    passes: int = 10  # the paper's passes over the shuffled test set


@dataclass(frozen=True)
class BackgroundChapter:
    """Chapter 2: CKA's properties on one trained model."""

    model: ResNetConfig = ResNetConfig(depth=20, width=1)
    train_size: int | None = None  # training-set prefix for this model
    probe_examples: int = 1024  # test images for the invariance and estimator demos
    sample_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024)
    repeats: int = 10  # random subsets per sample size


@dataclass(frozen=True)
class Profile:
    name: str
    device: str  # "cpu", "cuda" or "auto"
    dataset: str = "cifar10"
    train: TrainConfig = TrainConfig()
    cka: CKASettings = CKASettings()
    background: BackgroundChapter = BackgroundChapter()

    def training(self, train_size: int | None) -> TrainConfig:
        """The profile's recipe on a given training-set prefix."""
        return dataclasses.replace(self.train, train_size=train_size)

    def with_overrides(self, **overrides) -> "Profile":
        """A copy with top-level fields replaced; unknown names raise a clear error."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in names:
                raise ValueError(f"unknown profile field {key!r}{_suggest(key, names)}; fields are {sorted(names)}")
        return dataclasses.replace(self, **overrides)


PROFILES = {
    # CI: tiny models on a few thousand images; the whole book in minutes on 2 cores.
    "smoke": Profile(
        name="smoke",
        device="cpu",
        train=TrainConfig(epochs=2, lr=0.05, eval_size=500),
        cka=CKASettings(examples=512, batch_size=128, passes=1),
        background=BackgroundChapter(
            model=ResNetConfig(depth=8, width=1), train_size=2000, probe_examples=256,
            sample_sizes=(8, 16, 32, 64, 128, 256), repeats=3,
        ),
    ),
    # 2 CPU cores and real CIFAR-10: short schedules, and the paper's own lever (less
    # data) so that small models still develop the phenomena.
    "laptop": Profile(
        name="laptop",
        device="cpu",
        train=TrainConfig(epochs=10, lr=0.05, eval_size=2000),
        cka=CKASettings(examples=5000, batch_size=256, passes=1),
        background=BackgroundChapter(model=ResNetConfig(depth=20, width=1), train_size=12_500),
    ),
    # One GPU: the paper's recipe and CKA protocol, with a shortened schedule.
    "paper": Profile(
        name="paper",
        device="cuda",
        train=TrainConfig(epochs=60, lr=0.05),
        cka=CKASettings(examples=None, batch_size=256, passes=10),
        background=BackgroundChapter(model=ResNetConfig(depth=20, width=1), train_size=None, probe_examples=2048,
                                     sample_sizes=(8, 16, 32, 64, 128, 256, 512, 1024, 2048), repeats=20),
    ),
}


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get_profile(name: str) -> Profile:
    """The profile called ``name``; a misspelling gets a suggestion."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}{_suggest(name, PROFILES)}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def differences_from_paper(profile: Profile, train_size: int | None) -> list[dict]:
    """Rows (setting, paper, this profile) for every training and CKA setting.

    The defaults of ``TrainConfig`` and ``CKASettings`` are the paper's own (PAPER.md),
    so the comparison is field by field.
    """
    paper = {**dataclasses.asdict(TrainConfig()), **{f"cka_{k}": v for k, v in dataclasses.asdict(CKASettings()).items()}}
    ours = {**dataclasses.asdict(profile.training(train_size)),
            **{f"cka_{k}": v for k, v in dataclasses.asdict(profile.cka).items()}}
    return [{"setting": key, "paper": _show(paper[key]), profile.name: _show(ours[key])} for key in paper]


def _show(value) -> str:
    if value is None:
        return "all"
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
