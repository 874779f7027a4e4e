"""Progress lines for the runner's terminal: one per training epoch, one per store entry
computed, nothing at all without $REPSIM_PROGRESS."""

from __future__ import annotations

import re

import pytest
import torch

from repsim import progress
from repsim.models import ResNetConfig
from repsim.profiles import Profile
from repsim.runs import Run
from repsim.store import Store
from repsim.train import TrainConfig, train_models
from repsim.trained import train_run

TINY = ResNetConfig(depth=8, width=1)
RECIPE = TrainConfig(epochs=3, batch_size=16, train_size=32, eval_size=16)
PROFILE = Profile(name="progress", device="cpu", train=RECIPE)


@pytest.fixture
def data(make_tiny_data):
    return make_tiny_data(32, 16)


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.log"
    monkeypatch.setenv(progress.VARIABLE, str(path))
    return path


def test_training_reports_every_epoch(data, progress_file):
    train_models(TINY, RECIPE, data, [3, 4], device="cpu", progress=False)
    lines = progress_file.read_text().splitlines()
    assert len(lines) == RECIPE.epochs
    for epoch, line in enumerate(lines, 1):
        assert re.fullmatch(rf"2 x ResNet-8 \(1x\) on 32 images, seeds 3 to 4: epoch {epoch}/3, "
                            r"\d+\.\d s per epoch, \d+ s left", line), line
    assert lines[-1].endswith(" 0 s left")


def test_the_store_says_what_it_computes_before_training(data, progress_file, tmp_path):
    store = Store(tmp_path / "store")
    train_run(Run(TINY, 32, 0), PROFILE, data, store, device="cpu")
    lines = progress_file.read_text().splitlines()
    assert lines[0] == f"training {Run(TINY, 32, 0).name}" == "training ResNet-8 (1x) on 32 images, seed 0"
    assert len(lines) == 1 + RECIPE.epochs
    train_run(Run(TINY, 32, 0), PROFILE, data, store, device="cpu")  # from the store
    assert len(progress_file.read_text().splitlines()) == 1 + RECIPE.epochs

    store.load_or_train({"analysis": "a sum", "seed": 1}, lambda: ({"x": torch.ones(1)}, {}))
    assert progress_file.read_text().splitlines()[-1].startswith("computing a sum of store entry ")


def test_nothing_is_written_without_the_variable(data, tmp_path, monkeypatch):
    monkeypatch.delenv(progress.VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    train_models(TINY, RECIPE, data, [0], device="cpu", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_durations_and_seeds_read_naturally():
    assert [progress.duration(s) for s in (41, 720, 5400)] == ["41 s", "12 min", "1.5 h"]
    assert progress._seeds([0]) == "seed 0" and progress._seeds([0, 5, 9]) == "seeds 0, 5, 9"
    assert progress._seeds(range(100)) == "seeds 0 to 99"

