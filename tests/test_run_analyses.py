"""Sec. 4 analyses of a run: computed once, then read back from the store."""

from __future__ import annotations

import numpy as np

from repsim import run_analyses
from repsim.files import config_key
from repsim.models import ResNetConfig
from repsim.runs import Run
from repsim.store import Store

RUN = Run(ResNetConfig(depth=8), train_size=64)


def _keys(*configs) -> list[str]:
    return sorted(config_key(config) for config in configs)


def _read_back_only(access_log, *configs) -> None:
    """Since ``access_log.clear()``: nothing computed, and each of ``configs`` read from the store."""
    assert access_log("computed") == [], "recomputed instead of loading from the store"
    assert sorted(entry["key"] for entry in access_log("store")) == _keys(*configs)


def test_first_pcs_is_cached_and_consistent(tmp_path, tiny_data, tiny_profile, access_log):
    store = Store(tmp_path)
    full = run_analyses.first_pcs(RUN, tiny_profile, tiny_data, without_pc1=True, store=store)
    n = len(full.layers)
    assert full.pc_similarity.shape == full.cka_without_pc1.shape == (n, n)
    assert ((0 <= full.variance_explained) & (full.variance_explained <= 1 + 1e-9)).all()
    np.testing.assert_allclose(np.diag(full.pc_similarity), 1.0, atol=1e-9)
    late = run_analyses.first_pcs(RUN, tiny_profile, tiny_data, late_block_outputs=True, store=store)
    assert late.layers == ["stage2.block0.relu2", "stage3.block0.relu2"] and late.cka_without_pc1 is None
    picked = [full.layers.index(name) for name in late.layers]
    np.testing.assert_allclose(late.variance_explained, full.variance_explained[picked], rtol=1e-4)
    full_key = run_analyses.first_pcs_key(RUN, tiny_profile, tiny_data, without_pc1=True)
    late_key = run_analyses.first_pcs_key(RUN, tiny_profile, tiny_data, late_block_outputs=True)
    # The model trained once, each analysis computed once.
    assert sorted(entry["key"] for entry in access_log("computed")) == \
        _keys(full_key, late_key, RUN.key(tiny_profile, tiny_data))
    access_log.clear()
    again = run_analyses.first_pcs(RUN, tiny_profile, tiny_data, without_pc1=True, store=store)
    _read_back_only(access_log, full_key)
    np.testing.assert_array_equal(again.cka_without_pc1, full.cka_without_pc1)


def test_probe_and_deletion_rows_are_cached(tmp_path, tiny_data, tiny_profile, access_log):
    store = Store(tmp_path)
    probes = run_analyses.probe_accuracy(RUN, tiny_profile, tiny_data, store=store)
    assert [row["layer"] for row in probes] == ["stage1.block0.bn2", "stage1.block0.add", "stage2.block0.bn2",
                                                "stage2.block0.add", "stage3.block0.bn2", "stage3.block0.add"]
    deletion = run_analyses.deletion_accuracy(RUN, tiny_profile, tiny_data, store=store)
    assert [(row["stage"], row["deleted"]) for row in deletion] == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    assert len({row["test_acc"] for row in deletion if row["deleted"] == 0}) == 1  # one intact model
    keys = (run_analyses.probe_accuracy_key(RUN, tiny_profile, tiny_data),
            run_analyses.deletion_accuracy_key(RUN, tiny_profile, tiny_data))
    assert sorted(entry["key"] for entry in access_log("computed")) == _keys(*keys, RUN.key(tiny_profile, tiny_data))
    access_log.clear()
    assert run_analyses.probe_accuracy(RUN, tiny_profile, tiny_data, store=store) == probes
    assert run_analyses.deletion_accuracy(RUN, tiny_profile, tiny_data, store=store) == deletion
    _read_back_only(access_log, *keys)


def test_cross_cka_is_cached_and_compares_two_runs(tmp_path, tiny_data, tiny_profile, access_log):
    store = Store(tmp_path)
    other = Run(ResNetConfig(depth=8, width=2), train_size=64, seed=1)
    result = run_analyses.cross_cka(RUN, other, tiny_profile, tiny_data, store=store)
    assert result.cka.shape == (len(result.layers), len(result.other_layers)) and np.isfinite(result.cka).all()
    same = run_analyses.cross_cka(RUN, RUN, tiny_profile, tiny_data, store=store)
    np.testing.assert_allclose(np.diag(same.cka), 1.0, atol=1e-9)  # a model against itself
    key = run_analyses.cross_cka_key(RUN, other, tiny_profile, tiny_data)
    assert sorted(entry["key"] for entry in access_log("computed")) == _keys(
        key, run_analyses.cross_cka_key(RUN, RUN, tiny_profile, tiny_data), RUN.key(tiny_profile, tiny_data),
        other.key(tiny_profile, tiny_data))  # each model trained once, for both comparisons
    access_log.clear()
    again = run_analyses.cross_cka(RUN, other, tiny_profile, tiny_data, store=store)
    _read_back_only(access_log, key)
    np.testing.assert_array_equal(again.cka, result.cka)
