"""Training learns, and the model store trains each configuration once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import repsim
import repsim.store as store_module
import repsim.train as train_module
from repsim.files import as_config, atomic_write_bytes, config_key, torch_bytes
from repsim.models import ResNet, ResNetConfig
from repsim.profiles import Profile
from repsim.runs import Run, model_key
from repsim.store import Store
from repsim.train import TrainConfig, _param_groups, accuracy, predict, resolve_device
from repsim.trained import train_run

TINY_MODEL = ResNetConfig(depth=8, width=1)
# 2,000 images, 3 epochs: about 15 s on 2 CPU cores. Batch 16 gives 375 SGD steps, enough
# for BN's slow running averages (momentum 0.01) to catch up: best test accuracy was
# 0.31-0.35 over seeds 0-3 (batch 32 gave 0.17-0.28, too close to the 0.2 bar).
TINY_TRAIN = TrainConfig(epochs=3, lr=0.05, batch_size=16, train_size=2000, eval_size=1000)
TINY_RUN, TINY_PROFILE = Run(TINY_MODEL, 2000, 0), Profile(name="tiny", device="cpu", train=TINY_TRAIN)


@pytest.fixture(scope="module")
def trained(cifar, tmp_path_factory):
    """(model, record, store, wall seconds) of one tiny training run in a private store."""
    store = Store(tmp_path_factory.mktemp("store"))
    start = time.perf_counter()
    model, record = train_run(TINY_RUN, TINY_PROFILE, cifar, store, device="cpu")
    return model, record, store, time.perf_counter() - start


def test_tiny_model_beats_chance(trained, cifar):
    model, record, _, _ = trained
    metrics = record["metrics"]
    assert metrics["best_test_acc"] > 0.2  # chance is 0.1
    assert metrics["eval_size"] == 1000 and len(metrics["history"]) == 3
    assert metrics["best_test_acc"] == max(h["test_acc"] for h in metrics["history"])
    assert metrics["history"][metrics["best_epoch"] - 1]["test_acc"] == metrics["best_test_acc"]
    assert all(h["train_loss"] > 0 for h in metrics["history"])
    # The returned model is the best epoch's, in eval mode.
    assert not model.training
    acc = accuracy(model, cifar.test_images[:1000], cifar.test_labels[:1000], device="cpu")
    assert acc == pytest.approx(metrics["best_test_acc"], abs=1e-6)


def test_second_call_loads_from_store(trained, cifar, access_log):
    model, record, store, first_seconds = trained
    start = time.perf_counter()
    again, again_record = train_run(TINY_RUN, TINY_PROFILE, cifar, store, device="cpu")
    seconds = time.perf_counter() - start
    # One lookup, answered by the store: not trained again.
    key = config_key(model_key(TINY_MODEL, TINY_TRAIN, 0, cifar))
    assert [(entry["key"], entry["source"]) for entry in access_log()] == [(key, "store")]
    assert seconds < first_seconds / 3, (seconds, first_seconds)
    assert again_record == record
    state, again_state = model.state_dict(), again.state_dict()
    assert state.keys() == again_state.keys()
    assert all(torch.equal(state[k], again_state[k]) for k in state)
    assert len([p for p in store.root.iterdir() if p.is_dir()]) == 1


def test_record_contents(trained, cifar):
    _, record, store, _ = trained
    assert record["config"] == model_key(TINY_MODEL, TINY_TRAIN, 0, cifar)
    assert record["config"]["ResNetConfig"] == dataclasses.asdict(TINY_MODEL)
    assert record["config"]["TrainConfig"]["train_size"] == 2000
    assert record["train_seconds"] > 0
    assert {"best_test_acc", "best_epoch", "final_test_acc", "history", "train_seconds"} <= set(record["metrics"])
    prov = record["provenance"]
    assert prov["torch"] == torch.__version__
    assert prov["repsim"] == repsim.__version__
    assert "git_commit" in prov
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(repsim.__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = None
    assert prov["git_commit"] == head
    # On disk: the record and the weights it vouches for.
    entry = store.entry(record["config"])
    assert json.loads((entry / "record.json").read_text()) == record
    assert record["weights_sha256"] == hashlib.sha256((entry / "model.pt").read_bytes()).hexdigest()
    assert not list(store.root.rglob("*.tmp"))


def test_seed_and_config_change_the_key():
    data = "0123456789abcdef0123"  # a data fingerprint
    base = as_config(TINY_MODEL, TINY_TRAIN, seed=0, data=data)
    keys = {
        config_key(base),
        config_key(as_config(TINY_MODEL, TINY_TRAIN, seed=1, data=data)),
        config_key(as_config(ResNetConfig(depth=8, width=2), TINY_TRAIN, seed=0, data=data)),
        config_key(as_config(TINY_MODEL, dataclasses.replace(TINY_TRAIN, train_size=3000), seed=0, data=data)),
        config_key(as_config(TINY_MODEL, TINY_TRAIN, seed=0, data="another copy of the data")),
    }
    assert len(keys) == 5
    assert config_key(base) == config_key(as_config(TINY_MODEL, TINY_TRAIN, seed=0, data=data))
    assert len(config_key(base)) == 20
    store = Store("/nonexistent-store-root")
    assert store.entry(base) != store.entry(as_config(TINY_MODEL, TINY_TRAIN, seed=1, data=data))


def test_predict_in_eval_mode_and_batches_agree():
    torch.manual_seed(0)
    model = ResNet(TINY_MODEL).train()
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    logits = predict(model, images, batch_size=3, device="cpu")
    assert logits.shape == (10, 10)
    assert not model.training  # predict puts the model in eval mode
    with torch.no_grad():
        assert torch.allclose(logits, model(images.float() / 255), atol=1e-5)


def test_weight_decay_only_on_kernels():
    model = ResNet(TINY_MODEL)
    decayed, plain = _param_groups(model, 2e-4)
    assert decayed["weight_decay"] == 2e-4 and plain["weight_decay"] == 0.0
    kernels = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert {id(p) for p in decayed["params"]} == kernels
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    assert all(p.dim() == 1 for p in plain["params"])  # biases and BN scales/shifts


def test_train_config_validation_and_device():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            resolve_device("cuda")


# ---------------------------------------------------------------------------------------
# The store, with a cheap fake training function
# ---------------------------------------------------------------------------------------


class FakeTrainer:
    """Counts calls; returns a small state dict that depends on the call number."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> tuple[dict, dict]:
        self.calls += 1
        return {"weight": torch.full((2, 3), float(self.calls)), "bias": torch.arange(3.0)}, {"acc": 0.5, "call": self.calls}


