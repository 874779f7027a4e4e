"""repsim.fit: any classifier trained briefly, kept in the store by its description,
recipe, seed and data, resumed after an interruption."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repsim.fit import FitConfig, classifier_key, fit_classifier
from repsim.runs import describe_key
from repsim.store import PendingResult, Store

DESCRIPTION = {"torchvision": "tiny", "args": {}}


class Tiny(nn.Module):
    """A small classifier that counts its training forward passes."""

    calls = 0
    fail_at: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        if self.training:
            Tiny.calls += 1
            if Tiny.fail_at is not None and Tiny.calls == Tiny.fail_at:
                raise KeyboardInterrupt("interrupted")
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture
def config() -> FitConfig:
    return FitConfig(epochs=3, batch_size=16, lr=0.05, train_size=64, warmup_epochs=1)


def test_a_classifier_is_trained_once_then_read_from_the_store(tiny_data, config, tmp_path):
    store = Store(tmp_path / "store")
    Tiny.calls, Tiny.fail_at = 0, None
    model, record = fit_classifier(Tiny, DESCRIPTION, config, tiny_data, seed=0, store=store, device="cpu")
    assert Tiny.calls == 3 * (64 // 16) and not model.training
    metrics = record["metrics"]
    assert metrics["epochs"] == 3 and metrics["steps"] == 12 and 0 <= metrics["test_accuracy"] <= 1
    again, second = fit_classifier(Tiny, DESCRIPTION, config, tiny_data, seed=0, store=store, device="cpu")
    assert Tiny.calls == 12 and second["weights_sha256"] == record["weights_sha256"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(PendingResult):  # another seed, on a store that may not compute
        fit_classifier(Tiny, DESCRIPTION, config, tiny_data, seed=1, store=Store(tmp_path / "store", compute=False))


def test_an_interrupted_training_resumes_from_its_last_epoch(tiny_data, config, tmp_path):
    store = Store(tmp_path / "store")
    Tiny.calls, Tiny.fail_at = 0, 4 + 3  # in the second epoch
    with pytest.raises(KeyboardInterrupt):
        fit_classifier(Tiny, DESCRIPTION, config, tiny_data, seed=0, store=store, device="cpu")
    Tiny.calls, Tiny.fail_at = 0, None
    resumed, record = fit_classifier(Tiny, DESCRIPTION, config, tiny_data, seed=0, store=store, device="cpu")
    assert Tiny.calls == 2 * 4  # epochs 2 and 3 only
    Tiny.calls = 0
    fresh, _ = fit_classifier(Tiny, DESCRIPTION, config, tiny_data, seed=0, store=Store(tmp_path / "other"), device="cpu")
    assert Tiny.calls == 12
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(resumed.state_dict().values(), fresh.state_dict().values()))


def test_the_key_names_the_model_recipe_seed_and_data(config):
    key = classifier_key(DESCRIPTION, config, 2, "abc")
    assert key["classifier"] == DESCRIPTION and key["seed"] == 2 and key["data"] == "abc"
    assert key["FitConfig"]["optimizer"] == "sgd"
    assert describe_key(key) == "tiny on 64 images, seed 2"


@pytest.mark.parametrize("fields, message", [
    ({"optimizer": "adam"}, "optimizer must be one of"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"lr": float("nan")}, "lr must be a positive number"),
    ({"warmup_epochs": 20}, "warmup_epochs must be between 0 and epochs"),
])
def test_a_bad_recipe_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        FitConfig(**fields)
