"""Populations of models of one architecture and what their predictions say (Sec. 6).

A population is one architecture trained on one training-set prefix with many seeds.
Each member's per-example test predictions are cached in the store on their own, so a
population can grow, and an interrupted one resumes where it stopped.

The statistics compare two populations example by example (does population A get the
same test images right as population B?) and class by class (Welch's t-test on the
per-model class accuracies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from .data import ImageDataset, load_dataset
from .grid import Run, train_run
from .models import ResNetConfig
from .profiles import Profile
from .store import Store, as_config, repsim_home
from .train import predict


@dataclass(frozen=True)
class Population:
    model: ResNetConfig
    train_size: int | None
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"a population needs at least 2 distinct seeds, got {self.seeds}")

    @property
    def runs(self) -> list[Run]:
        return [Run(self.model, self.train_size, seed) for seed in self.seeds]


def run_predictions(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None,
                    device=None) -> torch.Tensor:
    """Predicted class of the profile's test images (int64, (N,)) by ``run``'s model; cached.

    N is ``profile.predictions.test_examples`` (None: the whole test set).
    """
    store = store or Store()
    device = device or profile.device
    images = data.test_images[: profile.predictions.test_examples]
    key = as_config(run.model, profile.training(run.train_size), seed=run.seed, data=data.fingerprint,
                    analysis="test predictions", examples=len(images))

    def compute():
        model, _ = train_run(run, profile, data, store, device)
        return {"predictions": predict(model, images, device=device).argmax(1).cpu()}, {}

    state, _ = store.load_or_train(key, compute)
    return state["predictions"]


def population_predictions(population: Population, profile: Profile, data: ImageDataset, store: Store | None = None,
                           device=None, progress: bool = True) -> torch.Tensor:
    """Predictions (members, N) of every member, training those not yet in the store."""
    runs = population.runs
    return torch.stack([run_predictions(run, profile, data, store, device)
                        for run in tqdm(runs, desc=population.model.name, disable=not progress, leave=False)])


ENGINES = ("local", "submitit")


def train_population(population: Population, profile: Profile, dataset: str = "cifar10", source=None,
                     engine: str = "local", folder=None, progress: bool = True, **executor_options) -> torch.Tensor:
    """Train (or load) every member and return the predictions, (members, N).

    ``engine="local"`` trains the members one after another in this process.
    ``engine="submitit"`` submits one job per member through submitit (imported only
    then): to Slurm where it is available, or to local processes with
    ``cluster="local"``; other ``executor_options`` (``timeout_min``, ``gpus_per_node``,
    ``slurm_partition``, ...) go to ``executor.update_parameters``. Every job loads the
    data set by name and writes to the same store, which must be on a file system all
    machines share (``REPSIM_HOME``); a job that finds its member already trained only
    reads it.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if engine == "local":
        data = load_dataset(dataset, source)
        return population_predictions(population, profile, data, progress=progress)
    try:
        import submitit
    except ImportError as err:
        raise ImportError("engine='submitit' needs the submitit package: pip install submitit") from err
    cluster = executor_options.pop("cluster", None)
    executor = submitit.AutoExecutor(folder=str(folder or repsim_home() / "submitit"), cluster=cluster)
    if executor_options:
        executor.update_parameters(**executor_options)
    runs = population.runs
    store_root = str(Store().root)
    jobs = executor.map_array(_member_predictions, runs, [profile] * len(runs), [dataset] * len(runs),
                              [source] * len(runs), [store_root] * len(runs))
    return torch.stack([job.result() for job in tqdm(jobs, desc="members", disable=not progress, leave=False)])


def _member_predictions(run: Run, profile: Profile, dataset: str, source, store_root: str) -> torch.Tensor:
    """One population member, in a job of its own (top level, so that it pickles)."""
    return run_predictions(run, profile, load_dataset(dataset, source), Store(store_root))


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


def spread_excess(correct_a, correct_b, baseline_a, baseline_b) -> dict:
    """``spread(a, b) - spread(baseline_a, baseline_b)`` with a jackknife standard error.

    The jackknife leaves out one model at a time from each of the four populations (the
    sampling unit is the trained model), so the error reflects how many models each
    population has.
    """
    groups = [np.asarray(g, dtype=bool) for g in (correct_a, correct_b, baseline_a, baseline_b)]

    def excess(gs):
        return spread(gs[0], gs[1]) - spread(gs[2], gs[3])

    value = excess(groups)
    # Delete-one jackknife per population; the variances of independent samples add.
    variance = 0.0
    for g, members in enumerate(groups):
        m = len(members)
        leave_one_out = np.array([excess([np.delete(x, i, axis=0) if j == g else x for j, x in enumerate(groups)])
                                  for i in range(m)])
        variance += (m - 1) / m * np.sum((leave_one_out - leave_one_out.mean()) ** 2)
    error = float(np.sqrt(variance))
    return {"spread": spread(groups[0], groups[1]), "baseline_spread": spread(groups[2], groups[3]),
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
