"""A chapter's session: results or None where pending, and a sentence saying how many."""

from __future__ import annotations

import pytest
import torch

from repsim.data import ImageDataset
from repsim.models import ResNetConfig
from repsim.profiles import CKASettings, Profile, get_profile
from repsim.results import ResultsArchive
from repsim.runs import Run
from repsim.session import Session, coverage
from repsim.store import PendingResult, Store
from repsim.train import TrainConfig


def _session(tmp_path, compute: bool) -> Session:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (80, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (80,), generator=g)
    data = ImageDataset(images[:64], labels[:64], images[64:], labels[64:], tuple("abcdefghij"), "cifar10", "memory")
    profile = Profile(name="tiny", device="cpu", train=TrainConfig(epochs=1, batch_size=32),
                      cka=CKASettings(examples=16, batch_size=8))
    return Session(profile, data, Store(tmp_path, compute=compute, results=ResultsArchive(None)), "cpu")


def test_a_pending_result_comes_back_as_none_and_is_noted(tmp_path):
    from repsim.heatmaps import heatmap

    run = Run(ResNetConfig(8), 64)
    reading = _session(tmp_path, compute=False)
    assert reading.get(heatmap, run) is None and reading.pending == [run.name]
    with pytest.raises(PendingResult):
        reading.require(heatmap, run)
    computing = _session(tmp_path, compute=True)
    assert computing.get(heatmap, run).cka.shape == (28, 28) and not computing.pending
    again = _session(tmp_path, compute=False)  # now it is in the store
    assert again.get_all(heatmap, [run, run.with_seed(1)])[0] is not None and again.pending == [run.with_seed(1).name]


def test_coverage_says_how_much_of_a_figure_exists():
    assert coverage("Fig. 2", [1, None, 2]) == "Fig. 2: 2 of 3 models harvested, 1 pending."
    assert coverage("Fig. 1", [1, 2]) == "Fig. 1: all 2 models."


def test_the_profile_decides_where_missing_results_are_computed():
    assert get_profile("paper").may_compute("cuda") and not get_profile("paper").may_compute("cpu")
    assert get_profile("laptop").may_compute("cpu")