CONFIG = {"ResNetConfig": {"depth": 8, "width": 1}, "seed": 0, "data": "abc"}


def test_store_trains_once(tmp_path):
    store, train = Store(tmp_path), FakeTrainer()
    state, record = store.load_or_train(CONFIG, train)
    again, again_record = store.load_or_train(CONFIG, train)
    assert train.calls == 1
    assert again_record == record
    assert torch.equal(again["weight"], state["weight"]) and torch.equal(again["bias"], state["bias"])
    assert record["config"] == CONFIG and record["metrics"] == {"acc": 0.5, "call": 1}
    assert record["train_seconds"] >= 0 and "torch" in record["provenance"]
    assert Store(tmp_path).load(CONFIG)[1] == record  # a fresh Store on the same root finds it
    other, _ = store.load_or_train({**CONFIG, "seed": 1}, train)
    assert train.calls == 2 and other["weight"][0, 0] == 2.0
    assert store.entry(CONFIG) != store.entry({**CONFIG, "seed": 1})


def test_store_root_defaults_to_repsim_home(tmp_path, monkeypatch):
    monkeypatch.setenv("REPSIM_HOME", str(tmp_path / "home"))
    assert Store().root == tmp_path / "home" / "store"


def test_store_config_with_tuples_is_found_again(tmp_path):
    # Profiles hold tuples (e.g. sample sizes); JSON stores them as lists. A config that
    # went through the record must still be recognised as the same config.
    store, train = Store(tmp_path), FakeTrainer()
    config = {**CONFIG, "sample_sizes": (8, 16, 32)}
    store.load_or_train(config, train)
    store.load_or_train(config, train)
    assert train.calls == 1


def test_corrupted_weights_are_rebuilt(tmp_path):
    store, train = Store(tmp_path), FakeTrainer()
    store.load_or_train(CONFIG, train)
    weights = store.entry(CONFIG) / "model.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert store.load(CONFIG) is None
    state, record = store.load_or_train(CONFIG, train)
    assert train.calls == 2 and state["weight"][0, 0] == 2.0 and record["metrics"]["call"] == 2
    assert store.load(CONFIG) is not None


