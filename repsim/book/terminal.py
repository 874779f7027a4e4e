"""What the runner tells the person at the terminal: the plan, progress, the summary.

A laptop run of the whole book takes over an hour, so before it starts the runner says
what it will run, where, with how much already in the store and about how long each
chapter takes; while a chapter runs it prints what is being trained or computed (the
lines ``repsim.progress`` writes from inside the kernel); at the end it says per chapter
how long it took, what was trained, reused, computed or left pending, and where the
result went. Nothing of this enters the notebooks.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from repsim.book.executed import ChapterRun, published_run, recorded_times
from repsim.progress import duration

if TYPE_CHECKING:
    import torch

    from repsim.profiles import Profile

def estimates(root: Path, profile: str, chapters: list[str]) -> dict[str, tuple[float | None, str]]:
    """{chapter: (seconds or None, where the figure comes from)}: this machine's last run
    of the chapter with this profile (``_build/execution.json``), else the published
    notebook's own run when it was executed with this profile."""
    last = recorded_times(root).get(profile, {})
    out = {}
    for stem in chapters:
        run, published = last.get(stem), published_run(root, profile, stem)
        if run:
            out[stem] = (run["seconds"], f"last run here, {run.get('finished_at', '?')[:10]}")
        elif published:
            out[stem] = (published["seconds"], f"the published run on {published['device']}")
        else:
            out[stem] = (None, "no run recorded")
    return out


def store_entries(store: Path) -> int:
    """Complete entries in the model store at ``store`` (a folder holding a record)."""
    return sum(1 for entry in store.iterdir() if (entry / "record.json").is_file()) if store.is_dir() else 0


def print_plan(root: Path, chapters: list[str], profile: Profile, device: torch.device, device_name: str,
               store: Path, committed: int) -> None:
    """What is about to run, on what, and for about how long."""
    where = f"{device} ({device_name}, {os.cpu_count()} cores)" if device.type == "cpu" else f"{device} ({device_name})"
    print(f"Executing {len(chapters)} chapter(s) with the {profile.name} profile on {where}")
    print(f"Model store: {store}, {store_entries(store)} entries; committed results: {committed or 'none'}")
    if not profile.may_compute(str(device)):
        print(f"The {profile.name} profile computes nothing on {device.type}: what neither the store nor "
              "the committed results hold is left pending (python -m repsim.harvest computes it on a GPU)")
    times = estimates(root, profile.name, chapters)
    shown = {stem: "unknown" if seconds is None else duration(seconds) for stem, (seconds, _) in times.items()}
    known = [seconds for seconds, _ in times.values() if seconds is not None]
    total = duration(sum(known)) + ("" if len(known) == len(times) else " + unknown")
    width, column = max(len("chapter"), *map(len, chapters)), max(len("estimate"), len(total), *map(len, shown.values()))
    print(f"\n  {'chapter':<{width}}  {'estimate':>{column}}")
    for stem, (_, source) in times.items():
        print(f"  {stem:<{width}}  {shown[stem]:>{column}}  ({source})")
    print(f"  {'total':<{width}}  {total:>{column}}\n", flush=True)


class Follow:
    """While a chapter runs, print the lines its kernel appends to its progress file.

    A thread reads the file every ``interval`` seconds and prints each whole line as
    ``[02_cka 3:07] <line>``, the clock counting from the chapter's start; through
    ``tqdm.write``, so papermill's progress bar is redrawn below instead of garbled.
    """

    def __init__(self, path: Path, stem: str, interval: float = 0.5) -> None:
        self.path, self.stem, self.interval = path, stem, interval
        self._offset, self._start = 0, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow {stem}", daemon=True)

    def __enter__(self) -> "Follow":
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._print_new()  # whatever came after the last poll

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._print_new()

    def _print_new(self) -> None:
        try:
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self._offset += len(whole)
        for line in whole.decode(errors="replace").splitlines():
            minutes, seconds = divmod(int(time.monotonic() - self._start), 60)
            tqdm.write(f"[{self.stem} {minutes}:{seconds:02d}] {line}", file=sys.stdout)


def print_summary(runs: list[ChapterRun], root: Path, built: bool) -> None:
    """One row per executed chapter: time, models and analyses by source, and where the
    page (or, unbuilt, the notebook) is."""
    if not runs:
        return
    width = max(7, *(len(run.stem) for run in runs))
    print(f"\n{'':<{width}}  {'':>7}  {'models':^15}  {'analyses':^29}".rstrip())
    print(f"{'chapter':<{width}}  {'time, s':>7}  {'trained':>7} {'reused':>7}  {'computed':>8} {'from store':>10} "
          f"{'committed':>9} {'pending':>7}  {'page' if built else 'notebook'}")
    for run in runs:
        models, analyses = run.coverage.models, run.coverage.analyses
        if not run.published:
            where = f"not published: {_relative(run.notebook, root)} ({run.reason})"
        elif built:
            where = _relative(root / "_build" / "html" / "book" / f"{run.stem}.html", root)
        else:
            where = _relative(run.notebook, root)
        print(f"{run.stem:<{width}}  {run.seconds:>7,.0f}  {models['computed']:>7} "
              f"{models['store'] + models['results']:>7}  {analyses['computed']:>8} {analyses['store']:>10} "
              f"{analyses['results']:>9} {run.coverage.count('pending'):>7}  {where}")
    print(f"{'total':<{width}}  {sum(run.seconds for run in runs):>7,.0f}")
    if built:
        print(f"\nHTML: {root / '_build' / 'html' / 'index.html'}")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
