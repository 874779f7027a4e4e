"""The runner's count of where a chapter's results came from, read from the store's
access log."""

from __future__ import annotations

import json

import pytest
import torch

from repsim.book.coverage import read_access_log
from repsim.store import PendingResult, Store


def line(key: str, source: str, analysis: str = "within-model linear CKA", device: str | None = "NVIDIA H200") -> str:
    return json.dumps({"key": key, "analysis": analysis, "source": source, "device": device}) + "\n"


def test_each_entry_counts_once_by_its_first_lookup(tmp_path):
    log = tmp_path / "access.jsonl"
    log.write_text(
        line("m1", "computed", "trained model", "AMD EPYC")
        + line("m1", "store", "trained model", "AMD EPYC")  # read again after training: still computed
        + line("m2", "store", "trained model", "AMD EPYC")
        + line("a1", "results") + line("a2", "results") + line("a2", "results")
        + line("a3", "results", device="NVIDIA A100")
        + line("a4", "pending", device=None) + line("a5", "computed", device="AMD EPYC")
        + '{"key": "a6", "analy')  # a kernel killed mid-write
    coverage = read_access_log(log)
    assert coverage.models == {"computed": 1, "store": 1, "results": 0, "pending": 0}
    assert coverage.analyses == {"computed": 1, "store": 0, "results": 3, "pending": 1}
    assert coverage.devices == {"computed": ["AMD EPYC"], "store": ["AMD EPYC"], "results": ["NVIDIA A100", "NVIDIA H200"]}
    assert coverage.metadata() == {
        "computed": 2, "store": 1, "results": 3, "pending": 1,
        "models": {"computed": 1, "store": 1, "results": 0, "pending": 0},
        "devices": {"computed": ["AMD EPYC"], "store": ["AMD EPYC"], "results": ["NVIDIA A100", "NVIDIA H200"]},
    }


def test_no_log_means_nothing_was_looked_up(tmp_path):
    coverage = read_access_log(tmp_path / "absent.jsonl")
    assert all(coverage.count(source) == 0 for source in ("computed", "store", "results", "pending"))


def test_an_unknown_source_is_an_error_not_a_silent_miscount(tmp_path):
    log = tmp_path / "access.jsonl"
    log.write_text(line("a1", "cache"))
    with pytest.raises(ValueError, match="unknown source 'cache'"):
        read_access_log(log)


def test_the_stores_own_log_reads_back(tmp_path, monkeypatch):
    log = tmp_path / "access.jsonl"
    monkeypatch.setenv("REPSIM_ACCESS_LOG", str(log))
    store = Store(tmp_path / "store")
    compute = lambda: ({"x": torch.ones(1)}, {})  # noqa: E731
    store.load_or_train({"analysis": "a sum", "seed": 0}, compute)
    store.load_or_train({"analysis": "a sum", "seed": 0}, compute)
    store.load_or_train({"seed": 1}, compute)  # a "model": no analysis
    with pytest.raises(PendingResult):
        Store(tmp_path / "store", compute=False).load_or_train({"analysis": "a sum", "seed": 2}, compute)
    coverage = read_access_log(log)
    assert coverage.analyses == {"computed": 1, "store": 0, "results": 0, "pending": 1}
    assert coverage.models == {"computed": 1, "store": 0, "results": 0, "pending": 0}
