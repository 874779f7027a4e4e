"""The harvest: a plan that covers the chapters, budgets kept, bundles verified and imported.

The end-to-end tests (marked slow: minutes of CPU; CI runs them) run the smoke profile's
harvest twice on the CPU (as a GPU window would), once for all four tests that read it,
import both bundles into an empty results folder, and execute the smoke chapters from
those results alone; another harvest is killed mid-job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from repsim.files import config_key
from repsim.harvest import costs
from repsim.harvest.bundle import BundleError, BundleWriter, import_bundles, read_bundle
from repsim.harvest.plan import (
    FIG1_DEPTH,
    FIG1_WIDTH,
    PRIORITIES,
    Job,
    chapter_requests,
    complete_figures,
    job_estimate,
    mark,
    plan_jobs,
    plan_windows,
    runs_to_train,
)
from repsim.profiles import get_profile
from repsim.results import pack_entry, read_manifest

ROOT = Path(__file__).resolve().parents[1]


def test_fig1_comes_first_and_every_job_fits_a_call_of_a_window():
    """From nothing harvested, by the counted estimates (calibrated on the first H200
    window): chapter 2 in the first window, Fig. 1's depth row by the second, all of
    Fig. 1 by the third; depth-row jobs before width-row jobs; no Fig. 6 seed pair in a
    Fig. 1 job; and with the rates that window measured, every job fits one call."""
    profile = get_profile("paper")
    jobs = plan_jobs(profile)
    estimates = [job_estimate(job, profile, costs.H200, graphs=True) for job in jobs]
    windows = plan_windows(jobs, estimates)
    assert "Ch. 2" in windows[0]["completes"]
    assert FIG1_DEPTH in windows[0]["completes"] + windows[1]["completes"]
    assert FIG1_WIDTH in [f for w in windows[:3] for f in w["completes"]]
    # With the rates measured on the H200 (the committed bundles' records), every job
    # fits one call of a window with its margin.
    from repsim.harvest.execute import Measurements

    records = list(read_manifest(ROOT / "results" / "paper")["bundles"].values())
    assert records, "results/paper holds no bundle records"
    measured = Measurements.from_records(records, costs.H200.name).lookup()
    estimates = [job_estimate(job, profile, costs.H200, True, measured) for job in jobs]
    assert [w for w in plan_windows(jobs, estimates) if w["window"] is None] == []
    assert [job.priority for job in jobs] == sorted(job.priority for job in jobs)
    fig1 = [FIG1_DEPTH in job.figures for job in jobs if job.priority == 1]
    assert fig1 == sorted(fig1, reverse=True)  # the depth row's jobs first
    assert all(run.seed == 0 for job in jobs if job.priority == 1 for run in job.runs)


def test_a_job_done_in_part_waits_behind_what_is_more_urgent_than_its_rest():
    profile = get_profile("paper")
    data = "f" * 20
    jobs = plan_jobs(profile)
    first = next(job for job in jobs if "Ch. 4" in job.figures and FIG1_DEPTH in job.figures)
    urgent = [a for a in first.analyses if min(p for p, _ in first.requests[a]) == 1]
    done = {config_key(a.key(profile, data)) for job in jobs if job.priority == 1 and job is not first
            for a in job.analyses} | {config_key(a.key(profile, data)) for a in urgent}
    marked = mark(plan_jobs(profile), profile, data, done, {})
    again = next(job for job in marked if job.name == first.name)
    assert again.status == "pending" and again.priority == 2  # only chapter 4's and 7's analyses are left
    assert set(again.missing) == set(first.analyses) - set(urgent)
    assert FIG1_DEPTH in complete_figures(marked, {i for i, job in enumerate(marked) if job.status == "harvested"})
    # With only one model's analysis left, the job trains that model alone.
    probes = next(a for a in first.analyses if a.kind == "linear probes")
    done |= {config_key(a.key(profile, data)) for a in first.analyses if a != probes}
    last = next(job for job in mark(plan_jobs(profile), profile, data, done, {}) if job.name == first.name)
    assert last.missing == (probes,) and runs_to_train(last) == (probes.run,) and len(first.runs) == 2


def test_a_stack_of_members_is_counted_as_one_training():
    profile = get_profile("paper")
    members = [job for job in plan_jobs(profile) if job.population][:4]
    run = members[0].runs[0]
    stacked = Job(8, tuple(job.runs[0] for job in members), tuple(a for job in members for a in job.analyses),
                  members[0].figures)
    batch = run.recipe(profile).batch_size
    alone = job_estimate(members[0], profile, costs.H200, True, {("train", run.model.name, batch): 10_000.0})
    four = job_estimate(stacked, profile, costs.H200, True, {("train", run.model.name, batch, 4): 10_000.0}, stack=4)
    # One stack of four at 10,000 images/s per member trains each member's images in the time of one.
    assert four.measured < 1.5 * alone.measured
    assert four.fixed < 4 * alone.fixed and four.counted == pytest.approx(4 * alone.counted)
    # Counted, the stack is one training of four members (costs.training_seconds), not four trainings.
    counted = job_estimate(stacked, profile, costs.H200, True, stack=4)
    analyses = sum(a.estimate(profile, costs.H200) for a in stacked.analyses)
    training = costs.training_seconds(run.model, run.recipe(profile), costs.H200, True, members=4)
    assert counted.counted == pytest.approx(training + analyses)
    assert counted.fixed == costs.H200.job_seconds + costs.H200.run_seconds


@pytest.mark.parametrize("name", ["smoke", "laptop", "paper"])
def test_every_request_is_in_exactly_one_job_with_every_model_it_needs(name):
    profile = get_profile(name)
    jobs = plan_jobs(profile)
    wanted = {request.analysis for request in chapter_requests(profile)}
    planned = [a for job in jobs for a in job.analyses]
    assert len(planned) == len(set(planned)) and set(planned) == wanted
    for job in jobs:
        for analysis in job.analyses:  # a cross-model comparison has both models on the device
            assert set(analysis.runs) <= set(job.runs), analysis.name
    runs = [run for job in jobs for run in job.runs]
    assert len(runs) == len(set(runs))  # no model is trained twice
    assert len({job.name for job in jobs}) == len(jobs)


def test_the_plan_holds_every_seed_the_chapters_call_their_verdicts_over():
    """Chapters 3-5 and 7 call their verdicts over ``profile.seed_list()`` (two seeds in
    the smoke profile): the plan harvests those seeds' analyses too, after every figure's;
    the paper profile, with one seed, has nothing more to harvest."""
    from repsim.figures import chapter4_runs, seed_pairs
    from repsim.heatmaps import grid_runs

    profile = get_profile("smoke")
    seeds = profile.seed_list()
    assert len(seeds) == 2
    jobs = plan_jobs(profile)
    planned = {(a.kind, a.run, a.other) for job in jobs for a in job.analyses}
    wanted = {("heatmap", run, None) for run in grid_runs(profile.blocks, seeds)}
    wanted |= {(kind, run, None) for seed in seeds for run in chapter4_runs(profile.probes, seed).values()
               for kind in ("principal components", "linear probes", "block deletion")}
    wanted |= {(kind, profile.followed_runs(seed)[0], None) for seed in seeds
               for kind in ("block over training", "heatmaps without dominant images", "dominant images")}
    wanted |= {("cross-model CKA", a, c) for a, c in seed_pairs(profile.across, seeds)}
    wanted |= {("other similarity measures", run, None) for seed in seeds for run in profile.measured_runs(seed)}
    assert wanted <= planned
    assert max(job.priority for job in jobs) == 11 and jobs[-1].priority == 11
    assert all(job.priority < 11 for job in plan_jobs(get_profile("paper")))


def test_chapter_8_comes_after_the_populations_with_counted_estimates():
    """Chapter 8's maps of the paper profile's runs are planned after the populations and
    chapter 7, each with a counted estimate that grows with the measured layers, and the
    dominant images are computed before the maps that leave them out."""
    profile = get_profile("paper")
    jobs = plan_jobs(profile)
    measured = [(job, a) for job in jobs for a in job.analyses if a.kind == "other similarity measures"]
    assert {a.run for _, a in measured} == set(profile.measured_runs())
    assert all(min(p for p, _ in job.requests[a]) == 10 and PRIORITIES[10].startswith("chapter 8") for job, a in measured)
    seconds = {a.run.model.name: a.estimate(profile, costs.H200) for _, a in measured}
    assert 0 < seconds["ResNet-20 (1x)"] < seconds["ResNet-26 (4x)"]  # three sets of images, each with wider layers
    removal = next((job, a) for job, a in measured if a.run == profile.followed_runs()[0])
    kinds = [b.kind for b in removal[0].analyses]
    assert kinds.index("dominant images") < kinds.index("other similarity measures")
    layers, n = 3 * 27 + 2, profile.measures.subset  # ResNet-164's measured layers
    # Procrustes costs a decomposition per pair of layers: quadratic in the layers.
    assert costs.subset_measures_seconds(layers, n, costs.H200) > (layers / 8) ** 2 / 2 * costs.subset_measures_seconds(
        8, n, costs.H200)


def test_statuses_follow_the_harvested_keys_and_names():
    profile = get_profile("smoke")
    data = "f" * 20  # a data fingerprint stands in for the data set
    jobs = plan_jobs(profile)
    first, second = jobs[0], jobs[1]
    done = {config_key(a.key(profile, data)) for a in first.analyses}
    stale_name = {second.analyses[0].name: "0" * 20}  # harvested under a key the code no longer builds
    marked = mark(plan_jobs(profile), profile, data, done, stale_name)
    assert marked[0].status == "harvested" and not marked[0].missing
    assert marked[1].status == "stale" and marked[2].status == "pending"


def _bundle(folder: Path, profile="smoke", fingerprint="abc", entries=1) -> list[Path]:
    writer = BundleWriter(folder, {"profile": profile, "data": {"fingerprint": fingerprint}, "jobs": []})
    for i in range(entries):
        config = {"analysis": "test", "seed": i, "data": fingerprint}
        writer.add(config_key(config), f"test: seed {i}", pack_entry(config, {}, {"metrics": {"i": i}}), "cpu")
    return writer.save()


def test_a_bundle_round_trips_and_imports_without_losing_anything(tmp_path):
    (path,) = _bundle(tmp_path / "out", entries=3)
    manifest, entries = read_bundle(path)
    assert manifest["profile"] == "smoke" and len(entries) == 3
    results = tmp_path / "results"
    assert import_bundles(path, results)["added"] == 3
    assert import_bundles(path, results) == {"parts": 1, "added": 0, "present": 3, "profiles": ["smoke"]}
    assert len(read_manifest(results / "smoke")["entries"]) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "other data"])
def test_a_damaged_or_foreign_bundle_is_refused_and_nothing_is_lost(tmp_path, damage):
    results = tmp_path / "results"
    import_bundles(_bundle(tmp_path / "good")[0], results)
    before = (results / "smoke" / "manifest.json").read_text()
    (path,) = _bundle(tmp_path / "bad", fingerprint="other" if damage == "other data" else "abc", entries=2)
    data = path.read_bytes()
    if damage == "flip":  # inside the entries, past the zip headers
        index = data.index(b"entries/") + 200
        path.write_bytes(data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("photo.jpg", b"not a bundle")
    with pytest.raises(BundleError, match=path.name if damage != "other data" else "other data"):
        import_bundles(path, results)
    assert (results / "smoke" / "manifest.json").read_text() == before


# -- end to end, on the CPU (slow: each harvest takes its budget of minutes) --------


def _harvest(env: dict, out: Path, budget: float) -> tuple[float, dict]:
    """One rehearsal of a GPU window: the very script the device runs, on the CPU with the
    smoke profile (the variables it reads), its window ending with the harvest."""
    start = time.perf_counter()
    window = {**env, "HARVEST_PROFILE": "smoke", "HARVEST_BUDGET": str(budget), "HARVEST_DEVICE": "cpu",
              "WINDOW_SECONDS": str(budget + 10), "PYTHON": sys.executable}
    done = subprocess.run(["bash", "benchmarks/gpu_window.sh", str(out)], env=window, cwd=ROOT, capture_output=True,
                          text=True, timeout=budget + 120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "harvest exit status 0" in done.stdout
    newest = max(out.glob("bundle-*-1.zip"), key=lambda p: p.stat().st_mtime)
    return time.perf_counter() - start, read_bundle(newest)[0]


BUDGET = 75  # seconds: about half of the smoke plan (all of it takes ~145 s on 2 cores), so not all of it


@pytest.fixture(scope="module")
def harvests(cifar, cifar_source, tmp_path_factory):
    """Two smoke harvests into one folder, as two windows would run them. They share the
    test session's data cache (``cifar`` decoded it), as a window's machine decodes once."""
    base = tmp_path_factory.mktemp("harvest")
    env = {**os.environ, "REPSIM_DATA": str(cifar_source), "REPSIM_RESULTS": str(base / "no-results"),
           "PYTHONUNBUFFERED": "1"}
    out = base / "out"
    first = _harvest(env, out, budget=BUDGET)
    second = _harvest(env, out, budget=BUDGET)
    return {"base": base, "env": env, "out": out, "runs": [first, second]}


@pytest.mark.slow
def test_a_harvest_stops_inside_its_budget_with_part_of_the_plan_done(harvests):
    (seconds, manifest), _ = harvests["runs"]
    done = [job for job in manifest["jobs"] if job["status"] == "harvested"]
    assert done, manifest["jobs"]
    assert seconds <= BUDGET + 5
    assert len(done) < len(plan_jobs(get_profile("smoke")))
    assert manifest["selfcheck"]["training step"] and manifest["entries"]


@pytest.mark.slow
def test_every_harvested_jobs_estimate_is_within_2x_of_its_measured_seconds(harvests):
    """What the harvest decided with (counted, then corrected and measured) against the
    seconds each smoke job took on this CPU; both windows' jobs, every kind among them."""
    jobs = [job for _, manifest in harvests["runs"] for job in manifest["jobs"] if job["status"] == "harvested"]
    assert len(jobs) >= 4
    for job in jobs:
        assert 0.5 <= job["seconds"] / job["estimated_seconds"] <= 2, job


