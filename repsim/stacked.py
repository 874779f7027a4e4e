"""Train several models of one architecture at once, as one grouped network.

A population's members differ only in their seed, so M of them can be fused into one
network whose every convolution has ``groups=M``: member m owns channels
[m*c, (m+1)*c) of every layer and sees only its own input images. BatchNorm statistics
are per channel, ReLU and the residual add are elementwise, the pool is per channel and
the dense head is applied per member, so no member ever reads another's activations.
The loss is the sum of the members' own mean losses, so each member's gradient is the
one it would get alone; SGD with momentum and weight decay is elementwise, so each
member takes exactly its own step. Each member also keeps its own generator for data
order and augmentation, seeded as ``train.train_model`` seeds it.

The result is the same M models ``train_model`` would give, up to floating-point
rounding (tested), in fewer, larger kernel launches: small models leave a GPU mostly
idle and pay Python and dispatch overhead per layer, which stacking amortises over M
members. ``benchmarks/populations.py`` measures the speed-up against one model at a time.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import ImageDataset, augment, to_float
from .models import ResNet, ResNetConfig
from .store import as_config, save_checked
from .train import TrainConfig, _load_checkpoint, _param_groups, resolve_device


class StackedLinear(nn.Module):
    """M independent dense heads, (B, M*C) -> (B, M, out); weights kept as (M*out, C)."""

    def __init__(self, heads: list[nn.Linear]) -> None:
        super().__init__()
        self.members = len(heads)
        self.weight = nn.Parameter(torch.cat([h.weight.detach() for h in heads]))
        self.bias = nn.Parameter(torch.cat([h.bias.detach() for h in heads]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.members
        x = x.unflatten(1, (m, -1))  # (B, M, C)
        weight = self.weight.unflatten(0, (m, -1))  # (M, out, C)
        return torch.einsum("bmc,moc->bmo", x, weight) + self.bias.unflatten(0, (m, -1))


def _grouped_conv(convs: list[nn.Conv2d]) -> nn.Conv2d:
    first, m = convs[0], len(convs)
    fused = nn.Conv2d(first.in_channels * m, first.out_channels * m, first.kernel_size, stride=first.stride,
                      padding=first.padding, bias=first.bias is not None, groups=m * first.groups)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([c.weight for c in convs]))
        if first.bias is not None:
            fused.bias.copy_(torch.cat([c.bias for c in convs]))
    return fused


def _stacked_bn(norms: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    first = norms[0]
    fused = nn.BatchNorm2d(first.num_features * len(norms), eps=first.eps, momentum=first.momentum)
    fused.load_state_dict({key: torch.cat([n.state_dict()[key] for n in norms]) if value.dim() else value
                           for key, value in first.state_dict().items()})
    return fused


def _fuse(modules: list[nn.Module]) -> nn.Module:
    """One module doing the work of ``modules`` (same structure), member by member."""
    first = modules[0]
    if isinstance(first, nn.Conv2d):
        return _grouped_conv(modules)
    if isinstance(first, nn.BatchNorm2d):
        return _stacked_bn(modules)
    if isinstance(first, nn.Linear):
        return StackedLinear(modules)
    if any(True for _ in first.parameters(recurse=False)) or any(True for _ in first.buffers(recurse=False)):
        raise TypeError(f"cannot stack {type(first).__name__}: it holds its own parameters")
    fused = copy.copy(first)  # parameter-free: ReLU, Add, pool, flatten, Identity, containers
    fused._modules = {name: _fuse([getattr(m, name) for m in modules]) for name in first._modules}
    return fused


class StackedResNet(nn.Module):
    """M ResNets of one configuration as one network: (B, M*3, H, W) -> (B, M, classes)."""

    def __init__(self, models: list[ResNet]) -> None:
        super().__init__()
        if not models:
            raise ValueError("stacking needs at least one model")
        configs = {m.config for m in models}
        if len(configs) != 1:
            raise ValueError(f"stacked models must share one configuration, got {sorted(c.name for c in configs)}")
        self.config = models[0].config
        self.members = len(models)
        self.body = _fuse(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def unstack(self) -> list[dict[str, torch.Tensor]]:
        """Each member's state dict, loadable by ``ResNet(config)``."""
        m = self.members
        state = self.body.state_dict()
        return [{key: value.unflatten(0, (m, -1))[i].clone() if value.dim() else value.clone()
                 for key, value in state.items()} for i in range(m)]


