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

from .data import train_count
from .devices import device_type
from .fit import FitConfig
from .models import ResNetConfig
from .own_models import OwnModel
from .runs import Run
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
    # Figs. 2 and D.2 may use fewer widths and depths than Fig. 1 (None: the same).
    size_widths: tuple[int, ...] | None = None
    size_depths: tuple[int, ...] | None = None
    plain_widths: tuple[int, ...] = (1, 2, 4, 10)  # Fig. C.1: no residual, at base_depth
    seed_architectures: tuple[ResNetConfig, ...] = (ResNetConfig(depth=110), ResNetConfig(depth=26, width=10))  # Fig. D.1
    seed_count: int = 5  # Fig. D.1: seeds 0, 1, ... of each seed architecture

    @property
    def grid_widths(self) -> tuple[int, ...]:
        """The widths of Figs. 2 and D.2."""
        return self.widths if self.size_widths is None else self.size_widths

    @property
    def grid_depths(self) -> tuple[int, ...]:
        """The depths of Fig. D.2."""
        return self.depths if self.size_depths is None else self.size_depths


@dataclass(frozen=True)
class ProbeChapter:
    """Chapter 4: principal components, linear probes and block deletion."""

    with_block: Run = Run(ResNetConfig(depth=110))  # seed 0; the chapter's seed replaces it
    without_block: Run = Run(ResNetConfig(depth=26))
    probe_train_size: int = 45_000  # training images the probes fit
    probe_val_size: int = 5_000  # the next training images, which pick each probe's learning rate
    probe_epochs: int = 10
    probe_lrs: tuple[float, ...] = (1e-3, 1e-2)  # Adam learning rates tried for every probe
    probe_max_features: int | None = None  # wider layers are 2x2 average-pooled (None: never)
    test_examples: int | None = None  # test images that score the probes and each deletion (None: all)
    pc_examples: int | None = None  # test images the PCs are computed on (None: all 10,000)
    pca_max_bytes: int = 2**32  # activations held at once while finding PCs (fewer bytes: more forward passes)


@dataclass(frozen=True)
class AcrossChapter:
    """Chapter 5: representations across seeds and architectures (Sec. 5)."""

    # Fig. 6: a small, a wide and a deep model, each trained with both seeds of seed_pair.
    seed_runs: tuple[Run, ...] = (Run(ResNetConfig(depth=26)), Run(ResNetConfig(depth=26, width=10)),
                                  Run(ResNetConfig(depth=164)))
    seed_pair: tuple[int, int] = (0, 1)
    # Fig. E.1: pairs of architectures of similar accuracy, without and with a block.
    architecture_pairs: tuple[tuple[Run, Run], ...] = (
        (Run(ResNetConfig(depth=56)), Run(ResNetConfig(depth=26, width=2))),
        (Run(ResNetConfig(depth=164)), Run(ResNetConfig(depth=26, width=10))),
    )


@dataclass(frozen=True)
class PredictionChapter:
    """Chapter 6: per-example and per-class predictions of model populations (Sec. 6)."""

    wide: Run = Run(ResNetConfig(depth=14, width=2))  # the paper's pair of matching accuracy
    deep: Run = Run(ResNetConfig(depth=62))
    members: int = 100  # models per population: seeds 0 .. members - 1
    # Fig. 7's baseline: a second population of this one ("wide" or "deep"), the next
    # ``members`` seeds, shows how much two populations of one architecture differ.
    baseline: str = "deep"
    # Figs. F.1-F.3: populations of these too, compared pair by pair (depth pairs, width
    # pairs, wide-vs-deep pairs; populations.architecture_pairs).
    architectures: tuple[Run, ...] = (Run(ResNetConfig(depth=14)), Run(ResNetConfig(depth=14, width=2)),
                                      Run(ResNetConfig(depth=38)), Run(ResNetConfig(depth=62)))
    test_examples: int | None = None  # test images each model predicts (None: all 10,000)
    significance: float = 0.05  # Welch's test level per class
    # Members trained at once as one grouped network (repsim.stacked); None: measure the
    # fastest stack size on the device at the start. On a CPU stacking loses (oneDNN's
    # grouped convolutions are slow: benchmarks/training.py), so CPU profiles say 1.
    stack: int | None = None


