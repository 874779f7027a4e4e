"""Spend a budget of device-seconds on the next most valuable jobs; save after each analysis.

The clock starts when the process does. A job is started only if its estimate (with a
margin) fits in what is left, an analysis only if its own estimate does, and a training
run whose pace says it would overrun stops after an epoch (``train.DeadlineExceeded``),
so the harvest ends inside its budget. Each analysis's entry goes into the bundle, and
the bundle is saved, the moment it is computed, so a kill at any moment loses at most
the analysis in progress; a job whose analyses did not all finish is "partial", and a
later window computes only what is missing. Estimates (``plan.Estimate``) keep fixed
costs apart from counted and measured work: counted work is corrected by the median
ratio of measured to counted seconds of the jobs done so far, and measured rates (of
this window or earlier ones on the same device) replace counts wherever they exist.
"""

from __future__ import annotations

import hashlib
import platform
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import ImageDataset
from ..files import config_key
from ..profiles import Profile
from ..results import ResultsArchive, pack_entry
from ..store import Store
from ..throughput import fastest, fastest_stack, model_cost
from ..train import DeadlineExceeded
from ..trained import train_missing
from . import costs
from .bundle import TOTAL_BYTES, BundleWriter, harvested
from .plan import ANALYSIS_KINDS, Estimate, Job, job_estimate, mark, plan_jobs, runs_to_train
from .selfcheck import device_name, run_checks

RESERVE = 10.0  # seconds kept for writing the bundle at the end


@dataclass
class Measurements:
    """Rates measured on one device: training images per second per architecture and
    batch, and seconds per analysis and architecture (the latest of each wins)."""

    device: str
    rows: list[dict] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: list[dict], device: str) -> "Measurements":
        return cls(device, [row for record in records for row in record.get("measurements", [])
                            if row.get("device") == device])

    def add(self, row: dict) -> None:
        self.rows.append({**row, "device": self.device})

    def lookup(self) -> dict:
        """{("train", model, batch): images/s of one model alone, ("train", model, batch,
        stack): per member in a stack, ("analysis", kind, model): seconds}."""
        table = {}
        for row in self.rows:
            if row["kind"] == "train":
                stack = row.get("stacked", 1)
                table[("train", row["model"], row["batch"]) + ((stack,) if stack > 1 else ())] = row["images_per_second"]
            elif row["kind"] == "stacks":
                for stack, rate in row["rates"].items():
                    if rate > 0:
                        table.setdefault(("train", row["model"], row["batch"]) + ((int(stack),) if int(stack) > 1 else ()),
                                         rate)
            elif row["kind"] == "analysis":
                table[("analysis", row["analysis"], row["model"])] = row["seconds"]
        return table


