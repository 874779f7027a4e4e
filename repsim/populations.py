"""Populations of models of one architecture and what their predictions say (Sec. 6).

A population is one architecture trained on one training-set prefix with many seeds.
Each member's per-example test predictions are cached in the store on their own, so a
population can grow, and an interrupted one resumes where it stopped.

Their statistics (``repsim.prediction_stats``) compare two populations example by
example and class by class; ``repsim.engines`` trains a population on a cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .data import ImageDataset, test_count, train_count
from .models import ResNetConfig
from .prediction_stats import class_accuracies, spread_excess, spread_with_error, welch_per_class
from .profiles import PredictionChapter, Profile
from .run_analyses import training_metrics
from .runs import Run
from .store import PendingResult, Store
from .throughput import fastest_stack
from .train import predict
from .trained import train_missing, train_run


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


def chapter_populations(chapter: PredictionChapter, first_seed: int = 0) -> dict[str, Population]:
    """Chapter 6's populations by name: "wide", "deep" and the baseline, "wide, second
    population" or "deep, second population" (Fig. 7: the same architecture with the
    next ``members`` seeds), then one per architecture of Figs. F.1-F.3 (seeds
    ``first_seed`` .. ``first_seed + members - 1``, so the wide and deep populations are
    reused where an architecture repeats)."""
    if chapter.baseline not in ("wide", "deep"):
        raise ValueError(f"baseline must be 'wide' or 'deep', got {chapter.baseline!r}")
    m, first = chapter.members, first_seed
    base = getattr(chapter, chapter.baseline)
    members = tuple(range(first, first + m))
    named = {
        "wide": Population(chapter.wide.model, chapter.wide.train_size, members),
        "deep": Population(chapter.deep.model, chapter.deep.train_size, members),
        f"{chapter.baseline}, second population": Population(base.model, base.train_size,
                                                             tuple(range(first + m, first + 2 * m))),
    }
    for run in chapter.architectures:
        named.setdefault(run.label, Population(run.model, run.train_size, members))
    return named


def wide_and_deep(chapter: PredictionChapter, num_classes: int = 10, first_seed: int = 0) -> dict[str, Population]:
    """The wide and the deep population, with ``num_classes``-way heads (Figs. 7c, F.4)."""
    members = tuple(range(first_seed, first_seed + chapter.members))
    return {name: Population(dataclasses.replace(run.model, num_classes=num_classes), run.train_size, members)
            for name, run in (("wide", chapter.wide), ("deep", chapter.deep))}


@dataclass(frozen=True)
class PairPanel:
    """Two populations side by side (``plots.population_pairs``): which test images each
    member gets right, boolean (members, N), or None while pending."""

    x: np.ndarray | None
    y: np.ndarray | None
    xlabel: str
    ylabel: str
    title: str


def fig7_panels(named: dict[str, Population], correct: dict, baseline: str) -> list[PairPanel]:
    """Fig. 7a, b: wide against deep, and the baseline's two populations against each other."""
    second = f"{baseline}, second population"
    return [PairPanel(correct.get(x), correct.get(y), x, y, f"{named[y].model.name} vs {named[x].model.name}")
            for x, y in (("deep", "wide"), (baseline, second))]


def fig7_excess(correct: dict, baseline: str) -> dict | None:
    """``spread_excess`` of wide against deep over the baseline's two populations, or
    None while a population is pending."""
    needed = [correct.get(name) for name in ("wide", "deep", f"{baseline}, second population", baseline)]
    return None if any(c is None for c in needed) else spread_excess(*needed)


def class_tests(correct: dict, labels, classes: Sequence[str], alpha: float) -> list[dict]:
    """Welch's test per class on the wide and deep populations' per-model class
    accuracies (``welch_per_class``); no rows while either is pending. ``correct``:
    {"wide": boolean (members, N), "deep": ...}; ``labels``: (N,)."""
    if correct.get("wide") is None or correct.get("deep") is None:
        return []
    labels = np.asarray(labels)[: correct["wide"].shape[1]]
    accuracies = [class_accuracies(np.where(correct[name], labels[None, :], -1), labels, len(classes))
                  for name in ("wide", "deep")]
    return welch_per_class(*accuracies, classes, alpha=alpha)


