"""How differently two populations of models get the test images right (Sec. 6, App. F).

Pure statistics on boolean (members, N) arrays of which test images each model gets
right: the debiased spread of per-example accuracies between two populations, its
delete-one-model jackknife error, and Welch's t-test per class. Nothing here trains or
stores anything; ``repsim.populations`` feeds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def per_example_accuracy(predictions, labels) -> np.ndarray:
    """Fraction of a population's members that classify each example correctly, (N,)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim != 2 or predictions.shape[1] != labels.shape[0]:
        raise ValueError(f"predictions must be (members, {labels.shape[0]}), got shape {predictions.shape}")
    return (predictions == labels[None, :]).mean(axis=0)


def spread(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """How differently two populations get the test examples right: the mean over
    examples of (p_a - p_b)^2 for the populations' true per-example accuracies p.

    ``correct_*``: boolean (members, N). The plain mean of (p̂_a - p̂_b)^2 is inflated
    by each population's finite size; subtracting the unbiased binomial variances
    p̂(1 - p̂)/(m - 1) removes that, so two populations of one architecture give about 0.
    """
    correct_a, correct_b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    m_a, m_b = len(correct_a), len(correct_b)
    if m_a < 2 or m_b < 2:
        raise ValueError("each population needs at least 2 members")
    p_a, p_b = correct_a.mean(0), correct_b.mean(0)
    noise = p_a * (1 - p_a) / (m_a - 1) + p_b * (1 - p_b) / (m_b - 1)
    return float(np.mean((p_a - p_b) ** 2 - noise))


def jackknife(statistic, groups) -> tuple[float, float]:
    """``statistic(groups)`` and its delete-one jackknife standard error.

    ``groups`` are independent populations (boolean (members, N) each); the sampling
    unit is the trained model, so one model at a time is left out of each population in
    turn, and the variances of the independent populations add.
    """
    groups = [np.asarray(g, dtype=bool) for g in groups]
    value = statistic(groups)
    variance = 0.0
    for g, members in enumerate(groups):
        m = len(members)
        leave_one_out = np.array([statistic([np.delete(x, i, axis=0) if j == g else x for j, x in enumerate(groups)])
                                  for i in range(m)])
        variance += (m - 1) / m * np.sum((leave_one_out - leave_one_out.mean()) ** 2)
    return value, float(np.sqrt(variance))


def spread_with_error(correct_a, correct_b) -> dict:
    """``spread(a, b)`` with its jackknife standard error and z = spread / error.

    The spread is debiased, so two populations of one architecture give 0 up to noise
    and z says how far a pair is from that."""
    value, error = jackknife(lambda gs: spread(gs[0], gs[1]), (correct_a, correct_b))
    return {"spread": value, "standard_error": error, "z": value / error if error > 0 else float("inf")}


def spread_excess(correct_a, correct_b, baseline_a, baseline_b) -> dict:
    """``spread(a, b) - spread(baseline_a, baseline_b)`` with a jackknife standard error
    over all four populations (``jackknife``)."""
    value, error = jackknife(lambda gs: spread(gs[0], gs[1]) - spread(gs[2], gs[3]),
                             (correct_a, correct_b, baseline_a, baseline_b))
    return {"spread": spread(correct_a, correct_b), "baseline_spread": spread(baseline_a, baseline_b),
            "excess": value, "standard_error": error, "z": value / error if error > 0 else float("inf")}


def class_accuracies(predictions, labels, num_classes: int) -> np.ndarray:
    """Per-member, per-class test accuracy, (members, classes)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    correct = predictions == labels[None, :]
    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(f"classes {np.flatnonzero(counts == 0).tolist()} have no test examples")
    return np.stack([np.bincount(labels, weights=row, minlength=num_classes) for row in correct]) / counts


def welch_per_class(acc_a: np.ndarray, acc_b: np.ndarray, classes: Sequence[str], alpha: float = 0.05) -> list[dict]:
    """Welch's t-test per class on two populations' per-model class accuracies.

    Rows: class, mean accuracy in each population, their difference (a - b), t, p and
    whether p < ``alpha``. No correction for the number of classes is applied, as in
    the paper; the chapter reports how many significant classes chance alone would give.
    """
    acc_a, acc_b = np.asarray(acc_a, dtype=float), np.asarray(acc_b, dtype=float)
    if acc_a.shape[1] != len(classes) or acc_b.shape[1] != len(classes):
        raise ValueError(f"accuracies must have one column per class ({len(classes)})")
    if len(acc_a) < 2 or len(acc_b) < 2:
        raise ValueError("Welch's t-test needs at least 2 models in each population")
    result = stats.ttest_ind(acc_a, acc_b, equal_var=False, axis=0)
    return [{"class": name, "mean_a": acc_a[:, c].mean(), "mean_b": acc_b[:, c].mean(),
             "difference": acc_a[:, c].mean() - acc_b[:, c].mean(), "t": float(result.statistic[c]),
             "p": float(result.pvalue[c]), "significant": bool(result.pvalue[c] < alpha)}
            for c, name in enumerate(classes)]