@pytest.mark.slow
def test_a_second_harvest_continues_without_retraining_anything(harvests):
    (_, first), (seconds, second) = harvests["runs"]
    assert seconds <= BUDGET + 5
    names = lambda m: {job["name"] for job in m["jobs"] if job["status"] == "harvested"}
    assert names(second) and not names(first) & names(second)
    assert not set(first["entries"]) & set(second["entries"])


@pytest.mark.slow
def test_chapters_read_the_imported_bundles_train_nothing_and_mark_the_rest_pending(harvests, tmp_path, monkeypatch):
    import jupytext
    import nbformat
    import papermill

    results, home, log = tmp_path / "results", tmp_path / "home", tmp_path / "access.log"
    summary = import_bundles(harvests["out"], results)
    assert summary["parts"] == 2 and summary["added"] > 0
    env = {**harvests["env"], "REPSIM_RESULTS": str(results), "REPSIM_HOME": str(home), "REPSIM_ACCESS_LOG": str(log)}
    # An empty REPSIM_HOME: no model store (and the data are decoded again into its cache).
    # The kernels papermill starts inherit the environment.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    texts = []
    for stem in ("02_cka", "03_blocks", "04_probes", "05_across_models", "06_predictions"):
        source = tmp_path / f"{stem}.ipynb"
        jupytext.write(jupytext.read(ROOT / "book" / f"{stem}.py"), source)
        papermill.execute_notebook(source, tmp_path / f"{stem}.out.ipynb", cwd=ROOT / "book", progress_bar=False,
                                   parameters={"profile": "smoke", "compute_missing": False})
        texts.append(json.dumps(nbformat.read(tmp_path / f"{stem}.out.ipynb", as_version=4)["cells"]))
    lookups = [json.loads(line) for line in log.read_text().splitlines()]
    sources = {entry["source"] for entry in lookups}
    assert "computed" not in sources and "results" in sources and "pending" in sources
    assert not (home / "store").exists() or not any((home / "store").glob("*/model.pt"))
    assert any("pending" in text for text in texts)
    # Every result a chapter found missing is one the plan would harvest next.
    profile = get_profile("smoke")
    from repsim.data import load_dataset

    data = load_dataset("cifar10", source=harvests["env"]["REPSIM_DATA"])
    planned = {config_key(a.key(profile, data)) for job in plan_jobs(profile) for a in job.analyses}
    assert {entry["key"] for entry in lookups if entry["source"] == "pending"} <= planned


