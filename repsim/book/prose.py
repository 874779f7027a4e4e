"""Turning results into the chapters' prose: every number on a page is glued from here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..data import train_count
from ..properties import off_diagonal


def glue_all(values: Mapping[str, Any]) -> None:
    """``myst_nb.glue(name, value, display=False)`` for every entry: the values a
    chapter's prose quotes (imported here, so the package needs myst-nb only in a book)."""
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value, display=False)


def number(value, template: str = "{:.2f}", missing: str = "pending") -> str:
    """``template.format(value)``, or ``missing`` when the value is None (pending)."""
    return missing if value is None else template.format(value)


def points(fraction, template: str = "{:+.1f}") -> str:
    """A difference of two accuracies in percentage points ("pending" when None)."""
    return number(None if fraction is None else 100 * fraction, template)


def background_model(run, record: dict | None, recipe, data, layers: list[str]) -> dict:
    """Chapter 2's values about its model ("pending" while it is)."""
    metrics = record["metrics"] if record is not None else {}
    return {"model_name": run.model.name, "train_images": f"{run.train_size or len(data.train_labels):,}",
            "epochs": recipe.epochs, "n_layers": len(layers),
            "test_acc": number(metrics.get("best_test_acc"), "{:.1%}"),
            "best_epoch": number(metrics.get("best_epoch"), "{}")}


def background_values(invariance, sizes: list[int], shuffled: dict | None, full, minibatch, within, block,
                      examples: int, batch: int, passes: int, threshold: float) -> dict:
    """Chapter 2's values about CKA on its model ("pending" while the model is)."""
    change = invariance["change"].iloc[1:4]
    base, general = invariance["CKA(T(X), Y)"].iloc[0], invariance["CKA(T(X), Y)"].iloc[4]
    difference = (minibatch - full).abs() if full is not None else None
    found = block is not None and block.size > 0
    return {
        "inv_base": number(base, "{:.3f}"), "inv_general": number(general, "{:.3f}"),
        "inv_max_invariant": number(None if base is None else change.abs().max(), "{:.1e}"),
        "small_n": sizes[0], "bias_small_n": number(None if shuffled is None else shuffled["biased"][0].mean()),
        "unbiased_small_n": number(None if shuffled is None else shuffled["unbiased"][0].mean()),
        "mb_max_diff": number(None if difference is None else difference.max(), "{:.3f}"),
        "mb_mean_diff": number(None if difference is None else difference.mean(), "{:.4f}"),
        "mb_batch": batch, "heatmap_examples": f"{examples:,}", "heatmap_passes": passes, "block_threshold": threshold,
        "heatmap_mean": number(None if within is None else off_diagonal(within.cka).mean()),
        "heatmap_min": number(None if within is None else within.cka.min()),
        "block_size": number(None if block is None else block.size, "{}"),
        "block_percent": number(None if block is None else 100 * block.fraction, "{:.0f}%"),
        "block_first": within.layers[block.start] if found else "pending" if block is None else "none",
        "block_last": within.layers[block.stop - 1] if found else "pending" if block is None else "none",
    }


def thinning(profile) -> str:
    """What the profile leaves out of the paper's experiments, as a Markdown table."""
    if not profile.thinned:
        return "This profile's grid is its own (above); it lists nothing else as left out."
    lines = ["| figures | this profile | why |", "|---|---|---|"]
    lines += [f"| {figures} | {what} | {why} |" for figures, what, why in profile.thinned]
    return "\n".join(lines)


def full_size_note(blocks) -> str:
    """Why Fig. 1's models see fewer images than the paper's, when they do."""
    if blocks.full_size is None:
        return "As in the paper, these models are trained on all 50,000 training images."
    return (f"Where the paper trains these models on all 50,000 training images, this profile uses "
            f"{blocks.full_size:,}: at its scale, few images are what lets narrow networks show the block "
            "(the lever of Figs. 2 and D.2).")


def probe_pooling(probes) -> str:
    """How the probes see wide layers."""
    if probes.probe_max_features is None:
        return "Layers are probed at full size, without pooling."
    return (f"Layers with more than {probes.probe_max_features:,} features are average-pooled 2x2 (repeatedly) until "
            "they have at most that many, which keeps the probes of the widest early layers affordable.")


