"""Training killed at any moment: the store never holds a half-written model, and the next
run resumes from the last epoch's checkpoint to the same bits as an uninterrupted run.

The kills are real: a subprocess trains a tiny model and is sent SIGKILL at random
points (before the first checkpoint, between epochs, around the final write). Run as a
script, this file is that subprocess.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import repsim.train as train_module
from repsim.data import ImageDataset
from repsim.files import as_config, load_checked, save_checked
from repsim.models import ResNetConfig
from repsim.profiles import Profile
from repsim.runs import Run
from repsim.store import Store
from repsim.train import TrainConfig, train_model
from repsim.trained import train_run, training_key

MODEL = ResNetConfig(depth=8)
# 96 images in batches of 32: 3 SGD steps per epoch, a fraction of a second on one core.
RECIPE = TrainConfig(epochs=6, batch_size=32, lr=0.05, bn_momentum=0.1)
SEED = 3
TIMEOUT = 240  # seconds; generous for a loaded 2-core machine, never reached when all is well


def tiny_data() -> ImageDataset:
    """A fixed synthetic data set whose labels depend on the images (so loss falls)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = (images[:, 0].float().mean(dim=(1, 2)) > 127.5).long() + 2 * (images[:, 1].float().mean(dim=(1, 2)) > 127.5).long()
    return ImageDataset(images[:96], labels[:96], images[96:], labels[96:], tuple("abcdefghij"), "cifar10", "memory")


PROFILE = Profile(name="faults", device="cpu", train=RECIPE)
RUN = Run(MODEL, None, SEED)


def key(data: ImageDataset) -> dict:
    expected = as_config(MODEL, RECIPE, seed=SEED, data=data.fingerprint)
    del expected["TrainConfig"]["precision"]  # the device's default precision is left out of keys
    assert RUN.key(PROFILE, data) == expected
    return RUN.key(PROFILE, data)


def training(data: ImageDataset) -> dict:
    """The key under which the run trains: its lock and its checkpoints' folder."""
    return training_key([RUN], PROFILE, data)


def worker(store_root: str) -> None:
    torch.set_num_threads(1)  # a fixed thread count: CPU kernels then give the same bits
    _, record = train_run(RUN, PROFILE, tiny_data(), Store(store_root), device="cpu")
    print(json.dumps({"weights_sha256": record["weights_sha256"]}), flush=True)


