"""python -m repsim.harvest: plan, harvest and import paper-scale results.

    python -m repsim.harvest --plan --profile paper [--json]
    python -m repsim.harvest --profile paper --budget 540 --out DIR
    python -m repsim.harvest --import DIR

``--plan`` lists every job of the profile with its estimated device-seconds and its
status (harvested, pending, or stale: harvested by code whose keys have since changed).
A harvest runs a self-check, then the next jobs that fit in ``--budget`` seconds
(counted from the start of the command), and writes a bundle to ``--out`` after each
job. ``--import`` verifies the bundles in a folder and merges them into
``results/<profile>/``, which the chapters read. Exit status: 0 done, 2 bad input or a
refused bundle, 3 a failed self-check.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

START = time.perf_counter()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m repsim.harvest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", help="smoke, laptop or paper")
    p.add_argument("--budget", type=float, help="seconds this harvest may run, from its start")
    p.add_argument("--out", type=Path, help="folder for the bundle and the log (also read: earlier bundles there count)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    p.add_argument("--results", type=Path, default=None,
                   help="the committed results folder (default: $REPSIM_RESULTS or the repository's results/)")
    p.add_argument("--plan", action="store_true", help="print the plan and exit")
    p.add_argument("--json", action="store_true", help="with --plan: print it as JSON")
    p.add_argument("--import", dest="import_from", type=Path, metavar="DIR", help="import the bundles in DIR")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ..results import default_root

    results_root = args.results if args.results is not None else default_root()
    if args.import_from is not None:
        return _import(args.import_from, results_root)
    if args.profile is None:
        print("error: --profile is required (smoke, laptop or paper)", file=sys.stderr)
        return 2
    from ..data import load_dataset
    from ..devices import resolve as resolve_device
    from ..profiles import get_profile

    try:
        profile = get_profile(args.profile)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from ..data import DataUnavailableError

    try:
        data = load_dataset(profile.dataset)
    except (DataUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.plan:
        return _plan(profile, data, results_root, args.out, args.json)
    if args.budget is None or args.out is None:
        print("error: a harvest needs --budget SECONDS and --out DIR (or --plan, or --import DIR)", file=sys.stderr)
        return 2
    if not args.budget > 0:
        print(f"error: --budget must be a positive number of seconds, got {args.budget}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    if device.type not in profile.compute_on:
        print(f"error: profile {profile.name!r} is harvested on {' or '.join(profile.compute_on)}, not on {device.type}",
              file=sys.stderr)
        return 2
    from .bundle import BundleError
    from .execute import Harvest
    from .selfcheck import SelfCheckError

    results_dir = results_root / profile.name if results_root is not None else None
    expected = _recorded_fingerprint(results_dir)
    if expected is not None and expected != data.fingerprint:
        print(f"error: the data here (fingerprint {data.fingerprint}, from {data.source}) differ from the data of "
              f"results/{profile.name} (fingerprint {expected}); harvest from the same copy of {profile.dataset} "
              "(REPSIM_DATA)", file=sys.stderr)
        return 2
    try:
        Harvest(profile, data, args.out, args.budget, device, results_root, START, log=_print).run()
    except SelfCheckError as err:
        print(f"error: the self-check failed, nothing was trained: {err}", file=sys.stderr)
        return 3
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _print(line: str) -> None:
    print(line, flush=True)


def _recorded_fingerprint(folder: Path | None) -> str | None:
    from ..results import read_manifest

    if folder is None:
        return None
    data = read_manifest(folder).get("data")
    return data["fingerprint"] if data else None


def _import(source: Path, results_root: Path | None) -> int:
    from .bundle import BundleError, import_bundles

    if results_root is None:
        print("error: no results folder: pass --results DIR or set REPSIM_RESULTS", file=sys.stderr)
        return 2
    try:
        summary = import_bundles(source, results_root)
    except BundleError as err:
        print(f"error: bundle refused, nothing was imported: {err}", file=sys.stderr)
        return 2
    print(f"imported {summary['parts']} bundle file(s) into {results_root}: {summary['added']} new entries, "
          f"{summary['present']} already present (profiles: {', '.join(summary['profiles'])})")
    return 0


def _plan(profile, data, results_root: Path | None, out: Path | None, as_json: bool) -> int:
    from . import costs
    from .bundle import harvested
    from .execute import Measurements
    from .plan import (
        PRIORITIES,
        WINDOW_CALLS,
        complete_figures,
        job_estimate,
        mark,
        member_estimate,
        plan_jobs,
        plan_windows,
        population_stack,
    )

    rates = costs.device_rates("cuda" if profile.device == "cuda" else "cpu")
    graphs = profile.device == "cuda"
    keys, names, records = harvested(results_root, profile.name, out)
    device = rates.name if profile.device == "cuda" else "cpu"
    measured = Measurements.from_records(records, device).lookup()
    jobs = mark(plan_jobs(profile), profile, data, keys, names)
    parts = [member_estimate(job, profile, rates, graphs, measured,
                             population_stack(profile, job.runs[0], rates, graphs, measured)) if job.population
             else job_estimate(job, profile, rates, graphs, measured) for job in jobs]
    windows = plan_windows(jobs, parts)
    too_large = [w for w in windows if w["window"] is None]
    windows = [w for w in windows if w["window"] is not None]
    rows = [{"name": job.name, "priority": job.priority, "figures": list(job.figures),
             "estimated_seconds": round(estimate.total(), 1), "status": job.status,
             "window": next((w["window"] for w in windows if index in w["jobs"]), None)}
            for index, (job, estimate) in enumerate(zip(jobs, parts))]
    pending = sum(row["estimated_seconds"] for row in rows if row["status"] != "harvested")
    summary = {"profile": profile.name, "device": rates.name, "runs": rows,
               "total_estimated_seconds": round(sum(row["estimated_seconds"] for row in rows), 1),
               "pending_estimated_seconds": round(pending, 1), "windows": len(windows),
               "window_plan": windows,
               "complete": complete_figures(jobs, {i for i, job in enumerate(jobs) if job.status == "harvested"}),
               "too_large": [jobs[i].name for w in too_large for i in w["jobs"]],
               # a lease is spent whole: its calls' budgets and its start
               "device_minutes": round(len(windows) * (sum(b for b, _ in WINDOW_CALLS) + rates.window_seconds) / 60, 1),
               "estimates": "measured rates where this device has them, otherwise counted (repsim/harvest/costs.py)"}
    if as_json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"Plan for profile {profile.name!r} on {rates.name} ({summary['estimates']}):\n")
    print(f"{'priority':<9}{'status':<11}{'window':>6}{'seconds':>9}  job")
    for row in rows:
        window = "" if row["window"] is None else str(row["window"])
        print(f"{row['priority']:<9}{row['status']:<11}{window:>6}{row['estimated_seconds']:>9.1f}  {row['name']}")
    done = sum(row["status"] == "harvested" for row in rows)
    print(f"\n{len(rows)} jobs: {done} harvested, {len(rows) - done} to do; "
          f"{summary['total_estimated_seconds']:.0f} s in all, {pending:.0f} s to do")
    calls = " + ".join(f"{budget:.0f} s" for budget, _ in WINDOW_CALLS)
    print(f"To do: {len(windows)} window(s) of {calls} (two calls of the window script), "
          f"{summary['device_minutes']:.1f} device-minutes with {rates.window_seconds:.0f} s to start each window")
    print(f"  complete now: {', '.join(summary['complete']) or 'no figure yet'}")
    for window in windows:
        completes = ", ".join(window["completes"]) or "no figure yet"
        print(f"  window {window['window']}: {len(window['jobs'])} jobs, {window['seconds']:.0f} s; completes {completes}")
    for name in summary["too_large"]:
        print(f"  too large for any call of a window (never started): {name}")
    for priority, what in PRIORITIES.items():
        mine = [row for row in rows if row["priority"] == priority]
        if mine:
            left = sum(row["estimated_seconds"] for row in mine if row["status"] != "harvested")
            print(f"  {priority}. {what}: {sum(r['status'] == 'harvested' for r in mine)} of {len(mine)} jobs harvested, "
                  f"{left:.0f} s to do")
    return 0



if __name__ == "__main__":
    sys.exit(main())
