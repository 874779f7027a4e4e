"""The trained model of a run: read from the store, or trained into it once.

Every chapter, population and harvest job gets its models here. ``train_missing`` is the
one way runs are trained into the store: whichever of them the store lacks, several
seeds of one architecture at once as a stack (``train.train_models``), each member's
weights put into the store under its run's key. ``train_run`` gives one run's model,
training it first where needed (chapter 7's followed runs with their snapshots, so that
nothing trains them twice).

A training holds a lock of its own (``training_key``) while it runs and checkpoints every
epoch into that key's partial folder, so a second process waits and then finds the
models, and a killed run resumes where it stopped.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tqdm import tqdm

from .data import ImageDataset
from .devices import resolve as resolve_device
from .files import as_config, remove_stale_temporaries
from .models import ResNet
from .progress import report
from .runs import Run
from .snapshots import training_snapshots
from .store import Store
from .train import train_models

if TYPE_CHECKING:
    from .profiles import Profile


def train_run(run: Run, profile: Profile, data: ImageDataset, store: Store | None = None, device=None) -> tuple[ResNet, dict]:
    """The run's model in eval mode on ``device`` and its store record, trained into the
    store first if it is missing and the store may compute (else ``PendingResult``)."""
    store, device = store or Store(), device or profile.device
    key = run.key(profile, data)
    if store.compute and key not in store:
        if any(run == followed.with_seed(run.seed) for followed in profile.followed_runs()):  # any seed
            training_snapshots(run, profile, data, store, device)  # stores the model too
        else:
            train_missing([run], profile, data, store, device)
    state, record = store.get(key)
    model = ResNet(run.model)
    model.load_state_dict(state)
    return model.to(resolve_device(device)).eval(), record


def training_key(runs: Sequence[Run], profile: Profile, data) -> dict:
    """The key that locks, and keeps the checkpoints of, one training of ``runs`` (one
    architecture and training-set prefix, several seeds); no store entry has it."""
    recipe = runs[0].recipe(profile)
    fingerprint = data if isinstance(data, str) else data.fingerprint
    return as_config(runs[0].model, recipe, seeds=[run.seed for run in runs], data=fingerprint, analysis="training")


def train_missing(runs: Sequence[Run], profile: Profile, data: ImageDataset, store: Store, device=None, *,
                  stack: int | None = None, graphs: bool = False, deadline: float | None = None,
                  checkpoint: bool = True, progress: bool = False) -> list[tuple[Run, dict]]:
    """Train the ``runs`` whose models the store lacks into it, and return (run, metrics)
    of each one trained here.

    Runs of one architecture and training-set prefix train ``stack`` at a time as one
    grouped network (None: all of them together). ``checkpoint``: save the training's
    state every epoch (``training_key``); ``graphs`` and ``deadline`` are
    ``train_models``'s (a GPU window's).
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
        trained += _train_together(chunk, profile, data, store, device, graphs, deadline, checkpoint)
    return trained


def _train_together(chunk: list[Run], profile: Profile, data: ImageDataset, store: Store, device, graphs: bool,
                    deadline: float | None, checkpoint: bool) -> list[tuple[Run, dict]]:
    key = training_key(chunk, profile, data)
    with store.lock(key):
        if all(run.key(profile, data) in store for run in chunk):
            return []  # another process trained them meanwhile
        remove_stale_temporaries(store.partial(key))
        report(f"training {chunk[0].name}" if len(chunk) == 1 else
               f"training {len(chunk)} x {chunk[0].label}, seeds {', '.join(str(run.seed) for run in chunk)}")
        members = train_models(chunk[0].model, chunk[0].recipe(profile), data, [run.seed for run in chunk], device,
                               progress=False, graphs=graphs, deadline=deadline,
                               checkpoint=store.partial(key) / "checkpoint.pt" if checkpoint else None)
        for run, (member, metrics) in zip(chunk, members):
            store.put(run.key(profile, data), {k: v.cpu() for k, v in member.state_dict().items()}, metrics,
                      seconds=metrics.get("train_seconds", 0.0))
        shutil.rmtree(store.partial(key), ignore_errors=True)
    return [(run, metrics) for run, (_, metrics) in zip(chunk, members)]
