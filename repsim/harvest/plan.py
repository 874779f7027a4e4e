"""What the chapters of a profile need, as jobs for a GPU window, in priority order.

Every chapter asks the store for analyses of runs (``runs.Run``): heatmaps, principal
components, probes, deletions, predictions, cross-model CKA, training metrics, and for
chapter 2 the model itself. ``chapter_requests`` lists exactly those requests, with the
keys the chapters look up (each analysis' ``*_key`` function).

A *job* is what one window must do in one go: train some runs and compute every analysis
any chapter needs of them while they are on the device, since no weights come back.
Runs joined by a cross-model comparison (Fig. 6's seed pairs, Fig. E.1's pairs) are one
job, so both models are on the device at once. A job takes the priority of its most
urgent run (once part of it is harvested, of its most urgent missing analysis):

1. Fig. 1 (the depth row's jobs first, then the width row's) and chapter 2's model;
2. chapter 4's models; 3. Fig. 6's seed pairs; 4. Figs. 2 and D.2 (smaller training
sets); 5. Fig. C.1; 6. Fig. E.1; 7. Figs. D.1 and D.5 (seeds); 8. populations, member
by member; 9. chapter 7, beyond the paper; 10. chapter 8, the block under other
similarity measures; 11. the profile's further seeds, over which chapters 3-5, 7 and 8
call their verdicts (none in the paper profile, which has one seed).

``job_estimate`` gives a job's seconds (``Estimate``: fixed, measured and counted parts)
and ``plan_windows`` the GPU windows the plan still needs, with the figures each
completes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import figures, heatmaps, measure_maps, origins, populations, run_analyses
from ..data import test_count, train_count
from ..files import config_key
from ..models import ResNet, layer_names
from ..profiles import Profile
from ..runs import Run
from ..throughput import fastest, model_cost
from . import costs

PRIORITIES = {
    1: "Fig. 1 and chapter 2",
    2: "chapter 4 (Figs. 3-5)",
    3: "Fig. 6 (second seeds)",
    4: "Figs. 2 and D.2 (smaller training sets)",
    5: "Fig. C.1 (no residual connections)",
    6: "Fig. E.1 (pairs of architectures)",
    7: "Figs. D.1 and D.5 (seeds)",
    8: "Figs. 7 and F.1-F.3 (populations)",
    9: "chapter 7, beyond the paper (the block over training, dominant images)",
    10: "chapter 8, beyond the paper (the block under other similarity measures)",
    11: "the profile's further seeds (verdicts called over seeds)",
}


@dataclass(frozen=True)
class Analysis:
    """One store entry a chapter reads: ``kind`` of ``run`` (and of ``other``, for cross)."""

    kind: str
    run: Run
    other: Run | None = None

    @property
    def name(self) -> str:
        versus = f" vs {self.other.name}" if self.other is not None else ""
        return f"{self.kind}: {self.run.name}{versus}"

    @property
    def runs(self) -> tuple[Run, ...]:
        return (self.run,) if self.other is None else (self.run, self.other)

    def key(self, profile: Profile, data) -> dict:
        return ANALYSIS_KINDS[self.kind].key(self, profile, data)

    def compute(self, profile: Profile, data, store, device, graphs: bool = False, deadline: float | None = None) -> None:
        """Compute (or find) this entry in ``store``; its models must be there already,
        except for a kind that trains its run itself, with ``graphs`` and ``deadline``."""
        kind = ANALYSIS_KINDS[self.kind]
        if kind.trains:
            kind.compute(self, profile, data, store, device, graphs=graphs, deadline=deadline)
        else:
            kind.compute(self, profile, data, store, device)

    def estimate(self, profile: Profile, rates: costs.DeviceRates) -> float:
        return ANALYSIS_KINDS[self.kind].estimate(self, profile, rates)

    @property
    def exact(self) -> bool:
        """Whether the entry must come back at full precision (model weights)."""
        return self.kind == "weights"


@dataclass(frozen=True)
class Kind:
    key: Callable
    compute: Callable
    estimate: Callable
    trains: bool = False  # computes by training its run (with the window's graphs and deadline)


def _pcs_estimate(a: Analysis, p: Profile, rates) -> float:
    examples = test_count(None, p.probes.pc_examples)
    features = sum(costs.model_cost(a.run.model).layer_features)
    groups = max(1, -(-4 * examples * features // p.probes.pca_max_bytes))
    cka = costs.cka_seconds([a.run.model], test_count(None, p.cka.examples), p.cka.batch_size, p.cka.passes, rates)
    return groups * costs.forward_seconds(a.run.model, examples, rates) + cka


def _probe_estimate(a: Analysis, p: Profile, rates) -> float:
    s = p.probes
    images = s.probe_epochs * s.probe_train_size + s.probe_val_size + test_count(None, s.test_examples)
    layers = 2 * 3 * a.run.model.units_per_stage
    # Per minibatch: a capture and a stacking copy per layer, ~15 ops per width and rate.
    launches = images / 256 * (3 * layers + 3 * len(s.probe_lrs) * 15) * rates.launch
    return 1.5 * costs.forward_seconds(a.run.model, images, rates) + launches


def _trajectory_estimate(a: Analysis, p: Profile, rates) -> float:
    """Per snapshot: its heatmap and its CKA with the final model (one pass of two models'
    layers), and one forward pass for the late PCs and the accuracy."""
    examples = p.origins.snapshot_examples
    per_snapshot = costs.cka_seconds([a.run.model, a.run.model], examples, p.cka.batch_size, 1, rates)
    return p.origins.snapshots * per_snapshot + (p.origins.snapshots + 1) * costs.forward_seconds(a.run.model, examples, rates)


def _measures_estimate(a: Analysis, p: Profile, rates) -> float:
    """Minibatch CKA with two accumulators (linear, RBF) per set of images left out, and
    the subset's forward pass, Procrustes and k-NN for each set (``costs.subset_measures_seconds``)."""
    sets = 3 if measure_maps.removes_dominant(a.run, p) else 1
    examples = test_count(None, p.cka.examples)
    names = layer_names(ResNet(a.run.model))
    measured = set(measure_maps.measured_layers(names))
    features = [f for name, f in zip(names, model_cost(a.run.model).layer_features) if name in measured]
    passes = p.measures.passes or p.cka.passes
    minibatched = costs.cka_seconds([a.run.model], examples, p.cka.batch_size, passes, rates, group=1,
                                    accumulators=2 * sets, features=features)
    subset = min(p.measures.subset, examples)
    return (minibatched + costs.forward_seconds(a.run.model, subset, rates)
            + sets * costs.subset_measures_seconds(len(features), subset, rates))


