"""How fast a device trains: timed steps of stacks of members, and a model's cost counts.

``fastest_stack`` times the training step (``repsim.steps``) for several stack sizes on
the device at hand and keeps the one that trains a population fastest: the most images
per second of all its members together (members x each member's rate).
``model_cost`` counts, for one image, what a step's time depends on: multiply-adds, the
elements of every layer output (memory traffic) and the modules run (kernel launches);
the harvest's time estimates are built from these counts.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch
from torch import nn

from .devices import resolve as resolve_device
from .devices import synchronize
from .models import ResNet, ResNetConfig, layer_names
from .stacked import StackedResNet
from .steps import make_step
from .train import TrainConfig, make_optimizer, new_model, set_learning_rate


def stack_throughput(model_config: ResNetConfig, config: TrainConfig, stack_sizes, device=None,
                     steps: int = 4, rounds: int = 3, graphs: bool = False) -> dict[int, float]:
    """Training images per second *per member* for each stack size, on random images.

    The sizes are timed in turn, ``rounds`` times over, and each keeps its best round,
    so that a burst of load on a shared machine does not decide the comparison. A size
    the device has no memory for gets 0, and so does every larger one.
    """
    device = resolve_device(device)
    batch = config.batch_size
    setups, best = {}, {}
    for size in sorted(stack_sizes):
        try:
            model = StackedResNet([new_model(model_config, config, s) for s in range(size)])
            model = model.to(device, memory_format=torch.channels_last).train()
            optimizer = make_optimizer(model, config)
            set_learning_rate(optimizer, config.lr)
            step = make_step(model, optimizer, (batch, 3 * size, 32, 32), (batch, size), model_config.num_classes, graphs)
            x = torch.rand(batch, 3 * size, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
            targets = torch.randint(0, model_config.num_classes, (batch, size), device=device)
            setups[size] = (step, x, targets)
            best[size] = 0.0
        except torch.cuda.OutOfMemoryError:
            break
    for size in stack_sizes:
        best.setdefault(size, 0.0)
    for round_ in range(rounds + 1):  # round 0 warms up (allocator, oneDNN/cuDNN kernel choice)
        for size, (step, x, targets) in list(setups.items()):
            synchronize(device)
            start = time.perf_counter()
            try:
                for _ in range(steps):
                    step(x, targets)
                synchronize(device)
            except torch.cuda.OutOfMemoryError:  # too many members for the device: this size (and larger) is out
                for larger in [s for s in setups if s >= size]:
                    del setups[larger]
                    best[larger] = 0.0
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                break
            if round_:
                best[size] = max(best[size], steps * batch / (time.perf_counter() - start))
    return best


def fastest_stack(model_config: ResNetConfig, config: TrainConfig, members: int, device=None,
                  largest: int = 32, graphs: bool = False) -> tuple[int, dict[int, float]]:
    """The stack size (1, 2, 4, ... up to ``members`` and ``largest``) that trains the most
    images per second of all members together here (size x the per-member rate: a stack
    of 4 at 25,000 images/s per member beats one model at 80,000), and the measured
    per-member rates (0: out of memory)."""
    top = max(1, min(members, largest))
    sizes = sorted({min(2**k, top) for k in range(top.bit_length() + 1)})
    rates = stack_throughput(model_config, config, sizes, device, graphs=graphs)
    return fastest(rates), rates


def fastest(rates: dict[int, float]) -> int:
    """The stack size whose members train the most images per second together."""
    return max(rates, key=lambda size: size * rates[size])


@dataclass(frozen=True)
class ModelCost:
    """Counts for one image through one model (forward pass)."""

    macs: int  # multiply-adds of the convolutions and the dense head
    activation_elements: int  # elements of every leaf module's output
    modules: int  # leaf modules run, about the kernels a forward pass launches
    layer_features: tuple[int, ...]  # flattened size of each analysed layer (repsim.models.layer_names)

    @property
    def training_flops(self) -> int:
        """FLOPs of one training image: forward 2 x MACs, backward twice the forward."""
        return 6 * self.macs


@functools.lru_cache(maxsize=None)
def model_cost(config: ResNetConfig) -> ModelCost:
    """``ModelCost`` of ``config``, counted with forward hooks on the meta device."""
    model = ResNet(config).to("meta").eval()
    counts = {"macs": 0, "elements": 0, "modules": 0}
    features: dict[str, int] = {}

    def count(module, inputs, output):
        counts["modules"] += 1
        counts["elements"] += output[0].numel()
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            counts["macs"] += output[0].numel() * module.in_channels // module.groups * kernel
        elif isinstance(module, nn.Linear):
            counts["macs"] += module.in_features * module.out_features

    def size(name):
        def hook(module, inputs, output):
            features[name] = output[0].numel()
        return hook

    modules = dict(model.named_modules())
    handles = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    handles += [modules[name].register_forward_hook(size(name)) for name in layer_names(model)]
    with torch.no_grad():
        model(torch.empty(1, 3, 32, 32, device="meta"))
    for handle in handles:
        handle.remove()
    return ModelCost(counts["macs"], counts["elements"], counts["modules"],
                     tuple(features[name] for name in layer_names(model)))
