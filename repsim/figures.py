"""Which trained runs each of the paper's figures shows, under a profile.

The chapters draw these runs and the harvest plans them (``harvest.plan``), from the
same functions, so what a GPU window computes is what the pages ask for. Rows are lists
of runs in the order the figure shows them.
"""

from __future__ import annotations

from .data import train_count
from .models import ResNetConfig
from .profiles import AcrossChapter, BlockChapter, ProbeChapter
from .runs import Run


def background_run(profile, seed: int = 0) -> Run:
    """Chapter 2's model."""
    return Run(profile.background.model, profile.background.train_size, seed)


def fig1_rows(blocks: BlockChapter, seed: int = 0, num_classes: int = 10) -> list[list[Run]]:
    """Fig. 1: the depth row (width 1x) and the width row (at ``base_depth``)."""
    return [[Run(ResNetConfig(d, num_classes=num_classes), blocks.full_size, seed) for d in blocks.depths],
            [Run(ResNetConfig(blocks.base_depth, w, num_classes=num_classes), blocks.full_size, seed)
             for w in blocks.widths]]


def sizes_largest_first(blocks: BlockChapter) -> list[int | None]:
    return sorted(blocks.train_sizes, key=train_count, reverse=True)


def size_label(size: int | None) -> str:
    return "all 50,000 images" if size is None else f"{size:,} images"


def size_labels(blocks: BlockChapter) -> list[str]:
    """Row labels of Figs. 2 and D.2."""
    return [size_label(n) for n in sizes_largest_first(blocks)]


def fig2_rows(blocks: BlockChapter, seed: int = 0) -> list[list[Run]]:
    """Fig. 2: widths along each row (``grid_widths``), the training set shrinking down."""
    return [[Run(ResNetConfig(blocks.base_depth, w), n, seed) for w in blocks.grid_widths]
            for n in sizes_largest_first(blocks)]


def figd2_rows(blocks: BlockChapter, seed: int = 0) -> list[list[Run]]:
    """Fig. D.2: depths along each row (``grid_depths``), the training set shrinking down."""
    return [[Run(ResNetConfig(d), n, seed) for d in blocks.grid_depths] for n in sizes_largest_first(blocks)]


def figc1_row(blocks: BlockChapter, seed: int = 0) -> list[Run]:
    """Fig. C.1: the width row without residual connections."""
    return [Run(ResNetConfig(blocks.base_depth, w, residual=False), blocks.full_size, seed) for w in blocks.plain_widths]


def figd1_rows(blocks: BlockChapter, seed: int = 0) -> list[list[Run]]:
    """Fig. D.1: one row of seeds per seed architecture."""
    return [[Run(config, blocks.full_size, seed + s) for s in range(blocks.seed_count)]
            for config in blocks.seed_architectures]


def seed_labels(blocks: BlockChapter) -> list[str]:
    """Row labels of Fig. D.1."""
    return [config.name for config in blocks.seed_architectures]


def chapter4_runs(probes: ProbeChapter, seed: int = 0) -> dict[str, Run]:
    """Chapter 4's two models, by the label the chapter gives them."""
    return {"with a block": probes.with_block.with_seed(seed), "without a block": probes.without_block.with_seed(seed)}


def fig6_pairs(across: AcrossChapter, offset: int = 0) -> list[tuple[Run, Run]]:
    """Fig. 6: each seed run trained with both seeds of ``seed_pair`` (``offset`` added)."""
    first, second = (s + offset for s in across.seed_pair)
    return [(run.with_seed(first), run.with_seed(second)) for run in across.seed_runs]


def seed_pairs(across: AcrossChapter, seeds) -> list[tuple[Run, Run]]:
    """Chapter 5's claim, over several seeds: for each seed run, every pair of
    consecutive ``seeds`` taken cyclically ((0, 1), (1, 2), (2, 0) for three); with fewer
    than three seeds, Fig. 6's pair (offset by the first seed)."""
    seeds = list(seeds)
    if len(seeds) < 3:
        return fig6_pairs(across, seeds[0])
    return [(run.with_seed(a), run.with_seed(b)) for run in across.seed_runs for a, b in zip(seeds, seeds[1:] + seeds[:1])]


def fige1_pairs(across: AcrossChapter) -> list[tuple[Run, Run]]:
    """Fig. E.1: the profile's pairs of architectures, with their own seeds."""
    return [tuple(pair) for pair in across.architecture_pairs]
