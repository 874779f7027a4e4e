"""The paper's claims, judged on this run's numbers.

Each ``*_claims`` function turns measured results into rows of (claim, verdict,
evidence). Every comparison is made seed by seed and called only beyond the spread
between the seeds (``Called``: the mean difference must lie more than ``CALLED_AT``
standard errors, and a stated tolerance, from zero; otherwise it is "too close to
call"), so that a verdict survives a re-run with other seeds or on another machine; a
comparison that rests on one seed says so. A verdict counts how many comparisons go the
paper's way ("agrees (3 of 3)", "agrees only in part (1 of 3; 2 against)", "does not
agree (0 of 3)"), or says that the results it needs are still pending. Nothing here is
tuned to agree: the thresholds are stated beside each claim, and the chapters print the
evidence, each seed's value included, with the verdict (and glue the thresholds from
here, so that the prose states the rule the code applies).

``formatted`` is the book's one formatter of a number that may still be pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import train_count

PENDING = "pending (not computed yet)"


def formatted(template: str, *values, missing: str = "pending") -> str:
    """``template.format(*values)``, or ``missing`` when any value is None (a result not
    computed yet): ``formatted("{:.0%}", 0.25) == "25%"``, ``formatted("{:.2f}", None) == "pending"``."""
    return missing if any(v is None for v in values) else template.format(*values)


CALLED_AT = 2.0  # a mean difference is called only beyond this many standard errors of its seeds


@dataclass(frozen=True)
class Called:
    """A claim that a difference is positive, measured once per seed (or pair of seeds).

    The difference is called only beyond the spread between seeds: its mean must exceed
    ``CALLED_AT`` standard errors (and ``tolerance``, a size too small to matter) to
    "agree", fall below minus that to "not agree", and is "too close to call" between.
    One seed has no spread: its sign is called, and ``word`` says it rests on one seed.
    """

    values: tuple[float, ...]  # one difference per seed; None or NaN: not measurable there
    tolerance: float = 0.0

    @property
    def finite(self) -> list[float]:
        return [float(v) for v in self.values if v is not None and np.isfinite(v)]

    @property
    def mean(self) -> float:
        return float(np.mean(self.finite)) if self.finite else float("nan")

    @property
    def standard_error(self) -> float:
        values = self.finite
        return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")

    @property
    def word(self) -> str:
        """"agrees", "does not agree", "too close to call", "not measurable" or pending."""
        if not self.values or all(v is None for v in self.values):
            return PENDING
        values = self.finite
        if not values:
            return "not measurable"
        margin = max(self.tolerance, CALLED_AT * self.standard_error if len(values) > 1 else 0.0)
        if self.mean > margin:
            return "agrees"
        if self.mean < -margin:
            return "does not agree"
        return "too close to call"

    @property
    def verdict(self) -> str:
        """``word``, with "(one seed)" when it rests on a single seed and no spread."""
        return f"{self.word} (one seed)" if len(self.finite) == 1 else self.word

    def evidence(self, spec: str = "+.2f", unit: str = "seeds") -> str:
        """"+0.12 ± 0.03 (seeds +0.10, +0.15, +0.11)": the mean, its standard error and
        every seed's value; "+0.12 (one seed)" without a spread."""
        values = self.finite
        if not values:
            return "no seeds measured"
        each = ", ".join(format(v, spec) for v in values)
        if len(values) == 1:
            return f"{each} (one seed)"
        return f"{format(self.mean, spec)} ± {format(self.standard_error, spec.lstrip('+'))} ({unit} {each})"


def called(values, tolerance: float = 0.0) -> Called:
    return Called(tuple(values), tolerance)


def verdict(calls: Sequence[Called]) -> str:
    """How several comparisons, each called over its seeds, bear on one claim, in words:
    "agrees (2 of 2)", "does not agree (0 of 2)", "too close to call (2 of 2)", or
    "agrees only in part (1 of 3; 1 against, 1 too close to call)"; "one seed" is added
    when a comparison rests on a single seed."""
    words = [c.word for c in calls if c.word not in (PENDING, "not measurable")]
    if not words:
        return PENDING if all(c.word == PENDING for c in calls) else "not measurable"
    return tally_words(words, any(len(c.finite) == 1 for c in calls))