def start_worker(store_root: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, __file__, str(store_root)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpoint_epoch(path: Path) -> int:
    saved = load_checked(path) if path.exists() else None
    return saved["epoch"] if saved else 0


def wait_for(condition, proc: subprocess.Popen) -> bool:
    """Poll until ``condition()`` holds (True) or the process has exited (False)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the training subprocess made no progress")


def assert_store_consistent(store: Store, config: dict, reference: tuple[dict, dict] | None) -> None:
    """Whatever a kill left behind, the store either lacks the entry or holds the right one."""
    found = store.load(config)
    if found is not None and reference is not None:
        state, record = found
        assert record["weights_sha256"] == reference[1]["weights_sha256"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, dict]:
    """The reference: one run, never interrupted, in a process set up like the killed ones."""
    root = tmp_path_factory.mktemp("reference")
    proc = start_worker(root)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    found = Store(root).load(key(tiny_data()))
    assert found is not None and found[1]["metrics"]["resumed_after_epochs"] == []
    return found


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_result(tmp_path, uninterrupted):
    rng = random.Random(20210401)
    data = tiny_data()
    store, config = Store(tmp_path / "store"), key(data)
    checkpoint = store.partial(training(data)) / "checkpoint.pt"
    kills = 0

    # 1. Killed at a random moment before any checkpoint (often during imports).
    proc = start_worker(store.root)
    time.sleep(rng.uniform(0.0, 1.5))  # a random moment, not a synchronisation
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        kills += 1
    proc.wait(timeout=TIMEOUT)
    assert_store_consistent(store, config, uninterrupted)

    # 2. Killed at random moments after randomly chosen epochs: between epochs, inside
    #    one, or while a checkpoint is being written.
    for target in sorted(rng.sample(range(1, RECIPE.epochs), 2)):
        before = checkpoint_epoch(checkpoint)
        proc = start_worker(store.root)
        reached = wait_for(lambda: checkpoint_epoch(checkpoint) >= max(target, before + 1), proc)
        assert reached, proc.communicate()[1]
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=TIMEOUT)
        assert store.load(config) is None  # the run had epochs left: no entry may exist yet
        assert checkpoint_epoch(checkpoint) >= max(target, before + 1)  # resumable from here

    # 3. Killed around the end: after the last epoch's checkpoint, while the entry is
    #    being written (or just after it was).
    proc = start_worker(store.root)
    wait_for(lambda: checkpoint_epoch(checkpoint) == RECIPE.epochs, proc)
    time.sleep(rng.uniform(0.0, 0.1))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        kills += 1
    proc.wait(timeout=TIMEOUT)
    assert_store_consistent(store, config, uninterrupted)

    # 4. A last run to completion: it resumes, or loads the entry if the kill came late.
    proc = start_worker(store.root)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert kills >= 2  # the epoch-targeted kills always find the process alive

    state, record = store.load(config)
    ref_state, ref_record = uninterrupted
    assert record["metrics"]["resumed_after_epochs"], "no run resumed from a checkpoint"
    assert record["metrics"]["history"] == ref_record["metrics"]["history"]
    assert record["metrics"]["best_epoch"] == ref_record["metrics"]["best_epoch"]
    assert state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in state), "resumed weights differ from the uninterrupted run"
    assert record["weights_sha256"] == ref_record["weights_sha256"]
    # Nothing left over: no checkpoint folder, no temporary file from a killed write.
    assert not store.partial(config).exists() and not store.partial(training(data)).exists()
    assert not [p for p in store.root.rglob("*.tmp")]


# ---------------------------------------------------------------------------------------
# Resuming in process: the same guarantees, without subprocesses
# ---------------------------------------------------------------------------------------


class Interrupt(Exception):
    pass


def interrupted_run(monkeypatch, checkpoint: Path, after_epoch: int) -> None:
    """Train until ``after_epoch`` epochs are checkpointed, then stop as a crash would."""
    real = train_module.save_checked

    def save_then_maybe_crash(obj, path):
        real(obj, path)
        if obj["epoch"] == after_epoch:
            raise Interrupt

    monkeypatch.setattr(train_module, "save_checked", save_then_maybe_crash)
    with pytest.raises(Interrupt):
        train_model(MODEL, RECIPE, tiny_data(), SEED, device="cpu", progress=False, checkpoint=checkpoint)
    monkeypatch.undo()


@pytest.fixture(scope="module")
def in_process_reference() -> tuple[dict, dict]:
    model, metrics = train_model(MODEL, RECIPE, tiny_data(), SEED, device="cpu", progress=False)
    return model.state_dict(), metrics


@pytest.mark.parametrize("after_epoch", [2, RECIPE.epochs])
def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path, monkeypatch, in_process_reference, after_epoch):
    checkpoint = tmp_path / "checkpoint.pt"
    interrupted_run(monkeypatch, checkpoint, after_epoch)
    assert load_checked(checkpoint)["epoch"] == after_epoch
    model, metrics = train_model(MODEL, RECIPE, tiny_data(), SEED, device="cpu", progress=False, checkpoint=checkpoint)
    ref_state, ref_metrics = in_process_reference
    assert metrics["resumed_after_epochs"] == [after_epoch]
    assert metrics["history"] == ref_metrics["history"]
    assert all(torch.equal(model.state_dict()[k], ref_state[k]) for k in ref_state)


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "garbage", "another run"])
def test_a_damaged_or_foreign_checkpoint_means_a_fresh_start(tmp_path, monkeypatch, in_process_reference, damage):
    checkpoint = tmp_path / "checkpoint.pt"
    interrupted_run(monkeypatch, checkpoint, 1)
    raw = bytearray(checkpoint.read_bytes())
    if damage == "truncated":
        checkpoint.write_bytes(raw[: len(raw) // 2])
    elif damage == "bit flip":
        raw[len(raw) * 2 // 3] ^= 0x10
        checkpoint.write_bytes(raw)
    elif damage == "garbage":
        checkpoint.write_bytes(os.urandom(len(raw)))
    else:  # a checkpoint of another seed at the same path must not be continued
        saved = load_checked(checkpoint)
        saved["run"]["seed"] = SEED + 1
        save_checked(saved, checkpoint)
    model, metrics = train_model(MODEL, RECIPE, tiny_data(), SEED, device="cpu", progress=False, checkpoint=checkpoint)
    ref_state, ref_metrics = in_process_reference
    assert metrics["resumed_after_epochs"] == []
    assert metrics["history"] == ref_metrics["history"]
    assert all(torch.equal(model.state_dict()[k], ref_state[k]) for k in ref_state)


def test_a_training_checkpoints_in_the_partial_area_and_cleans_it(tmp_path, monkeypatch):
    store, data = Store(tmp_path), tiny_data()
    config, partial = key(data), store.partial(training(data))
    seen = []
    real = train_module.save_checked
    monkeypatch.setattr(train_module, "save_checked", lambda obj, path: seen.append(Path(path)) or real(obj, path))
    train_run(RUN, PROFILE, data, store, device="cpu")
    assert seen and set(seen) == {partial / "checkpoint.pt"}
    assert len(seen) == RECIPE.epochs  # one checkpoint per epoch
    assert not partial.exists()  # removed once the entry was written
    assert store.load(config) is not None


def test_divergence_is_an_error_not_a_nan_model(tmp_path):
    store = Store(tmp_path)
    data = tiny_data()
    recipe = TrainConfig(epochs=2, batch_size=32, lr=1e12, bn_momentum=0.1)
    with pytest.raises(FloatingPointError, match="diverged in epoch 1.*lower the learning rate"):
        train_run(RUN, Profile(name="diverging", device="cpu", train=recipe), data, store, device="cpu")
    assert store.load(as_config(MODEL, recipe, seed=SEED, data=data.fingerprint)) is None


if __name__ == "__main__":
    worker(sys.argv[1])
