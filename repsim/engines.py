"""Where a population's members train: this process, a Slurm cluster, or Ray.

Every job loads the data set by name and writes into one model store on a file system
all machines share (``REPSIM_HOME``), so a member trained by any engine is read back by
the chapters like any other.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from .data import load_dataset
from .files import repsim_home
from .populations import Population, population_predictions, run_predictions
from .profiles import Profile
from .runs import Run
from .store import Store

ENGINES = ("local", "submitit", "ray")


def train_population(population: Population, profile: Profile, dataset: str = "cifar10", source=None,
                     engine: str = "local", folder=None, progress: bool = True, **engine_options) -> torch.Tensor:
    """Train (or load) every member and return the predictions, (members, N).

    - ``engine="local"`` (the default) trains the members in this process, several at
      once where that is faster (``population_predictions``).
    - ``engine="submitit"`` submits one job per member through submitit: to Slurm
      where it is available, or to local processes with ``cluster="local"``; other
      options (``timeout_min``, ``gpus_per_node``, ``slurm_partition``, ...) go to
      ``executor.update_parameters``; job logs go to ``folder``.
    - ``engine="ray"`` runs one Ray task per member: on the cluster at ``address=``
      (``"auto"`` finds a running one), or on a Ray instance started here and shut
      down afterwards; other options (``num_cpus``, ``num_gpus``, ``memory``, ...) are
      each task's resources.

    The engines are imported only when chosen. Every job loads the data set by name and
    writes to the same store, which must be on a file system all machines share
    (``REPSIM_HOME``); a job that finds its member already trained only reads it.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if engine == "local":
        if engine_options:
            raise TypeError(f"engine='local' takes no engine options, got {sorted(engine_options)}")
        data = load_dataset(dataset, source)
        return population_predictions(population, profile, data, progress=progress)
    runs = population.runs
    arguments = (runs, [profile] * len(runs), [dataset] * len(runs), [source] * len(runs), [str(Store().root)] * len(runs))
    if engine == "submitit":
        submitit = _engine_module("submitit")
        cluster = engine_options.pop("cluster", None)
        executor = submitit.AutoExecutor(folder=str(folder or repsim_home() / "submitit"), cluster=cluster)
        if engine_options:
            executor.update_parameters(**engine_options)
        jobs = executor.map_array(_member_predictions, *arguments)
        return torch.stack([job.result() for job in tqdm(jobs, desc="members", disable=not progress, leave=False)])
    ray = _engine_module("ray")
    address = engine_options.pop("address", None)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(_member_predictions).options(**engine_options)
        refs = [task.remote(*member) for member in zip(*arguments)]
        return torch.stack([ray.get(ref) for ref in tqdm(refs, desc="members", disable=not progress, leave=False)])
    finally:
        if started_here:
            ray.shutdown()


def _engine_module(name: str):
    try:
        return __import__(name)
    except ImportError as err:
        raise ImportError(f"engine={name!r} needs the {name} package: pip install {name}") from err


def _member_predictions(run: Run, profile: Profile, dataset: str, source, store_root: str) -> torch.Tensor:
    """One population member, in a job of its own (top level, so that it pickles)."""
    return run_predictions(run, profile, load_dataset(dataset, source), Store(store_root))
