"""Execution profiles: every knob that differs between a CI smoke run, a laptop and a GPU.

A profile is plain data. Chapters read it and never branch on its name, so adding a
profile or changing a scale is an edit here alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from dataclasses import dataclass

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
class BlockChapter:
    """Chapter 3: block structure across depth, width and training-set size."""

    depths: tuple[int, ...] = (20, 56, 110, 164)  # Fig. 1, depth row (width 1x); Fig. D.2
    widths: tuple[int, ...] = (1, 2, 4, 10)  # Fig. 1, width row (at base_depth); Fig. 2
    base_depth: int = 26  # depth of the width row
    full_size: int | None = None  # training-set prefix of Fig. 1, C.1 and D.1 (None: all)
    train_sizes: tuple[int | None, ...] = (3_000, 12_500, 25_000, None)  # Figs. 2 and D.2
    plain_widths: tuple[int, ...] = (1, 2, 4, 10)  # Fig. C.1: no residual, at base_depth
    seed_models: tuple[ResNetConfig, ...] = (ResNetConfig(depth=110), ResNetConfig(depth=26, width=10))  # Fig. D.1
    seeds: int = 5  # Fig. D.1


@dataclass(frozen=True)
class ProbeChapter:
    """Chapter 4: principal components, linear probes and block deletion."""

    with_block: tuple[ResNetConfig, int | None] = (ResNetConfig(depth=110), None)  # (model, training prefix)
    without_block: tuple[ResNetConfig, int | None] = (ResNetConfig(depth=26), None)
    probe_train_size: int = 45_000  # training images the probes fit
    probe_val_size: int = 5_000  # the next training images, which pick each probe's learning rate
    probe_epochs: int = 10
    probe_lrs: tuple[float, ...] = (1e-3, 1e-2)  # Adam learning rates tried for every probe
    probe_max_features: int | None = None  # wider layers are 2x2 average-pooled (None: never)
    test_examples: int | None = None  # test images that score the probes and each deletion (None: all)
    pc_examples: int | None = None  # test images the PCs are computed on (None: all 10,000)
    pca_max_bytes: int = 2**32  # activations held at once while finding PCs (fewer bytes: more forward passes)


Model = tuple[ResNetConfig, "int | None"]  # an architecture and its training-set prefix (None: all)


@dataclass(frozen=True)
class AcrossChapter:
    """Chapter 5: representations across seeds and architectures (Sec. 5)."""

    # Fig. 6: a small, a wide and a deep model, each trained with both seeds.
    seed_models: tuple[Model, ...] = ((ResNetConfig(depth=26), None), (ResNetConfig(depth=26, width=10), None),
                                      (ResNetConfig(depth=164), None))
    seeds: tuple[int, int] = (0, 1)
    # Fig. E.1: pairs of architectures of similar accuracy, without and with a block.
    architecture_pairs: tuple[tuple[Model, Model], ...] = (
        ((ResNetConfig(depth=56), None), (ResNetConfig(depth=26, width=2), None)),
        ((ResNetConfig(depth=164), None), (ResNetConfig(depth=26, width=10), None)),
    )


@dataclass(frozen=True)
class PredictionChapter:
    """Chapter 6: per-example and per-class predictions of model populations (Sec. 6)."""

    wide: Model = (ResNetConfig(depth=14, width=2), None)  # the paper's pair of matching accuracy
    deep: Model = (ResNetConfig(depth=62), None)
    members: int = 100  # models per population
    # Figs. F.1-F.3: populations of these too, compared pair by pair (depth pairs, width
    # pairs, wide-vs-deep pairs; populations.architecture_pairs).
    architectures: tuple[Model, ...] = ((ResNetConfig(depth=14), None), (ResNetConfig(depth=14, width=2), None),
                                        (ResNetConfig(depth=38), None), (ResNetConfig(depth=62), None))
    test_examples: int | None = None  # test images each model predicts (None: all 10,000)
    significance: float = 0.05  # Welch's test level per class
    # Members trained at once as one grouped network (repsim.stacked); None: measure the
    # fastest stack size on the device at the start. On a CPU stacking loses (oneDNN's
    # grouped convolutions are slow: benchmarks/populations.py), so CPU profiles say 1.
    stack: int | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    device: str  # "cpu", "cuda" or "auto"
    dataset: str = "cifar10"
    train: TrainConfig = TrainConfig()
    cka: CKASettings = CKASettings()
    background: BackgroundChapter = BackgroundChapter()
    blocks: BlockChapter = BlockChapter()
    probes: ProbeChapter = ProbeChapter()
    across: AcrossChapter = AcrossChapter()
    predictions: PredictionChapter = PredictionChapter()
    min_steps: int = 0  # small training sets get more epochs, up to this many SGD steps

    def training(self, train_size: int | None) -> TrainConfig:
        """The profile's recipe on a given training-set prefix (None: all 50,000).

        With short schedules a small prefix would get only a few hundred SGD steps, too
        few even for BatchNorm's running statistics (momentum 0.01) to settle, so the
        epochs grow until the run takes at least ``min_steps`` steps.
        """
        steps_per_epoch = math.ceil((train_size or 50_000) / self.train.batch_size)
        epochs = max(self.train.epochs, math.ceil(self.min_steps / steps_per_epoch))
        return dataclasses.replace(self.train, train_size=train_size, epochs=epochs)

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
        train=TrainConfig(epochs=2, lr=0.05, bn_momentum=0.1, eval_size=500),
        cka=CKASettings(examples=256, batch_size=128, passes=1),
        background=BackgroundChapter(
            model=ResNetConfig(depth=8, width=1), train_size=1000, probe_examples=256,
            sample_sizes=(8, 16, 32, 64, 128, 256), repeats=3,
        ),
        blocks=BlockChapter(
            depths=(8, 14), widths=(1, 2), base_depth=8, full_size=1000, train_sizes=(500, 1000),
            plain_widths=(1, 2), seed_models=(ResNetConfig(depth=14), ResNetConfig(depth=8, width=2)), seeds=2,
        ),
        probes=ProbeChapter(with_block=(ResNetConfig(depth=14), 500), without_block=(ResNetConfig(depth=8), 1000),
                            probe_train_size=500, probe_val_size=200, probe_epochs=1, probe_max_features=1024,
                            test_examples=500, pc_examples=128),
        across=AcrossChapter(
            seed_models=((ResNetConfig(depth=8), 1_000), (ResNetConfig(depth=8, width=2), 1_000), (ResNetConfig(depth=14), 1_000)),
            architecture_pairs=(((ResNetConfig(depth=8), 500), (ResNetConfig(depth=8, width=2), 500)),
                                ((ResNetConfig(depth=14), 1_000), (ResNetConfig(depth=8, width=2), 1_000))),
        ),
        predictions=PredictionChapter(wide=(ResNetConfig(depth=8, width=2), 500), deep=(ResNetConfig(depth=14), 500),
                                      members=3, test_examples=1_000, stack=1,
                                      architectures=((ResNetConfig(depth=8), 500), (ResNetConfig(depth=8, width=2), 500),
                                                     (ResNetConfig(depth=14), 500))),
        min_steps=20,
    ),
    # 2 CPU cores and real CIFAR-10. Every model gets the same budget of min_steps SGD
    # steps on batches of 32: on small training sets, many small steps teach a model more
    # per image computed than few large ones (ResNet-56 on 1,000 images: 39% test
    # accuracy after 500 steps of 32 with BN momentum 0.1, 20% after 256 steps of 128
    # with 0.01, on half as many images; the two changes were not measured apart).
    "laptop": Profile(
        name="laptop",
        device="cpu",
        train=TrainConfig(epochs=1, batch_size=32, lr=0.02, bn_momentum=0.1, eval_size=1000, evaluations=8),
        cka=CKASettings(examples=2048, batch_size=256, passes=1),
        background=BackgroundChapter(model=ResNetConfig(depth=32, width=1), train_size=16_000),
        # Less data is the paper's own lever: on 1,000 images even narrow networks show
        # the block. Widths stop at 3x: a 4x model costs twice as much on a CPU.
        blocks=BlockChapter(
            depths=(14, 32, 56), widths=(1, 2, 3), base_depth=14, full_size=1_000, train_sizes=(1_000, 4_000, 16_000),
            plain_widths=(1, 3), seed_models=(ResNetConfig(depth=56), ResNetConfig(depth=14, width=3)), seeds=2,
        ),
        # Stage-1 layers of a 1x model have 16,384 features; pooled once, 4,096.
        probes=ProbeChapter(with_block=(ResNetConfig(depth=56), 1_000), without_block=(ResNetConfig(depth=14), 16_000),
                            probe_train_size=4_000, probe_val_size=1_000, probe_epochs=4, probe_max_features=4_096,
                            test_examples=2_000, pc_examples=1_024, pca_max_bytes=2**32),
        # Chapter 3 trained both seeds of the wide and the deep model; only the small one's
        # second seed is new. Pairs of close test accuracy: 41% and 43% (small blocks),
        # 34% and 39% (both with a block in stages 2-3).
        across=AcrossChapter(
            seed_models=((ResNetConfig(depth=14), 16_000), (ResNetConfig(depth=14, width=3), 1_000),
                         (ResNetConfig(depth=56), 1_000)),
            architecture_pairs=(((ResNetConfig(depth=14, width=2), 16_000), (ResNetConfig(depth=14, width=3), 16_000)),
                                ((ResNetConfig(depth=56), 1_000), (ResNetConfig(depth=32), 1_000))),
        ),
        # Three populations (wide, deep, and a second deep one as the baseline) of small
        # models on 1,000 images: the cheapest pair whose accuracies are close.
        predictions=PredictionChapter(wide=(ResNetConfig(depth=8, width=2), 1_000), deep=(ResNetConfig(depth=20), 1_000),
                                      members=6, stack=1,
                                      architectures=((ResNetConfig(depth=8), 1_000), (ResNetConfig(depth=8, width=2), 1_000),
                                                     (ResNetConfig(depth=14), 1_000), (ResNetConfig(depth=14, width=2), 1_000),
                                                     (ResNetConfig(depth=20), 1_000))),
        min_steps=400,
    ),
    # One GPU: the paper's recipe and CKA protocol, with a shortened schedule.
    "paper": Profile(
        name="paper",
        device="cuda",
        train=TrainConfig(epochs=60, lr=0.05),
        cka=CKASettings(examples=None, batch_size=256, passes=10),
        background=BackgroundChapter(model=ResNetConfig(depth=20, width=1), train_size=None, probe_examples=2048,
                                     sample_sizes=(8, 16, 32, 64, 128, 256, 512, 1024, 2048), repeats=20),
        probes=ProbeChapter(pca_max_bytes=2**35),  # 32 GiB: a GPU machine's memory, few forward passes
    ),
}


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get_profile(name: str) -> Profile:
    """The profile called ``name``; a misspelling gets a suggestion."""
    if not isinstance(name, str) or name not in PROFILES:
        hint = _suggest(name, PROFILES) if isinstance(name, str) else ""
        raise ValueError(f"unknown profile {name!r}{hint}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def chapter_device(requested: str | None, profile: Profile) -> str:
    """The device a chapter runs on: the one asked for; otherwise "auto" on Colab (its GPU
    when the runtime has one, else the CPU); otherwise the profile's."""
    if requested is not None:
        return requested
    return "auto" if "google.colab" in sys.modules else profile.device