ANALYSIS_KINDS = {
    "weights": Kind(lambda a, p, d: a.run.key(p, d), lambda a, p, d, s, dev: None, lambda a, p, r: 0.0),
    "training": Kind(lambda a, p, d: run_analyses.training_metrics_key(a.run, p, d),
                     lambda a, p, d, s, dev: run_analyses.training_metrics(a.run, p, d, s, dev), lambda a, p, r: 0.0),
    "heatmap": Kind(lambda a, p, d: heatmaps.heatmap_key(a.run, p, d),
                    lambda a, p, d, s, dev: heatmaps.heatmap(a.run, p, d, s, dev),
                    lambda a, p, r: costs.cka_seconds([a.run.model], test_count(None, p.cka.examples),
                                                      p.cka.batch_size, p.cka.passes, r)),
    "principal components": Kind(
        lambda a, p, d: run_analyses.first_pcs_key(a.run, p, d, without_pc1=True),
        lambda a, p, d, s, dev: run_analyses.first_pcs(a.run, p, d, without_pc1=True, store=s, device=dev), _pcs_estimate),
    "late principal components": Kind(
        lambda a, p, d: run_analyses.first_pcs_key(a.run, p, d, late_block_outputs=True),
        lambda a, p, d, s, dev: run_analyses.first_pcs(a.run, p, d, late_block_outputs=True, store=s, device=dev),
        lambda a, p, r: costs.forward_seconds(a.run.model, test_count(None, p.probes.pc_examples), r)),
    "linear probes": Kind(lambda a, p, d: run_analyses.probe_accuracy_key(a.run, p, d),
                          lambda a, p, d, s, dev: run_analyses.probe_accuracy(a.run, p, d, s, dev), _probe_estimate),
    "block deletion": Kind(
        lambda a, p, d: run_analyses.deletion_accuracy_key(a.run, p, d),
        lambda a, p, d, s, dev: run_analyses.deletion_accuracy(a.run, p, d, s, dev),
        lambda a, p, r: 3 * a.run.model.units_per_stage
        * costs.forward_seconds(a.run.model, test_count(None, p.probes.test_examples), r)),
    "test predictions": Kind(
        lambda a, p, d: populations.predictions_key(a.run, p, d),
        lambda a, p, d, s, dev: populations.run_predictions(a.run, p, d, s, dev),
        lambda a, p, r: costs.forward_seconds(a.run.model, test_count(None, p.predictions.test_examples), r)),
    "block over training": Kind(  # trains its run with snapshots: a job computes it before training the others
        lambda a, p, d: origins.trajectory_key(a.run, p, d),
        lambda a, p, d, s, dev, **training: origins.trajectory(a.run, p, d, s, dev, **training),
        _trajectory_estimate, trains=True),
    "dominant images": Kind(
        lambda a, p, d: origins.dominance_key(a.run, p, d, CHAPTER_THRESHOLD),
        lambda a, p, d, s, dev: origins.dominance(a.run, p, d, CHAPTER_THRESHOLD, store=s, device=dev),
        lambda a, p, r: 2 * costs.forward_seconds(a.run.model, test_count(), r)),
    "heatmaps without dominant images": Kind(
        lambda a, p, d: origins.removal_key(a.run, p, d, CHAPTER_THRESHOLD),
        lambda a, p, d, s, dev: origins.removal_heatmaps(a.run, p, d, CHAPTER_THRESHOLD, store=s, device=dev),
        lambda a, p, r: costs.cka_seconds([a.run.model], test_count(None, p.cka.examples), p.cka.batch_size,
                                          p.cka.passes, r, accumulators=2 * len(p.origins.removal_counts))),
    "other similarity measures": Kind(
        lambda a, p, d: measure_maps.measure_maps_key(a.run, p, d, threshold=CHAPTER_THRESHOLD),
        lambda a, p, d, s, dev: measure_maps.measure_maps(a.run, p, d, threshold=CHAPTER_THRESHOLD, store=s, device=dev),
        _measures_estimate),
    "cross-model CKA": Kind(
        lambda a, p, d: run_analyses.cross_cka_key(a.run, a.other, p, d),
        lambda a, p, d, s, dev: run_analyses.cross_cka(a.run, a.other, p, d, s, dev),
        lambda a, p, r: costs.cka_seconds([a.run.model, a.other.model], test_count(None, p.cka.examples),
                                          p.cka.batch_size, p.cka.passes, r)),
}


