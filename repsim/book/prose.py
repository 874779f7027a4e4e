"""Turning results into the chapters' prose: every number on a page is glued from here.

One function per chapter (``chapter4``, ``chapter6``, ``chapter7``) returns every value
its prose quotes, for one ``glue_all``; numbers that may still be pending go through
``claims.formatted``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import claims
from ..claims import formatted
from ..data import test_count, train_count
from ..models import ResNet, ResNetConfig
from ..properties import off_diagonal
from ..session import coverage


def glue_all(values: Mapping[str, Any]) -> None:
    """``myst_nb.glue(name, value, display=False)`` for every entry: the values a
    chapter's prose quotes (imported here, so the package needs myst-nb only in a book)."""
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value, display=False)


def points(fraction, template: str = "{:+.1f}") -> str:
    """A difference of two accuracies in percentage points ("pending" when None)."""
    return formatted(template, None if fraction is None else 100 * fraction)


def background_model(run, record: dict | None, recipe, data, layers: list[str]) -> dict:
    """Chapter 2's values about its model ("pending" while it is)."""
    metrics = record["metrics"] if record is not None else {}
    return {"model_name": run.model.name, "train_images": f"{run.train_size or len(data.train_labels):,}",
            "epochs": recipe.epochs, "n_layers": len(layers),
            "test_acc": formatted("{:.1%}", metrics.get("best_test_acc")),
            "best_epoch": formatted("{}", metrics.get("best_epoch"))}


