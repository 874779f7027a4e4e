"""The paper's claims, judged on this run's numbers.

Each ``*_claims`` function turns measured results into rows of (claim, verdict,
evidence). A verdict counts how many comparisons go the paper's way ("agrees (3 of 3)",
"agrees only in part (1 of 3)", "does not agree (0 of 3)"), or says that a difference
is within a stated tolerance ("too close to call"), or that the results it needs are
still pending. Nothing here is tuned to agree: the thresholds are stated beside each
claim, and the chapters print the evidence with the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data import train_count

PENDING = "pending (not computed yet)"


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
            _numbers("{:.2f} against {:.2f}", s.get("variance_in_block"), s.get("variance_without_block"))),
        row("Removing PC1 lowers the CKA between the block's layers",
            compare(s.get("cka_in_block"), s.get("cka_in_block_without_pc1"), 0.01),
            _numbers("{:.3f} to {:.3f}", s.get("cka_in_block"), s.get("cka_in_block_without_pc1"))),
        row("Across models, PC1's variance explained goes with the block size (Spearman correlation above 0)",
            compare(s.get("d5_rho"), 0.0 if s.get("d5_rho") is not None else None, 0.1),
            _numbers("rho = {:.2f} over {} models", s.get("d5_rho"), s.get("d5_models"))),
        row("Probe accuracy improves less per residual block inside the block than outside it",
            compare(s.get("gain_outside"), s.get("gain_inside"), 0.005), _gain_evidence(s)),
        row("Probe accuracy rises through the model without a block (last stage above the first)",
            compare(s.get("probe_last_stage"), s.get("probe_first_stage"), 0.0),
            _numbers("{:.1%} in the last stage, {:.1%} in the first", s.get("probe_last_stage"), s.get("probe_first_stage"))),
        row("Deleting the end of the last stage costs the model with a block less than the one without",
            compare(s.get("drop_without_block"), s.get("drop_with_block"), 0.01),
            _numbers("{:.1f} against {:.1f} percentage points", _points(s.get("drop_with_block")),
                     _points(s.get("drop_without_block")))),
    ]


def _gain_evidence(s: dict) -> str:
    inside, outside = s.get("gain_inside"), s.get("gain_outside")
    if inside is not None and not np.isfinite(inside):
        # gain_per_block needs two consecutive residual-block outputs inside the block.
        return _numbers("no two consecutive residual blocks end inside this model's block; "
                        "{:+.1f} percentage points per block outside it", _points(outside))
    return _numbers("{:+.1f} against {:+.1f} percentage points per block", _points(inside), _points(outside))


def _points(fraction):
    return None if fraction is None else 100 * fraction


def _numbers(template: str, *values) -> str:
    return template.format(*values) if all(v is not None for v in values) else "pending"


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
    ``excess``: ``populations.spread_excess``; ``significant``: classes passing Welch's
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