CHAPTER_THRESHOLD = 0.9  # chapter 7's block_threshold parameter, part of its keys
FIG1_DEPTH, FIG1_WIDTH = "Fig. 1 (depth row)", "Fig. 1 (width row)"
SEEDS = "verdicts over seeds"


@dataclass(frozen=True)
class Request:
    """An analysis a chapter reads, the figure it serves and that figure's priority."""

    analysis: Analysis
    priority: int
    figure: str


def chapter_requests(profile: Profile) -> list[Request]:
    """Every store entry the chapters read under ``profile`` (with their default seed 0),
    mirroring what each chapter asks for: the figures' runs, then every further seed of
    ``profile.seed_list()`` the chapters' verdicts are called over."""
    requests: list[Request] = []
    asked: set[Analysis] = set()

    def ask(priority: int, figure: str, run: Run, *kinds: str, other: Run | None = None, once: bool = False) -> None:
        """Request ``kinds`` of ``run``; with ``once``, only those nothing asked for yet."""
        for kind in kinds:
            analysis = Analysis(kind, run, other if kind == "cross-model CKA" else None)
            if not (once and analysis in asked):
                requests.append(Request(analysis, priority, figure))
                asked.add(analysis)

    ask(1, "Ch. 2", figures.background_run(profile), "weights", "training", "heatmap")

    b = profile.blocks
    depth_row, width_row = figures.fig1_rows(b)
    for run in heatmaps.block_runs(b):
        if run in depth_row or run in width_row:
            priority, figure = 1, FIG1_DEPTH if run in depth_row else FIG1_WIDTH
        elif run.seed != 0:
            priority, figure = 7, "Fig. D.1"
        elif not run.model.residual:
            priority, figure = 5, "Fig. C.1"
        else:
            priority, figure = 4, "Figs. 2, D.2"
        ask(priority, figure, run, "heatmap", "training")
        if run.model.residual:
            ask(priority, "Fig. D.5", run, "late principal components")

    for run in figures.chapter4_runs(profile.probes).values():
        ask(2, "Ch. 4", run, "heatmap", "training", "principal components", "linear probes", "block deletion")

    for a, c in figures.fig6_pairs(profile.across):
        ask(3, "Fig. 6", a, "heatmap", "training", "cross-model CKA", other=c)
        ask(3, "Fig. 6", c, "training")
    for a, c in figures.fige1_pairs(profile.across):
        ask(6, "Fig. E.1", a, "heatmap", "training", "cross-model CKA", other=c)
        ask(6, "Fig. E.1", c, "heatmap", "training")

    for population in populations.chapter_populations(profile.predictions).values():
        for run in population.runs:
            ask(8, "Figs. 7, F.1-F.3", run, "test predictions", "training")

    with_block, without_block = profile.followed_runs()
    ask(9, "Ch. 7", with_block, "block over training", "heatmaps without dominant images")
    ask(9, "Ch. 7", without_block, "block over training")
    for run in origins.seed_runs(profile):
        ask(9, "Ch. 7", run, "dominant images")

    for run in profile.measured_runs():
        ask(10, "Ch. 8", run, "other similarity measures")

    # The further seeds, once: what no figure asked for (the paper profile has none).
    seeds = profile.seed_list()
    for run in heatmaps.grid_runs(b, seeds):  # chapter 3's table and chapter 4's Fig. D.5
        ask(11, SEEDS, run, "heatmap", "training", *(("late principal components",) if run.model.residual else ()),
            once=True)
    for seed in seeds[1:]:
        for run in figures.chapter4_runs(profile.probes, seed).values():
            ask(11, SEEDS, run, "heatmap", "training", "principal components", "linear probes", "block deletion", once=True)
        ask(11, SEEDS, profile.followed_runs(seed)[0], "block over training", "heatmaps without dominant images",
            "dominant images", once=True)
        for run in profile.measured_runs(seed):
            ask(11, SEEDS, run, "other similarity measures", once=True)
    for a, c in figures.seed_pairs(profile.across, seeds):  # chapter 5's verdict
        ask(11, SEEDS, a, "heatmap", "training", "cross-model CKA", other=c, once=True)
        ask(11, SEEDS, c, "training", once=True)
    return requests