def background_values(invariance, sizes: list[int], shuffled: dict | None, full, minibatch, within, block,
                      examples: int, batch: int, passes: int, threshold: float) -> dict:
    """Chapter 2's values about CKA on its model ("pending" while the model is)."""
    change = invariance["change"].iloc[1:4]
    base, general = invariance["CKA(T(X), Y)"].iloc[0], invariance["CKA(T(X), Y)"].iloc[4]
    difference = (minibatch - full).abs() if full is not None else None
    found = block is not None and block.size > 0
    return {
        "inv_base": formatted("{:.3f}", base), "inv_general": formatted("{:.3f}", general),
        "inv_max_invariant": formatted("{:.1e}", None if base is None else change.abs().max()),
        "small_n": sizes[0],
        "bias_small_n": formatted("{:.2f}", None if shuffled is None else shuffled["biased"][0].mean()),
        "unbiased_small_n": formatted("{:.2f}", None if shuffled is None else shuffled["unbiased"][0].mean()),
        "mb_max_diff": formatted("{:.3f}", None if difference is None else difference.max()),
        "mb_mean_diff": formatted("{:.4f}", None if difference is None else difference.mean()),
        "mb_batch": batch, "heatmap_examples": f"{examples:,}", "heatmap_passes": passes, "block_threshold": threshold,
        "heatmap_mean": formatted("{:.2f}", None if within is None else off_diagonal(within.cka).mean()),
        "heatmap_min": formatted("{:.2f}", None if within is None else within.cka.min()),
        "block_size": formatted("{}", None if block is None else block.size),
        "block_percent": formatted("{:.0f}%", None if block is None else 100 * block.fraction),
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


def regime(table, maps) -> dict[str, str]:
    """How well chapter 3's models fit their data, for the prose: the lowest and highest
    accuracy on their own training images and on test images, over every model and seed
    of ``table`` (``heatmaps.block_table``), and the fewest weights per training image of
    the models of ``maps`` (their heatmaps), beside the paper's fewest (ResNet-20 on all
    50,000 images)."""
    paper = weights_per_image(ResNetConfig(20), None)
    if not len(table):
        return {**dict.fromkeys(("regime_models", "train_min", "train_max", "test_min", "test_max", "min_ratio"),
                                "pending"), "paper_min_ratio": f"{paper:,.0f}"}
    train, test = table["train_acc"], table["test_acc"]
    fewest = min(weights_per_image(m.run.model, m.run.train_size) for m in maps)
    return {"regime_models": f"{len(table)}", "train_min": f"{train.min():.1%}", "train_max": f"{train.max():.1%}",
            "test_min": f"{test.min():.1%}", "test_max": f"{test.max():.1%}", "min_ratio": f"{fewest:,.0f}",
            "paper_min_ratio": f"{paper:,.0f}"}


def weights_per_image(model: ResNetConfig, train_size: int | None) -> float:
    """A model's trainable weights per training image: the paper's capacity relative to data."""
    return sum(p.numel() for p in ResNet(model).parameters()) / train_count(train_size)


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
        out[f"{key}_block"] = formatted("{:.0%}", block.fraction if block is not None else None)
        out[f"{key}_acc"] = formatted("{:.0%}", maps[kind].test_acc if maps.get(kind) is not None else None)
        drop_blocks = s.get(f"drop_{key}_block_blocks")
        out[f"drop_{key}"] = points(s.get(f"drop_{key}_block"), "{:.1f}")
        out[f"drop_{key}_count"] = "block" if drop_blocks == 1 else f"{drop_blocks} blocks" if drop_blocks else "blocks"
    out.update({
        "pc_examples": f"{p.pc_examples or len(data.test_labels):,}",
        "cka_examples": f"{profile.cka.examples or len(data.test_labels):,}",
        "var_in_block": formatted("{:.2f}", s.get("variance_in_block")),
        "var_outside": formatted("{:.2f}", s.get("variance_outside_block")),
        "var_no_block": formatted("{:.2f}", s.get("variance_without_block")),
        "cka_in_block": formatted("{:.2f}", s.get("cka_in_block")),
        "cka_in_block_without": formatted("{:.2f}", s.get("cka_in_block_without_pc1")),
        "d5_models": s.get("d5_models", 0), "d5_rho": formatted("{:.2f}", s.get("d5_rho")),
        "probe_lrs": " and ".join(f"{lr:g}" for lr in p.probe_lrs), "probe_val": f"{p.probe_val_size:,}",
        "probe_train": f"{p.probe_train_size:,}", "probe_epochs": f"{p.probe_epochs} epoch{'s' if p.probe_epochs > 1 else ''}",
        "probe_gains": MarkdownText(probe_gains(runs["with a block"].label, s.get("gain_inside"), s.get("gain_outside"))),
        "gain_none": points(s.get("gain_no_block")),
        "probe_first": formatted("{:.1%}", s.get("probe_first_stage")),
        "probe_last": formatted("{:.1%}", s.get("probe_last_stage")),
        "probe_pooling": MarkdownText(probe_pooling(p)),
    })
    return out


@dataclass(frozen=True)
class MarkdownText:
    """Markdown for a page: a cell's output, or a value for ``{glue:md}``. Jupyter shows it
    as Markdown; where only plain text is read, it is its own text (IPython's ``Markdown``
    would leave "<IPython.core.display.Markdown object>" there)."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


DATA_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def chapter6(chapter, correct: dict, excess: dict | None, tests, pair_table, data) -> dict:
    """The values chapter 6's prose quotes ("pending" where not computed yet)."""
    significant = int(tests["significant"].sum()) if len(tests) else None
    wide, deep = correct.get("wide"), correct.get("deep")
    return {
        "members": chapter.members, "baseline": chapter.baseline,
        "acc_wide": formatted("{:.1%}", wide.mean() if wide is not None else None),
        "acc_deep": formatted("{:.1%}", deep.mean() if deep is not None else None),
        "spread": formatted("{:.4f}", excess["spread"] if excess else None),
        "baseline_spread": formatted("{:.4f}", excess["baseline_spread"] if excess else None),
        "excess": f"{excess['excess']:.4f} ± {excess['standard_error']:.4f}" if excess else "pending",
        "z": formatted("{:.1f}", excess["z"] if excess else None),
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


# -- chapter 7 ---------------------------------------------------------------------------
def describe_reproduction(trajectory) -> str:
    """How an ``origins.Trajectory``'s snapshots came about, in words: with the run's first
    training, or by retraining it (and whether that gave the stored model bit for bit)."""
    if trajectory is None:
        return "pending"
    return {True: "retrained, and the same model bit for bit", False: "retrained, with the same recipe but not the same bits",
            None: "trained with its snapshots from the start"}[trajectory.reproduces]


def pending_note(figure: str, results, what: str = "models"):
    """None when every result is there, so that a cell ending with it shows nothing; else
    ``session.coverage``'s note on what is pending, as Markdown."""
    return None if all(r is not None for r in results) else MarkdownText(coverage(figure, results, what))


FORMATION_COLUMNS = ("initialisation", "block taken shape", "final model")


def formation_table(formations, runs) -> pd.DataFrame:
    """Chapter 7's numbers on the block over training, one block of rows per run: each
    measure at initialisation, when the block has taken shape and for the final model
    (``origins.formation`` dicts, one per run). "pending" while a trajectory is, "never"
    and "-" where the block never takes shape; "-" where a value is 1 by definition."""
    rows = []
    for formed, run in zip(formations, runs):
        pending = formed["total_steps"] is None
        missing = "pending" if pending else "-"  # also for the final model's values that are 1 by definition
        measures = {
            "SGD step": ("pending" if pending else "0",
                         formatted("{:,}", formed["step"], missing="pending" if pending else "never"), missing),
            "block measure": (formatted("{:.0%}", formed["init_block"]), formatted("{:.0%}", formed["block"], missing=missing),
                              formatted("{:.0%}", formed["final_block"])),
            "overlap with the final block": (formatted("{:.2f}", formed["init_overlap"]),
                                             formatted("{:.2f}", formed["overlap"], missing=missing), missing),
            "CKA with the final model": (formatted("{:.2f}", formed["init_to_final"]),
                                         formatted("{:.2f}", formed["to_final"], missing=missing), missing),
            "PC1 share, last two stages": (formatted("{:.2f}", formed["init_pc1"]),
                                           formatted("{:.2f}", formed["pc1"], missing=missing),
                                           formatted("{:.2f} (last step)", formed["final_pc1"])),
            "test accuracy": (formatted("{:.0%}", formed["init_acc"]), formatted("{:.0%}", formed["test_acc"], missing=missing),
                              formatted("{:.0%}", formed["final_acc"])),
        }
        rows += [{"model": run.label, "measure": name, **dict(zip(FORMATION_COLUMNS, values))}
                 for name, values in measures.items()]
    return pd.DataFrame(rows).set_index(["model", "measure"])


def chapter7(profile, runs, trajectory, formed: dict, dominant: dict, seeds: dict, removed: dict, seed_count: int,
             threshold: float, formed_overlap: float) -> dict:
    """The values chapter 7's prose quotes ("pending" where not computed yet): the
    settings, the summaries of ``repsim.origins`` for the model with a block
    (``trajectory``, its ``formation``, ``dominance_summary``, ``seeds_summary`` over
    ``seed_count`` seeds, ``removal_summary``), and the thresholds of ``claims.origin_claims``."""
    o = profile.origins
    missing = "pending" if formed["total_steps"] is None else "-"
    return {
        "threshold": threshold, "formed_overlap": formed_overlap, "snapshot_examples": f"{o.snapshot_examples:,}",
        "with_model": runs[0].label, "reproduces": describe_reproduction(trajectory),
        # the block over training (the rest is formation_table's)
        "formed_step": formatted("{:,}", formed["step"], missing="pending" if formed["total_steps"] is None else "never"),
        "total_steps": formatted("{:,}", formed["total_steps"]),
        "formed_fraction": formatted("{:.0%}", formed["fraction_of_training"], missing=missing),
        # dominant images
        "max_layers": o.max_layers, "top_k": f"{o.top_k:,}",
        "n_images": formatted("{:,}", dominant["n"], missing=f"{test_count(limit=profile.cka.examples):,}"),
        "top_share": formatted("{:.0%}", dominant["share"]), "random_share": formatted("{:.1%}", dominant["random_share"]),
        "block_variance": formatted("{:.2f}", dominant["variance"]), "statistic": formatted("{}", dominant["statistic"]),
        "stat_chosen": formatted("{:.2f}", dominant["chosen"]), "stat_others": formatted("{:.2f}", dominant["others"]),
        "stat_d": formatted("{:+.2f}", dominant["cohen_d"]), "stat_p": formatted("{:.2g}", dominant["p_bonferroni"]),
        # across seeds
        "seed_count": seed_count, "jaccard": formatted("{:.2f}", seeds["jaccard"]),
        "chance_jaccard": formatted("{:.3f}", seeds["chance_jaccard"]), "overlap": formatted("{:.1f}", seeds["overlap"]),
        "chance_overlap": formatted("{:.2f}", seeds["chance_overlap"]), "overlap_p": formatted("{:.2g}", seeds["max_p"]),
        "same_statistic": {True: "the same", False: "not the same"}.get(seeds["same_statistic"], "pending"),
        # removing them
        "removal_counts": ", ".join(map("{:,}".format, o.removal_counts)), "k_max": f"{max(o.removal_counts):,}",
        "block_before": formatted("{:.0%}", removed["before"]), "block_dominant": formatted("{:.0%}", removed["dominant"]),
        "block_random": formatted("{:.0%}", removed["random"]), "cka_before": formatted("{:.2f}", removed["cka_before"]),
        "cka_dominant": formatted("{:.2f}", removed["cka_dominant"]),
        "cka_random": formatted("{:.2f}", removed["cka_random"]),
        # the rules of the verdicts
        "early": f"{claims.EARLY:.0%}", "still_changing": f"{claims.STILL_CHANGING:g}", "carry": f"{claims.CARRY:g}",
        "level": f"{claims.LEVEL:g}", "different": f"{claims.DIFFERENT:g}", "halved": f"{claims.HALVED:.0%}",
        "margin": f"{claims.MARGIN:g}",
    }


def _agrees(verdict: str) -> bool:
    return verdict.startswith("agrees") and "only in part" not in verdict


def measure_meaning(same_models: Mapping[str, str]) -> str:
    """What chapter 8's verdicts on "the block appears in the same models" (measure ->
    verdict, linear CKA first) mean for the paper's claims, in a sentence or two."""
    measures = list(same_models)
    reference, others = measures[0], measures[1:]
    if same_models[reference] == claims.PENDING:
        return "The verdicts are pending, so this run says nothing yet about the measures."
    if not _agrees(same_models[reference]):
        return (f"Under {reference} itself the models with a block do not have a clearly larger block than the model "
                f"without ({same_models[reference]}), so at this scale there is no block for the other measures to "
                "confirm, and the question stays open.")
    held = [m for m in others if _agrees(same_models[m])]
    lost = [m for m in others if m not in held]
    knn = others[-1]
    sentence = (f"The block appears in the same models under {', '.join(held)}" if held else
                "No other measure shows the block in the same models") + (
        f"; under {', '.join(lost)} it does not, or too narrowly to call." if lost and held else ".")
    if knn in held:
        return (sentence + f" It survives {knn}, which a few far-out images cannot drive, so at this scale the block "
                "is a property of the networks' representations, not only of linear CKA; the paper's heatmaps "
                "describe the networks.")
    return (sentence + f" It is not confirmed by {knn}, which a few far-out images cannot drive, so this run cannot "
            "rule out that the paper's block is partly what linear CKA makes of a few images; its claims about "
            "width, depth and data then describe linear CKA's view of the networks.")


def chapter8(profile, runs, removal_run, thresholds: Mapping[str, float], maps, agreement, seed_count: int,
             threshold: float) -> dict:
    """The values chapter 8's prose quotes: the settings of ``profile.measures``, the
    runs, each measure's matched block threshold, the images left out, and each
    measure's rank correlation with linear CKA (``measure_maps.rank_agreement`` rows:
    the mean and range over runs and seeds)."""
    m = profile.measures
    present = [x for x in maps if x is not None and x.run == removal_run]
    examples = test_count(limit=profile.cka.examples)
    values = {
        "threshold": f"{threshold:g}", "rbf_fraction": f"{m.rbf_fraction:g}", "neighbours": m.neighbours,
        "subset": f"{min(m.subset, examples):,}", "n_images": f"{examples:,}", "seed_count": seed_count,
        "with_models": ", ".join(run.label for run in runs[:-1]), "without_model": runs[-1].label,
        "removal_model": removal_run.label, "removed": f"{max(profile.origins.removal_counts):,}",
        "subset_removed": formatted("{:,} and {:,}", *(present[0].subset_removed[1:] if present else (None, None))),
        "same_layers": f"{claims.SAME_LAYERS:g}", "margin": f"{claims.MARGIN:g}",
        "protocol": (f"the same {examples:,} images and minibatches as chapter 3, so linear CKA here is chapter 3's "
                     "heatmap at these layers" if m.passes in (None, profile.cka.passes) else
                     f"the same {examples:,} images as chapter 3, in {m.passes} pass(es) of its minibatches (chapter 3 "
                     f"makes {profile.cka.passes})"),
    }
    for name, value in thresholds.items():
        slug = name.split()[0].lower().replace("-", "")
        values["threshold_" + slug] = "none reached" if not math.isfinite(value) else f"{value:.3f}"
        rhos = [r["spearman"] for r in agreement if r["measure"] == name]
        values["rho_" + slug] = formatted("{:.2f} ({:.2f} to {:.2f})", *((sum(rhos) / len(rhos), min(rhos), max(rhos))
                                                                       if rhos else (None,) * 3))
    return values
