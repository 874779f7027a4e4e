"""Verdicts against the paper and its follow-up: computed from this run's numbers, pending
where missing; the book's one formatter of pending numbers, and chapter 7's prose."""

from __future__ import annotations

import pandas as pd
import pytest

from repsim import claims, origins
from repsim.book import prose
from repsim.models import ResNetConfig
from repsim.profiles import get_profile


@pytest.mark.parametrize("values,tolerance,expected", [
    ((0.10, 0.12, 0.11), 0.0, "agrees"),  # mean 0.11, standard error 0.006
    ((-0.10, -0.12, -0.11), 0.0, "does not agree"),
    ((0.30, -0.10, 0.10), 0.0, "too close to call"),  # mean 0.10, standard error 0.115
    ((0.03, 0.03, 0.03), 0.05, "too close to call"),  # no spread, but within the tolerance
    ((0.2, None, float("nan")), 0.0, "agrees"),  # one seed measured: its sign, and it says so
    ((None, None), 0.0, claims.PENDING),
    ((float("nan"),), 0.0, "not measurable"),
    ((), 0.0, claims.PENDING),
])
def test_a_difference_is_called_only_beyond_two_standard_errors_of_its_seeds(values, tolerance, expected):
    assert claims.called(values, tolerance).word == expected


def test_the_calling_margin_is_two_standard_errors():
    values = [0.0, 0.1, 0.2]  # mean 0.1, standard error 0.0577
    margin = claims.CALLED_AT * claims.called(values).standard_error
    assert claims.called(values).word == ("agrees" if 0.1 > margin else "too close to call") == "too close to call"
    assert claims.called([v + 0.02 for v in values]).word == "agrees"  # mean 0.12 > 0.115
    assert claims.called(values).evidence() == "+0.10 ± 0.06 (seeds +0.00, +0.10, +0.20)"
    assert claims.called([0.25]).evidence() == "+0.25 (one seed)"


@pytest.mark.parametrize("values,expected", [
    ([(0.1, 0.12, 0.11), (0.2, 0.21, 0.22)], "agrees (2 of 2)"),
    ([(0.1, 0.12, 0.11), (0.3, -0.1, 0.1), (-0.1, -0.12, -0.11)], "agrees only in part (1 of 3; 1 against, 1 too close to call)"),
    ([(-0.1, -0.12, -0.11), (0.3, -0.1, 0.1)], "does not agree (0 of 2; 1 too close to call)"),
    ([(-0.1, -0.12, -0.11)], "does not agree (0 of 1)"),
    ([(0.3, -0.1, 0.1)], "too close to call (1 of 1)"),
    ([(0.1,), (0.2,)], "agrees (2 of 2; one seed)"),
    ([], claims.PENDING),
])
def test_verdict_counts_the_comparisons_called_each_way(values, expected):
    assert claims.verdict([claims.called(v) for v in values]) == expected


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


def _seeds(depth, width, size, fractions, residual=True):
    return [_row(depth, width, size, f, residual, seed) for seed, f in enumerate(fractions)]


def test_block_claims_compare_seed_by_seed_and_call_beyond_the_spread():
    table = pd.DataFrame(
        _seeds(8, 1, 1000, (0.10, 0.12, 0.08)) + _seeds(8, 2, 1000, (0.30, 0.33, 0.29))  # wider: clearly larger
        + _seeds(14, 1, 1000, (0.20, 0.05, 0.40))  # deeper at 1,000: noisy, too close to call
        + _seeds(8, 1, 500, (0.20, 0.22, 0.21)) + _seeds(8, 2, 500, (0.10, 0.11, 0.12))  # wider at 500: smaller
        + _seeds(14, 1, 500, (0.50, 0.52, 0.49))
        + _seeds(8, 1, 1000, (0.0, 0.0, 0.1), residual=False) + _seeds(8, 2, 1000, (0.4, 0.5, 0.45), residual=False)
        + [_row(8, 4, 1000, 0.9, seed=3)]  # a seed outside the compared ones is left out
    )
    rows = claims.block_claims(table, 8, [0, 1, 2], [ResNetConfig(14), ResNetConfig(8, 4)], 1000)
    verdicts = [r["verdict"] for r in rows]
    assert verdicts[:5] == ["agrees only in part (1 of 2; 1 against)",  # wider: up at 1,000 images, down at 500
                            "agrees only in part (1 of 2; 1 too close to call)",  # deeper: 500 agrees, 1,000 noisy
                            "agrees only in part (1 of 2; 1 against)",  # less data, per width: 1x up, 2x down
                            "agrees (2 of 2)",  # less data, per depth (ResNet-14: +0.29 ± 0.11)
                            "agrees (1 of 1)"]  # no residual: 2x above 1x
    assert "1,000 images: +0.21 ± 0.00 (seeds +0.20, +0.21, +0.21)" in rows[0]["evidence"]
    assert verdicts[5] == "18 of 18 residual networks with a block (all seeds)"
    assert rows[6]["claim"] == "Every seed of ResNet-14 (1x) has a block, at a position that varies"
    assert verdicts[6] == "agrees (3 of 3)"
    assert rows[7]["claim"] == "Every seed of ResNet-8 (4x) has a block, at a position that varies"  # seed 3 of D.1
    one_seed = claims.block_claims(table, 8, [0], [], 1000)
    assert one_seed[0]["verdict"] == "agrees only in part (1 of 2; 1 against; one seed)"