@dataclass
class Job:
    """Runs trained in one window and every analysis of them any chapter needs."""

    priority: int
    runs: tuple[Run, ...]
    analyses: tuple[Analysis, ...]
    figures: tuple[str, ...]
    name: str = ""
    status: str = "pending"  # "harvested", "pending" or "stale"
    estimated_seconds: float = 0.0
    missing: tuple[Analysis, ...] = field(default_factory=tuple)
    # Who asked for each analysis: ((priority, figure), ...). Once part of a job is
    # harvested, the job's priority is that of the most urgent analysis still missing.
    requests: dict[Analysis, tuple[tuple[int, str], ...]] = field(default_factory=dict)

    @property
    def population(self) -> bool:
        return self.priority == 8


def plan_jobs(profile: Profile) -> list[Job]:
    """The profile's jobs in the order a harvest takes them (priority, then cost order
    within the grid as the chapters list it)."""
    requests = chapter_requests(profile)
    order: dict[Run, int] = {}
    priority: dict[Run, int] = {}
    figures: dict[Run, list[str]] = {}
    wanted: dict[Run, list[Analysis]] = {}
    asked: dict[Analysis, list[tuple[int, str]]] = {}
    parent: dict[Run, Run] = {}

    def root(run: Run) -> Run:
        while parent[run] != run:
            parent[run] = parent[parent[run]]
            run = parent[run]
        return run

    for request in requests:
        for run in request.analysis.runs:
            order.setdefault(run, len(order))
            parent.setdefault(run, run)
            priority[run] = min(priority.get(run, 99), request.priority)
            figures.setdefault(run, [])
        run = request.analysis.run
        asked.setdefault(request.analysis, []).append((request.priority, request.figure))
        if request.figure not in figures[run]:
            figures[run].append(request.figure)
        if request.analysis not in wanted.setdefault(run, []):
            wanted[run].append(request.analysis)
        if request.analysis.other is not None:
            parent[root(request.analysis.other)] = root(run)
    groups: dict[Run, list[Run]] = {}
    for run in sorted(order, key=order.get):
        groups.setdefault(root(run), []).append(run)
    jobs = []
    for members in groups.values():
        job_figures = list(dict.fromkeys(f for run in members for f in figures[run]))
        job = Job(priority=min(priority[run] for run in members), runs=tuple(members),
                  analyses=tuple(sorted((a for run in members for a in wanted.get(run, [])), key=_analysis_order)),
                  figures=tuple(job_figures))
        job.name = f"{', '.join(job_figures)}: {_describe(members)}"
        job.requests = {a: tuple(asked[a]) for a in job.analyses}
        jobs.append(job)
    return _in_order(jobs, order)