@pytest.mark.slow
def test_a_harvest_killed_mid_job_keeps_every_analysis_it_finished(cifar, cifar_source, tmp_path):
    """SIGKILL in the middle of the first job: the analyses saved before the kill are in
    the bundle, intact and importable, and the plan then asks only for the rest."""
    out = tmp_path / "out"
    env = {**os.environ, "REPSIM_DATA": str(cifar_source), "REPSIM_RESULTS": str(tmp_path / "none"),
           "PYTHONUNBUFFERED": "1"}
    harvest = subprocess.Popen([sys.executable, "-m", "repsim.harvest", "--profile", "smoke", "--budget", "300",
                                "--out", str(out), "--device", "cpu"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in harvest.stdout:
            lines.append(line)
            if "saved heatmap" in line:  # the job goes on with its other analyses
                harvest.kill()
                break
    finally:
        harvest.kill()
        harvest.wait(timeout=60)
    assert not any("harvested in" in line for line in lines), "".join(lines)
    (path,) = out.glob("bundle-*-1.zip")
    manifest, entries = read_bundle(path)
    assert manifest["jobs"] == []  # the job in progress is not recorded as done ...
    names = {row["name"] for row in manifest["entries"].values()}
    assert any(name.startswith("heatmap: ") for name in names) and len(entries) >= 3  # ... but what it saved is kept
    summary = import_bundles(out, tmp_path / "results")
    assert summary["added"] == len(entries)
    from repsim.harvest.bundle import harvested

    profile = get_profile("smoke")
    keys, found, _ = harvested(tmp_path / "results", "smoke")
    first = mark(plan_jobs(profile), profile, cifar, keys, found)[0]
    assert first.status == "pending" and first.missing
    assert not {a.name for a in first.missing} & names  # a later window computes only the rest


def test_a_stack_size_that_cannot_be_timed_trains_one_at_a_time_and_an_earlier_timing_is_reused(monkeypatch, tmp_path):
    from repsim.harvest import execute

    profile = get_profile("paper")
    run = next(job for job in plan_jobs(profile) if job.population).runs[0]
    recipe = run.recipe(profile)
    harvest = execute.Harvest(profile, None, tmp_path, 60, torch.device("cpu"), None, time.perf_counter(),
                              log=lambda line: None)
    harvest.graphs, harvest.measured = False, execute.Measurements("cpu")

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    monkeypatch.setattr(execute, "fastest_stack", broken)
    assert harvest._stack_size(run, recipe, 6) == 1
    assert any("not timed" in line for line in harvest.lines)
    harvest.measured.add({"kind": "stacks", "model": run.model.name, "batch": recipe.batch_size,
                          "rates": {"1": 100.0, "2": 80.0, "4": 20.0}})
    # From the earlier timing (fastest_stack is not called): 160 images/s for two members together.
    assert harvest._stack_size(run, recipe, 6) == 2