def tally_words(words: Sequence[str], one_seed: bool = False) -> str:
    """``verdict`` of comparisons already called: "agrees", "does not agree" or "too
    close to call" each."""
    n, agree, against = len(words), words.count("agrees"), words.count("does not agree")
    close = n - agree - against
    single = "; one seed" if one_seed else ""
    if agree == n:
        return f"agrees ({n} of {n}{single})"
    if against == n:
        return f"does not agree (0 of {n}{single})"
    if close == n:
        return f"too close to call ({n} of {n}{single})"
    if agree == 0:
        return f"does not agree (0 of {n}; {close} too close to call{single})"
    parts = [f"{against} against" if against else "", f"{close} too close to call" if close else ""]
    return f"agrees only in part ({agree} of {n}; {', '.join(p for p in parts if p)}{single})"


def tally(held: int, of: int) -> str:
    """A claim about every member of a set (every seed has a block), in words."""
    if of == 0:
        return PENDING
    if held == of:
        return f"agrees ({held} of {of})"
    return f"does not agree (0 of {of})" if held == 0 else f"agrees only in part ({held} of {of})"


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


def _changes(table, vary: str, within: str, sign: float = 1.0) -> list[tuple[object, Called]]:
    """For each value of ``within`` with two or more values of ``vary``: the block fraction
    at the largest ``vary`` minus at the smallest, seed by seed (times ``sign``), called
    over the seeds that have both."""
    changes = []
    for value, group in table.groupby(within):
        low, high = group[vary].min(), group[vary].max()
        if low == high:
            continue
        by_seed = group.pivot_table(index="seed", columns=vary, values="block_fraction")
        differences = (sign * (by_seed[high] - by_seed[low])).dropna()
        if len(differences):
            changes.append((value, called(differences.tolist())))
    return changes


def _evidence(changes: list[tuple[object, Called]], label) -> str:
    return "; ".join(f"{label(value)} {c.evidence()}" for value, c in changes) if changes else "no pairs computed"


def _images(size) -> str:
    return f"{int(size):,} images:"


def _width(width) -> str:
    return f"{int(width)}x:"


def _depth(depth) -> str:
    return f"ResNet-{int(depth)}:"


def block_claims(table, base_depth: int, seeds: Sequence[int], seed_architectures: Sequence,
                 full_size: int | None) -> list[dict]:
    """Sec. 3 (chapter 3): wider / deeper / less data gives a larger block, also without
    residual connections; the block sits in the last two stages; it appears in every
    seed. ``table``: a DataFrame of ``heatmaps.block_summary`` rows (train_size as images);
    each comparison is made seed by seed over ``seeds`` and called beyond their spread."""
    compared = table[table["seed"].isin(list(seeds))]
    residual = compared[compared["residual"]]
    by_width = residual[residual["depth"] == base_depth]
    by_depth = residual[residual["width"] == 1]
    plain = compared[~compared["residual"]]
    wider, deeper = _changes(by_width, "width", "train_size"), _changes(by_depth, "depth", "train_size")
    # Negated: positive when the smallest training set gives the larger block.
    less_w, less_d = _changes(by_width, "train_size", "width", -1.0), _changes(by_depth, "train_size", "depth", -1.0)
    no_residual = _changes(plain, "width", "train_size")
    with_block = residual[residual["block_layers"] > 0]
    late = int((with_block["block_stage"] >= 2).sum())
    rows = [
        row("Wider networks have a larger block (widest against narrowest, at each training-set size)",
            verdict([c for _, c in wider]), f"change in block fraction, {_evidence(wider, _images)}"),
        row("Deeper networks have a larger block (deepest against shallowest, at each training-set size)",
            verdict([c for _, c in deeper]), f"change in block fraction, {_evidence(deeper, _images)}"),
        row("Less data gives a larger block (smallest against largest training set, at each width)",
            verdict([c for _, c in less_w]), f"change, {_evidence(less_w, _width)}"),
        row("Less data gives a larger block (smallest against largest training set, at each depth)",
            verdict([c for _, c in less_d]), f"change, {_evidence(less_d, _depth)}"),
        row("Without residual connections, the wider network still has the larger block",
            verdict([c for _, c in no_residual]), f"change, widest against narrowest, {_evidence(no_residual, _images)}"),
        row("The block starts in one of the last two stages",
            f"{late} of {len(with_block)} residual networks with a block (all seeds)" if len(with_block) else PENDING, ""),
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
                        tally(present, len(seeds)),
                        f"{len(seeds)} seeds: the block spans {seeds['block_fraction'].min():.0%} to "
                        f"{seeds['block_fraction'].max():.0%} of the layers and starts at "
                        f"{', '.join(sorted(set(seeds['block_from'].fillna('no block'))))}"))
    return rows


