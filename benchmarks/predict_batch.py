"""Prediction throughput against batch size: why ``repsim.train.predict`` uses batches of
64 on a CPU and 1,000 on a GPU.

    python -m benchmarks.predict_batch [--device cpu|cuda] [--models 14x1 8x2 32x1 14x2] [--images 2000]

Each model (random weights: the speed does not depend on them) predicts the same random
images at every batch size in turn, ``--rounds`` times, keeping each size's best round,
so that a burst of load on a shared machine does not decide the ratio. Prints a Markdown
table of images per second and the ratio of the best size to a batch of 1,000.
"""

from __future__ import annotations

import argparse
import time

import torch

from repsim.devices import resolve as resolve_device
from repsim.models import ResNet, ResNetConfig
from repsim.train import predict


def parse_model(text: str) -> ResNetConfig:
    depth, width = text.lower().split("x")
    return ResNetConfig(depth=int(depth), width=int(width))


def images_per_second(model, images, batch_size: int, device: torch.device) -> float:
    predict(model, images[: 2 * batch_size], batch_size=batch_size, device=device)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    predict(model, images, batch_size=batch_size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", nargs="+", default=["14x1", "8x2", "32x1", "14x2"])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--batches", nargs="+", type=int, default=[1000, 256, 128, 64, 32])
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    print(f"device {device}, {torch.get_num_threads()} threads, {args.images} images, best of {args.rounds} rounds\n")
    print("| model | " + " | ".join(f"batch {b}" for b in args.batches) + " | best / batch 1,000 |")
    print("|---|" + "---|" * (len(args.batches) + 1))
    for name in args.models:
        torch.manual_seed(0)
        model = ResNet(parse_model(name))
        best = {b: 0.0 for b in args.batches}
        for _ in range(args.rounds):
            for b in args.batches:
                best[b] = max(best[b], images_per_second(model, images, b, device))
        reference = best.get(1000)
        ratio = f"{max(best.values()) / reference:.2f}x" if reference else "-"
        print(f"| {model.config.name} | " + " | ".join(f"{best[b]:,.0f}" for b in args.batches) + f" | {ratio} |",
              flush=True)


if __name__ == "__main__":
    main()