@pytest.mark.parametrize("damage", ["truncate weights", "delete weights", "delete record", "garble record", "edit config"])
def test_incomplete_or_stale_entries_read_as_missing(tmp_path, damage):
    store, train = Store(tmp_path), FakeTrainer()
    store.load_or_train(CONFIG, train)
    entry = store.entry(CONFIG)
    if damage == "truncate weights":
        (entry / "model.pt").write_bytes((entry / "model.pt").read_bytes()[:10])
    elif damage == "delete weights":
        (entry / "model.pt").unlink()
    elif damage == "delete record":
        (entry / "record.json").unlink()
    elif damage == "garble record":
        (entry / "record.json").write_text('{"config": ')
    else:
        record = json.loads((entry / "record.json").read_text())
        record["config"]["seed"] = 99
        (entry / "record.json").write_text(json.dumps(record))
    assert store.load(CONFIG) is None
    store.load_or_train(CONFIG, train)
    assert train.calls == 2 and store.load(CONFIG) is not None


def test_writes_are_atomic(tmp_path, monkeypatch):
    store, train = Store(tmp_path / "store"), FakeTrainer()
    store.load_or_train(CONFIG, train)
    assert sorted(p.name for p in store.entry(CONFIG).iterdir()) == ["model.pt", "record.json"]
    assert not list(tmp_path.rglob("*.tmp"))

    # A crash while renaming the record into place leaves no temporary file and no entry
    # that reads as valid.
    real_replace = store_module.os.replace

    def crash_on_record(src, dst):
        if str(dst).endswith("record.json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", crash_on_record)
    config = {**CONFIG, "seed": 5}
    with pytest.raises(OSError, match="disk full"):
        store.load_or_train(config, train)
    monkeypatch.undo()
    assert not list(tmp_path.rglob("*.tmp"))
    assert not (store.entry(config) / "record.json").exists()
    assert store.load(config) is None

    # A failing training run writes nothing.
    def broken():
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        store.load_or_train({**CONFIG, "seed": 6}, broken)
    assert not store.entry({**CONFIG, "seed": 6}).exists()

    atomic_write_bytes(torch_bytes({"x": torch.ones(2)}), tmp_path / "deep" / "file.pt")
    assert torch.equal(torch.load(tmp_path / "deep" / "file.pt")["x"], torch.ones(2))
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("epochs,evaluations,expected", [
    (10, None, set(range(1, 11))),  # the paper's: every epoch
    (10, 3, {4, 7, 10}),
    (10, 1, {10}),
    (5, 8, {1, 2, 3, 4, 5}),  # more scorings than epochs: every epoch
])
def test_scored_epochs_are_evenly_spaced_and_end_at_the_last(epochs, evaluations, expected):
    assert TrainConfig(epochs=epochs, evaluations=evaluations).scored_epochs() == expected


def test_only_scored_epochs_are_evaluated_and_can_be_picked(monkeypatch):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    data = repsim.data.ImageDataset(images, labels, images[:16], labels[:16], tuple("abcdefghij"), "cifar10", "memory")
    calls = []
    monkeypatch.setattr(train_module, "stacked_accuracies",
                        lambda *args, **kwargs: calls.append(1) or torch.tensor([0.1 * len(calls)]))
    config = TrainConfig(epochs=6, batch_size=32, evaluations=2, bn_momentum=0.5)
    model, metrics = train_module.train_model(TINY_MODEL, config, data, seed=0, device="cpu", progress=False)
    assert len(calls) == 2
    assert [h["test_acc"] is not None for h in metrics["history"]] == [False, False, True, False, False, True]
    assert metrics["best_epoch"] == 6 and metrics["final_test_acc"] == pytest.approx(0.2)
    assert all(m.momentum == 0.5 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.stem.conv.weight.is_contiguous()  # handed back in the default memory format


def test_bn_momentum_and_evaluations_are_validated():
    with pytest.raises(ValueError, match="bn_momentum"):
        TrainConfig(bn_momentum=0.0)
    with pytest.raises(ValueError, match="evaluations"):
        TrainConfig(evaluations=0)
