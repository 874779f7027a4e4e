"""Decoding the CIFAR-10 JPEG archive: in this process against a pool of worker processes.

    python -m benchmarks.decode [--archive .data/cifar10-jpeg.tar.gz] [--workers 1 2 16]

``repsim.data`` decodes the 60,000 images once per machine, then reads its cache; on a
GPU machine that first decoding is part of every window's start. Each worker count is
timed twice, alternating, and keeps its best time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from repsim import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=Path(".data/cifar10-jpeg.tar.gz"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    files = data._read_archive(args.archive)
    best = {workers: float("inf") for workers in args.workers}
    for _ in range(args.rounds):
        for workers in args.workers:
            start = time.perf_counter()
            data._decode_image_folder(files, "cifar10", str(args.archive), workers=workers)
            best[workers] = min(best[workers], time.perf_counter() - start)
    print(f"{len(files):,} files, {os.cpu_count()} CPUs")
    for workers, seconds in best.items():
        print(f"{workers:3d} worker(s): {seconds:6.1f} s  ({best[args.workers[0]] / seconds:.2f}x the first)")


if __name__ == "__main__":
    main()
