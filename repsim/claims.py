"""The paper's claims, judged on this run's numbers.

Each ``*_claims`` function turns measured results into rows of (claim, verdict,
evidence). A verdict counts how many comparisons go the paper's way ("agrees (3 of 3)",
"agrees only in part (1 of 3)", "does not agree (0 of 3)"), or says that a difference
is within a stated tolerance ("too close to call"), or that the results it needs are
still pending. Nothing here is tuned to agree: the thresholds are stated beside each
claim, and the chapters print the evidence with the verdict (and glue the thresholds
from here, so that the prose states the rule the code applies).

``formatted`` is the book's one formatter of a number that may still be pending.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data import train_count

PENDING = "pending (not computed yet)"


def formatted(template: str, *values, missing: str = "pending") -> str:
    """``template.format(*values)``, or ``missing`` when any value is None (a result not
    computed yet): ``formatted("{:.0%}", 0.25) == "25%"``, ``formatted("{:.2f}", None) == "pending"``."""
    return missing if any(v is None for v in values) else template.format(*values)


def verdict(changes) -> str:
    """How a set of signed changes bears on a claim that each is positive, in words."""
    changes = [c for c in changes if np.isfinite(c)]
    if not changes:
        return PENDING
    agreeing = sum(change > 0 for change in changes)
    if agreeing == len(changes):
        return f"agrees ({agreeing} of {len(changes)})"
    if agreeing == 0:
        return f"does not agree (0 of {len(changes)})"
    return f"agrees only in part ({agreeing} of {len(changes)})"


def compare(claimed_larger: float, claimed_smaller: float, tolerance: float = 0.0) -> str:
    """Whether a claim "the first exceeds the second" holds, in words; differences
    within ``tolerance`` are too small to count either way."""
    if claimed_larger is None or claimed_smaller is None:
        return PENDING
    if not (np.isfinite(claimed_larger) and np.isfinite(claimed_smaller)):
        return "not measurable"
    difference = claimed_larger - claimed_smaller
    if difference > tolerance:
        return "agrees"
    if difference < -tolerance:
        return "does not agree"
    return "too close to call"


def row(claim: str, verdict_: str, evidence: str) -> dict:
    return {"claim": claim, "verdict": verdict_, "evidence": evidence}


def markdown(rows: Sequence[dict]) -> str:
    """The rows as a bullet list: "- claim: **verdict** (evidence)."."""
    return "\n".join(f"- {r['claim']}: **{r['verdict']}**" + (f" ({r['evidence']})." if r["evidence"] else ".")
                     for r in rows)


def _change(table, vary: str, within: str) -> list[float]:
    """For each value of ``within``: block fraction at the largest ``vary`` minus at the
    smallest (only groups with at least two values of ``vary``)."""
    changes = []
    for _, group in table.sort_values(vary).groupby(within):
        if group[vary].nunique() > 1:
            changes.append(group["block_fraction"].iloc[-1] - group["block_fraction"].iloc[0])
    return changes


def _list(values) -> str:
    return ", ".join(f"{v:+.2f}" for v in values) if len(values) else "no pairs harvested"


def block_claims(table, base_depth: int, seed: int, seed_architectures: Sequence, full_size: int | None) -> list[dict]:
    """Sec. 3 (chapter 3): wider / deeper / less data gives a larger block, also without
    residual connections; the block sits in the last two stages; it appears in every
    seed. ``table``: a DataFrame of ``heatmaps.block_summary`` rows (train_size as images)."""
    residual = table[table["residual"] & (table["seed"] == seed)]
    by_width = residual[residual["depth"] == base_depth]
    by_depth = residual[residual["width"] == 1]
    plain = table[~table["residual"]].sort_values("width")
    wider, deeper = _change(by_width, "width", "train_size"), _change(by_depth, "depth", "train_size")
    # Negated: positive when the smallest training set gives the larger block.
    less_w = [-c for c in _change(by_width, "train_size", "width")]
    less_d = [-c for c in _change(by_depth, "train_size", "depth")]
    with_block = residual[residual["block_layers"] > 0]
    late = int((with_block["block_stage"] >= 2).sum())
    rows = [
        row("Wider networks have a larger block (widest against narrowest, at each training-set size)",
            verdict(wider), f"change in block fraction {_list(wider)}"),
        row("Deeper networks have a larger block (deepest against shallowest, at each training-set size)",
            verdict(deeper), f"change in block fraction {_list(deeper)}"),
        row("Less data gives a larger block (smallest against largest training set, at each width)",
            verdict(less_w), f"change {_list(less_w)}"),
        row("Less data gives a larger block (smallest against largest training set, at each depth)",
            verdict(less_d), f"change {_list(less_d)}"),
        row("Without residual connections, the wider network still has the larger block",
            verdict([plain["block_fraction"].iloc[-1] - plain["block_fraction"].iloc[0]]) if len(plain) > 1 else PENDING,
            f"block fractions {', '.join(f'{v:.2f}' for v in plain['block_fraction'])} at widths "
            f"{', '.join(f'{w}x' for w in plain['width'])}" if len(plain) else "no models harvested"),
        row("The block starts in one of the last two stages",
            f"{late} of {len(with_block)} residual networks with a block" if len(with_block) else PENDING, ""),
    ]
    size = train_count(full_size)
    for config in seed_architectures:
        seeds = table[(table["depth"] == config.depth) & (table["width"] == config.width) & table["residual"]
                      & (table["train_size"] == size)]
        if seeds.empty:
            rows.append(row(f"Every seed of {config.name} has a block", PENDING, ""))
            continue
        present = int((seeds["block_layers"] > 0).sum())
        rows.append(row(f"Every seed of {config.name} has a block, at a position that varies",
                        verdict([1.0] * present + [-1.0] * (len(seeds) - present)),
                        f"{len(seeds)} seeds: the block spans {seeds['block_fraction'].min():.0%} to "
                        f"{seeds['block_fraction'].max():.0%} of the layers and starts at "
                        f"{', '.join(sorted(set(seeds['block_from'].fillna('no block'))))}"))
    return rows


def pc_claims(summary: dict) -> list[dict]:
    """Sec. 4's principal components (chapter 4), from ``analyses.chapter4_summary``."""
    s = summary
    return [
        row("PC1 explains more of the variance inside the block than in the model without a block",
            compare(s.get("variance_in_block"), s.get("variance_without_block"), 0.02),
            formatted("{:.2f} against {:.2f}", s.get("variance_in_block"), s.get("variance_without_block"))),
        row("Removing PC1 lowers the CKA between the block's layers",
            compare(s.get("cka_in_block"), s.get("cka_in_block_without_pc1"), 0.01),
            formatted("{:.3f} to {:.3f}", s.get("cka_in_block"), s.get("cka_in_block_without_pc1"))),
        row("Across models, PC1's variance explained goes with the block size (Spearman correlation above 0)",
            compare(s.get("d5_rho"), 0.0 if s.get("d5_rho") is not None else None, 0.1),
            formatted("rho = {:.2f} over {} models", s.get("d5_rho"), s.get("d5_models"))),
        row("Probe accuracy improves less per residual block inside the block than outside it",
            compare(s.get("gain_outside"), s.get("gain_inside"), 0.005), _gain_evidence(s)),
        row("Probe accuracy rises through the model without a block (last stage above the first)",
            compare(s.get("probe_last_stage"), s.get("probe_first_stage"), 0.0),
            formatted("{:.1%} in the last stage, {:.1%} in the first", s.get("probe_last_stage"), s.get("probe_first_stage"))),
        row("Deleting the end of the last stage costs the model with a block less than the one without",
            compare(s.get("drop_without_block"), s.get("drop_with_block"), 0.01),
            formatted("{:.1f} against {:.1f} percentage points", _points(s.get("drop_with_block")),
                     _points(s.get("drop_without_block")))),
    ]


