"""A chapter's session: results or None where pending, and a sentence saying how many."""

from __future__ import annotations

import pytest

from repsim.models import ResNetConfig
from repsim.profiles import CKASettings, get_profile
from repsim.results import ResultsArchive
from repsim.runs import Run
from repsim.session import Session, coverage
from repsim.store import PendingResult, Store
from repsim.train import TrainConfig


@pytest.fixture
def session(tmp_path, make_tiny_data, make_tiny_profile):
    """``session(compute)``: a chapter's session over a tiny data set and a store in ``tmp_path``."""
    data = make_tiny_data(64, 16)
    profile = make_tiny_profile(train=TrainConfig(epochs=1, batch_size=32), cka=CKASettings(examples=16, batch_size=8))
    return lambda compute: Session(profile, data, Store(tmp_path, compute=compute, results=ResultsArchive(None)), "cpu")


def test_a_pending_result_comes_back_as_none_and_is_noted(session):
    from repsim.heatmaps import heatmap

    run = Run(ResNetConfig(8), 64)
    reading = session(compute=False)
    assert reading.get(heatmap, run) is None and reading.pending == [run.name]
    with pytest.raises(PendingResult):
        reading.require(heatmap, run)
    computing = session(compute=True)
    assert computing.get(heatmap, run).cka.shape == (28, 28) and not computing.pending
    again = session(compute=False)  # now it is in the store
    maps = [again.get(heatmap, r) for r in (run, run.with_seed(1))]
    assert maps[0] is not None and maps[1] is None and again.pending == [run.with_seed(1).name]


def test_coverage_says_how_much_of_a_figure_exists():
    assert coverage("Fig. 2", [1, None, 2]) == "Fig. 2: 2 of 3 models harvested, 1 pending."
    assert coverage("Fig. 1", [1, 2]) == "Fig. 1: all 2 models."


def test_the_profile_decides_where_missing_results_are_computed():
    assert get_profile("paper").may_compute("cuda") and not get_profile("paper").may_compute("cpu")
    assert get_profile("laptop").may_compute("cpu")
