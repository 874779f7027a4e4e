"""Runs and their heatmaps go through the store: the second request trains nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repsim import heatmaps
from repsim.data import ImageDataset
from repsim.files import config_key
from repsim.models import ResNetConfig
from repsim.profiles import CKASettings
from repsim.runs import Run
from repsim.store import Store


@pytest.fixture
def tiny_data_sizes() -> tuple[int, int]:
    return 96, 40


@pytest.fixture
def tiny_profile(make_tiny_profile):
    return make_tiny_profile(cka=CKASettings(examples=32, batch_size=16, passes=2))


def test_heatmap_is_computed_once_then_loaded(tmp_path, tiny_data, tiny_profile, access_log):
    store = Store(tmp_path)
    run = Run(ResNetConfig(depth=8), train_size=64, seed=3)
    first = heatmaps.heatmap(run, tiny_profile, tiny_data, store)
    assert first.cka.shape == (len(first.layers), len(first.layers)) == (28, 28)
    np.testing.assert_allclose(np.diag(first.cka), 1.0, atol=1e-12)
    # The first request trains the model and computes its heatmap, each once.
    model, cka = config_key(run.key(tiny_profile, tiny_data)), config_key(heatmaps.heatmap_key(run, tiny_profile, tiny_data))
    assert sorted(entry["key"] for entry in access_log("computed")) == sorted([model, cka]), access_log()
    access_log.clear()
    second = heatmaps.heatmap(run, tiny_profile, tiny_data, store)
    assert access_log("computed") == []  # nothing trained or computed again ...
    assert [entry["key"] for entry in access_log()] == [cka]  # ... the heatmap read back, the model not even loaded
    np.testing.assert_array_equal(first.cka, second.cka)
    assert first.layers == second.layers and first.test_acc == second.test_acc


def test_block_summary_reports_each_run(tmp_path, tiny_data, tiny_profile):
    maps = [heatmaps.heatmap(Run(ResNetConfig(depth=8), train_size=64, seed=s), tiny_profile, tiny_data, Store(tmp_path))
            for s in (0, 1)]
    rows = heatmaps.block_summary(maps, threshold=-1.0)  # every pair passes: the block is the whole model
    assert [row["seed"] for row in rows] == [0, 1]
    assert all(row["block_fraction"] == 1.0 and row["block_from"] == "stem.conv" for row in rows)


def test_fig1_runs_give_each_model_the_data_sets_classes(tmp_path, tiny_profile):
    from repsim.figures import fig1_rows
    from repsim.profiles import BlockChapter

    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(96) % 100
    cifar100 = ImageDataset(images, labels, images[:40], labels[:40], tuple(f"c{i}" for i in range(100)), "cifar100", "memory")
    (_, row) = fig1_rows(BlockChapter(depths=(8,), widths=(1, 2), base_depth=8, full_size=64), num_classes=100)
    maps = [heatmaps.heatmap(run, tiny_profile, cifar100, store=Store(tmp_path)) for run in row]
    assert [m.run.model.num_classes for m in maps] == [100, 100]
    assert [m.run.model.width for m in maps] == [1, 2]
    rows = heatmaps.block_summary(maps, threshold=0.9)
    assert [row["classes"] for row in rows] == [100, 100]
    # The same architecture on a 10-class data set is a different run.
    assert maps[0].run != Run(ResNetConfig(8), 64)


def test_block_table_keeps_its_columns_when_everything_is_pending():
    table = heatmaps.block_table([None, None], threshold=0.9)
    assert table.empty and list(table.columns) == list(heatmaps.BLOCK_COLUMNS)


def test_block_summary_names_the_stage_where_the_block_starts(tmp_path, tiny_data, tiny_profile):
    m = heatmaps.heatmap(Run(ResNetConfig(depth=8), train_size=64), tiny_profile, tiny_data, Store(tmp_path))
    late = m.layers.index("stage3.block0.conv1")
    cka = np.eye(len(m.layers))
    cka[late:, late:] = 0.95  # a block from the first layer of stage 3 to the logits
    (row,) = heatmaps.block_summary([heatmaps.Heatmap(m.run, cka, m.layers, m.test_acc)], threshold=0.9)
    assert row["block_stage"] == 3 and row["block_from"] == "stage3.block0.conv1" and row["block_to"] == "fc"
    assert row["block_layers"] == len(m.layers) - late and row["block_mean_cka"] == pytest.approx(0.95)


def test_block_runs_lists_every_model_of_the_chapter_once():
    from repsim.profiles import get_profile

    blocks = get_profile("laptop").blocks
    runs = heatmaps.block_runs(blocks, seed=0)
    assert len(runs) == len(set(runs))
    # On 250 images 3 depths + 3 widths - the shared ResNet-14 (1x); on 500, 1 depth + 2 widths - the shared one;
    # 2 without residuals; 2 extra seeds of each of 2 models
    assert len(runs) == 5 + 2 + 2 + 2 * 2
    assert Run(ResNetConfig(56), 250, 2) in runs and Run(ResNetConfig(14, 4), 250, 1) in runs
    assert Run(ResNetConfig(14, 2), 500, 0) in runs and Run(ResNetConfig(32), 500, 0) not in runs  # size_depths
    assert Run(ResNetConfig(14, 2, residual=False), 250, 0) in runs
    assert all(r.model.num_classes == 100 for r in heatmaps.block_runs(blocks, num_classes=100))


def test_grid_runs_are_every_seeds_grid_once():
    from repsim.profiles import get_profile

    blocks = get_profile("laptop").blocks
    runs = heatmaps.grid_runs(blocks, [3, 4, 5])
    assert len(runs) == len(set(runs)) == 3 * 9  # 9 models, each with the three seeds
    assert {r.seed for r in runs} == {3, 4, 5}  # Fig. D.1's extra seeds stay among them
    assert runs[: len(heatmaps.block_runs(blocks, 3))] == heatmaps.block_runs(blocks, 3)


def test_run_label_and_heatmap_title_name_the_model():
    run = Run(ResNetConfig(56), 1000)
    assert run.label == "ResNet-56 (1x) on 1,000 images"
    assert Run(ResNetConfig(20, 2)).label == "ResNet-20 (2x) on all training images"
    assert heatmaps.Heatmap(run, np.eye(2), ["a", "b"], 0.394).title == "ResNet-56 (1x)\n39%"