@dataclass(frozen=True)
class OriginsChapter:
    """Chapter 7: how the block arises (Nguyen, Raghu & Kornblith 2022), beyond the paper."""

    # The runs followed through training, both from the Sec. 3 grid (heatmaps.block_runs).
    # None picks them there (Profile.followed_runs): the first of blocks.seed_architectures
    # on blocks.full_size (whose other seeds serve "across seeds"), and the shallowest
    # depth (1x) on the largest training-set prefix.
    with_block: Run | None = None
    without_block: Run | None = None
    snapshots: int = 10  # at log-spaced SGD steps, the initialisation and the last step included
    snapshot_examples: int = 2_048  # test images of each snapshot's heatmap (one pass, the profile's CKA batch)
    top_k: int = 100  # dominant images: the k with the largest PC1 projections (1% of 10,000)
    removal_counts: tuple[int, ...] = (0, 10, 30, 100, 300, 1_000)  # images left out before recomputing CKA
    max_layers: int = 16  # block layers (evenly spaced) whose PC1 scores the images


@dataclass(frozen=True)
class MeasuresChapter:
    """Chapter 8, beyond the paper: the block under similarity measures other than linear CKA."""

    # Models with a block; None: Fig. D.1's seed architectures on blocks.full_size. The model
    # without one is chapter 7's (Profile.followed_runs), and so is the model whose
    # dominant images are left out.
    with_block: tuple[Run, ...] | None = None
    rbf_fraction: float = 0.5  # RBF bandwidth: this fraction of the median distance (Kornblith et al. 2019)
    subset: int = 1_024  # the first test images, for the measures that need all pairs at once
    neighbours: int = 10  # k of mutual k-NN (Huh et al. 2024 use 10)
    passes: int | None = None  # passes of the CKA minibatches (None: the profile's, so linear CKA is chapter 3's)


def _vit(hidden: int, layers: int, heads: int, fit: FitConfig) -> OwnModel:
    """torchvision's VisionTransformer at CIFAR's 32 x 32: patches of 4 x 4 pixels (64
    tokens and the class token), MLP twice the width."""
    args = (("image_size", 32), ("patch_size", 4), ("num_layers", layers), ("num_heads", heads),
            ("hidden_dim", hidden), ("mlp_dim", 2 * hidden), ("num_classes", 10))
    return OwnModel(f"ViT ({layers} layers of width {hidden})", "VisionTransformer", args, fit)


def _resnet18(fit: FitConfig) -> OwnModel:
    return OwnModel("ResNet-18 (torchvision)", "resnet18", (("num_classes", 10),), fit)


