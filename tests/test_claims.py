"""Verdicts against the paper: computed from this run's numbers, pending where missing."""

from __future__ import annotations

import pandas as pd
import pytest

from repsim import claims
from repsim.book import prose
from repsim.models import ResNetConfig


@pytest.mark.parametrize("changes,expected", [
    ([0.1, 0.2], "agrees (2 of 2)"),
    ([0.1, -0.2, 0.0], "agrees only in part (1 of 3)"),
    ([0.0, -0.1], "does not agree (0 of 2)"),  # no change is not agreement
    ([], claims.PENDING),
])
def test_verdict_counts_the_comparisons_that_go_the_claimed_way(changes, expected):
    assert claims.verdict(changes) == expected


@pytest.mark.parametrize("larger,smaller,tolerance,expected", [
    (0.5, 0.2, 0.0, "agrees"),
    (0.2, 0.5, 0.0, "does not agree"),
    (0.502, 0.5, 0.005, "too close to call"),
    (0.49, 0.5, 0.005, "does not agree"),
    (float("nan"), 0.5, 0.0, "not measurable"),
    (None, 0.5, 0.0, claims.PENDING),
])
def test_compare_states_the_claim_with_a_tolerance(larger, smaller, tolerance, expected):
    assert claims.compare(larger, smaller, tolerance) == expected


def _row(depth, width, size, fraction, residual=True, seed=0, start="stage3.block0.conv1"):
    return {"depth": depth, "width": width, "residual": residual, "classes": 10, "train_size": size, "seed": seed,
            "block_fraction": fraction, "block_layers": int(fraction * 100), "block_stage": 3 if fraction else None,
            "block_from": start if fraction else None}


def test_block_claims_count_each_comparison_and_name_what_is_pending():
    table = pd.DataFrame([
        _row(8, 1, 1000, 0.1), _row(8, 2, 1000, 0.3), _row(14, 1, 1000, 0.2),  # at 1,000 images
        _row(8, 1, 500, 0.2), _row(8, 2, 500, 0.2), _row(14, 1, 500, 0.5),  # at 500: wider is no larger
        _row(8, 1, 1000, 0.0, residual=False), _row(8, 2, 1000, 0.4, residual=False),
        _row(14, 1, 1000, 0.3, seed=1, start="stage2.block0.conv1"),
    ])
    rows = claims.block_claims(table, 8, 0, [ResNetConfig(14), ResNetConfig(8, 4)], 1000)
    verdicts = [r["verdict"] for r in rows]
    assert verdicts[:5] == ["agrees only in part (1 of 2)",  # wider: up at 1,000 images, level at 500
                            "agrees (2 of 2)",  # deeper
                            "agrees only in part (1 of 2)",  # less data, per width: 1x up, 2x down
                            "agrees (2 of 2)",  # less data, per depth
                            "agrees (1 of 1)"]  # no residual: 2x above 1x
    assert verdicts[5] == "6 of 6 residual networks with a block"
    assert rows[6]["claim"] == "Every seed of ResNet-14 (1x) has a block, at a position that varies"
    assert verdicts[6] == "agrees (2 of 2)" and "stage2.block0.conv1, stage3.block0.conv1" in rows[6]["evidence"]
    assert rows[7]["claim"] == "Every seed of ResNet-8 (4x) has a block" and verdicts[7] == claims.PENDING


def test_block_claims_from_nothing_harvested_are_all_pending():
    """The table of a paper-scale chapter before any window: every heatmap pending."""
    from repsim.heatmaps import block_table

    table = block_table([None, None], threshold=0.9)
    rows = claims.block_claims(table[table["classes"] == 10], 26, 0, [ResNetConfig(164)], None)
    assert len(rows) == 7 and all(r["verdict"] == claims.PENDING for r in rows)


def test_chapter_4_claims_wait_for_their_numbers():
    pending = claims.pc_claims({"d5_rho": None, "d5_models": 0})
    assert all(r["verdict"] == claims.PENDING for r in pending)
    done = claims.pc_claims({"variance_in_block": 0.6, "variance_without_block": 0.2, "cka_in_block": 0.95,
                             "cka_in_block_without_pc1": 0.5, "d5_rho": 0.7, "d5_models": 9, "gain_inside": 0.001,
                             "gain_outside": 0.02, "probe_first_stage": 0.3, "probe_last_stage": 0.6,
                             "drop_with_block": 0.01, "drop_without_block": 0.2})
    assert [r["verdict"] for r in done] == ["agrees"] * 6
    assert "60.0% in the last stage, 30.0% in the first" in done[4]["evidence"]


def test_a_block_too_short_for_a_probe_step_is_not_measurable_and_says_why():
    rows = claims.pc_claims({"gain_inside": float("nan"), "gain_outside": 0.009})
    assert rows[3]["verdict"] == "not measurable"
    assert rows[3]["evidence"] == ("no two consecutive residual blocks end inside this model's block; "
                                   "+0.9 percentage points per block outside it")
    assert "nan" not in prose.probe_gains("ResNet-14 (1x)", float("nan"), 0.009)
    assert "+0.9 percentage points per block" in prose.probe_gains("ResNet-14 (1x)", float("nan"), 0.009)
    assert prose.probe_gains("R", 0.001, 0.02) == ("In the R, the probe accuracy after the add changes by +0.1 percentage "
                                                   "points per residual block inside the block, against +2.0 per block "
                                                   "elsewhere in the network.")
    assert "pending" in prose.probe_gains("R", None, None)


def test_prediction_and_seed_claims():
    rows = claims.prediction_claims({"excess": 0.01, "standard_error": 0.001, "z": 10.0}, 3, 0.5, [3.0, 1.0])
    assert [r["verdict"] for r in rows] == ["agrees", "agrees", "agrees only in part (1 of 2)"]
    assert claims.prediction_claims(None, None, 0.5, [])[0]["verdict"] == claims.PENDING
    seeds = claims.seed_claims([{"model": "a", "inside_block": 0.4, "outside_block": 0.9},
                                {"model": "b", "inside_block": float("nan"), "outside_block": 0.9},
                                {"model": "c", "inside_block": None, "outside_block": None}])
    assert [r["verdict"] for r in seeds] == ["agrees", "not tested (no block at this threshold)", claims.PENDING]
    assert claims.markdown(rows[:1]).startswith("- Wide and deep populations differ per example")
