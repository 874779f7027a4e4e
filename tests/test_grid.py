"""Runs and their heatmaps go through the store: the second request trains nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repsim import grid, train
from repsim.data import ImageDataset
from repsim.models import ResNetConfig
from repsim.profiles import CKASettings, Profile
from repsim.store import Store
from repsim.train import TrainConfig


@pytest.fixture
def tiny_data() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)  # noqa: E731
    labels = lambda n: torch.randint(0, 10, (n,), generator=g)  # noqa: E731
    return ImageDataset(images(96), labels(96), images(40), labels(40), tuple("abcdefghij"), "cifar10", "memory")


@pytest.fixture
def tiny_profile() -> Profile:
    return Profile(name="tiny", device="cpu", train=TrainConfig(epochs=1, batch_size=32, eval_size=20),
                   cka=CKASettings(examples=32, batch_size=16, passes=2))


def test_heatmap_is_computed_once_then_loaded(tmp_path, tiny_data, tiny_profile, monkeypatch):
    store = Store(tmp_path)
    run = grid.Run(ResNetConfig(depth=8), train_size=64, seed=3)
    first = grid.heatmap(run, tiny_profile, tiny_data, store)
    assert first.cka.shape == (len(first.layers), len(first.layers)) == (28, 28)
    np.testing.assert_allclose(np.diag(first.cka), 1.0, atol=1e-12)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading from the store")

    monkeypatch.setattr(train, "train_model", no_training)
    monkeypatch.setattr(grid, "model_cka", no_training)
    second = grid.heatmap(run, tiny_profile, tiny_data, store)
    np.testing.assert_array_equal(first.cka, second.cka)
    assert first.layers == second.layers and first.test_acc == second.test_acc


def test_block_summary_reports_each_run(tmp_path, tiny_data, tiny_profile):
    maps = [grid.heatmap(grid.Run(ResNetConfig(depth=8), train_size=64, seed=s), tiny_profile, tiny_data, Store(tmp_path))
            for s in (0, 1)]
    rows = grid.block_summary(maps, threshold=-1.0)  # every pair passes: the block is the whole model
    assert [row["seed"] for row in rows] == [0, 1]
    assert all(row["block_fraction"] == 1.0 and row["block_from"] == "stem.conv" for row in rows)