def test_block_claims_from_nothing_harvested_are_all_pending():
    """The table of a paper-scale chapter before any window: every heatmap pending."""
    from repsim.heatmaps import block_table

    table = block_table([None, None], threshold=0.9)
    rows = claims.block_claims(table[table["classes"] == 10], 26, [0], [ResNetConfig(164)], None)
    assert len(rows) == 7 and all(r["verdict"] == claims.PENDING for r in rows)


SUMMARY = {"variance_in_block": 0.6, "variance_without_block": 0.2, "cka_in_block": 0.95,
           "cka_in_block_without_pc1": 0.5, "d5_rho": 0.7, "d5_models": 9, "gain_inside": 0.001,
           "gain_outside": 0.02, "probe_first_stage": 0.3, "probe_last_stage": 0.6,
           "drop_with_block": 0.01, "drop_without_block": 0.2}


def test_chapter_4_claims_wait_for_their_numbers_and_call_over_seeds():
    pending = claims.pc_claims([{"d5_rho": None, "d5_models": 0}])
    assert all(r["verdict"] == claims.PENDING for r in pending)
    seeds = [SUMMARY, {**SUMMARY, "variance_in_block": 0.62, "probe_last_stage": 0.62},
             {**SUMMARY, "variance_in_block": 0.58, "probe_last_stage": 0.58}]
    done = claims.pc_claims(seeds)
    assert [r["verdict"] for r in done] == ["agrees"] * 6
    assert "60.0% in the last stage, 30.0% in the first; difference +30.0 ± 1.2" in done[4]["evidence"]
    noisy = claims.pc_claims([SUMMARY, {**SUMMARY, "drop_without_block": -0.3}, {**SUMMARY, "drop_without_block": 0.1}])
    assert noisy[5]["verdict"] == "too close to call"  # drops +19, -31, +9 points: mean -1, within the spread
    assert "one seed" in claims.pc_claims([SUMMARY])[0]["evidence"]


def test_a_block_too_short_for_a_probe_step_is_not_measurable_and_says_why():
    rows = claims.pc_claims([{"gain_inside": float("nan"), "gain_outside": 0.009}])
    assert rows[3]["verdict"] == "not measurable"
    assert rows[3]["evidence"] == ("no two consecutive residual blocks end inside the block; "
                                   "+0.9 percentage points per block outside it")
    assert "nan" not in prose.probe_gains("ResNet-14 (1x)", float("nan"), 0.009)
    assert "+0.9 percentage points per block" in prose.probe_gains("ResNet-14 (1x)", float("nan"), 0.009)
    assert prose.probe_gains("R", 0.001, 0.02) == ("In the R, the probe accuracy after the add changes by +0.1 percentage "
                                                   "points per residual block inside the block, against +2.0 per block "
                                                   "elsewhere in the network.")
    assert "pending" in prose.probe_gains("R", None, None)