def code_fingerprint() -> str:
    """SHA-256 of the package's source files: which code computed a bundle, also on a
    machine without git."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Harvest:
    """One harvest call: self-check, plan, then jobs until the budget is spent."""

    def __init__(self, profile: Profile, data: ImageDataset, out: Path, budget: float, device: torch.device,
                 results_root: Path | None, started: float, log: Callable[[str], None] = print) -> None:
        self.profile, self.data, self.device = profile, data, device
        self.out, self.results_root = Path(out), results_root
        self.deadline = started + budget
        self.budget, self.log_line = budget, log
        self.lines: list[str] = []
        self.ratios: list[float] = []  # measured / counted estimate of the jobs done
        self.stacks: dict[tuple, int] = {}

    def log(self, text: str) -> None:
        stamp = f"[{self.budget - self.left():7.1f} s]"
        self.lines.append(f"{stamp} {text}")
        self.log_line(f"{stamp} {text}")

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def run(self) -> dict:
        self.log(f"harvest of profile {self.profile.name!r} on {device_name(self.device)}, budget {self.budget:.0f} s")
        report = run_checks(self.device, self.log)
        self.graphs = bool(report["cuda_graphs"]["use"])
        self.matmul_flops = report["matmul_tflops"] * 1e12
        keys, names, records = harvested(self.results_root, self.profile.name, self.out)
        self.measured = Measurements.from_records(records, device_name(self.device))
        self.earlier = len(self.measured.rows)  # rows of earlier bundles: used, not written again
        jobs = mark(plan_jobs(self.profile), self.profile, self.data, keys, names)
        todo = [job for job in jobs if job.status != "harvested"]
        self.log(f"plan: {len(jobs)} jobs, {len(jobs) - len(todo)} harvested, {len(todo)} to do")
        self.writer = BundleWriter(self.out, {
            "profile": self.profile.name,
            "data": {"fingerprint": self.data.fingerprint, "source": Path(self.data.source).name},
            "code": {"sha256": code_fingerprint(), "repsim": _version()},
            "device": {"name": device_name(self.device), "torch": torch.__version__,
                       "cuda": torch.version.cuda, "python": platform.python_version()},
            "selfcheck": report, "budget_seconds": self.budget, "jobs": [], "measurements": [],
        })
        self._save()
        with tempfile.TemporaryDirectory(prefix="repsim-harvest-") as scratch:
            # A private store on the device machine: models live here while their job runs.
            self.store = Store(Path(scratch) / "store", compute=True, results=ResultsArchive(None))
            index = 0
            while index < len(todo):
                job = todo[index]
                batch = self._population_batch(todo, index) if job.population else [job]
                index += len(batch)
                if self.left() < RESERVE + 1:
                    self.log("budget spent")
                    break
                if job.population:
                    self._run_population(batch)
                else:
                    self._run_job(job)
                if self.writer.bytes > TOTAL_BYTES:
                    self.log("the bundle is full: stopping")
                    break
        done = [j for j in self.writer.manifest["jobs"] if j["status"] == "harvested"]
        self.log(f"done: {len(done)} jobs harvested, {self.writer.bytes / 2**20:.1f} MiB in the bundle, "
                 f"{max(self.left(), 0):.0f} s of the budget left")
        self._save()
        return self.writer.manifest

    # -- one job ---------------------------------------------------------------------
    def _estimate(self, job: Job, stack: int = 1) -> tuple[float, Estimate]:
        """(seconds, parts): the job's estimate, its counted part scaled by the median
        ratio of measured to counted seconds of the jobs this harvest has done."""
        parts = job_estimate(job, self.profile, costs.device_rates(self.device.type), self.graphs,
                             self.measured.lookup(), stack=stack)
        return parts.total(self._ratio()), parts

    def _ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 1.0

    def _fits(self, job: Job, parts: Estimate) -> bool:
        """Whether the job, with its margin (``Estimate.with_margin``), fits in what is left."""
        if parts.with_margin(self._ratio()) + RESERVE <= self.left():
            return True
        self.log(f"skip (estimate {parts.total(self._ratio()):.0f} s, {self.left():.0f} s left): {job.name}")
        return False

    def _run_job(self, job: Job, stack: int = 1) -> bool:
        """Train the job's runs (population members ``stack`` at a time) and compute its
        missing analyses, each added to the bundle, and the bundle saved, the moment it
        is computed; False when the job did not fit or did not finish."""
        estimate, parts = self._estimate(job, stack)
        if not self._fits(job, parts):
            return False
        self.log(f"start (estimate {estimate:.0f} s): {job.name}")
        start = time.perf_counter()
        done, errors, status = [], [], "harvested"
        try:
            for analysis in job.missing:  # these train their run themselves, keeping snapshots
                if ANALYSIS_KINDS[analysis.kind].trains:
                    self._compute(analysis, done, errors)
            runs = runs_to_train(job)  # a job done in part trains only what its missing analyses need
            groups = [runs[i : i + stack] for i in range(0, len(runs), stack)]
            for runs in groups:
                self._train(runs)
            for analysis in job.missing:
                if analysis.name not in done and not ANALYSIS_KINDS[analysis.kind].trains:
                    self._compute(analysis, done, errors)
            if errors:
                status = "partial"
        except DeadlineExceeded as err:
            status = "abandoned"
            errors.append(str(err))
        except Exception as err:  # noqa: BLE001 -- one failed job must not end the window
            status = "failed"
            errors.append(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
        finally:
            self._forget(job)
        if status == "harvested" and parts.counted > 1.0:  # a ratio of counted work, fixed costs apart
            seconds = time.perf_counter() - start
            self.ratios.append(max(seconds - parts.fixed - parts.measured, 0.0) / parts.counted)
        self._record(job, status, start, estimate, parts, done, "\n".join(errors) or None)
        return status == "harvested"

    def _compute(self, analysis, done: list[str], errors: list[str]) -> None:
        """Compute one analysis and put its entry in the bundle at once. One that would
        overrun is not started and one that fails is recorded; either way the job goes
        on to its other analyses (a later window computes what is missing)."""
        rates = costs.device_rates(self.device.type)
        left = self.left() - RESERVE
        estimate = self.measured.lookup().get(("analysis", analysis.kind, analysis.run.model.name)) or (
            analysis.estimate(self.profile, rates) * self._ratio())
        if estimate > left:  # an analysis cannot stop half-way: do not start one that would overrun
            errors.append(f"not started: {analysis.name}: about {estimate:.0f} s, {left:.0f} s left")
            self.log(f"  not started (about {estimate:.0f} s, {left:.0f} s left): {analysis.name}")
            return
        start = time.perf_counter()
        try:
            analysis.compute(self.profile, self.data, self.store, self.device, graphs=self.graphs,
                             deadline=self.deadline - RESERVE)
            config = analysis.key(self.profile, self.data)
            state, record = self.store.load(config)
            packed = pack_entry(config, state, record, exact=analysis.exact)
        except DeadlineExceeded:
            raise
        except Exception as err:  # noqa: BLE001 -- the job's other analyses still count
            errors.append(f"{analysis.name}: {type(err).__name__}: {err}\n{traceback.format_exc()}")
            self.log(f"  failed: {analysis.name}: {type(err).__name__}: {err}")
            return
        seconds = time.perf_counter() - start
        if seconds > 0.5 and not ANALYSIS_KINDS[analysis.kind].trains:  # training time is measured as a rate
            self.measured.add({"kind": "analysis", "analysis": analysis.kind, "model": analysis.run.model.name,
                               "seconds": seconds, "estimated_seconds": estimate})
        self.writer.add(config_key(config), analysis.name, packed, device_name(self.device))
        done.append(analysis.name)
        self._save()
        self.log(f"  saved {analysis.name} ({seconds:.1f} s, estimate {estimate:.1f} s)")

    def _train(self, runs) -> None:
        """Train ``runs`` (one architecture, one prefix; several seeds train as one stack)
        into the scratch store, unless they are there already."""
        trained = train_missing(runs, self.profile, self.data, self.store, self.device, graphs=self.graphs,
                                deadline=self.deadline - RESERVE, checkpoint=False)
        if not trained:
            return
        model, metrics = trained[0][0].model, trained[0][1]  # the architecture, and the stack's metrics
        if metrics.get("graph_fallback"):
            self.log(f"  CUDA graph not used for {model.name}, trained eagerly: {metrics['graph_fallback']}")
        # The share of the device's matrix rate (bf16 on a GPU) that the training step reaches.
        share = metrics["images_per_second"] * model_cost(model).training_flops / self.matmul_flops
        for run, member_metrics in trained:
            self.log(f"  trained {run.name}: test {member_metrics['best_test_acc']:.4f}, "
                     f"train {member_metrics['train_acc']:.4f}, {member_metrics['images_per_second']:.0f} img/s "
                     f"({share:.1%} of the matrix rate), {member_metrics['train_seconds'] * len(trained):.1f} s")
        self.measured.add({"kind": "train", "model": model.name, "batch": trained[0][0].recipe(self.profile).batch_size,
                           "images_per_second": metrics["images_per_second"] / len(trained),
                           "graphs": metrics["cuda_graphs"], "stacked": len(trained), "autocast": metrics["autocast"],
                           "train_seconds": metrics["train_seconds"] * len(trained), "matmul_share": share})

    def _forget(self, job: Job) -> None:
        """Drop the job's models from the scratch store: their analyses are packed."""
        for run in job.runs:
            entry = self.store.entry(run.key(self.profile, self.data))
            for path in entry.glob("*") if entry.exists() else []:
                path.unlink()

    def _record(self, job: Job, status: str, start: float, estimate: float, parts: Estimate, done: list[str],
                error: str | None = None) -> None:
        seconds = time.perf_counter() - start
        row = {"name": job.name, "priority": job.priority, "status": status, "seconds": round(seconds, 1),
               "estimated_seconds": round(estimate, 1),
               "estimate_parts": {"fixed": round(parts.fixed, 1), "measured": round(parts.measured, 1),
                                  "counted": round(parts.counted, 1), "ratio": round(self._ratio(), 3)},
               "analyses": [a.name for a in job.missing], "saved": done}
        if error:
            row["error"] = error
        self.writer.manifest["jobs"].append(row)
        self.log(f"{status} in {seconds:.0f} s (estimate {estimate:.0f} s, {len(done)} of {len(job.missing)} "
                 f"analyses saved): {job.name}" + (f"\n{error}" if error else ""))
        self._save()

    def _save(self) -> None:
        self.writer.manifest["measurements"] = self.measured.rows[self.earlier:] if hasattr(self, "measured") else []
        self.writer.save()
        log = self.out / f"harvest-{self.writer.manifest['id']}.log"
        log.write_text("\n".join(self.lines) + "\n")

    # -- populations -------------------------------------------------------------------
    def _stack_size(self, run, recipe, members: int) -> int:
        """The profile's stack size; else the fastest one measured on this device (in this
        or an earlier window); else timed now. A timing that fails trains one at a time."""
        if self.profile.predictions.stack is not None or members < 2:
            return self.profile.predictions.stack or 1
        earlier = [row for row in self.measured.rows if row["kind"] == "stacks" and row["model"] == run.model.name
                   and row["batch"] == recipe.batch_size]
        if earlier:
            rates = {int(size): rate for size, rate in earlier[-1]["rates"].items()}
            return min(fastest(rates), members)
        try:
            stack, rates = fastest_stack(run.model, recipe, members, self.device, graphs=self.graphs)
        except Exception as err:  # noqa: BLE001 -- a stack that cannot be timed is not used
            self.log(f"stack sizes for {run.model.name} not timed ({type(err).__name__}: {err}): one at a time")
            return 1
        self.log(f"stack sizes for {run.model.name}: " + ", ".join(f"{size}: {rate:.0f} img/s per member"
                                                                   for size, rate in rates.items()))
        self.measured.add({"kind": "stacks", "model": run.model.name, "batch": recipe.batch_size,
                           "rates": {str(k): v for k, v in rates.items()}})
        return stack

    def _population_batch(self, todo: list[Job], index: int) -> list[Job]:
        """The population jobs from ``index`` on that share one architecture and prefix."""
        first = todo[index].runs[0]
        batch = []
        for job in todo[index:]:
            run = job.runs[0]
            if not job.population or (run.model, run.train_size) != (first.model, first.train_size):
                break
            batch.append(job)
        return batch

    def _run_population(self, jobs: list[Job]) -> None:
        """Members of one population, trained ``stack`` at a time (the fastest stack size,
        measured here once per architecture), saved after every stack."""
        run = jobs[0].runs[0]
        recipe = run.recipe(self.profile)
        key = (run.model, run.train_size)
        if key not in self.stacks:
            self.stacks[key] = self._stack_size(run, recipe, len(jobs))
        stack = self.stacks[key]
        for first in range(0, len(jobs), stack):
            chunk = jobs[first : first + stack]
            seeds = ", ".join(str(job.runs[0].seed) for job in chunk)
            merged = Job(priority=chunk[0].priority, runs=tuple(job.runs[0] for job in chunk),
                         analyses=tuple(a for job in chunk for a in job.analyses), figures=chunk[0].figures,
                         name=f"{', '.join(chunk[0].figures)}: {run.label}, seeds {seeds}",
                         missing=tuple(a for job in chunk for a in job.missing))
            if not self._run_job(merged, stack=len(chunk)):
                return

def _version() -> str:
    from .. import __version__

    return __version__
