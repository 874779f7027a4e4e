"""The model store under faults: corrupted files, killed writers, and several processes
sharing one store. Run as a script, this file is one of those processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from repsim.files import load_checked, save_checked
from repsim.store import Store, _record_digest

CONFIG = {"ResNetConfig": {"depth": 8, "width": 1}, "seed": 0, "data": "abc"}
TIMEOUT = 240  # seconds; generous for a loaded 2-core machine


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> tuple[dict, dict]:
        self.calls += 1
        return {"weight": torch.full((64, 64), float(self.calls))}, {"acc": 0.5, "call": self.calls}


def corrupt(path: Path, kind: str) -> None:
    raw = bytearray(path.read_bytes())
    if kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bit flip":
        raw[len(raw) // 2] ^= 0x04  # one bit, in the middle
        path.write_bytes(raw)
    elif kind == "garbage":
        path.write_bytes(os.urandom(len(raw)))
    else:
        raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated", "empty", "bit flip", "garbage"])
@pytest.mark.parametrize("name", ["model.pt", "record.json"])
def test_each_corruption_is_detected_and_rebuilt(tmp_path, name, kind):
    store, train = Store(tmp_path), Counter()
    store.load_or_train(CONFIG, train)
    corrupt(store.entry(CONFIG) / name, kind)
    assert store.load(CONFIG) is None  # never loaded as valid
    state, record = store.load_or_train(CONFIG, train)
    assert train.calls == 2 and record["metrics"]["call"] == 2 and state["weight"][0, 0] == 2.0
    again = store.load(CONFIG)
    assert again is not None and again[1] == record


def test_a_record_edited_by_hand_is_detected(tmp_path):
    # Valid JSON, matching weights, but a metric changed: the record's own checksum catches it.
    store, train = Store(tmp_path), Counter()
    store.load_or_train(CONFIG, train)
    path = store.entry(CONFIG) / "record.json"
    record = json.loads(path.read_text())
    record["metrics"]["acc"] = 0.9
    path.write_text(json.dumps(record))
    assert store.load(CONFIG) is None


@pytest.mark.parametrize("checksum", ["record_sha256", "weights_sha256"])
def test_an_entry_without_either_checksum_is_rebuilt(tmp_path, checksum):
    store, train = Store(tmp_path), Counter()
    store.load_or_train(CONFIG, train)
    path = store.entry(CONFIG) / "record.json"
    record = json.loads(path.read_text())
    del record[checksum]
    path.write_text(json.dumps(record))
    assert store.load(CONFIG) is None
    store.load_or_train(CONFIG, train)
    assert train.calls == 2 and checksum in store.load(CONFIG)[1]


def test_a_record_that_is_not_an_object_reads_as_missing(tmp_path):
    store, train = Store(tmp_path), Counter()
    store.load_or_train(CONFIG, train)
    (store.entry(CONFIG) / "record.json").write_text("[1, 2, 3]")
    assert store.load(CONFIG) is None


def test_leftovers_of_a_killed_writer_are_cleaned(tmp_path):
    # A SIGKILL between mkstemp and os.replace leaves a temporary file; a half-finished
    # run leaves its checkpoint folder. The next writer under the lock removes both.
    store, train = Store(tmp_path), Counter()
    entry, partial = store.entry(CONFIG), store.partial(CONFIG)
    entry.mkdir(parents=True)
    (entry / ".model.pt.abc123.tmp").write_bytes(b"half a file")
    (entry / "model.pt").write_bytes(b"weights without a record")
    partial.mkdir()
    (partial / ".checkpoint.pt.xyz.tmp").write_bytes(b"half a checkpoint")
    assert store.load(CONFIG) is None
    store.load_or_train(CONFIG, train)
    assert train.calls == 1
    assert sorted(p.name for p in entry.iterdir()) == ["model.pt", "record.json"]
    assert not partial.exists()


def test_a_failed_run_keeps_its_checkpoints_for_the_next_try(tmp_path):
    store = Store(tmp_path)

    def fails_after_checkpointing():
        save_checked({"epoch": 3}, store.partial(CONFIG) / "checkpoint.pt")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        store.load_or_train(CONFIG, fails_after_checkpointing)
    assert load_checked(store.partial(CONFIG) / "checkpoint.pt") == {"epoch": 3}
    assert store.load(CONFIG) is None


@pytest.mark.parametrize("kind", ["truncated", "bit flip", "garbage", "empty"])
def test_checked_files_reject_damage(tmp_path, kind):
    path = tmp_path / "f.pt"
    save_checked({"x": torch.arange(1000.0)}, path)
    assert torch.equal(load_checked(path)["x"], torch.arange(1000.0))
    corrupt(path, kind)
    assert load_checked(path) is None
    assert load_checked(tmp_path / "missing.pt") is None


def test_record_digest_covers_every_field():
    record = {"config": CONFIG, "metrics": {"acc": 0.5}}
    digest = _record_digest(record)
    assert _record_digest({**record, "record_sha256": "anything"}) == digest
    assert _record_digest({**record, "metrics": {"acc": 0.50001}}) != digest


# ---------------------------------------------------------------------------------------
# Several processes, one store
# ---------------------------------------------------------------------------------------


def worker(root: str, ready_dir: str, expected: int, marker: str) -> None:
    """Wait until ``expected`` workers are ready, then all ask for the same entry. The
    compute function appends to ``marker``, so the test can count trainings."""
    ready = Path(ready_dir)
    (ready / str(os.getpid())).touch()
    deadline = time.monotonic() + TIMEOUT
    while len(list(ready.iterdir())) < int(expected):  # a start line for all workers
        if time.monotonic() > deadline:
            raise SystemExit("the other workers never started")
        time.sleep(0.01)

    def compute():
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        # Real work of a second or so, long enough that every worker asks meanwhile.
        g = torch.Generator().manual_seed(0)
        a = torch.randn(256, 256, generator=g)
        for _ in range(60):
            a = torch.tanh(a @ a.T / 16)
        return {"weight": a}, {"pid": os.getpid()}

    state, record = Store(root).load_or_train(CONFIG, compute)
    digest = hashlib.sha256(state["weight"].numpy().tobytes()).hexdigest()
    print(json.dumps({"record": record["record_sha256"], "weights": digest}), flush=True)


def run_workers(root: Path, tmp_path: Path, count: int) -> tuple[list[dict], list[str]]:
    ready, marker = tmp_path / "ready", tmp_path / "trained.txt"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, __file__, str(root), str(ready), str(count), str(marker)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(count)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    trainings = marker.read_text().split() if marker.exists() else []
    return results, trainings


def test_three_processes_train_one_model_once(tmp_path):
    root = tmp_path / "store"
    results, trainings = run_workers(root, tmp_path, count=3)
    assert len(trainings) == 1, f"trained {len(trainings)} times"
    assert len({r["record"] for r in results}) == 1 and len({r["weights"] for r in results}) == 1
    state, record = Store(root).load(CONFIG)
    assert record["metrics"]["pid"] == int(trainings[0])
    assert not list(root.rglob("*.tmp"))


def test_a_waiting_process_loads_what_the_lock_holder_wrote(tmp_path):
    # This process holds the key's lock and writes the entry; a second process started
    # meanwhile must wait for the lock and then load, never train.
    store = Store(tmp_path / "store")
    ready, marker = tmp_path / "ready", tmp_path / "trained.txt"
    ready.mkdir()
    with store.lock(CONFIG):
        proc = subprocess.Popen([sys.executable, __file__, str(store.root), str(ready), "1", str(marker)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + TIMEOUT
        while not list(ready.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None  # it cannot finish while the lock is held
        # Write the entry as the first trainer would, inside the lock.
        store._write(CONFIG, {"weight": torch.ones(3)}, {}, 0.0)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert not marker.exists(), "the waiting process trained although the entry was written"
    assert json.loads(out.strip().splitlines()[-1])["weights"] == hashlib.sha256(torch.ones(3).numpy().tobytes()).hexdigest()


if __name__ == "__main__":
    worker(*sys.argv[1:])
