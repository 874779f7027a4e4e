"""Training throughput: repsim's trainer against a plain PyTorch baseline, and populations
trained several models at once against one at a time.

    python -m benchmarks.training [--device cpu|cuda] [--models 20x1 56x1 20x4] [--images 1024]

1. For each model, one epoch on the same CIFAR-10 prefix, batch 128:
   - repsim: ``repsim.train.train_model`` as the chapters call it: the data set resident
     on the device as uint8, batched augmentation on the device, channels_last, and bf16
     autocast on a GPU (float32 on a CPU);
   - baseline: what a plain PyTorch script does: a ``DataLoader`` over PIL images with
     torchvision's ``RandomCrop(32, padding=4, padding_mode="reflect")``,
     ``RandomHorizontalFlip`` and ``ToTensor`` (``--workers`` processes), the same
     ResNet in float32 and the default memory format, the same SGD.
   The two run in turn, ``--rounds`` times, and each keeps its best round, so a burst of
   load on a shared machine does not decide the ratio.
2. Populations: ``repsim.stacked.stack_throughput`` for stack sizes 1, 2, 4 and 8 of a
   small model (images per second per member).
3. The fraction of the device's measured matrix-multiply rate (float32 on a CPU, bf16 on
   a GPU; one large square GEMM, timed in the same run) that repsim's training reaches,
   counting 3x the forward FLOPs (torch.utils.flop_counter) per training image.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms
from torchvision.transforms.functional import to_pil_image

from repsim.data import load_dataset
from repsim.devices import resolve as resolve_device
from repsim.devices import synchronize
from repsim.models import ResNet, ResNetConfig
from repsim.throughput import stack_throughput
from repsim.train import TrainConfig, _param_groups, train_model


class PilImages(Dataset):
    """CIFAR images as PIL images through torchvision transforms, as a plain script has them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = [to_pil_image(image) for image in images]
        self.labels = labels.tolist()
        self.transform = transforms.Compose([transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
                                             transforms.RandomHorizontalFlip(), transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), self.labels[index]


def baseline_epoch(config: ResNetConfig, dataset: PilImages, batch_size: int, workers: int, device) -> float:
    """Seconds for one epoch of the plain PyTorch loop."""
    torch.manual_seed(0)
    model = ResNet(config).to(device).train()
    optimizer = torch.optim.SGD(_param_groups(model, 2e-4), lr=0.01, momentum=0.9)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=False, pin_memory=device.type == "cuda")
    synchronize(device)
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


def repsim_epoch(config: ResNetConfig, data, images: int, batch_size: int, device) -> float:
    """Seconds for one epoch of repsim's trainer (scoring 16 test images at the end)."""
    synchronize(device)
    start = time.perf_counter()
    train_model(config, TrainConfig(epochs=1, batch_size=batch_size, train_size=images, eval_size=16), data, seed=0,
                device=device, progress=False)
    synchronize(device)
    return time.perf_counter() - start


def training_flops_per_image(config: ResNetConfig) -> float:
    """3x the forward FLOPs of one image (forward, and backward at twice the forward)."""
    model = ResNet(config).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    return 3.0 * counter.get_total_flops()


def matmul_rate(device, dtype, size: int = 4096, repeats: int = 10) -> float:
    """FLOP/s of one large square GEMM, best of a few timings."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * size**3 / best


def parse_model(text: str) -> ResNetConfig:
    depth, _, width = text.partition("x")
    try:
        return ResNetConfig(depth=int(depth), width=int(width or 1))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"model {text!r}: expected DEPTHxWIDTH such as 20x1 ({err})") from err


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", type=parse_model, default=["20x1", "56x1", "20x4"])
    parser.add_argument("--images", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes of the baseline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--population-model", type=parse_model, default="8x2")
    parser.add_argument("--population-batch", type=int, default=32)
    args = parser.parse_args(argv)
    args.models = [parse_model(m) if isinstance(m, str) else m for m in args.models]
    if isinstance(args.population_model, str):
        args.population_model = parse_model(args.population_model)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}, {os.cpu_count()} cores"
    print(f"# training throughput, {datetime.date.today()}, {name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")

    data = load_dataset("cifar10")
    images, labels = data.train_prefix(args.images)
    pil = PilImages(images, labels)
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_rate(device, peak_dtype)
    print(f"matrix-multiply rate ({str(peak_dtype).removeprefix('torch.')}, 4096^3 GEMM): {peak / 1e9:,.0f} GFLOP/s\n")
    print("| model | repsim img/s | baseline img/s | ratio | repsim share of GEMM rate |")
    print("|---|---|---|---|---|")
    for config in args.models:
        repsim_epoch(config, data, min(args.images, 2 * args.batch_size), args.batch_size, device)  # warm-up
        best_repsim = best_baseline = float("inf")
        for _ in range(args.rounds):
            best_repsim = min(best_repsim, repsim_epoch(config, data, args.images, args.batch_size, device))
            best_baseline = min(best_baseline, baseline_epoch(config, pil, args.batch_size, args.workers, device))
        ours = args.images / best_repsim
        theirs = (args.images // args.batch_size * args.batch_size) / best_baseline
        share = ours * training_flops_per_image(config) / peak
        print(f"| {config.name} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x | {share:.1%} |", flush=True)

    sizes = (1, 2, 4, 8)
    rates = stack_throughput(args.population_model, TrainConfig(batch_size=args.population_batch), sizes, device,
                             rounds=args.rounds)
    print(f"\npopulations of {args.population_model.name}, batch {args.population_batch}: "
          "images per second per member, and of all members together against one at a time\n")
    print("| models at once | img/s per member | all members together, against one alone |")
    print("|---|---|---|")
    for size in sizes:
        print(f"| {size} | {rates[size]:,.0f} | {size * rates[size] / rates[1]:.2f}x |")


if __name__ == "__main__":
    main()
