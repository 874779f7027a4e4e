"""The harvest: a plan that covers the chapters, budgets kept, bundles verified and imported.

The end-to-end tests run the smoke profile's harvest twice on the CPU (as a GPU window
would), import both bundles into an empty results folder, and execute the smoke chapters
from those results alone.
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

from repsim.harvest import costs
from repsim.harvest.bundle import BundleError, BundleWriter, import_bundles, read_bundle
from repsim.harvest.plan import chapter_requests, job_estimate, mark, plan_jobs
from repsim.profiles import get_profile
from repsim.results import pack_entry, read_manifest
from repsim.store import config_key

ROOT = Path(__file__).resolve().parents[1]


def test_the_paper_plan_fits_thirty_h200_minutes_by_its_stated_estimates():
    profile = get_profile("paper")
    jobs = plan_jobs(profile)
    seconds = sum(job_estimate(job, profile, costs.H200, graphs=True) for job in jobs)
    windows = -(-seconds // 480)
    assert seconds + windows * costs.H200.window_seconds <= 30 * 60
    # Every job fits in one window of 480 s with the harvest's margin.
    assert max(job_estimate(job, profile, costs.H200, graphs=True) for job in jobs) * 1.25 <= 480
    assert [job.priority for job in jobs] == sorted(job.priority for job in jobs)


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


# -- end to end, on the CPU ---------------------------------------------------------


def _harvest(env: dict, out: Path, budget: float) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "repsim.harvest", "--profile", "smoke", "--budget", str(budget),
                           "--out", str(out)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=budget + 120)
    assert done.returncode == 0, done.stderr[-3000:]
    newest = max(out.glob("bundle-*-1.zip"), key=lambda p: p.stat().st_mtime)
    return time.perf_counter() - start, read_bundle(newest)[0]


BUDGET = 150  # seconds: the first jobs of the smoke plan, not all of it


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


def test_a_harvest_stops_inside_its_budget_with_part_of_the_plan_done(harvests):
    (seconds, manifest), _ = harvests["runs"]
    done = [job for job in manifest["jobs"] if job["status"] == "harvested"]
    assert done, manifest["jobs"]
    assert seconds <= BUDGET + 5
    assert len(done) < len(plan_jobs(get_profile("smoke")))
    assert manifest["selfcheck"]["training step"] and manifest["entries"]


def test_a_second_harvest_continues_without_retraining_anything(harvests):
    (_, first), (seconds, second) = harvests["runs"]
    assert seconds <= BUDGET + 5
    names = lambda m: {job["name"] for job in m["jobs"] if job["status"] == "harvested"}  # noqa: E731
    assert names(second) and not names(first) & names(second)
    assert not set(first["entries"]) & set(second["entries"])


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