def _gain_evidence(s: dict) -> str:
    inside, outside = s.get("gain_inside"), s.get("gain_outside")
    if inside is not None and not np.isfinite(inside):
        # gain_per_unit needs two consecutive residual-block outputs inside the block.
        return formatted("no two consecutive residual blocks end inside this model's block; "
                        "{:+.1f} percentage points per block outside it", _points(outside))
    return formatted("{:+.1f} against {:+.1f} percentage points per block", _points(inside), _points(outside))


def _points(fraction):
    return None if fraction is None else 100 * fraction


def seed_claims(seed_rows: Sequence[dict]) -> list[dict]:
    """Sec. 5 (chapter 5): inside a block, two seeds' representations are less alike
    than outside it. ``seed_rows``: dicts with model, inside_block, outside_block (NaN
    inside where a model has no block)."""
    rows = []
    for r in seed_rows:
        if r.get("inside_block") is None:
            rows.append(row(f"{r['model']}: the block is less similar across seeds than the rest", PENDING, ""))
        elif not np.isfinite(r["inside_block"]):
            rows.append(row(f"{r['model']}: the block is less similar across seeds than the rest",
                            "not tested (no block at this threshold)", ""))
        else:
            rows.append(row(f"{r['model']}: the block is less similar across seeds than the rest",
                            compare(r["outside_block"], r["inside_block"], 0.01),
                            f"cross-seed CKA {r['inside_block']:.3f} inside the block, {r['outside_block']:.3f} outside"))
    return rows


def prediction_claims(excess: dict | None, significant: int | None, expected: float, pair_z: Sequence[float]) -> list[dict]:
    """Sec. 6 (chapter 6): per-example and per-class differences between populations.
    ``excess``: ``prediction_stats.spread_excess``; ``significant``: classes passing Welch's
    test, ``expected``: how many chance alone would pass; ``pair_z``: z of each pair of
    Figs. F.1-F.3."""
    return [
        row("Wide and deep populations differ per example more than two populations of one architecture",
            compare(excess["excess"], 0.0, 2 * excess["standard_error"]) if excess else PENDING,
            f"excess {excess['excess']:.4f}, {excess['z']:.1f} standard errors; called only beyond 2" if excess else ""),
        row("More classes differ significantly than chance would give",
            compare(significant, expected, 0.0) if significant is not None else PENDING,
            f"{significant} against {expected:.1f} expected" if significant is not None else ""),
        row("Architectures that differ in depth, width or both get different examples right (Figs. F.1-F.3; "
            "spread more than 2 standard errors above zero)", verdict([z - 2 for z in pair_z]),
            f"{sum(z > 2 for z in pair_z)} of {len(pair_z)} pairs" if len(pair_z) else ""),
    ]