def test_prediction_and_seed_claims():
    rows = claims.prediction_claims({"excess": 0.01, "standard_error": 0.001, "z": 10.0}, 5, 10, 0.05, [3.0, 1.0])
    assert [r["verdict"] for r in rows] == ["agrees", "agrees", "agrees only in part (1 of 2; 1 too close to call)"]
    # 1 of 10 classes at level 0.05: 0.5 expected, standard error 0.69, so 1 is within 2 standard errors; 2 is not
    assert claims.prediction_claims(None, 1, 10, 0.05, [])[1]["verdict"] == "too close to call"
    assert claims.prediction_claims(None, 2, 10, 0.05, [])[1]["verdict"] == "agrees"
    assert claims.prediction_claims(None, None, 10, 0.05, [])[0]["verdict"] == claims.PENDING
    seeds = claims.seed_claims([{"model": "a", "inside_block": 0.4, "outside_block": 0.9},
                                {"model": "a", "inside_block": 0.5, "outside_block": 0.9},
                                {"model": "a", "inside_block": 0.45, "outside_block": 0.9},
                                {"model": "b", "inside_block": float("nan"), "outside_block": 0.9},
                                {"model": "c", "inside_block": None, "outside_block": None}])
    assert [r["verdict"] for r in seeds] == ["agrees", "not tested (no block at this threshold)", claims.PENDING]
    assert "+0.450 ± 0.029 (pairs +0.500, +0.400, +0.450) over 3 of 3 pairs" in seeds[0]["evidence"]
    assert claims.markdown(rows[:1]).startswith("- Wide and deep populations differ per example")


@pytest.mark.parametrize("template,values,expected", [
    ("{:.0%}", (0.25,), "25%"),
    ("{:,}", (12345,), "12,345"),
    ("{:+.2f}", (1.1,), "+1.10"),
    ("{}", ("brightness",), "brightness"),
    ("{:.2f} against {:.2f}", (0.6, 0.2), "0.60 against 0.20"),
    ("{:.2f}", (None,), "pending"),
    ("{:.2f} against {:.2f}", (0.6, None), "pending"),
])
def test_formatted_formats_or_says_pending(template, values, expected):
    assert claims.formatted(template, *values) == expected


def test_formatted_is_format_with_a_spec():
    # chapter 7 used format(value, spec) and chapters 2-6 template.format(value): the same strings
    for value, spec in ((0.0751, ".0%"), (0.05, ".2g"), (1234567, ","), (-0.3, "+.2f"), (2e-4, ".1e")):
        assert claims.formatted("{:" + spec + "}", value) == format(value, spec)
    assert claims.formatted("{:,}", None, missing="never") == "never"
    assert prose.points(None) == "pending" and prose.points(0.009) == "+0.9"


FORMED = {"step": 30, "total_steps": 400, "fraction_of_training": 0.075, "init_block": 0.0, "final_block": 0.5,
          "to_final": 0.6}
DOMINANT = {"k": 20, "n": 2048, "share": 0.4, "random_share": 20 / 2048, "statistic": "brightness", "cohen_d": 1.1,
            "p_bonferroni": 1e-4}
SEEDS = {"jaccard": 0.05, "chance_jaccard": 0.005, "pairs": 1, "max_p": 1e-3, "same_statistic": True,
         "overlaps": [{"jaccard": 0.05}]}
REMOVED = {"k": 200, "before": 0.5, "dominant": 0.1, "random": 0.48}


def _words(rows):
    """Verdicts without the note that they rest on one seed."""
    return [r["verdict"].removesuffix(" (one seed)") for r in rows]


def test_origin_claims_one_row_per_finding():
    rows = claims.origin_claims([FORMED], [DOMINANT], SEEDS, [REMOVED])
    assert _words(rows) == ["agrees"] * 4
    assert [set(r) for r in rows] == [{"claim", "verdict", "evidence"}] * 4
    assert "step 30 of 400 (8% of training" in rows[0]["evidence"] and "0.05" in rows[2]["evidence"]
    late = claims.origin_claims([{**FORMED, "fraction_of_training": 0.6}], [{**DOMINANT, "p_bonferroni": 0.3}],
                                {**SEEDS, "overlaps": [{"jaccard": 0.8}]}, [{**REMOVED, "dominant": 0.45}])
    assert _words(late) == ["agrees only in part", "agrees only in part", "does not agree",
                                            "does not agree"]
    none = claims.origin_claims([origins.formation(None, 0.9)], [origins.dominance_summary(None, None, 20)],
                                origins.seeds_summary([None, None], None, 20), [origins.removal_summary(None, 0.9)])
    assert _words(none) == ["pending"] * 4
    flat = claims.origin_claims([{**FORMED, "final_block": 0.0}], [DOMINANT], SEEDS, [{**REMOVED, "before": 0.0}])
    assert flat[0]["verdict"] == flat[3]["verdict"] == "not measurable"
    at_init = claims.origin_claims([{**FORMED, "step": 0, "init_block": 0.9, "init_overlap": 0.55}], [DOMINANT], SEEDS,
                                   [REMOVED])
    assert at_init[0]["verdict"] == "not measurable" and "at initialisation" in at_init[0]["evidence"]