def _in_order(jobs: list[Job], order: dict | None = None) -> list[Job]:
    """By priority; within it, jobs with Fig. 1's depth row before its width row (a first
    window should complete a row); then in the chapters' order (or the order given)."""
    rank = {id(job): order[job.runs[0]] if order else i for i, job in enumerate(jobs)}
    return sorted(jobs, key=lambda job: (job.priority, FIG1_DEPTH not in _wanted_figures(job), rank[id(job)]))


def _wanted_figures(job: Job) -> set[str]:
    """The figures of the analyses the job still has to compute (all, before marking)."""
    return {figure for a in (job.missing or job.analyses) for _, figure in job.requests.get(a, ())} or set(job.figures)


# The order a job computes its analyses in: the one that trains its run first (it keeps
# snapshots while training), then the cheap entries every chapter reads, then the rest.
ANALYSIS_ORDER = ("block over training", "weights", "training", "heatmap", "cross-model CKA",
                  "late principal components", "test predictions", "block deletion", "principal components",
                  "linear probes", "dominant images", "heatmaps without dominant images",
                  "other similarity measures")  # the last: it reads the dominant images


def _analysis_order(analysis: Analysis) -> int:
    return ANALYSIS_ORDER.index(analysis.kind)


def _describe(runs: list[Run]) -> str:
    """"ResNet-164 (1x) on all training images, seeds 0, 1; ResNet-56 (1x) ..."."""
    by_label: dict[str, list[int]] = {}
    for run in runs:
        by_label.setdefault(run.label, []).append(run.seed)
    return "; ".join(f"{label}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
                     for label, seeds in by_label.items())


