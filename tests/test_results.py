"""Committed results: compact entries, checksummed, served by key behind the store."""

from __future__ import annotations

import json

import pytest
import torch

from repsim.files import config_key
from repsim.results import ResultsArchive, pack_entry, read_manifest, sha256, unpack_entry, write_manifest
from repsim.store import PendingResult, Store


def _entry(config: dict, state: dict, record: dict, folder, exact: bool = False) -> None:
    data = pack_entry(config, state, record, exact=exact)
    key = config_key(config)
    (folder / "entries").mkdir(parents=True, exist_ok=True)
    (folder / "entries" / f"{key}.pt.gz").write_bytes(data)
    manifest = read_manifest(folder)
    manifest["entries"][key] = {"name": "heatmap: test", "file": f"entries/{key}.pt.gz", "sha256": sha256(data),
                                "bytes": len(data), "device": "NVIDIA H200", "bundle": "b1"}
    write_manifest(folder, manifest)


def test_packing_is_compact_and_restores_dtypes():
    g = torch.Generator().manual_seed(0)
    cka = torch.rand(300, 300, generator=g, dtype=torch.float64)
    state = {"cka": cka, "predictions": torch.randint(0, 10, (1000,), generator=g), "small": torch.tensor([0.123456789], dtype=torch.float64)}
    config, record = {"analysis": "x", "seed": 1}, {"metrics": {"layers": ["a", "b"]}}
    packed = pack_entry(config, state, record)
    assert len(packed) < cka.numel() * 2 + 2000  # float16, not float64 (2.4 MB)
    config_back, state_back, record_back = unpack_entry(packed)
    assert config_back == config and record_back == record
    assert state_back["cka"].dtype == torch.float64 and state_back["predictions"].dtype == torch.int64
    assert (state_back["cka"] - cka).abs().max() < 5e-4  # float16 rounding of values in [0, 1]
    assert torch.equal(state_back["predictions"], state["predictions"])
    assert state_back["small"].item() == pytest.approx(0.123456789, abs=1e-12)  # small tensors stay exact
    exact = unpack_entry(pack_entry(config, {"w": cka}, record, exact=True))[1]["w"]
    assert torch.equal(exact, cka)  # weights come back bit for bit
    with pytest.raises(ValueError, match="not a repsim result entry"):
        unpack_entry(b"garbage")


def test_the_store_serves_committed_results_and_refuses_to_compute_when_told(tmp_path):
    results = tmp_path / "results"
    config = {"analysis": "within-model linear CKA", "seed": 0, "ResNetConfig": {"depth": 20, "width": 1}}
    _entry(config, {"cka": torch.eye(3, dtype=torch.float64)}, {"metrics": {"test_acc": 0.9}}, results / "paper")
    store = Store(tmp_path / "store", compute=False, results=ResultsArchive(results))
    state, record = store.load_or_train(config, lambda: pytest.fail("computed a committed result"))
    assert torch.equal(state["cka"], torch.eye(3, dtype=torch.float64))
    assert record["source"]["device"] == "NVIDIA H200" and record["metrics"]["test_acc"] == 0.9
    with pytest.raises(PendingResult, match="not computed yet"):
        store.load_or_train({**config, "seed": 1}, lambda: pytest.fail("computed although told not to"))
    computing = Store(tmp_path / "store", compute=True, results=ResultsArchive(results))
    assert computing.load_or_train({**config, "seed": 1}, lambda: ({"x": torch.ones(1)}, {}))[0]["x"].item() == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "other key"])
def test_a_damaged_or_mismatched_entry_reads_as_missing(tmp_path, damage):
    results = tmp_path / "results"
    config = {"analysis": "a", "seed": 0}
    _entry(config, {"v": torch.arange(400.0)}, {}, results / "smoke")
    path = next((results / "smoke" / "entries").iterdir())
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:  # a valid entry of another configuration filed under this key
        other = pack_entry({"analysis": "b"}, {"v": torch.zeros(1)}, {})
        path.write_bytes(other)
        manifest = json.loads((results / "smoke" / "manifest.json").read_text())
        manifest["entries"][config_key(config)]["sha256"] = sha256(other)
        (results / "smoke" / "manifest.json").write_text(json.dumps(manifest))
    assert ResultsArchive(results).load(config) is None


def test_an_unreadable_manifest_is_an_error_naming_it(tmp_path):
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json is not valid JSON"):
        ResultsArchive(tmp_path).index()