def test_origin_claims_call_each_part_over_the_seeds():
    spread = [{**FORMED, "fraction_of_training": f} for f in (0.05, 0.6, 0.1)]  # early margin +0.2, -0.35, +0.15
    assert claims.origin_claims(spread, [DOMINANT], SEEDS, [REMOVED])[0]["verdict"].removesuffix(" (one seed)") == "too close to call"
    never = [FORMED, {**FORMED, "step": None}]  # a seed whose block never takes shape counts as formed at the end
    assert "step 30 of 400, never" in claims.origin_claims(never, [DOMINANT], SEEDS, [REMOVED])[0]["evidence"]
    some = [DOMINANT, {**DOMINANT, "p_bonferroni": 0.3}, DOMINANT]  # the statistic holds in 2 of 3 seeds
    row = claims.origin_claims([FORMED], some, SEEDS, [REMOVED])[1]
    assert row["verdict"] == "too close to call" and "in 2 of 3 seeds" in row["evidence"]
    assert claims.origin_claims([FORMED], [DOMINANT], SEEDS, [REMOVED])[0]["verdict"] == "agrees (one seed)"
    pairs = {**SEEDS, "pairs": 3, "overlaps": [{"jaccard": j} for j in (0.1, 0.05, 0.12)]}
    assert claims.origin_claims([FORMED], [DOMINANT], pairs, [REMOVED])[2]["verdict"].removesuffix(" (one seed)") == "agrees"


def test_origin_claims_apply_their_thresholds_at_the_boundary():
    # At a threshold the margin is zero: too close to call, never agreement.
    early = claims.origin_claims([{**FORMED, "fraction_of_training": claims.EARLY}], [DOMINANT], SEEDS, [REMOVED])
    assert early[0]["verdict"].removesuffix(" (one seed)") == "too close to call"
    changed = claims.origin_claims([{**FORMED, "to_final": claims.STILL_CHANGING}], [DOMINANT], SEEDS, [REMOVED])
    assert changed[0]["verdict"].removesuffix(" (one seed)") == "too close to call"
    carried = {**DOMINANT, "share": claims.CARRY * DOMINANT["random_share"]}
    assert claims.origin_claims([FORMED], [carried], SEEDS, [REMOVED])[1]["verdict"].removesuffix(" (one seed)") == "too close to call"
    level = {**DOMINANT, "p_bonferroni": claims.LEVEL}
    assert claims.origin_claims([FORMED], [level], SEEDS, [REMOVED])[1]["verdict"].removesuffix(" (one seed)") == "agrees only in part"
    at = {**SEEDS, "overlaps": [{"jaccard": claims.DIFFERENT}]}
    assert claims.origin_claims([FORMED], [DOMINANT], at, [REMOVED])[2]["verdict"].removesuffix(" (one seed)") == "too close to call"
    halved = {**REMOVED, "dominant": REMOVED["before"] * claims.HALVED}
    assert claims.origin_claims([FORMED], [DOMINANT], SEEDS, [halved])[3]["verdict"].removesuffix(" (one seed)") == "too close to call"
    close = {**REMOVED, "dominant": 0.2, "random": 0.2 + claims.MARGIN / 2}
    assert claims.origin_claims([FORMED], [DOMINANT], SEEDS, [close])[3]["verdict"].removesuffix(" (one seed)") == "agrees only in part"