# -- chapter 7: the follow-up's findings (Nguyen, Raghu & Kornblith 2022) ------------------
EARLY = 0.25  # "early": within the first quarter of the SGD steps
STILL_CHANGING = 0.9  # the block's layers then have CKA below this with the final model's
CARRY = 5.0  # the top-k images carry at least 5 times their share (k/N) of PC1's variance
LEVEL = 0.05  # significance of the image statistic (Bonferroni-corrected)
DIFFERENT = 0.5  # top-k sets of two seeds "differ" when their Jaccard index is below this
HALVED = 0.5  # removing the dominant images leaves at most this share of the block measure
MARGIN = 0.05  # ... and at least this much less than removing as many random images


def origin_claims(formed: dict, dominant: dict, seeds: dict, removed: dict) -> list[dict]:
    """Chapter 7: one row per finding of the follow-up, from the summaries of
    ``repsim.origins`` (``formation``, ``dominance_summary``, ``seeds_summary`` and
    ``removal_summary``). A claim of two parts agrees "only in part" when one holds."""
    rows = []
    claim = "The block forms early in training, while its representation keeps changing"
    if formed["final_block"] is None:
        rows.append(row(claim, "pending", "the snapshots are not computed yet"))
    elif formed["final_block"] == 0:
        rows.append(row(claim, "not measurable", "the final model has no block at this threshold"))
    elif formed["step"] is None:
        rows.append(row(claim, "does not agree", "no snapshot keeps a block over the final block's layers to the end"))
    elif formed["step"] == 0:
        rows.append(row(claim, "not measurable", f"a block over the same layers is there at initialisation (it covers "
                         f"{formed['init_block']:.0%} of the layers, overlap {formed['init_overlap']:.2f} with the final "
                         f"block), so training does not create it"))
    else:
        rows.append(row(claim, _combine([formed["fraction_of_training"] <= EARLY, formed["to_final"] < STILL_CHANGING]),
                         f"formed by step {formed['step']:,} of {formed['total_steps']:,} "
                         f"({formed['fraction_of_training']:.0%}); the block's layers then have CKA "
                         f"{formed['to_final']:.2f} with the final model's; the block covers "
                         f"{formed['init_block']:.0%} of the layers at initialisation, {formed['final_block']:.0%} at the end"))
    claim = "A few dominant images, which share a simple image statistic, carry the block's first PC"
    if dominant["share"] is None:
        rows.append(row(claim, "pending", "the dominant images are not computed yet"))
    else:
        rows.append(row(claim, _combine([dominant["share"] >= CARRY * dominant["random_share"],
                                          dominant["p_bonferroni"] < LEVEL]),
                         f"the top {dominant['k']:,} of {dominant['n']:,} images carry {dominant['share']:.0%} of "
                         f"PC1's variance (k/N = {dominant['random_share']:.1%}); {dominant['statistic']}: "
                         f"d = {dominant['cohen_d']:+.2f}, p = {dominant['p_bonferroni']:.2g} (Bonferroni)"))
    claim = "Different seeds pick different dominant images"
    if seeds["jaccard"] is None:
        rows.append(row(claim, "pending", "fewer than two seeds are computed"))
    else:
        same = "the same" if seeds["same_statistic"] else "not the same"
        rows.append(row(claim, "agrees" if seeds["jaccard"] < DIFFERENT else "does not agree",
                         f"mean Jaccard index {seeds['jaccard']:.2f} over {seeds['pairs']} pair(s) of seeds, "
                         f"{seeds['chance_jaccard']:.3f} by chance (overlap p <= {seeds['max_p']:.2g}); "
                         f"the strongest statistic is {same} in every seed"))
    claim = "Removing the dominant images removes the block; removing as many random images does not"
    if removed["before"] is None:
        rows.append(row(claim, "pending", "the heatmaps without dominant images are not computed yet"))
    elif removed["before"] == 0:
        rows.append(row(claim, "not measurable", "the model has no block at this threshold"))
    else:
        rows.append(row(claim, _combine([removed["dominant"] <= removed["before"] * HALVED,
                                          removed["dominant"] < removed["random"] - MARGIN]),
                         f"block {removed['before']:.0%} of the layers; without the top {removed['k']:,} "
                         f"{removed['dominant']:.0%}, without {removed['k']:,} random images {removed['random']:.0%}"))
    return rows


def _combine(conditions: Sequence[bool]) -> str:
    """A claim of several parts, in words (without the counts of ``verdict``)."""
    held = sum(bool(c) for c in conditions)
    return "agrees" if held == len(conditions) else "does not agree" if held == 0 else "agrees only in part"