@torch.no_grad()
def stacked_accuracies(model: StackedResNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Test accuracy of every member, (M,), on the same uint8 images."""
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros(model.members, device=device)
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size].to(device)).repeat(1, model.members, 1, 1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x.contiguous(memory_format=torch.channels_last)).float()
        correct += (logits.argmax(2) == labels[start : start + batch_size].to(device)[:, None]).sum(0)
    return (correct / len(images)).cpu()


def _new_stack(model_config: ResNetConfig, config: TrainConfig, seeds: list[int], device: torch.device):
    members = []
    for seed in seeds:  # initialise exactly as train_model does for this seed
        torch.manual_seed(seed)
        members.append(ResNet(model_config))
    for member in members:
        for module in member.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = config.bn_momentum
    model = StackedResNet(members).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(_param_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum)
    return model, optimizer


def _step(model, optimizer, images, labels, batches, generators) -> torch.Tensor:
    """One SGD step of every member on its own batch; returns the members' losses, (M,)."""
    x = torch.cat([augment(to_float(images[i]), g) for i, g in zip(batches, generators)], dim=1)
    targets = torch.stack([labels[i] for i in batches], dim=1)  # (B, M)
    device = x.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(x.contiguous(memory_format=torch.channels_last))  # (B, M, classes)
        losses = F.cross_entropy(logits.permute(0, 2, 1).float(), targets, reduction="none").mean(0)
    optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()  # member m's gradient is that of its own mean loss
    optimizer.step()
    return losses.detach()


def train_stacked(
    model_config: ResNetConfig,
    config: TrainConfig,
    data: ImageDataset,
    seeds: list[int] | tuple[int, ...],
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
) -> list[tuple[ResNet, dict]]:
    """Train one model per seed, all at once; return each at its best epoch, with metrics.

    Same recipe and same random streams as ``train.train_model`` for each seed. With
    ``checkpoint`` (a file path) the stack's state is saved there after every epoch,
    and a run of the same stack that finds it resumes after its last epoch.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {seeds}")
    device = resolve_device(device)
    model, optimizer = _new_stack(model_config, config, seeds, device)
    m = len(seeds)
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    images, labels = data.train_prefix(config.train_size)
    images, labels = images.to(device), labels.to(device)
    test_images = data.test_images[: config.eval_size].to(device)
    test_labels = data.test_labels[: config.eval_size]
    scored = config.scored_epochs()
    histories = [[] for _ in seeds]
    best = [(-1.0, None, -1) for _ in seeds]
    run = as_config(model_config, config, seeds=seeds, data=data.fingerprint, device=device.type)
    saved = _load_checkpoint(checkpoint, run)
    done, earlier_seconds = 0, 0.0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        for generator, state in zip(generators, saved["generators"]):
            generator.set_state(state)
        histories, best, done, earlier_seconds = saved["histories"], saved["best"], saved["epoch"], saved["seconds"]
    start = time.perf_counter()
    for epoch in tqdm(range(done, config.epochs), desc=f"{m} x {model_config.name}", disable=not progress, leave=False,
                      initial=done, total=config.epochs):
        for group in optimizer.param_groups:  # cosine decay, stepped once per epoch
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
        model.train()
        orders = [torch.randperm(len(labels), device=device, generator=g) for g in generators]
        total_loss = torch.zeros(m, device=device)
        for first in range(0, len(labels), config.batch_size):
            batches = [order[first : first + config.batch_size] for order in orders]
            if len(batches[0]) < 2:  # BatchNorm cannot train on a single example
                continue
            total_loss += _step(model, optimizer, images, labels, batches, generators) * len(batches[0])
        if not torch.isfinite(total_loss).all():  # stop before a NaN model reaches the store
            diverged = [seeds[k] for k in torch.flatnonzero(~torch.isfinite(total_loss)).tolist()]
            raise FloatingPointError(f"training {model_config.name} diverged in epoch {epoch + 1} for seeds {diverged}; "
                                     f"lower the learning rate (lr={config.lr})")
        accs = stacked_accuracies(model, test_images, test_labels) if epoch + 1 in scored else None
        states = None
        for k in range(m):
            test_acc = None if accs is None else accs[k].item()
            histories[k].append({"epoch": epoch + 1, "train_loss": total_loss[k].item() / len(labels), "test_acc": test_acc})
            if test_acc is not None and test_acc > best[k][0]:
                states = states or model.unstack()
                best[k] = (test_acc, states[k], epoch + 1)
        if checkpoint is not None:
            save_checked({"run": run, "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "generators": [g.get_state() for g in generators], "histories": histories, "best": best,
                          "seconds": earlier_seconds + time.perf_counter() - start}, Path(checkpoint))
    seconds = earlier_seconds + time.perf_counter() - start
    results = []
    for k in range(m):
        member = ResNet(model_config)
        member.load_state_dict(best[k][1])
        metrics = {"best_test_acc": best[k][0], "best_epoch": best[k][2], "final_test_acc": histories[k][-1]["test_acc"],
                   "eval_size": len(test_labels), "history": histories[k], "train_seconds": seconds / m,
                   "device": str(device), "stacked_with": m}
        results.append((member.eval(), metrics))
    return results


def stack_throughput(model_config: ResNetConfig, config: TrainConfig, stack_sizes, device=None,
                     steps: int = 4, rounds: int = 3) -> dict[int, float]:
    """Training images per second *per member* for each stack size, on random images.

    The sizes are timed in turn, ``rounds`` times over, and each keeps its best round,
    so that a burst of load on a shared machine does not decide the comparison.
    """
    device = resolve_device(device)
    images = torch.randint(0, 256, (config.batch_size * 4, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, model_config.num_classes, (len(images),), device=device)
    setups = {}
    for size in stack_sizes:
        model, optimizer = _new_stack(model_config, config, list(range(size)), device)
        setups[size] = (model.train(), optimizer, [torch.Generator(device=device).manual_seed(s) for s in range(size)])
    best = {size: 0.0 for size in setups}
    for round_ in range(rounds + 1):  # round 0 warms up (allocator, oneDNN/cuDNN kernel choice)
        for size, (model, optimizer, generators) in list(setups.items()):
            batches = [torch.randperm(len(images), device=device, generator=g)[: config.batch_size] for g in generators]
            _sync(device)
            start = time.perf_counter()
            try:
                for _ in range(steps):
                    _step(model, optimizer, images, labels, batches, generators)
                _sync(device)
            except torch.cuda.OutOfMemoryError:  # too many members for the device: this size (and larger) is out
                for larger in [s for s in setups if s >= size]:
                    del setups[larger]
                    best[larger] = 0.0
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                break
            if round_:
                best[size] = max(best[size], steps * config.batch_size / (time.perf_counter() - start))
    return best


def fastest_stack(model_config: ResNetConfig, config: TrainConfig, members: int, device=None,
                  largest: int = 32) -> tuple[int, dict[int, float]]:
    """The stack size (1, 2, 4, ... up to ``members`` and ``largest``) that trains the most
    images per second per member here, and the measured rates (0: out of memory)."""
    top = max(1, min(members, largest))
    sizes = sorted({min(2**k, top) for k in range(top.bit_length() + 1)})
    rates = stack_throughput(model_config, config, sizes, device)
    return max(rates, key=rates.get), rates


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
