"""Stacked training: M members as one grouped network are the M models trained alone,
through the one training loop (``train.train_models``)."""

from __future__ import annotations

import pytest
import torch

from repsim import populations
from repsim.files import config_key
from repsim.models import ResNet, ResNetConfig
from repsim.populations import Population, train_members_stacked
from repsim.profiles import PredictionChapter
from repsim.stacked import StackedResNet
from repsim.store import Store
from repsim.throughput import fastest_stack
from repsim.train import TrainConfig, train_model, train_models
from repsim.trained import train_run


@pytest.mark.parametrize("config", [ResNetConfig(8, 2), ResNetConfig(14, 1, residual=False)])
def test_a_stack_computes_each_members_own_outputs(config):
    torch.manual_seed(0)
    members = [ResNet(config) for _ in range(3)]
    stacked = StackedResNet(members)
    inputs = [torch.randn(5, 3, 32, 32) for _ in members]
    for mode in ("train", "eval"):
        for model in (*members, stacked):
            getattr(model, mode)()
        out = stacked(torch.cat(inputs, dim=1))
        assert out.shape == (5, 3, 10)
        for k, (member, x) in enumerate(zip(members, inputs)):
            torch.testing.assert_close(out[:, k], member(x), rtol=1e-4, atol=1e-5)
    # Train-mode BatchNorm updated each member's running statistics from its own batch only.
    for member, state in zip(members, stacked.unstack()):
        for key, value in member.state_dict().items():
            torch.testing.assert_close(state[key], value)


def test_stacking_refuses_mixed_architectures():
    with pytest.raises(ValueError, match="share one configuration"):
        StackedResNet([ResNet(ResNetConfig(8)), ResNet(ResNetConfig(8, 2))])
    with pytest.raises(ValueError, match="at least one model"):
        StackedResNet([])


def test_stacked_training_gives_the_models_trained_one_at_a_time(make_tiny_data):
    data = make_tiny_data(128, 40)
    config = TrainConfig(epochs=2, batch_size=32, lr=0.02, bn_momentum=0.1, train_size=96, eval_size=40)
    stacked = train_models(ResNetConfig(8), config, data, [3, 5], progress=False)
    for seed, (model, metrics) in zip([3, 5], stacked):
        alone, alone_metrics = train_model(ResNetConfig(8), config, data, seed, progress=False)
        assert metrics["best_epoch"] == alone_metrics["best_epoch"]
        assert metrics["best_test_acc"] == pytest.approx(alone_metrics["best_test_acc"], abs=1 / 40)
        for (key, ours), theirs in zip(model.state_dict().items(), alone.state_dict().values()):
            torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3, msg=lambda m, key=key: f"{key}: {m}")
        assert [h["train_loss"] for h in metrics["history"]] == pytest.approx(
            [h["train_loss"] for h in alone_metrics["history"]], rel=1e-4)
    with pytest.raises(ValueError, match="distinct"):
        train_models(ResNetConfig(8), config, data, [1, 1], progress=False)


def test_fastest_stack_measures_every_candidate_size():
    best, rates = fastest_stack(ResNetConfig(8), TrainConfig(batch_size=8), members=3, device="cpu")
    assert set(rates) == {1, 2, 3} and best in rates
    assert all(rate > 0 for rate in rates.values())
    assert best * rates[best] == max(size * rate for size, rate in rates.items())  # the most images, all members
    assert set(fastest_stack(ResNetConfig(8), TrainConfig(batch_size=4), members=100, device="cpu", largest=4)[1]) == {1, 2, 4}


def test_a_stack_too_large_for_the_device_is_ruled_out(monkeypatch):
    from repsim import steps

    call = steps.EagerStep.__call__

    def out_of_memory_beyond_one(self, x, targets):
        if targets.shape[1] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return call(self, x, targets)

    monkeypatch.setattr(steps.EagerStep, "__call__", out_of_memory_beyond_one)
    best, rates = fastest_stack(ResNetConfig(8), TrainConfig(batch_size=8), members=4, device="cpu")
    assert best == 1 and rates[1] > 0 and rates[2] == rates[4] == 0.0


def test_members_trained_in_stacks_are_the_store_entries_train_run_uses(tmp_path, make_tiny_data, make_tiny_profile,
                                                                       access_log):
    data = make_tiny_data(128, 40)
    profile = make_tiny_profile(predictions=PredictionChapter(test_examples=30, stack=2))
    store = Store(tmp_path)
    population = Population(ResNetConfig(8), 64, (0, 1, 2))
    decision = train_members_stacked(population, profile, data, store, progress=False)
    assert decision == {"stack": 2, "rates": None, "trained": 3}
    models = sorted(config_key(run.key(profile, data)) for run in population.runs)
    assert sorted(entry["key"] for entry in access_log("computed")) == models  # each member stored once
    access_log.clear()
    for run in population.runs:
        _, record = train_run(run, profile, data, store)
        assert record["metrics"]["stacked_with"] == (2 if run.seed < 2 else 1)
    assert access_log("computed") == [] and sorted(entry["key"] for entry in access_log("store")) == models
    predictions = populations.population_predictions(population, profile, data, store, progress=False)
    assert predictions.shape == (3, 30)
    summary = populations.training_summary(population, profile, data, store)
    assert summary["members"] == 3 and summary["stacks"] == {1: 1, 2: 2} and summary["devices"] == ["cpu"]
    # Everything is in the store now: nothing left to train, so nothing is measured.
    assert train_members_stacked(population, profile, data, store, stack=None, progress=False)["trained"] == 0


def test_an_interrupted_stack_resumes_from_its_checkpoint_to_the_same_models(tmp_path, monkeypatch, make_tiny_data):
    from repsim import train

    data = make_tiny_data(128, 40)
    config = TrainConfig(epochs=3, batch_size=32, lr=0.02, bn_momentum=0.1, train_size=64, eval_size=20)
    whole = train_models(ResNetConfig(8), config, data, [0, 1], progress=False)
    scoring = train.stacked_accuracies
    calls = []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the session dies after epoch 1 was checkpointed
        return scoring(*args, **kwargs)

    monkeypatch.setattr(train, "stacked_accuracies", dies_in_epoch_two)
    checkpoint = tmp_path / "stack" / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        train_models(ResNetConfig(8), config, data, [0, 1], progress=False, checkpoint=checkpoint)
    monkeypatch.setattr(train, "stacked_accuracies", scoring)
    resumed = train_models(ResNetConfig(8), config, data, [0, 1], progress=False, checkpoint=checkpoint)
    for (model, metrics), (reference, reference_metrics) in zip(resumed, whole):
        assert metrics["history"] == reference_metrics["history"]
        for key, value in model.state_dict().items():
            assert torch.equal(value, reference.state_dict()[key]), key
    # A checkpoint of another stack (other seeds) is not picked up.
    other = train_models(ResNetConfig(8), config, data, [0, 2], progress=False, checkpoint=checkpoint)
    assert other[1][1]["history"] != whole[1][1]["history"]