def test_chapter_7_prose_quotes_the_summaries_and_the_rules_of_the_claims():
    profile = get_profile("smoke")
    runs = profile.followed_runs()
    values = prose.chapter7(profile, runs, None, FORMED, {**DOMINANT, "variance": 0.3, "chosen": 0.7, "others": 0.4},
                            {**SEEDS, "overlap": 1.0, "chance_overlap": 0.2}, {**REMOVED, "cka_before": 0.9,
                            "cka_dominant": 0.4, "cka_random": 0.88}, 3, threshold=0.9, formed_overlap=0.5)
    assert values["formed_step"] == "30" and values["total_steps"] == "400" and values["formed_fraction"] == "8%"
    assert values["top_share"] == "40%" and values["random_share"] == "1.0%" and values["stat_d"] == "+1.10"
    assert values["n_images"] == "2,048" and values["stat_p"] == "0.0001" and values["same_statistic"] == "the same"
    assert values["block_dominant"] == "10%" and values["cka_random"] == "0.88" and values["seed_count"] == 3
    assert values["reproduces"] == "pending" and values["with_model"] == runs[0].label
    # the rules stated on the page are the ones origin_claims applies
    assert (values["early"], values["still_changing"], values["carry"], values["level"], values["different"],
            values["halved"], values["margin"]) == (f"{claims.EARLY:.0%}", str(claims.STILL_CHANGING),
                                                     f"{claims.CARRY:g}", str(claims.LEVEL), str(claims.DIFFERENT),
                                                     f"{claims.HALVED:.0%}", str(claims.MARGIN))
    pending = prose.chapter7(profile, runs, None, origins.formation(None, 0.9), origins.dominance_summary(None, None, 8),
                             origins.seeds_summary([None], None, 8), origins.removal_summary(None, 0.9), 2, 0.9, 0.5)
    quoted = {k: v for k, v in pending.items() if k not in ("early", "still_changing", "carry", "level", "different",
                                                            "halved", "margin", "threshold", "formed_overlap",
                                                            "max_layers", "seed_count")}
    assert {k for k, v in quoted.items() if v == "pending"} == {
        "reproduces", "formed_step", "total_steps", "formed_fraction", "top_share", "random_share", "block_variance",
        "statistic", "stat_chosen", "stat_others", "stat_d", "stat_p", "jaccard", "chance_jaccard", "overlap",
        "chance_overlap", "overlap_p", "same_statistic", "block_before", "block_dominant", "block_random",
        "cka_before", "cka_dominant", "cka_random"}
    assert pending["n_images"] == f"{profile.cka.examples:,}"  # the images it will use


def test_formation_table_one_block_of_rows_per_model():
    runs = get_profile("smoke").followed_runs()
    formed = {**FORMED, "init_overlap": 0.0, "init_to_final": 0.25, "init_acc": 0.1, "init_pc1": 0.2, "block": 0.4,
              "overlap": 0.8, "test_acc": 0.3, "final_acc": 0.55, "pc1": 0.5, "final_pc1": 0.61}
    never = {**formed, "step": None, "fraction_of_training": None, "block": None, "overlap": None, "to_final": None,
             "test_acc": None, "pc1": None}
    table = prose.formation_table([formed, never], runs)
    assert list(table.columns) == list(prose.FORMATION_COLUMNS) and table.index.names == ["model", "measure"]
    first = table.loc[runs[0].label]
    assert list(first.loc["SGD step"]) == ["0", "30", "-"]
    assert list(first.loc["block measure"]) == ["0%", "40%", "50%"]
    assert list(first.loc["CKA with the final model"]) == ["0.25", "0.60", "-"]
    assert list(first.loc["PC1 share, last two stages"]) == ["0.20", "0.50", "0.61 (last step)"]
    assert list(first.loc["test accuracy"]) == ["10%", "30%", "55%"]
    second = table.loc[runs[1].label]
    assert second.loc["SGD step", "block taken shape"] == "never" and second.loc["overlap with the final block",
                                                                                  "block taken shape"] == "-"
    pending = prose.formation_table([origins.formation(None, 0.9)], runs[:1])
    assert (pending.to_numpy() == "pending").all()


def test_pending_note_shows_nothing_when_nothing_is_pending():
    assert prose.pending_note("Fig. 7.1", [1, 2]) is None  # a cell ending with it displays nothing
    note = prose.pending_note("Fig. 7.1", [1, None])
    assert note.text == repr(note) == note._repr_markdown_() == "Fig. 7.1: 1 of 2 models harvested, 1 pending."


def test_regime_names_how_well_the_models_fit_and_their_fewest_weights_per_image():
    from types import SimpleNamespace

    from repsim.runs import Run

    table = pd.DataFrame({"train_acc": [0.95, 0.999], "test_acc": [0.31, 0.45]})
    maps = [SimpleNamespace(run=Run(ResNetConfig(14), 500)), SimpleNamespace(run=Run(ResNetConfig(14, 4), 250))]
    values = prose.regime(table, maps)
    assert (values["train_min"], values["train_max"], values["test_min"], values["test_max"]) == (
        "95.0%", "99.9%", "31.0%", "45.0%")
    assert values["min_ratio"] == "351" and values["paper_min_ratio"] == "5"  # ResNet-20 on all 50,000 images
    assert prose.weights_per_image(ResNetConfig(14, 4), 250) == pytest.approx(11_116.6, abs=0.1)
    assert prose.regime(table.iloc[:0], [])["train_min"] == "pending"