def differences_from_paper(profile: Profile, train_size: int | None) -> list[dict]:
    """Rows (setting, paper, this profile) for every training and CKA setting.

    The defaults of ``TrainConfig`` and ``CKASettings`` are the paper's own (PAPER.md),
    so the comparison is field by field.
    """
    paper = {**dataclasses.asdict(TrainConfig()), **{f"cka_{k}": v for k, v in dataclasses.asdict(CKASettings()).items()}}
    ours = {**dataclasses.asdict(profile.training(train_size)),
            **{f"cka_{k}": v for k, v in dataclasses.asdict(profile.cka).items()}}
    return [{"setting": key, "paper": _show(paper[key]), profile.name: _show(ours[key])} for key in paper]


def grid_vs_paper(blocks: BlockChapter) -> list[dict]:
    """Rows (figure, grid, paper, this profile) comparing a profile's Sec. 3 grid with the
    paper's (the defaults of ``BlockChapter``), so a thinned grid says so on the page."""
    paper = BlockChapter()

    def models(configs):
        return ", ".join(c.name for c in configs)

    def sizes(values):
        return ", ".join(_show(v) for v in values)

    rows = [
        ("1, D.2", "depths (1x)", lambda b: ", ".join(str(d) for d in b.depths)),
        ("1, 2", "widths", lambda b: f"{', '.join(f'{w}x' for w in b.widths)} at ResNet-{b.base_depth}"),
        ("1, C.1, D.1", "training images", lambda b: _show(b.full_size)),
        ("2, D.2", "training-set prefixes", lambda b: sizes(b.train_sizes)),
        ("C.1", "widths, no residual", lambda b: f"{', '.join(f'{w}x' for w in b.plain_widths)} at ResNet-{b.base_depth}"),
        ("D.1", "seeds of", lambda b: f"{b.seeds} of {models(b.seed_models)}"),
    ]
    return [{"figure": fig, "grid": what, "paper": show(paper), "this profile": show(blocks)} for fig, what, show in rows]


def _show(value) -> str:
    if value is None:
        return "all"
    if isinstance(value, (bool, str)):
        return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