def _difference(summaries: Sequence[dict], larger: str, smaller: str | None, tolerance: float) -> Called:
    """``larger - smaller`` (or ``larger`` alone) in each seed's summary, called over the
    seeds; None where a seed's value is pending."""
    def one(s):
        a, b = s.get(larger), (0.0 if smaller is None else s.get(smaller))
        return None if a is None or b is None else a - b
    return called([one(s) for s in summaries], tolerance)


def _means(summaries: Sequence[dict], *keys: str, scale: float = 1.0) -> list[float | None]:
    """Each key's mean over the seeds where it is computed and finite (None if none is)."""
    out = []
    for key in keys:
        values = [scale * s[key] for s in summaries if s.get(key) is not None and np.isfinite(s[key])]
        out.append(float(np.mean(values)) if values else None)
    return out


def _with_spread(means_text: str, difference: Called, spec: str = "+.2f") -> str:
    return f"{means_text}; difference {difference.evidence(spec)}" if difference.finite else means_text


def pc_claims(summaries: Sequence[dict]) -> list[dict]:
    """Sec. 4's principal components (chapter 4), from ``run_analyses.chapter4_summary``
    of each seed: every difference is taken seed by seed and called over the seeds."""
    s = list(summaries)
    variance = _difference(s, "variance_in_block", "variance_without_block", 0.02)
    cka = _difference(s, "cka_in_block", "cka_in_block_without_pc1", 0.01)
    rho = _difference(s, "d5_rho", None, 0.1)
    gain = _difference(s, "gain_outside", "gain_inside", 0.005)
    rise = _difference(s, "probe_last_stage", "probe_first_stage", 0.0)
    drop = _difference(s, "drop_without_block", "drop_with_block", 0.01)
    models = sorted({x.get("d5_models") for x in s if x.get("d5_models")})
    return [
        row("PC1 explains more of the variance inside the block than in the model without a block", variance.verdict,
            _with_spread(formatted("{:.2f} against {:.2f}", *_means(s, "variance_in_block",
                                                                      "variance_without_block")), variance)),
        row("Removing PC1 lowers the CKA between the block's layers", cka.verdict,
            _with_spread(formatted("{:.3f} to {:.3f}", *_means(s, "cka_in_block", "cka_in_block_without_pc1")),
                         cka, "+.3f")),
        row("Across models, PC1's variance explained goes with the block size (Spearman correlation above 0)",
            rho.verdict, formatted("rho {} over {} models per seed", rho.evidence() if rho.finite else None,
                                ", ".join(str(m) for m in models) or None)),
        row("Probe accuracy improves less per residual block inside the block than outside it", gain.verdict,
            _gain_evidence(s, gain)),
        row("Probe accuracy rises through the model without a block (last stage above the first)", rise.verdict,
            _with_spread(formatted("{:.1f}% in the last stage, {:.1f}% in the first",
                                   *_means(s, "probe_last_stage", "probe_first_stage", scale=100)),
                         _points_called(rise), "+.1f")),
        row("Deleting the end of the last stage costs the model with a block less than the one without", drop.verdict,
            _with_spread(formatted("{:.1f} against {:.1f} percentage points",
                                   *_means(s, "drop_with_block", "drop_without_block", scale=100)),
                         _points_called(drop), "+.1f")),
    ]


def _points_called(c: Called) -> Called:
    return Called(tuple(None if v is None else 100 * v for v in c.values), c.tolerance)


def _gain_evidence(summaries: Sequence[dict], gain: Called) -> str:
    inside, outside = _means(summaries, "gain_inside", "gain_outside", scale=100)
    if inside is None and outside is not None:
        # gain_per_unit needs two consecutive residual-block outputs inside the block.
        return formatted("no two consecutive residual blocks end inside the block; {:+.1f} percentage points per "
                         "block outside it", outside)
    return _with_spread(formatted("{:+.1f} against {:+.1f} percentage points per block", inside, outside),
                        _points_called(gain), "+.1f")