def probe_gains(model: str, inside: float | None, outside: float | None) -> str:
    """How the probe accuracy after each residual add changes inside and outside the
    block (fractions per block; NaN inside when no two consecutive blocks end in it)."""
    if inside is not None and math.isnan(inside):
        return (f"In the {model}, no two consecutive residual blocks end inside the block, so the probes cannot "
                f"follow it from block to block there; elsewhere in the network the probe accuracy after the add "
                f"changes by {points(outside)} percentage points per block.")
    return (f"In the {model}, the probe accuracy after the add changes by {points(inside)} percentage points per "
            f"residual block inside the block, against {points(outside)} per block elsewhere in the network.")


def chapter4(summary: dict, runs: dict, maps: dict, profile, data) -> dict:
    """The values chapter 4's prose quotes ("pending" where not computed yet)."""
    s, p = summary, profile.probes
    out = {}
    for key, kind in (("with", "with a block"), ("without", "without a block")):
        block = s.get(f"block_{key}")
        out[f"{key}_model"] = runs[kind].label
        out[f"{key}_block"] = number(block.fraction if block is not None else None, "{:.0%}")
        out[f"{key}_acc"] = number(maps[kind].test_acc if maps.get(kind) is not None else None, "{:.0%}")
        drop_blocks = s.get(f"drop_{key}_block_blocks")
        out[f"drop_{key}"] = points(s.get(f"drop_{key}_block"), "{:.1f}")
        out[f"drop_{key}_count"] = "block" if drop_blocks == 1 else f"{drop_blocks} blocks" if drop_blocks else "blocks"
    out.update({
        "pc_examples": f"{p.pc_examples or len(data.test_labels):,}",
        "cka_examples": f"{profile.cka.examples or len(data.test_labels):,}",
        "var_in_block": number(s.get("variance_in_block")), "var_outside": number(s.get("variance_outside_block")),
        "var_no_block": number(s.get("variance_without_block")), "cka_in_block": number(s.get("cka_in_block")),
        "cka_in_block_without": number(s.get("cka_in_block_without_pc1")),
        "d5_models": s.get("d5_models", 0), "d5_rho": number(s.get("d5_rho")),
        "probe_lrs": " and ".join(f"{lr:g}" for lr in p.probe_lrs), "probe_val": f"{p.probe_val_size:,}",
        "probe_train": f"{p.probe_train_size:,}", "probe_epochs": f"{p.probe_epochs} epoch{'s' if p.probe_epochs > 1 else ''}",
        "probe_gains": _markdown(probe_gains(runs["with a block"].label, s.get("gain_inside"), s.get("gain_outside"))),
        "gain_none": points(s.get("gain_no_block")),
        "probe_first": number(s.get("probe_first_stage"), "{:.1%}"), "probe_last": number(s.get("probe_last_stage"), "{:.1%}"),
        "probe_pooling": _markdown(probe_pooling(p)),
    })
    return out


def _markdown(text: str):
    """A Markdown display object, for ``{glue:md}`` in a chapter's prose."""
    from IPython.display import Markdown

    return Markdown(text)


DATA_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def chapter6(chapter, correct: dict, excess: dict | None, tests, pair_table, data) -> dict:
    """The values chapter 6's prose quotes ("pending" where not computed yet)."""
    significant = int(tests["significant"].sum()) if len(tests) else None
    wide, deep = correct.get("wide"), correct.get("deep")
    return {
        "members": chapter.members, "baseline": chapter.baseline,
        "acc_wide": number(wide.mean() if wide is not None else None, "{:.1%}"),
        "acc_deep": number(deep.mean() if deep is not None else None, "{:.1%}"),
        "spread": number(excess["spread"] if excess else None, "{:.4f}"),
        "baseline_spread": number(excess["baseline_spread"] if excess else None, "{:.4f}"),
        "excess": f"{excess['excess']:.4f} ± {excess['standard_error']:.4f}" if excess else "pending",
        "z": number(excess["z"] if excess else None, "{:.1f}"),
        "f_models": ", ".join(run.model.name for run in chapter.architectures)
        + f" (on {train_count(chapter.architectures[0].train_size):,} training images)",
        "f_pairs": len(pair_table), "f_positive": int((pair_table["z"] > 2).sum()) if len(pair_table) else 0,
        "class_data": f"{DATA_NAMES[data.name]} ({data.num_classes} classes)",
        "significant": f"{significant} of {len(tests)}" if significant is not None else "pending",
        "chance": f"{chapter.significance * data.num_classes:.1f}", "alpha": chapter.significance,
        "wide_better": (", ".join(tests[tests["significant"] & (tests["difference"] > 0)]["class"]) or "none")
        if len(tests) else "pending",
        "deep_better": (", ".join(tests[tests["significant"] & (tests["difference"] < 0)]["class"]) or "none")
        if len(tests) else "pending",
    }
