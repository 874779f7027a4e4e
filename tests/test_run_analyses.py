"""Sec. 4 analyses of a run: computed once, then read back from the store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repsim import run_analyses
from repsim.data import ImageDataset
from repsim.models import ResNetConfig
from repsim.profiles import CKASettings, ProbeChapter, Profile
from repsim.runs import Run
from repsim.store import Store
from repsim.train import TrainConfig


@pytest.fixture
def tiny_data() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)  # noqa: E731
    labels = lambda n: torch.randint(0, 10, (n,), generator=g)  # noqa: E731
    return ImageDataset(images(160), labels(160), images(48), labels(48), tuple("abcdefghij"), "cifar10", "memory")


@pytest.fixture
def tiny_profile() -> Profile:
    return Profile(name="tiny", device="cpu", train=TrainConfig(epochs=1, batch_size=32, eval_size=20),
                   cka=CKASettings(examples=40, batch_size=20, passes=1),
                   probes=ProbeChapter(probe_train_size=64, probe_val_size=32, probe_epochs=1, probe_max_features=256,
                                       test_examples=48, pc_examples=36))


RUN = Run(ResNetConfig(depth=8), train_size=64)


def _forbid(monkeypatch, *names):
    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of loading from the store")

    for name in names:
        monkeypatch.setattr(run_analyses, name, fail)


def test_first_pcs_is_cached_and_consistent(tmp_path, tiny_data, tiny_profile, monkeypatch):
    store = Store(tmp_path)
    full = run_analyses.first_pcs(RUN, tiny_profile, tiny_data, without_pc1=True, store=store)
    n = len(full.layers)
    assert full.pc_similarity.shape == full.cka_without_pc1.shape == (n, n)
    assert ((0 <= full.variance_explained) & (full.variance_explained <= 1 + 1e-9)).all()
    np.testing.assert_allclose(np.diag(full.pc_similarity), 1.0, atol=1e-9)
    late = run_analyses.first_pcs(RUN, tiny_profile, tiny_data, late_block_outputs=True, store=store)
    assert late.layers == ["stage2.block0.relu2", "stage3.block0.relu2"] and late.cka_without_pc1 is None
    picked = [full.layers.index(name) for name in late.layers]
    np.testing.assert_allclose(late.variance_explained, full.variance_explained[picked], rtol=1e-4)
    _forbid(monkeypatch, "layer_pcs", "cka_without_first_pc", "train_run")
    again = run_analyses.first_pcs(RUN, tiny_profile, tiny_data, without_pc1=True, store=store)
    np.testing.assert_array_equal(again.cka_without_pc1, full.cka_without_pc1)


def test_probe_and_deletion_rows_are_cached(tmp_path, tiny_data, tiny_profile, monkeypatch):
    store = Store(tmp_path)
    probes = run_analyses.probe_accuracy(RUN, tiny_profile, tiny_data, store=store)
    assert [row["layer"] for row in probes] == ["stage1.block0.bn2", "stage1.block0.add", "stage2.block0.bn2",
                                                "stage2.block0.add", "stage3.block0.bn2", "stage3.block0.add"]
    deletion = run_analyses.deletion_accuracy(RUN, tiny_profile, tiny_data, store=store)
    assert [(row["stage"], row["deleted"]) for row in deletion] == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    assert len({row["test_acc"] for row in deletion if row["deleted"] == 0}) == 1  # one intact model
    _forbid(monkeypatch, "train_probes", "delete_blocks", "train_run")
    assert run_analyses.probe_accuracy(RUN, tiny_profile, tiny_data, store=store) == probes
    assert run_analyses.deletion_accuracy(RUN, tiny_profile, tiny_data, store=store) == deletion


def test_cross_cka_is_cached_and_compares_two_runs(tmp_path, tiny_data, tiny_profile, monkeypatch):
    store = Store(tmp_path)
    other = Run(ResNetConfig(depth=8, width=2), train_size=64, seed=1)
    result = run_analyses.cross_cka(RUN, other, tiny_profile, tiny_data, store=store)
    assert result.cka.shape == (len(result.layers), len(result.other_layers)) and np.isfinite(result.cka).all()
    same = run_analyses.cross_cka(RUN, RUN, tiny_profile, tiny_data, store=store)
    np.testing.assert_allclose(np.diag(same.cka), 1.0, atol=1e-9)  # a model against itself
    _forbid(monkeypatch, "model_cka", "train_run")
    again = run_analyses.cross_cka(RUN, other, tiny_profile, tiny_data, store=store)
    np.testing.assert_array_equal(again.cka, result.cka)
