"""The trained model of a run: read from the store, or trained into it once.

Every chapter, population and harvest job gets its models here. ``train_run`` gives one
run's model (chapter 7's followed runs are trained with their snapshots the first time,
so that nothing trains them twice); ``train_missing`` trains whichever of several runs
the store lacks, several seeds of one architecture at once as a stack
(``train.train_models``), and puts each member's weights into the store.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tqdm import tqdm

from .data import ImageDataset
from .files import as_config
from .models import ResNet
from .runs import Run
from .snapshots import training_snapshots
from .store import Store
from .train import train_models, trained_model

if TYPE_CHECKING:
    from .profiles import Profile


def train_run(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None, device=None) -> tuple[ResNet, dict]:
    """The run's model in eval mode (trained once, then loaded from the store) and its record."""
    store, device = store or Store(), device or profile.device
    if store.compute and run in profile.followed_runs() and run.key(profile, data) not in store:
        training_snapshots(run, profile, data, store, device)  # stores the model too
    return trained_model(run.model, run.recipe(profile), data, run.seed, store, device, progress=False)


def train_missing(runs: Sequence[Run], profile: Profile, data: ImageDataset, store: Store, device=None, *,
                  stack: int | None = None, graphs: bool = False, deadline: float | None = None,
                  checkpoint: bool = True, progress: bool = False) -> list[tuple[Run, dict]]:
    """Train the ``runs`` whose models the store lacks into it, and return (run, metrics)
    of each one trained here.

    Runs of one architecture and training-set prefix train ``stack`` at a time as one
    grouped network (None: all of them together). With ``checkpoint`` a stack saves its
    state every epoch under a lock of its own, so a killed run resumes; ``graphs`` and
    ``deadline`` are ``train_models``'s (a GPU window's).
    """
    device = device or profile.device
    missing = [run for run in dict.fromkeys(runs) if run.key(profile, data) not in store]
    groups: dict[tuple, list[Run]] = {}
    for run in missing:
        groups.setdefault((run.model, run.train_size), []).append(run)
    chunks = [group[i : i + (stack or len(group))] for group in groups.values()
              for i in range(0, len(group), stack or len(group))]
    trained = []
    for chunk in tqdm(chunks, desc="training", disable=not progress, leave=False):
        trained += _train_stack(chunk, profile, data, store, device, graphs, deadline, checkpoint)
    return trained


def _train_stack(chunk: list[Run], profile: Profile, data: ImageDataset, store: Store, device, graphs: bool,
                 deadline: float | None, checkpoint: bool) -> list[tuple[Run, dict]]:
    model, recipe = chunk[0].model, chunk[0].recipe(profile)
    seeds = [run.seed for run in chunk]
    stack_key = as_config(model, recipe, seeds=seeds, data=data.fingerprint, analysis="stacked training")
    with store.lock(stack_key):
        if all(run.key(profile, data) in store for run in chunk):
            return []  # another process trained this stack meanwhile
        members = train_models(model, recipe, data, seeds, device, progress=False, graphs=graphs, deadline=deadline,
                               checkpoint=store.partial(stack_key) / "checkpoint.pt" if checkpoint else None)
        for run, (member, metrics) in zip(chunk, members):
            store.put(run.key(profile, data), {k: v.cpu() for k, v in member.state_dict().items()}, metrics,
                      seconds=metrics.get("train_seconds", 0.0))
        shutil.rmtree(store.partial(stack_key), ignore_errors=True)
    return [(run, metrics) for run, (_, metrics) in zip(chunk, members)]
