"""What the runner prints: the plan with time estimates, progress lines as the kernel
writes them, and the summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from repsim.book import terminal
from repsim.book.coverage import Coverage
from repsim.book.executed import ChapterRun, record_times
from repsim.profiles import get_profile


def test_estimates_prefer_this_machines_last_run_then_the_published_run_of_the_profile(tmp_path):
    (tmp_path / "_build").mkdir()
    (tmp_path / "_build" / "execution.json").write_text(json.dumps({
        "smoke": {"02_cka": {"seconds": 31.5, "finished_at": "2026-11-27T10:00:00+00:00"}},
        "laptop": {"03_blocks": {"seconds": 900.0, "finished_at": "2026-11-27T10:00:00+00:00"}},
    }))
    (tmp_path / "book").mkdir()
    published = {"papermill": {"duration": 59.2}, "repsim": {"profile": "smoke", "cpu": "AMD EPYC", "cpu_cores": 2}}
    (tmp_path / "book" / "03_blocks.ipynb").write_text(json.dumps({"metadata": published, "cells": []}))
    times = terminal.estimates(tmp_path, "smoke", ["02_cka", "03_blocks", "07_new"])
    assert times["02_cka"] == (31.5, "last run here, 2026-11-27")
    assert times["03_blocks"] == (59.2, "the published run on AMD EPYC, 2 cores")
    assert times["07_new"] == (None, "no run recorded")
    assert terminal.estimates(tmp_path, "paper", ["02_cka", "03_blocks"]) == {
        "02_cka": (None, "no run recorded"), "03_blocks": (None, "no run recorded")}  # another profile's run


def test_each_profile_keeps_its_own_times_when_another_runs(tmp_path):
    def run(stem, seconds):
        return ChapterRun(stem, seconds, Coverage({}, {}, {}), tmp_path / f"{stem}.ipynb", "AMD EPYC")

    record_times(tmp_path, "laptop", [run("02_cka", 210.0), run("03_blocks", 1791.0)])
    record_times(tmp_path, "smoke", [run("02_cka", 23.4)])
    laptop = terminal.estimates(tmp_path, "laptop", ["02_cka", "03_blocks"])
    assert laptop["02_cka"][0] == 210.0 and laptop["03_blocks"][0] == 1791.0
    assert terminal.estimates(tmp_path, "smoke", ["02_cka"])["02_cka"][0] == 23.4
    record_times(tmp_path, "laptop", [run("02_cka", 190.0)])
    times = terminal.recorded_times(tmp_path)
    assert times["laptop"]["02_cka"]["seconds"] == 190.0 and times["laptop"]["03_blocks"]["seconds"] == 1791.0
    assert times["laptop"]["02_cka"]["device"] == "AMD EPYC" and set(times) == {"laptop", "smoke"}


def test_the_plan_names_chapters_profile_device_store_and_times(tmp_path, capsys):
    store = tmp_path / "store"
    for key in ("a", "b"):
        (store / key).mkdir(parents=True)
        (store / key / "record.json").write_text("{}")
    (store / "c.partial").mkdir()  # an unfinished run is no entry
    (tmp_path / "book").mkdir()
    published = {"papermill": {"duration": 23.4}, "repsim": {"profile": "smoke", "cpu": "AMD EPYC", "cpu_cores": 2}}
    (tmp_path / "book" / "02_cka.ipynb").write_text(json.dumps({"metadata": published, "cells": []}))
    terminal.print_plan(tmp_path, ["02_cka", "07_new"], get_profile("smoke"), torch.device("cpu"), "AMD EPYC",
                        store, committed=0)
    out = capsys.readouterr().out
    assert "Executing 2 chapter(s) with the smoke profile on cpu (AMD EPYC" in out
    assert f"Model store: {store}, 2 entries; committed results: none" in out
    rows = {row.split()[0]: row.split(maxsplit=1)[1] for row in out.splitlines() if row.startswith("  ")}
    assert rows["02_cka"] == "23 s  (the published run on AMD EPYC, 2 cores)"
    assert rows["07_new"] == "unknown  (no run recorded)"
    assert rows["total"] == "23 s + unknown"


def test_follow_prints_whole_lines_as_they_arrive(tmp_path, capsys):
    log = tmp_path / "progress.log"
    with terminal.Follow(log, "03_blocks", interval=0.05):
        time.sleep(0.15)  # no file yet: nothing to print
        with open(log, "a") as f:
            f.write("training ResNet-8 (1x) on 500 images, seed 0\nResNet-8 (1x) on 500 images, seed 0: ep")
        time.sleep(0.3)
        assert capsys.readouterr().out == "[03_blocks 0:00] training ResNet-8 (1x) on 500 images, seed 0\n"
        with open(log, "a") as f:
            f.write("och 1/3, 0.2 s per epoch, 0 s left\n")
    assert capsys.readouterr().out == "[03_blocks 0:00] ResNet-8 (1x) on 500 images, seed 0: epoch 1/3, 0.2 s per epoch, 0 s left\n"


def coverage(**analyses: int) -> Coverage:
    sources = dict.fromkeys(("computed", "store", "results", "pending"), 0)
    return Coverage({**sources, "computed": 2, "store": 1}, {**sources, **analyses}, {})


def test_the_summary_counts_by_chapter_and_says_where_each_page_is(tmp_path, capsys):
    runs = [ChapterRun("02_cka", 23.4, coverage(computed=3), tmp_path / "book" / "02_cka.ipynb", "AMD EPYC"),
            ChapterRun("03_blocks", 125.0, coverage(results=40, pending=2),
                       tmp_path / "_build" / "executed" / "03_blocks.paper.ipynb", "AMD EPYC", "2 result(s) pending")]
    terminal.print_summary(runs, tmp_path, built=True)
    rows = capsys.readouterr().out.splitlines()
    header = next(row for row in rows if row.startswith("chapter"))
    assert header.split() == ["chapter", "time,", "s", "trained", "reused", "computed", "from", "store", "committed",
                              "pending", "page"]
    assert next(row for row in rows if row.startswith("02_cka")).split() == [
        "02_cka", "23", "2", "1", "3", "0", "0", "0", "_build/html/book/02_cka.html"]
    assert next(row for row in rows if row.startswith("03_blocks")).split() == [
        "03_blocks", "125", "2", "1", "0", "0", "40", "2", "not", "published:",
        "_build/executed/03_blocks.paper.ipynb", "(2", "result(s)", "pending)"]
    assert rows[-1] == f"HTML: {Path(tmp_path) / '_build' / 'html' / 'index.html'}"