def predictions_key(run: Run, profile: Profile, data) -> dict:
    examples = test_count(data, profile.predictions.test_examples)
    return run.key(profile, data, "test predictions", examples=examples)


def run_predictions(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None,
                    device=None) -> torch.Tensor:
    """Predicted class of the profile's test images (int64, (N,)) by ``run``'s model; cached.

    N is ``profile.predictions.test_examples`` (None: the whole test set).
    """
    store = store or Store()
    device = device or profile.device
    images = data.test_images[: profile.predictions.test_examples]

    def compute():
        model, _ = train_run(run, profile, data, store, device)
        return {"predictions": predict(model, images, device=device).argmax(1).cpu()}, {}

    state, _ = store.load_or_train(predictions_key(run, profile, data), compute)
    return state["predictions"]


def train_members_stacked(population: Population, profile: Profile, data: ImageDataset, store: Store | None = None,
                          device=None, stack: int | None = None, progress: bool = True) -> dict:
    """Train the members not yet in the store, ``stack`` at a time (``repsim.train.train_models``).

    ``stack=None`` takes the profile's ``predictions.stack``; if that is None too, the
    stack size is measured here (``throughput.fastest_stack``: a few seconds of timed
    steps of every candidate size on this device). Returns what was decided: the stack
    size, the measured rates (if measured) and how many members were trained. A store
    that may not compute trains nothing.
    """
    store = store or Store()
    device = device or profile.device
    missing = [run for run in population.runs
               if predictions_key(run, profile, data) not in store and run.key(profile, data) not in store]
    if not store.compute:
        return {"stack": None, "rates": None, "trained": 0}
    stack = stack or profile.predictions.stack
    rates = None
    if stack is None:
        stack, rates = (1, None) if len(missing) < 2 else fastest_stack(
            population.model, profile.training(population.train_size), len(missing), device)
    if stack < 1:
        raise ValueError(f"stack must be >= 1, got {stack}")
    train_missing(missing, profile, data, store, device, stack=stack, progress=progress)
    return {"stack": stack, "rates": rates, "trained": len(missing)}


def training_summary(population: Population, profile: Profile, data: ImageDataset, store: Store | None = None) -> dict:
    """How the population's members were trained, from their training metrics: members
    found, how many were trained at once (a count per stack size), the devices, and the
    training seconds summed over members."""
    store = store or Store()
    records = []
    for run in population.runs:
        try:
            records.append(training_metrics(run, profile, data, store))
        except PendingResult:
            continue
    stacks: dict[int, int] = {}
    for metrics in records:
        size = metrics.get("stacked_with", 1)
        stacks[size] = stacks.get(size, 0) + 1
    return {"members": len(records), "stacks": dict(sorted(stacks.items())),
            "devices": sorted({metrics.get("device", "unknown") for metrics in records}),
            "train_seconds": sum(metrics["train_seconds"] for metrics in records)}


def describe_training(summary: dict) -> str:
    """``training_summary`` in words: "6 alone; 3.2 min on cpu" or "4 in stacks of 4; ..."."""
    stacks = ", ".join(f"{count} {'alone' if size == 1 else f'in stacks of {size}'}" for size, count in summary["stacks"].items())
    return f"{stacks or 'none trained'}; {summary['train_seconds'] / 60:.1f} min on {', '.join(summary['devices']) or '-'}"


def population_predictions(population: Population, profile: Profile, data: ImageDataset, store: Store | None = None,
                           device=None, progress: bool = True, stack: int | None = None) -> torch.Tensor:
    """Predictions (members, N) of every member, training those not yet in the store.

    Missing members are trained ``stack`` at a time (see ``train_members_stacked``).
    """
    store = store or Store()
    train_members_stacked(population, profile, data, store, device, stack, progress)
    runs = population.runs
    return torch.stack([run_predictions(run, profile, data, store, device)
                        for run in tqdm(runs, desc=population.model.name, disable=not progress, leave=False)])