def seed_claims(seed_rows: Sequence[dict]) -> list[dict]:
    """Sec. 5 (chapter 5): inside a block, two seeds' representations are less alike
    than outside it. ``seed_rows``: dicts with model, inside_block, outside_block (NaN
    inside where the pair's first model has no block), one per pair of seeds; each
    model's pairs are called together."""
    rows = []
    for model in dict.fromkeys(r["model"] for r in seed_rows):
        pairs = [r for r in seed_rows if r["model"] == model]
        claim = f"{model}: the block is less similar across seeds than the rest"
        measured = [r for r in pairs if r.get("inside_block") is not None]
        if not measured:
            rows.append(row(claim, PENDING, ""))
            continue
        with_block = [r for r in measured if np.isfinite(r["inside_block"])]
        if not with_block:
            rows.append(row(claim, "not tested (no block at this threshold)", f"{len(measured)} pair(s) of seeds"))
            continue
        difference = called([r["outside_block"] - r["inside_block"] for r in with_block], 0.01)
        rows.append(row(claim, difference.word,
                        f"cross-seed CKA {np.mean([r['inside_block'] for r in with_block]):.3f} inside the block, "
                        f"{np.mean([r['outside_block'] for r in with_block]):.3f} outside; outside minus inside "
                        f"{difference.evidence('+.3f', 'pairs')} over {len(with_block)} of {len(measured)} pairs of seeds "
                        "(pairs without a block left out)"))
    return rows


def prediction_claims(excess: dict | None, significant: int | None, classes: int, level: float,
                      pair_z: Sequence[float]) -> list[dict]:
    """Sec. 6 (chapter 6): per-example and per-class differences between populations.
    ``excess``: ``prediction_stats.spread_excess``; ``significant``: of ``classes``
    classes, those passing Welch's test at ``level``; ``pair_z``: z of each pair of Figs.
    F.1-F.3. The populations' members are the seeds, so each difference is called beyond
    ``CALLED_AT`` standard errors: of the excess, of the count of classes that chance alone
    would pass (binomial), and of each pair's spread."""
    expected = level * classes
    chance_se = float(np.sqrt(classes * level * (1 - level)))
    pairs = ["agrees" if z > CALLED_AT else "does not agree" if z < -CALLED_AT else "too close to call" for z in pair_z]
    return [
        row("Wide and deep populations differ per example more than two populations of one architecture",
            compare(excess["excess"], 0.0, CALLED_AT * excess["standard_error"]) if excess else PENDING,
            f"excess {excess['excess']:.4f}, {excess['z']:.1f} standard errors; called only beyond "
            f"{CALLED_AT:g}" if excess else ""),
        row("More classes differ significantly than chance would give",
            compare(significant, expected, CALLED_AT * chance_se) if significant is not None else PENDING,
            f"{significant} of {classes} against {expected:.1f} ± {chance_se:.1f} by chance; called only beyond "
            f"{CALLED_AT:g} standard errors" if significant is not None else ""),
        row("Architectures that differ in depth, width or both get different examples right (Figs. F.1-F.3; "
            f"spread more than {CALLED_AT:g} standard errors above zero)",
            tally_words(pairs) if pairs else PENDING,
            f"{sum(z > CALLED_AT for z in pair_z)} of {len(pair_z)} pairs, z = "
            f"{', '.join(f'{z:.1f}' for z in pair_z)}" if len(pair_z) else ""),
    ]


# -- chapter 7: the follow-up's findings (Nguyen, Raghu & Kornblith 2022) ------------------
EARLY = 0.25  # "early": within the first quarter of the SGD steps
STILL_CHANGING = 0.9  # the block's layers then have CKA below this with the final model's
CARRY = 5.0  # the top-k images carry at least 5 times their share (k/N) of PC1's variance
LEVEL = 0.05  # significance of the image statistic (Bonferroni-corrected)
DIFFERENT = 0.5  # top-k sets of two seeds "differ" when their Jaccard index is below this
HALVED = 0.5  # removing the dominant images leaves at most this share of the block measure
MARGIN = 0.05  # ... and at least this much less than removing as many random images


def origin_claims(formed: Sequence[dict], dominant: Sequence[dict], seeds: dict, removed: Sequence[dict]) -> list[dict]:
    """Chapter 7: one row per finding of the follow-up, from the summaries of
    ``repsim.origins`` for every seed of the model with a block (``formation``,
    ``dominance_summary`` and ``removal_summary``, first seed first) and across them
    (``seeds_summary``). Each part of a finding is a margin over a stated threshold,
    taken seed by seed and called beyond the seeds' spread (``Called``); a finding agrees
    when every part does, does not agree when no part does, and agrees "only in part"
    when some do and others do not."""
    return [_formation_row(formed), _dominance_row(dominant), _seeds_row(seeds), _removal_row(removed)]