def runs_to_train(job: Job) -> tuple[Run, ...]:
    """The runs a job must train: those its missing analyses need (all, before marking)."""
    needed = {run for a in (job.missing or job.analyses) for run in a.runs}
    return tuple(run for run in job.runs if run in needed)


@dataclass(frozen=True)
class Estimate:
    """A job's estimated seconds in three parts: ``fixed`` costs of the job and of each
    run (set-up, graph recording, packing and saving), ``measured`` (from rates this
    device measured in a window) and ``counted`` (from ``costs``' counts). A harvest
    corrects only the counted part, by the ratio its jobs measure for counted work."""

    fixed: float
    measured: float
    counted: float

    def total(self, ratio: float = 1.0) -> float:
        return self.fixed + self.measured + self.counted * ratio

    def with_margin(self, ratio: float = 1.0) -> float:
        """Seconds to keep free before starting the job: a margin of ``MEASURED_MARGIN``
        on what rates measured on this device predict, ``COUNTED_MARGIN`` on counts."""
        return self.fixed + MEASURED_MARGIN * self.measured + COUNTED_MARGIN * self.counted * ratio


MEASURED_MARGIN = 1.1  # rates measured on the device repeat within a few per cent (benchmarks/README.md)
COUNTED_MARGIN = 1.25