# Members a population read from partial results needs: the spread compares at least two,
# and its jackknife error leaves one out (a harvest may have brought back only two).
MIN_FOUND = 3


def population_correct(population: Population, profile: Profile, data: ImageDataset, store: Store | None = None,
                       device=None) -> np.ndarray | None:
    """Boolean (members, N): which of the profile's test images each member gets right.

    Where the store may compute, missing members are trained (``population_predictions``);
    elsewhere only the members whose predictions exist count, and the result is None
    with fewer than ``MIN_FOUND`` of them."""
    store = store or Store()
    labels = data.test_labels[: profile.predictions.test_examples].numpy()
    if store.compute:
        predictions = population_predictions(population, profile, data, store, device, progress=False).numpy()
    else:
        found = [store.load(predictions_key(run, profile, data)) for run in population.runs]
        found = [entry[0]["predictions"].numpy() for entry in found if entry is not None]
        if len(found) < MIN_FOUND:
            return None
        predictions = np.stack(found)
    return predictions == labels[None, :]


def population_table(populations: dict[str, Population], correct: dict[str, np.ndarray | None], profile: Profile,
                     data: ImageDataset, store: Store | None = None) -> list[dict]:
    """One row per population: architecture, training images, members found of the
    members planned, mean test accuracy, its spread across models, how they were trained."""
    rows = []
    for name, population in populations.items():
        c = correct.get(name)
        rows.append({"population": name, "model": population.model.name,
                     "training images": f"{train_count(population.train_size):,}",
                     "models": f"{0 if c is None else len(c)} of {len(population.seeds)}",
                     "mean test accuracy": c.mean() if c is not None else float("nan"),
                     "s.d. across models": c.mean(1).std(ddof=1) if c is not None else float("nan"),
                     "trained": describe_training(training_summary(population, profile, data, store))})
    return rows


def architecture_pairs(runs) -> dict[str, list[tuple]]:
    """The pairs of Figs. F.1-F.3 among ``runs`` (``runs.Run``: architecture and
    training-set prefix; seeds are ignored).

    "depth": same width, different depth; "width": same depth, different width;
    "wide vs deep": one is deeper and the other wider. Residual models only; within a
    pair the first is the shallower (F.1, F.3) or the narrower (F.2).
    """
    pairs = {"depth": [], "width": [], "wide vs deep": []}
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            first, second = sorted((a, b), key=lambda r: (r.model.depth, r.model.width))
            x, y = first.model, second.model
            if first.train_size != second.train_size or x.num_classes != y.num_classes or not (x.residual and y.residual):
                continue
            if x.width == y.width and x.depth != y.depth:
                pairs["depth"].append((first, second))
            elif x.depth == y.depth and x.width != y.width:
                pairs["width"].append((first, second))
            elif x.depth < y.depth and x.width > y.width:
                pairs["wide vs deep"].append((first, second))
    return pairs


def pair_statistics(pairs: dict[str, list[tuple]], correct: dict) -> tuple[list[dict], dict[str, list[PairPanel]]]:
    """Figs. F.1-F.3: for every pair (``architecture_pairs``) whose populations exist,
    the spread with its error (``spread_with_error``); and, per kind of pair, the panels
    for ``plots.population_pairs``. ``correct``: {run label: boolean (members, N) or None}."""
    rows, panels = [], {}
    for number, (kind, kind_pairs) in enumerate(pairs.items(), 1):
        panels[kind] = []
        for x, y in kind_pairs:
            cx, cy = correct.get(x.label), correct.get(y.label)
            title = "pending"
            if cx is not None and cy is not None:
                stat = spread_with_error(cx, cy)
                rows.append({"figure": f"F.{number}", "pair": kind, "x": x.model.name, "y": y.model.name,
                             "accuracy x": cx.mean(), "accuracy y": cy.mean(), **stat})
                title = f"spread {stat['spread']:.4f} ± {stat['standard_error']:.4f}"
            panels[kind].append(PairPanel(cx, cy, x.model.name, y.model.name, title))
    return rows, panels
