"""What a long computation is doing now, told to whoever runs the chapters.

A chapter runs in a Jupyter kernel whose output goes into the notebook. Progress (which
model is training, which epoch, how long is left) belongs on the terminal of the person
waiting, not in the published page. So when ``$REPSIM_PROGRESS`` names a file,
``report`` appends one line to it, and the book runner (``repsim.book.runner``)
follows that file and prints the lines; without the variable ``report`` does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

VARIABLE = "REPSIM_PROGRESS"


def report(message: str) -> None:
    """Append ``message`` as one line to the file named by ``$REPSIM_PROGRESS``, if set."""
    path = os.environ.get(VARIABLE)
    if path:
        # One short write in append mode: lines from several processes do not interleave.
        with open(path, "a") as log:
            log.write(" ".join(message.splitlines()) + "\n")


def report_epoch(name: str, seeds: Sequence[int], images: int, done: int, epochs: int, seconds_per_epoch: float) -> None:
    """Report an epoch of training: "ResNet-56 (1x) on 1,000 images, seed 0: epoch 7/20,
    2.1 s per epoch, 27 s left"."""
    left = duration(seconds_per_epoch * (epochs - done))
    report(f"{name} on {images:,} images, {_seeds(seeds)}: epoch {done}/{epochs}, "
           f"{seconds_per_epoch:.1f} s per epoch, {left} left")


def duration(seconds: float) -> str:
    """"41 s", "12 min", "1.5 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def _seeds(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]} to {seeds[-1]}"
    return f"seeds {', '.join(map(str, seeds))}" if len(seeds) <= 5 else f"{len(seeds)} seeds"
