"""A run trained with snapshots: its weights at log-spaced SGD steps, kept as one store entry.

Chapter 7 follows two runs of the Sec. 3 grid through training (the profile's
``followed_runs``). ``train.train_models(snapshot_steps=...)`` keeps the weights at the
chosen steps (0 is the initialisation) and leaves the model as it would be without, so
the run's model is stored from the same training (``trained.train_run`` trains the
followed runs this way the first time). A run stored without snapshots is retrained,
which on the CPU gives the stored model bit for bit (``Snapshots.reproduces`` says
whether it did).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data import ImageDataset, train_count
from .runs import Run
from .store import Store
from .train import train_models

if TYPE_CHECKING:
    from .profiles import Profile


def snapshot_steps(total: int, count: int) -> list[int]:
    """0 and up to ``count - 1`` log-spaced SGD steps from 1 to ``total`` (both included)."""
    if total < 1 or count < 2:
        raise ValueError(f"need total >= 1 steps and count >= 2 snapshots, got {total} and {count}")
    return [0] + np.unique(np.rint(np.geomspace(1, total, count - 1)).astype(int)).tolist()


def total_steps(run: Run, profile: Profile, data) -> int:
    """SGD steps of the run's training: epochs times full batches per epoch. ``data``: an
    ``ImageDataset`` or its fingerprint (then CIFAR's 50,000 training images)."""
    recipe = run.recipe(profile)
    return recipe.epochs * (train_count(recipe.train_size, data) // recipe.batch_size)


@dataclass(frozen=True)
class Snapshots:
    run: Run
    steps: list[int]
    states: list[dict]  # state dict after each step count
    final: dict  # the retrained run's analysed checkpoint (its best test-accuracy epoch)
    reproduces: bool | None  # retrained model == the stored one, bit for bit (None: none was stored)


def training_snapshots_key(run: Run, profile: Profile, data) -> dict:
    steps = snapshot_steps(total_steps(run, profile, data), profile.origins.snapshots)
    return run.key(profile, data, "training snapshots", steps=steps)


def training_snapshots(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None,
                       device=None, graphs: bool = False, deadline: float | None = None) -> Snapshots:
    """The run trained with snapshots (weights at log-spaced steps), cached as one entry.

    Where the run's model is missing, it is stored from this training, so that nothing
    trains it again. Where it is stored already, the run is retrained: on the CPU with a
    fixed thread count training is deterministic, and whether the retrained model is the
    stored one is recorded. ``graphs`` and ``deadline`` are ``train_models``'s (a GPU
    window trains this run as it trains every other).
    """
    store, device = store or Store(), device or profile.device
    key = run.key(profile, data)

    def compute():
        steps = training_snapshots_key(run, profile, data)["settings"]["steps"]
        kept: dict[str, torch.Tensor] = {}

        def keep(step: int, states: list[dict]) -> None:
            kept.update({f"{step}/{name}": value.cpu() for name, value in states[0].items()})

        (model, metrics), = train_models(run.model, run.recipe(profile), data, [run.seed], device, progress=False,
                                         graphs=graphs, deadline=deadline, snapshot_steps=steps, on_snapshot=keep)
        final = {name: value.cpu() for name, value in model.state_dict().items()}
        stored = store.load(key)
        reproduces = None if stored is None else all(torch.equal(value, stored[0][name]) for name, value in final.items())
        if stored is None:
            store.put(key, final, metrics)
        kept.update({f"final/{name}": value for name, value in final.items()})
        return kept, {"steps": steps, "reproduces": reproduces, "test_acc": metrics["best_test_acc"]}

    state, record = store.load_or_train(training_snapshots_key(run, profile, data), compute)
    steps = record["metrics"]["steps"]
    split = {part: {name.partition("/")[2]: value for name, value in state.items() if name.partition("/")[0] == part}
             for part in [str(step) for step in steps] + ["final"]}
    return Snapshots(run, steps, [split[str(step)] for step in steps], split["final"], record["metrics"]["reproduces"])