def job_estimate(job: Job, profile: Profile, rates: costs.DeviceRates, graphs: bool,
                 measured: dict | None = None, stack: int = 1) -> Estimate:
    """Estimated seconds of ``job`` on a device with ``rates``. Its runs train ``stack``
    at a time (population members; one stack costs one training, at the measured
    per-member rate of such a stack where there is one); ``measured`` (from
    ``Measurements.lookup``) replaces a counted estimate wherever it has a number."""
    measured = measured or {}
    fixed = rates.job_seconds
    by_rate = counted = 0.0
    runs = runs_to_train(job)
    for first in range(0, len(runs), stack):
        group = runs[first : first + stack]
        recipe = group[0].recipe(profile)
        key = ("train", group[0].model.name, recipe.batch_size) + ((len(group),) if len(group) > 1 else ())
        fixed += rates.run_seconds
        if measured.get(key):  # images per second of one member, alone or in such a stack
            steps = recipe.epochs * (train_count(recipe.train_size) // recipe.batch_size)
            by_rate += steps * recipe.batch_size / measured[key]
            by_rate += len(recipe.scored_epochs()) * costs.forward_seconds(
                group[0].model, len(group) * test_count(None, recipe.eval_size), rates)
        else:
            counted += costs.training_seconds(group[0].model, recipe, rates, graphs, members=len(group))
    for analysis in job.missing or job.analyses:  # a job done in part computes only what is missing
        seconds = measured.get(("analysis", analysis.kind, analysis.run.model.name))
        if seconds:
            by_rate += seconds
        else:
            counted += analysis.estimate(profile, rates)
    return Estimate(fixed, by_rate, counted)


def population_stack(profile: Profile, run: Run, rates: costs.DeviceRates, graphs: bool,
                     measured: dict | None = None) -> int:
    """How many members of ``run``'s population a harvest trains at once: the profile's
    stack size; else the fastest this device measured; else the counted fastest of 1, 2,
    4, ... members."""
    if profile.predictions.stack is not None:
        return profile.predictions.stack
    recipe = run.recipe(profile)
    members = profile.predictions.members
    found = {(key[3] if len(key) == 4 else 1): rate for key, rate in (measured or {}).items()
             if key[:3] == ("train", run.model.name, recipe.batch_size) and rate}
    if len(found) > 1:
        return min(fastest(found), members)
    sizes = sorted({min(2**k, members) for k in range(members.bit_length() + 1)})
    return min(sizes, key=lambda size: costs.training_seconds(run.model, recipe, rates, graphs, members=size) / size)


def member_estimate(job: Job, profile: Profile, rates: costs.DeviceRates, graphs: bool, measured: dict | None,
                    stack: int) -> Estimate:
    """A population member's share of a stack of ``stack`` members like it."""
    seeds = [job.runs[0].seed + k for k in range(stack)]
    stacked = Job(job.priority, tuple(job.runs[0].with_seed(seed) for seed in seeds),
                  tuple(Analysis(a.kind, a.run.with_seed(seed)) for seed in seeds for a in job.analyses), job.figures)
    whole = job_estimate(stacked, profile, rates, graphs, measured, stack=stack)
    return Estimate(whole.fixed / stack, whole.measured / stack, whole.counted / stack)


def mark(jobs: list[Job], profile: Profile, data, available: set[str], names: dict[str, str]) -> list[Job]:
    """Set each job's status and missing analyses from the keys already harvested
    (``available``: ``config_key`` values) and the names they were harvested under."""
    for job in jobs:
        keys = {a: config_key(a.key(profile, data)) for a in job.analyses}
        job.missing = tuple(a for a, key in keys.items() if key not in available)
        if not job.missing:
            job.status = "harvested"
        elif any(a.name in names and names[a.name] != keys[a] for a in job.missing):
            job.status = "stale"
        else:
            job.status = "pending"
        asked = [priority for a in job.missing for priority, _ in job.requests.get(a, ())]
        if asked:  # a job done in part waits behind what is more urgent than its rest
            job.priority = min(asked)
    return _in_order(jobs)


# A GPU lease (15 device-minutes) is two calls of the window script: 540 s of harvest in
# the first (a command may run 600 s), then at once, on the machine still warm, what is
# left of the lease (README, "A GPU window, step by step"). Each call spends its first
# seconds on imports, data and the self-check: 35 s cold, 6 s warm (measured 2026-12-04).
WINDOW_CALLS = ((540.0, 40.0), (220.0, 10.0))  # (harvest budget, start) of each call of a lease


def plan_windows(jobs: list[Job], estimates: list[Estimate], calls=WINDOW_CALLS, reserve: float = 10.0) -> list[dict]:
    """The windows (GPU leases) a harvest would need for the jobs not yet harvested,
    taken call by call as the harvest takes them: in order, each job started only if its
    estimate with its margin fits in what is left of the call, smaller later jobs
    filling the rest. Per window: the indices of its jobs, their seconds, and the
    figures complete once it is done (every job listing them done). A last entry with
    window None lists the jobs too large for any call, which no harvest would start."""
    todo = [i for i, job in enumerate(jobs) if job.status != "harvested"]
    done = {i for i, job in enumerate(jobs) if job.status == "harvested"}
    windows = []
    while todo:
        taken = []
        for budget, start in calls:
            left = budget - start
            for i in todo:
                if i not in taken and estimates[i].with_margin() + reserve <= left:
                    taken.append(i)
                    left -= estimates[i].total()
        if not taken:  # jobs larger than any call: the harvest would never start them
            windows.append({"window": None, "jobs": todo, "seconds": round(sum(estimates[i].total() for i in todo), 1),
                            "completes": []})
            break
        todo = [i for i in todo if i not in taken]
        before = complete_figures(jobs, done)
        done |= set(taken)
        windows.append({"window": len(windows) + 1, "jobs": taken,
                        "seconds": round(sum(estimates[i].total() for i in taken), 1),
                        "completes": [f for f in complete_figures(jobs, done) if f not in before]})
    return windows


def complete_figures(jobs: list[Job], done: set[int]) -> list[str]:
    """The figures all of whose analyses are harvested (or in the jobs ``done``), in the
    plan's order."""
    status: dict[str, bool] = {}
    for i, job in enumerate(jobs):
        for a in job.analyses:
            finished = i in done or (bool(job.missing) and a not in job.missing)
            for _, figure in job.requests.get(a, ()) or [(job.priority, f) for f in job.figures]:
                status[figure] = status.get(figure, True) and finished
    return [figure for figure, finished in status.items() if finished]