def _conjunction(parts: Sequence[Called], seeds: int) -> str:
    """A claim of several parts, each called over ``seeds`` seeds, in words."""
    words = [p.word for p in parts]
    single = " (one seed)" if seeds == 1 else ""
    if all(w == "agrees" for w in words):
        return "agrees" + single
    if "does not agree" in words:
        return ("agrees only in part" if "agrees" in words else "does not agree") + single
    return "too close to call" + single


def _per_seed(values: Sequence[float], spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def _formation_row(formed: Sequence[dict]) -> dict:
    claim = "The block forms early in training, while its representation keeps changing"
    computed = [f for f in formed if f["final_block"] is not None]
    if not computed:
        return row(claim, "pending", "the snapshots are not computed yet")
    with_block = [f for f in computed if f["final_block"] > 0]
    if not with_block:
        return row(claim, "not measurable", "the final model has no block at this threshold")
    created = [f for f in with_block if f["step"] != 0]
    if not created:
        first = with_block[0]
        return row(claim, "not measurable", f"a block over the same layers is there at initialisation (it covers "
                   f"{first['init_block']:.0%} of the layers, overlap {first['init_overlap']:.2f} with the final "
                   f"block), so training does not create it")
    # A block that never takes shape counts as formed at the very end, with nothing left to change.
    fractions = [1.0 if f["step"] is None else f["fraction_of_training"] for f in created]
    to_final = [1.0 if f["step"] is None else f["to_final"] for f in created]
    early, changing = called([EARLY - x for x in fractions]), called([STILL_CHANGING - x for x in to_final])
    steps = ", ".join("never" if f["step"] is None else f"{f['step']:,} of {f['total_steps']:,}" for f in created)
    left = len(with_block) - len(created)
    return row(claim, _conjunction([early, changing], len(created)),
               f"formed by step {steps} ({_per_seed(fractions, '.0%')} of training; early is "
               f"{EARLY:.0%} minus that, {early.evidence('+.2f')}); the block's layers then have CKA "
               f"{_per_seed(to_final, '.2f')} with the final model's ({changing.evidence('+.2f')} below "
               f"{STILL_CHANGING:g}); the block covers {_per_seed([f['init_block'] for f in created], '.0%')} of the "
               f"layers at initialisation, {_per_seed([f['final_block'] for f in created], '.0%')} at the end"
               + (f"; {left} seed(s) with the block already at initialisation left out" if left else ""))


def _dominance_row(dominant: Sequence[dict]) -> dict:
    claim = "A few dominant images, which share a simple image statistic, carry the block's first PC"
    computed = [d for d in dominant if d["share"] is not None]
    if not computed:
        return row(claim, "pending", "the dominant images are not computed yet")
    carry = called([d["share"] - CARRY * d["random_share"] for d in computed])
    significant = sum(d["p_bonferroni"] < LEVEL for d in computed)
    # The statistic's test has its own level; over the seeds it holds in all, none, or some.
    shared = called([1.0 if significant == len(computed) else -1.0 if significant == 0 else 0.0])
    first = computed[0]
    return row(claim, _conjunction([carry, shared], len(computed)),
               f"the top {first['k']:,} of {first['n']:,} images carry {_per_seed([d['share'] for d in computed], '.0%')} "
               f"of PC1's variance (k/N = {first['random_share']:.1%}; the margin over {CARRY:g} k/N is "
               f"{carry.evidence('+.2f')}); the strongest statistic differs at p < {LEVEL:g} (Bonferroni) in "
               f"{significant} of {len(computed)} seeds: "
               + "; ".join(f"{d['statistic']}, d = {d['cohen_d']:+.2f}, p = {d['p_bonferroni']:.2g}" for d in computed))


def _seeds_row(seeds: dict) -> dict:
    claim = "Different seeds pick different dominant images"
    if seeds["jaccard"] is None:
        return row(claim, "pending", "fewer than two seeds are computed")
    differ = called([DIFFERENT - r["jaccard"] for r in seeds["overlaps"]])
    same = "the same" if seeds["same_statistic"] else "not the same"
    return row(claim, differ.word,
               f"Jaccard index {_per_seed([r['jaccard'] for r in seeds['overlaps']], '.2f')} over "
               f"{seeds['pairs']} pair(s) of seeds ({DIFFERENT:g} minus it: {differ.evidence('+.2f', 'pairs')}), "
               f"{seeds['chance_jaccard']:.3f} by chance (overlap p <= {seeds['max_p']:.2g}); the strongest "
               f"statistic is {same} in every seed")


def _removal_row(removed: Sequence[dict]) -> dict:
    claim = "Removing the dominant images removes the block; removing as many random images does not"
    computed = [r for r in removed if r["before"] is not None]
    if not computed:
        return row(claim, "pending", "the heatmaps without dominant images are not computed yet")
    with_block = [r for r in computed if r["before"] > 0]
    if not with_block:
        return row(claim, "not measurable", "the model has no block at this threshold")
    halved = called([r["before"] * HALVED - r["dominant"] for r in with_block])
    beyond_random = called([r["random"] - MARGIN - r["dominant"] for r in with_block])
    k = with_block[0]["k"]
    return row(claim, _conjunction([halved, beyond_random], len(with_block)),
               f"block {_per_seed([r['before'] for r in with_block], '.0%')} of the layers; without the top {k:,} "
               f"{_per_seed([r['dominant'] for r in with_block], '.0%')}, without {k:,} random images "
               f"{_per_seed([r['random'] for r in with_block], '.0%')} (margins {halved.evidence('+.2f')} below "
               f"half, {beyond_random.evidence('+.2f')} below random)")


# -- chapter 8: the block under other similarity measures -----------------------------------
SAME_LAYERS = 0.5  # two blocks are at the same layers when their Jaccard index reaches this (as chapter 7's)


def _by_seed(rows: Sequence[dict], run: str, measure: str, condition: str) -> dict[int, dict]:
    return {r["seed"]: r for r in rows if r["run"] == run and r["measure"] == measure and r["condition"] == condition}


def _runs_evidence(parts: Sequence[tuple[str, Called]], unit: str = "seeds") -> str:
    return "; ".join(f"{run}: {c.evidence('+.2f', unit)}" for run, c in parts)


def measure_claims(rows: Sequence[dict], measures: Sequence[str], with_block: Sequence[str], without_block: str,
                   removal: str) -> list[dict]:
    """Chapter 8: for each of ``measures`` (linear CKA first, the reference), whether the
    block appears in the same models (each run of ``with_block`` has a larger block
    measure than ``without_block``, seed by seed), at the same layers (its block overlaps
    linear CKA's by at least ``SAME_LAYERS``, in each seed where linear CKA finds one),
    and whether it depends on chapter 7's dominant images (leaving them out of
    ``removal`` shrinks the block at least ``MARGIN`` more than leaving out as many random
    images). ``rows`` are ``measure_maps.block_rows`` of every seed; runs are labels."""
    claims = []
    all_images, dominant, random = "all images", "without the dominant images", "without random images"
    for measure in measures:
        without = _by_seed(rows, without_block, measure, all_images)
        larger = [(run, called([r["block"] - without[s]["block"]
                                for s, r in _by_seed(rows, run, measure, all_images).items() if s in without]))
                  for run in with_block]
        claims.append(row(f"{measure}: the models with a block have a larger block than {without_block}",
                          verdict([c for _, c in larger]), f"difference in block measure, {_runs_evidence(larger)}"))
    for measure in measures[1:]:
        same = [(run, called([r["overlap"] - SAME_LAYERS if r["overlap"] is not None else None
                              for r in _by_seed(rows, run, measure, all_images).values()])) for run in with_block]
        claims.append(row(f"{measure}: the block is at linear CKA's layers", verdict([c for _, c in same]),
                          f"overlap with linear CKA's block minus {SAME_LAYERS:g}, {_runs_evidence(same)}"))
    for measure in measures:
        mine, control = _by_seed(rows, removal, measure, dominant), _by_seed(rows, removal, measure, random)
        before = _by_seed(rows, removal, measure, all_images)
        shrinks = called([control[s]["block"] - MARGIN - r["block"] for s, r in mine.items() if s in control])
        sizes = ", ".join(f"{before[s]['block']:.0%} → {r['block']:.0%} (random: {control[s]['block']:.0%})"
                          for s, r in mine.items() if s in control and s in before)
        claims.append(row(f"{measure}: without the dominant images the block shrinks more than without random ones",
                          shrinks.verdict if mine else PENDING,
                          f"{removal}, block measure {sizes}; margin over {MARGIN:g}: {shrinks.evidence('+.2f')}"
                          if mine else "the maps without dominant images are not computed yet"))
    return claims