@dataclass(frozen=True)
class OwnModelChapter:
    """The page on your own model: torchvision's ResNet-18 and a small vision transformer,
    trained here for a few minutes, beside chapter 2's ResNet. ViTs train with AdamW."""

    resnet18: OwnModel = _resnet18(FitConfig(epochs=30, batch_size=256, lr=0.1, train_size=None))
    vit: OwnModel = _vit(192, 6, 6, FitConfig(epochs=50, batch_size=256, lr=1e-3, optimizer="adamw",
                                              weight_decay=0.05, warmup_epochs=5, train_size=None))
    cka: CKASettings = CKASettings(examples=None, batch_size=256, passes=1)


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
    origins: OriginsChapter = OriginsChapter()
    own: OwnModelChapter = OwnModelChapter()
    measures: MeasuresChapter = MeasuresChapter()
    min_steps: int = 0  # small training sets get more epochs, up to this many SGD steps
    # Seeds of every compared model: a chapter's seed and the next ones. A comparison is
    # called only beyond the spread between them (claims.Called); one seed says so.
    seeds: int = 1
    # Device types on which a chapter may train and analyse what is missing. Elsewhere it
    # reads the store and the committed results (results/<profile>/) and marks the rest
    # as pending: a paper-scale model is never trained on a CPU.
    compute_on: tuple[str, ...] = ("cpu", "cuda")
    # What this profile leaves out of the paper's experiments, and why: (figures, what, why).
    thinned: tuple[tuple[str, str, str], ...] = ()

    def training(self, train_size: int | None) -> TrainConfig:
        """The profile's recipe on a given training-set prefix (None: all 50,000).

        With short schedules a small prefix would get only a few hundred SGD steps, too
        few even for BatchNorm's running statistics (momentum 0.01) to settle, so the
        epochs grow until the run takes at least ``min_steps`` steps.
        """
        steps_per_epoch = train_count(train_size) // self.train.batch_size
        epochs = max(self.train.epochs, math.ceil(self.min_steps / max(steps_per_epoch, 1)))
        return dataclasses.replace(self.train, train_size=train_size, epochs=epochs)

    def seed_list(self, first: int = 0) -> list[int]:
        """The seeds every compared model is trained with: ``first`` and the next ones."""
        return list(range(first, first + self.seeds))

    def may_compute(self, device: str | None) -> bool:
        """Whether chapters run on ``device`` ("cpu", "cuda", "auto" or None: the
        profile's) train and analyse what neither the store nor the results hold."""
        return device_type(device or self.device) in self.compute_on

    def followed_runs(self, seed: int = 0) -> list[Run]:
        """Chapter 7's runs followed through training, [with a block, without a block]:
        ``origins``' runs, or by default the first seed architecture (else the deepest 1x
        network) on ``blocks.full_size`` and the shallowest 1x network on the largest
        training-set prefix of the Sec. 3 grid (so chapter 3 trains both); ``seed`` is
        added to their seeds."""
        o, b = self.origins, self.blocks
        largest = max(b.train_sizes, key=lambda size: float("inf") if size is None else size, default=b.full_size)
        deepest = b.seed_architectures[0] if b.seed_architectures else ResNetConfig(max(b.depths))
        with_block = o.with_block or Run(deepest, b.full_size)
        without_block = o.without_block or Run(ResNetConfig(min(b.depths)), largest)
        return [with_block.with_seed(with_block.seed + seed), without_block.with_seed(without_block.seed + seed)]

    def measured_runs(self, seed: int = 0) -> list[Run]:
        """Chapter 8's runs, [with a block..., without a block]: ``measures.with_block``
        (by default Fig. D.1's seed architectures on ``blocks.full_size``, with chapter 7's
        model with a block added if it is not among them) and chapter 7's model without
        one; ``seed`` is added to their seeds."""
        b = self.blocks
        with_block, without_block = self.followed_runs(seed)
        chosen = self.measures.with_block or tuple(Run(config, b.full_size) for config in b.seed_architectures)
        runs = [run.with_seed(run.seed + seed) for run in chosen]
        return runs + ([] if with_block in runs else [with_block]) + [without_block]

    def with_overrides(self, **overrides) -> "Profile":
        """A copy with top-level fields replaced; unknown names raise a clear error."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in names:
                raise ValueError(f"unknown profile field {key!r}{_suggest(key, names)}; fields are {sorted(names)}")
        return dataclasses.replace(self, **overrides)


def _at(size: int | None, *configs: ResNetConfig) -> tuple[Run, ...]:
    return tuple(Run(config, size) for config in configs)


R = ResNetConfig

# One GPU in windows of minutes (repsim.harvest): the paper's architectures and CKA
# protocol with a fast recipe, and a grid thinned for short windows (the plan: python -m repsim.harvest --plan).
# The recipe changes only what leaves representations alone (batch, warm-up, decay per
# step, Nesterov, peak learning rate, weight decay, epochs); no label smoothing, no
# special initialisation, no architecture change.
FAST_RECIPE = TrainConfig(epochs=30, batch_size=256, lr=0.2, nesterov=True, warmup_epochs=2, lr_steps="step",
                          weight_decay=5e-4, evaluations=6)
# What the paper profile leaves out of the paper's experiments, and why (shown in chapter 3).
PAPER_THINNING = (
    ("Figs. 2, D.2", "training-set prefixes 3,000 and 12,500 (not 25,000), and widths 1x-4x on them",
     "a 10x model costs about as much as the rest of its row; Fig. 1 keeps it"),
    ("Fig. C.1", "widths 1x and 4x without residual connections", "as above"),
    ("Figs. 6, D.1, E.1", "ResNet-26 (4x) as the wide model; Fig. 6 compares seeds 1 and 2; Fig. D.1 shows "
     "seeds 0 and 1 of it and of ResNet-164, not 5", "seeds of a 10x model cost minutes each; a pair of seeds "
     "trains in one GPU window, apart from Fig. 1's seed 0"),
    ("Figs. 7, F.1-F.3", "populations of 6 models, not 100; ResNet-14, -14 (2x) and -62 only; the baseline is a "
     "second population of the wide model", "100 models per population need hours of GPU time"),
    ("all", "30 epochs of a fast schedule instead of 300", "short GPU windows; accuracies in benchmarks/README.md"),
)

PAPER = Profile(
    name="paper",
    device="cuda",
    train=FAST_RECIPE,
    cka=CKASettings(examples=None, batch_size=256, passes=10),
    background=BackgroundChapter(model=ResNetConfig(depth=20, width=1), train_size=None, probe_examples=2048,
                                 sample_sizes=(8, 16, 32, 64, 128, 256, 512, 1024, 2048), repeats=20),
    blocks=BlockChapter(train_sizes=(3_000, 12_500, None), size_widths=(1, 2, 4), plain_widths=(1, 4),
                        seed_architectures=(ResNetConfig(depth=164), ResNetConfig(depth=26, width=4)), seed_count=2),
    probes=ProbeChapter(pca_max_bytes=2**35),  # 32 GiB: a GPU machine's memory, few forward passes
    # Fig. 6 compares seeds 1 and 2, not 0 and 1: a cross-seed pair must be trained in
    # one window (no weights come back), and a pair without seed 0 leaves Fig. 1's jobs
    # small enough that the first window completes its depth row. Seed 1 also serves
    # Fig. D.1. Fig. E.1's pair with a block is chapter 4's ResNet-110 against ResNet-26
    # (4x), so that no job holds more models than one GPU window trains.
    across=AcrossChapter(seed_runs=(Run(ResNetConfig(depth=26)), Run(ResNetConfig(depth=26, width=4)),
                                    Run(ResNetConfig(depth=164))), seed_pair=(1, 2),
                         architecture_pairs=((Run(ResNetConfig(depth=56)), Run(ResNetConfig(depth=26, width=2))),
                                             (Run(ResNetConfig(depth=110)), Run(ResNetConfig(depth=26, width=4))))),
    predictions=PredictionChapter(members=6, baseline="wide",
                                  architectures=(Run(ResNetConfig(depth=14)), Run(ResNetConfig(depth=14, width=2)),
                                                 Run(ResNetConfig(depth=62)))),
    # Chapter 7 follows Fig. 1's ResNet-26 (4x) and ResNet-20 through training: their jobs
    # keep the snapshots while they train them (seeds 0 and 1 of the former are Fig. 6's).
    origins=OriginsChapter(with_block=Run(ResNetConfig(depth=26, width=4)), without_block=Run(ResNetConfig(depth=20))),
    # Chapter 8 measures chapter 7's two models only: ResNet-164's 83 layers would cost
    # 3,403 Procrustes decompositions, and a window of its own to train it again. One
    # pass of the minibatches: the job that trains ResNet-26 (4x) (with ResNet-110, for
    # chapters 4 and 7 and Fig. E.1) has about 10 s to spare in a window's first call.
    measures=MeasuresChapter(with_block=(Run(ResNetConfig(depth=26, width=4)),), passes=1),
    compute_on=("cuda",),
    thinned=PAPER_THINNING,
)
LAPTOP_EPOCHS = 60  # benchmarks/README.md, "A laptop recipe that fits"
# What the laptop profile leaves out of the paper's experiments, and why (shown in chapter 3).
LAPTOP_THINNING = (
    ("Figs. 1, C.1, D.1", "250 training images, not 50,000", "on 2 CPU cores, models fit their training images "
     "with 3 seeds each in about an hour only on a few hundred images; less data is the paper's own lever "
     "(Figs. 2, D.2) for showing the block in smaller networks"),
    ("Fig. 1", "depths 14, 32 and 56 (not 20-164) and widths 1x-4x at ResNet-14 (not 1x-10x at ResNet-26)",
     "a 4x model already costs a third of a seed's grid on a CPU"),
    ("Figs. 2, D.2", "250 and 500 images (not 3,000-50,000); on 500 only ResNet-14 (1x) and (2x)",
     "as above: a model on 500 images costs twice one on 250"),
    ("Fig. C.1", "widths 1x and 2x without residual connections", "as above"),
    ("Figs. 7, F.1-F.3", "populations of 4 models, not 100, on 250 images; ResNet-14 (2x) against ResNet-32",
     "seeds 0-2 of each are chapter 3's models; each further member costs up to a minute"),
    ("all", f"{LAPTOP_EPOCHS} epochs of a fast schedule instead of 300, 3 seeds of every compared model",
     "the epochs fit every model to at least 90% of its training images (benchmarks/README.md)"),
)
PROFILES = {
    # CI: tiny models on a few thousand images; the whole book in minutes on 2 cores.
    "smoke": Profile(
        name="smoke",
        device="cpu",
        train=TrainConfig(epochs=2, lr=0.05, bn_momentum=0.1, eval_size=500),
        cka=CKASettings(examples=256, batch_size=128, passes=1),
        background=BackgroundChapter(
            model=R(depth=8, width=1), train_size=1000, probe_examples=256,
            sample_sizes=(8, 16, 32, 64, 128, 256), repeats=3,
        ),
        blocks=BlockChapter(
            depths=(8, 14), widths=(1, 2), base_depth=8, full_size=1000, train_sizes=(500, 1000),
            plain_widths=(1, 2), seed_architectures=(R(depth=14), R(depth=8, width=2)), seed_count=2,
        ),
        probes=ProbeChapter(with_block=Run(R(depth=14), 500), without_block=Run(R(depth=8), 1000),
                            probe_train_size=500, probe_val_size=200, probe_epochs=1, probe_max_features=1024,
                            test_examples=500, pc_examples=128),
        across=AcrossChapter(
            seed_runs=_at(1_000, R(depth=8), R(depth=8, width=2), R(depth=14)),
            architecture_pairs=((Run(R(depth=8), 500), Run(R(depth=8, width=2), 500)),
                                (Run(R(depth=14), 1_000), Run(R(depth=8, width=2), 1_000))),
        ),
        predictions=PredictionChapter(wide=Run(R(depth=8, width=2), 500), deep=Run(R(depth=14), 500),
                                      members=3, test_examples=1_000, stack=1,
                                      architectures=_at(500, R(depth=8), R(depth=8, width=2), R(depth=14))),
        origins=OriginsChapter(snapshots=6, snapshot_examples=128, top_k=8, removal_counts=(0, 4, 16, 48)),
        own=OwnModelChapter(resnet18=_resnet18(FitConfig(epochs=2, batch_size=64, train_size=512)),
                            vit=_vit(32, 2, 2, FitConfig(epochs=2, batch_size=64, lr=1e-3, optimizer="adamw",
                                                         weight_decay=0.05, train_size=512)),
                            cka=CKASettings(examples=256, batch_size=128, passes=1)),
        measures=MeasuresChapter(subset=128, neighbours=5),
        min_steps=20,
        seeds=2,
    ),
    # 2 CPU cores and real CIFAR-10, with models that fit their training images (issue 21;
    # benchmarks/README.md, "A laptop recipe that fits"). The paper's lever for small
    # compute is less data. On 250 and 500 images the grid has 351 (ResNet-14 (1x) on 500)
    # to 11,117 (ResNet-14 (4x) on 250) weights per training image: the upper part of the
    # paper's range, which runs from 5 (ResNet-20 on all 50,000) through 52 (ResNet-164)
    # to 12,233 (ResNet-26 (10x) on 3,000), and none of its lower part. The recipe was chosen
    # by a search on training accuracy alone, before any block was measured: 60 epochs,
    # the same for every size as in the paper, at twice the previous peak rate after an
    # 8-epoch warm-up (ResNet-56 collapsed at that rate after 2). float32:
    # bf16 autocast was slower on this CPU (benchmarks/README.md, "bf16 on the CPU").
    # Only the last epoch is scored: with 250 images, 2,000 test images pick between two
    # epochs by noise, and a pick before the rate's drop kept an underfit model (ResNet-32,
    # seed 0: 65% on its training images). Every compared model is trained with 3 seeds, and the verdicts are called beyond
    # their spread (claims.Called).
    "laptop": Profile(
        name="laptop",
        device="cpu",
        train=TrainConfig(epochs=LAPTOP_EPOCHS, batch_size=32, lr=0.1, nesterov=True, weight_decay=5e-4,
                          warmup_epochs=8, lr_steps="step", bn_momentum=0.1, eval_size=2_000, evaluations=1),
        cka=CKASettings(examples=2048, batch_size=256, passes=1),
        background=BackgroundChapter(model=R(depth=14, width=1), train_size=500),  # also a run of chapter 3
        blocks=BlockChapter(
            depths=(14, 32, 56), widths=(1, 2, 4), base_depth=14, full_size=250, train_sizes=(250, 500),
            size_widths=(1, 2), size_depths=(14,), plain_widths=(1, 2),
            seed_architectures=(R(depth=56), R(depth=14, width=4)), seed_count=3,
        ),
        # As the paper's chapter: a deep model on the least data (the grid's most capacity
        # per image at 1x) against a shallow one on the most. Stage-1 layers of a 1x model
        # (16,384 features) are pooled once, to stage 3's 4,096.
        probes=ProbeChapter(with_block=Run(R(depth=56), 250), without_block=Run(R(depth=14), 500),
                            probe_train_size=4_000, probe_val_size=1_000, probe_epochs=4, probe_max_features=4_096,
                            test_examples=2_000, pc_examples=1_024, pca_max_bytes=2**32),
        # The paper's Fig. 6 and E.1 on the smallest set: a small, a wide and a deep model;
        # pairs of a deeper against a wider model (ResNet-32 / -14 (2x), ResNet-56 / -14 (4x)).
        across=AcrossChapter(
            seed_runs=_at(250, R(depth=14), R(depth=14, width=4), R(depth=56)),
            architecture_pairs=((Run(R(depth=32), 250), Run(R(depth=14, width=2), 250)),
                                (Run(R(depth=56), 250), Run(R(depth=14, width=4), 250))),
        ),
        # The paper's wide ResNet-14 (2x) against a deeper 1x network (ResNet-32, of a
        # similar number of weights), 4 models each: seeds 0-2 are chapter 3's.
        predictions=PredictionChapter(wide=Run(R(depth=14, width=2), 250), deep=Run(R(depth=32), 250),
                                      members=4, stack=1, baseline="wide",
                                      architectures=_at(250, R(depth=14), R(depth=14, width=2), R(depth=32))),
        # The default pair (Profile.followed_runs): ResNet-56 on 250 images, the first seed
        # architecture, and ResNet-14 on 500, the shallowest on the largest set.
        origins=OriginsChapter(snapshots=8, snapshot_examples=512, top_k=20, removal_counts=(0, 10, 20, 50, 100, 200)),
        # A few minutes each on 2 cores (about 540 and 660 images a second).
        own=OwnModelChapter(resnet18=_resnet18(FitConfig(epochs=20, batch_size=128, lr=0.05, train_size=5_000)),
                            vit=_vit(96, 4, 4, FitConfig(epochs=30, batch_size=128, lr=1e-3, optimizer="adamw",
                                                         weight_decay=0.05, warmup_epochs=3, train_size=5_000)),
                            cka=CKASettings(examples=2048, batch_size=256, passes=1)),
        measures=MeasuresChapter(subset=512),
        seeds=3,
        thinned=LAPTOP_THINNING,
    ),
    "paper": PAPER,
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


def differences_from_paper(profile: Profile, train_size: int | None, changed_only: bool = False) -> list[dict]:
    """Rows (setting, the paper, this profile) for every training and CKA setting (or
    only those that differ).

    The defaults of ``TrainConfig`` and ``CKASettings`` are the paper's own (its released code),
    so the comparison is field by field.
    """
    paper = {**dataclasses.asdict(TrainConfig()), **{f"cka_{k}": v for k, v in dataclasses.asdict(CKASettings()).items()}}
    ours = {**dataclasses.asdict(profile.training(train_size)),
            **{f"cka_{k}": v for k, v in dataclasses.asdict(profile.cka).items()}}
    rows = [{"setting": key, "the paper": _show(paper[key]), "this profile": _show(ours[key])} for key in paper]
    return [r for r in rows if r["the paper"] != r["this profile"]] if changed_only else rows


def grid_vs_paper(blocks: BlockChapter) -> list[dict]:
    """Rows (figure, grid, paper, this profile) comparing a profile's Sec. 3 grid with the
    paper's (the defaults of ``BlockChapter``), so a thinned grid says so on the page."""
    paper = BlockChapter()

    def models(configs):
        return ", ".join(c.name for c in configs)

    def sizes(values):
        return ", ".join(_show(v) for v in values)

    def widths(values, b):
        return f"{', '.join(f'{w}x' for w in values)} at ResNet-{b.base_depth}"

    rows = [
        ("1, D.2", "depths (1x)", lambda b: ", ".join(str(d) for d in b.depths)),
        ("1", "widths", lambda b: widths(b.widths, b)),
        ("2", "widths on smaller training sets", lambda b: widths(b.grid_widths, b)),
        ("D.2", "depths on smaller training sets", lambda b: ", ".join(str(d) for d in b.grid_depths)),
        ("1, C.1, D.1", "training images", lambda b: _show(b.full_size)),
        ("2, D.2", "training-set prefixes", lambda b: sizes(b.train_sizes)),
        ("C.1", "widths, no residual", lambda b: widths(b.plain_widths, b)),
        ("D.1", "seeds of", lambda b: f"{b.seed_count} of {models(b.seed_architectures)}"),
    ]
    return [{"figure": fig, "grid": what, "paper": show(paper), "this profile": show(blocks)} for fig, what, show in rows]


def _show(value) -> str:
    if value is None:
        return "all"
    if isinstance(value, (bool, str)):
        return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
