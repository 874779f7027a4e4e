"""Training: the paper's recipe (and faster ones), one loop for one model or many.

The recipe's defaults are the paper's: SGD with momentum 0.9, batch 128, cosine decay
stepped once per epoch, L2 on conv and dense kernels only (Keras L2 lambda = 1e-4 is
PyTorch weight decay 2e-4), no decay on biases or BN. The analysed checkpoint is the
epoch with the best test accuracy (the paper and its released code).

Profiles may shorten the schedule with what leaves the learned representations alone: a
larger batch, a linear warm-up, the decay stepped every SGD step, Nesterov momentum, a
higher peak learning rate. What is known to change representations is deliberately not
offered: label smoothing, whitening or identity initialisation, any change to the
architecture.

``train_models`` trains M models of one architecture, one per seed, as one grouped
network (``repsim.stacked``); M = 1 is a single model, through the very same loop. The
whole data set sits on the device as uint8 and is augmented there; on a GPU the step runs
under bf16 autocast in channels_last, and can be replayed from a CUDA graph
(``repsim.steps``).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .data import ImageDataset, augment, to_float
from .devices import PRECISIONS, autocast_dtype, native_bf16, precision_name, synchronize
from .devices import resolve as resolve_device
from .files import as_config, load_checked, save_checked
from .models import ResNet, ResNetConfig
from .progress import report_epoch
from .stacked import StackedResNet, stacked_accuracies
from .steps import make_step

_OPTIONAL = ("train_size", "eval_size", "evaluations")
LR_STEPS = ("epoch", "step")
TRAIN_ACCURACY_IMAGES = 5_000  # training images scored (eval mode) to report how well a model fits its data


def _or_none(field: str) -> str:
    return " or None" if field in _OPTIONAL else ""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 300  # the paper's schedule; profiles shorten it
    batch_size: int = 128
    lr: float = 0.01  # peak learning rate, cosine-decayed to 0 over the epochs
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 2e-4  # on conv/dense kernels only
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr over this many epochs, then the cosine decay
    lr_steps: str = "epoch"  # the learning rate changes once per "epoch" (the paper) or every SGD "step"
    train_size: int | None = None  # fixed prefix of the training set (None: all 50,000)
    eval_size: int | None = None  # test images scored to pick the best epoch (None: all)
    # PyTorch convention: the paper's 0.01 (Keras 0.99) averages over ~100 steps, too slowly
    # for runs of a few hundred steps, whose eval-mode accuracy it then drags down.
    bn_momentum: float = 0.01
    evaluations: int | None = None  # epochs scored, evenly spaced, ending at the last (None: every epoch)
    # Autocast of the training step: None is the device's default (devices.autocast_dtype:
    # bf16 on recent GPUs, float32 on a CPU); "bfloat16" or "float32" fixes it. Store keys
    # name it only when set (runs.model_key), so the keys from before it existed hold.
    precision: str | None = None

    def __post_init__(self) -> None:
        # Checked here, not deep in the loop: a float epoch count fails inside range(), and
        # a NaN learning rate would train without complaint into NaN weights.
        for field, minimum in (("epochs", 1), ("batch_size", 2), ("train_size", 2), ("eval_size", 1), ("evaluations", 1)):
            value = getattr(self, field)
            if value is None and field in _OPTIONAL:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
                raise ValueError(f"{field} must be an integer >= {minimum}{_or_none(field)}, got {value!r}")
            object.__setattr__(self, field, int(value))  # numpy integers would not survive JSON
        for field in ("lr", "momentum", "weight_decay", "bn_momentum", "warmup_epochs"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{field} must be a finite number, got {value!r}")
            object.__setattr__(self, field, float(value))
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov must be True or False, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS[1:]} or None (the device's default), "
                             f"got {self.precision!r}")
        if self.lr_steps not in LR_STEPS:
            raise ValueError(f"lr_steps must be one of {LR_STEPS}, got {self.lr_steps!r}")

    def scored_epochs(self) -> set[int]:
        """The 1-based epochs after which the test set is scored; always includes the last.

        Scoring every epoch of a long run on a small training set can cost as much as the
        training itself on a CPU, so profiles may score only a few evenly spaced epochs.
        """
        if self.evaluations is None or self.evaluations >= self.epochs:
            return set(range(1, self.epochs + 1))
        return {math.ceil(self.epochs * k / self.evaluations) for k in range(1, self.evaluations + 1)}

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of SGD step ``step`` (0-based): a linear warm-up over
        ``warmup_epochs``, then cosine decay to zero at the end of the last epoch. With
        ``lr_steps="epoch"`` it moves once per epoch, as in the paper."""
        if self.lr_steps == "epoch":
            t, total, warm = step // steps_per_epoch, self.epochs, self.warmup_epochs
        else:
            t, total, warm = step, self.epochs * steps_per_epoch, self.warmup_epochs * steps_per_epoch
        if t < warm:
            return self.lr * (t + 1) / math.ceil(warm)
        return self.lr * 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm)))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    # Kernels of convolutions and dense layers (stacked ones included) are the weights of
    # two or more dimensions; biases and BatchNorm's scale and shift are vectors.
    kernels = [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() >= 2]
    kernel_ids = {id(p) for p in kernels}
    others = [p for p in model.parameters() if id(p) not in kernel_ids]
    return [{"params": kernels, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """Fused SGD whose learning rate is a tensor on the model's device, so that a CUDA
    graph reads the current value (``set_learning_rate`` writes it in place)."""
    device = next(model.parameters()).device
    groups = _param_groups(model, config.weight_decay)
    for group in groups:
        group["lr"] = torch.tensor(config.lr, device=device)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, fused=True)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"].fill_(lr)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int | None = None,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Logits (N, classes) for uint8 images (N, 3, 32, 32), in eval mode, on ``device``.

    ``batch_size`` None: 1,000 on a GPU; 64 on a CPU, whose caches hold a small batch's
    activations (ResNet-14 (1x) on 2 cores: 1,306 images/s against 599 at 1,000;
    ``benchmarks/predict_batch.py``).
    """
    device = resolve_device(device)
    if batch_size is None:
        batch_size = 64 if device.type == "cpu" else 1000
    model.eval().to(device)
    outputs, dtype = [], autocast_dtype(device)
    for start in range(0, len(images), batch_size):
        batch = to_float(images[start : start + batch_size].to(device))
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outputs.append(model(batch).float())
    return torch.cat(outputs)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device=None) -> float:
    logits = predict(model, images, device=device)
    return (logits.argmax(1).cpu() == labels.cpu()).float().mean().item()


def new_model(model_config: ResNetConfig, config: TrainConfig, seed: int | None) -> ResNet:
    """A fresh model with the recipe's BatchNorm momentum; ``seed`` fixes its initialisation."""
    if seed is not None:
        torch.manual_seed(seed)
    member = ResNet(model_config)
    for module in member.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = config.bn_momentum
    return member


def train_models(
    model_config: ResNetConfig,
    config: TrainConfig,
    data: ImageDataset,
    seeds,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    graphs: bool = False,
    deadline: float | None = None,
    snapshot_steps: Iterable[int] = (),
    on_snapshot: Callable[[int, list[dict]], None] | None = None,
) -> list[tuple[ResNet, dict]]:
    """Train one fresh model per seed, all at once; return each at its best-test-accuracy
    epoch, with its metrics.

    Member m sees only its own images (its seed also fixes its data order and
    augmentation), its own BatchNorm statistics and its own gradient, so it is the model
    ``train_model`` gives for that seed, up to floating-point rounding. Every step has
    ``batch_size`` images: an epoch drops the last incomplete batch of its shuffled order.

    With ``checkpoint`` (a file path), the stack, optimizer, generators, histories and
    best epochs so far are saved there after every epoch, and a run that finds a
    checkpoint of the same run (same configs, seeds, data and device type) resumes after
    its last epoch. On the CPU with a fixed thread count the resumed run is bitwise the
    uninterrupted one; with bf16 on a GPU it is the same recipe, not the same bits.
    ``graphs=True`` (CUDA only) replays each step from a CUDA graph (``repsim.steps``).
    With ``deadline`` (a ``time.perf_counter()`` value), ``DeadlineExceeded`` is raised
    after the first epoch whose pace says the run would end after it.

    ``snapshot_steps``: SGD step counts (0 is the initialisation, the last is
    ``epochs * steps_per_epoch``) at which ``on_snapshot(step, states)`` receives a copy of
    each member's state dict, as it is after that many steps. It only reads the weights,
    so the trained models are the same with or without it; the caller decides what to keep
    (weights, or something computed from them). A resumed run delivers only the
    snapshots after the epoch it resumes from.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {seeds}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an integer, got {seed!r}")
    device = resolve_device(device)
    model = StackedResNet([new_model(model_config, config, seed) for seed in seeds])  # the seed fixes the init ...
    model = model.to(device, memory_format=torch.channels_last)  # ~25% faster convolutions on CPU and GPU
    optimizer = make_optimizer(model, config)
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]  # ... and the data streams
    images, labels = data.train_prefix(config.train_size)
    images, labels = images.to(device), labels.to(device)  # uint8: 150 MB for all of CIFAR
    if len(labels) < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(labels)} training images")
    steps_per_epoch = len(labels) // config.batch_size
    snapshots = _snapshot_steps(snapshot_steps, config.epochs * steps_per_epoch, on_snapshot)
    test_images = data.test_images[: config.eval_size].to(device)
    test_labels = data.test_labels[: config.eval_size]
    scored = config.scored_epochs()
    m = len(seeds)
    run = as_config(model_config, config, seeds=seeds, data=data.fingerprint, device=device.type)
    histories, best = [[] for _ in seeds], [(-1.0, None, -1) for _ in seeds]
    done, earlier = 0, {"seconds": 0.0, "train_seconds": 0.0, "resumed": []}
    saved = _load_checkpoint(checkpoint, run)
    if saved is not None:
        model.load_state_dict(saved["model"])  # copies into the channels_last parameters
        optimizer.load_state_dict(saved["optimizer"])
        for generator, state in zip(generators, saved["generators"]):
            generator.set_state(state)
        histories, best, done = saved["histories"], saved["best"], saved["epoch"]
        earlier = {"seconds": saved["seconds"], "train_seconds": saved["train_seconds"],
                   "resumed": saved["resumed"] + [done]}
    step = make_step(model, optimizer, (config.batch_size, 3 * m, 32, 32), (config.batch_size, m),
                     model_config.num_classes, graphs, config.precision)
    if step.dtype == torch.bfloat16 and not native_bf16(device):
        warnings.warn(f"{config.precision or 'the default'} precision asks for bf16, which this {device.type} has no "
                      "native support for: the same recipe, likely slower than float32", stacklevel=2)
    start, train_seconds = time.perf_counter(), 0.0
    name = model_config.name if m == 1 else f"{m} x {model_config.name}"
    for epoch in tqdm(range(done, config.epochs), desc=name, disable=not progress, leave=False,
                      initial=done, total=config.epochs):
        model.train()
        synchronize(device)
        epoch_start = time.perf_counter()
        orders = [torch.randperm(len(labels), device=device, generator=g) for g in generators]
        total_loss = torch.zeros(m, device=device)
        for s in range(steps_per_epoch):
            if epoch * steps_per_epoch + s in snapshots:
                on_snapshot(epoch * steps_per_epoch + s, model.unstack())
            set_learning_rate(optimizer, config.learning_rate(epoch * steps_per_epoch + s, steps_per_epoch))
            batches = [order[s * config.batch_size : (s + 1) * config.batch_size] for order in orders]
            x = torch.cat([augment(to_float(images[i]), g) for i, g in zip(batches, generators)], dim=1)
            targets = torch.stack([labels[i] for i in batches], dim=1)  # (B, M)
            total_loss += step(x.contiguous(memory_format=torch.channels_last), targets)
        losses = (total_loss / steps_per_epoch).tolist()  # waits for the device
        train_seconds += time.perf_counter() - epoch_start
        diverged = [seed for seed, loss in zip(seeds, losses) if not math.isfinite(loss)]
        if diverged:  # stop before a NaN model reaches the store (or a checkpoint) as a result
            raise FloatingPointError(f"training {model_config.name} diverged in epoch {epoch + 1} for seed(s) {diverged}: "
                                     f"the training loss is not finite; lower the learning rate (lr={config.lr})")
        accs = stacked_accuracies(model, test_images, test_labels).tolist() if epoch + 1 in scored else [None] * m
        states = None
        for k, (loss, acc) in enumerate(zip(losses, accs)):
            histories[k].append({"epoch": epoch + 1, "train_loss": loss, "test_acc": acc})
            if acc is not None and acc > best[k][0]:
                states = states or model.unstack()
                best[k] = (acc, states[k], epoch + 1)
        pace = (time.perf_counter() - start) / (epoch + 1 - done)
        report_epoch(name, seeds, len(labels), epoch + 1, config.epochs, pace)
        if deadline is not None and time.perf_counter() + pace * (config.epochs - epoch - 1) > deadline:
            raise DeadlineExceeded(f"{name}: {config.epochs - epoch - 1} epochs left at {pace:.1f} s each "
                                   f"would end {time.perf_counter() + pace * (config.epochs - epoch - 1) - deadline:.0f} s "
                                   "after the deadline")
        if checkpoint is not None:
            save_checked({
                "run": run, "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "generators": [g.get_state() for g in generators], "histories": histories, "best": best,
                "resumed": earlier["resumed"], "seconds": earlier["seconds"] + time.perf_counter() - start,
                "train_seconds": earlier["train_seconds"] + train_seconds,
            }, Path(checkpoint))
    if config.epochs * steps_per_epoch in snapshots:
        on_snapshot(config.epochs * steps_per_epoch, model.unstack())
    seconds = earlier["seconds"] + time.perf_counter() - start
    train_seconds += earlier["train_seconds"]
    fit_images, fit_labels = images[:TRAIN_ACCURACY_IMAGES], labels[:TRAIN_ACCURACY_IMAGES]
    results = []
    for k in range(m):
        member = new_model(model_config, config, None)
        member.load_state_dict(best[k][1])
        metrics = {
            "best_test_acc": best[k][0],
            "best_epoch": best[k][2],
            "final_test_acc": histories[k][-1]["test_acc"],
            "eval_size": len(test_labels),
            "train_acc": accuracy(member, fit_images, fit_labels, device),  # of the analysed checkpoint, eval mode
            "train_acc_images": len(fit_labels),
            "history": histories[k],
            "train_seconds": seconds / m,
            # Training images per second of the whole stack, evaluation excluded.
            "images_per_second": m * steps_per_epoch * config.batch_size * config.epochs / max(train_seconds, 1e-9),
            "device": str(device),
            "cuda_graphs": step.graphed,
            "graph_fallback": step.fallback,  # why a requested graph was not used (None: not requested, or used)
            "autocast": precision_name(step.dtype),
            "stacked_with": m,
            "resumed_after_epochs": earlier["resumed"],  # epochs at which an interrupted run was picked up
        }
        results.append((member.to(device).eval(), metrics))
    return results


class DeadlineExceeded(RuntimeError):
    """A training run stopped because it would not finish before its deadline."""


def train_model(model_config: ResNetConfig, config: TrainConfig, data: ImageDataset, seed: int,
                device: str | torch.device | None = None, progress: bool = True,
                checkpoint: str | os.PathLike | None = None, graphs: bool = False,
                deadline: float | None = None) -> tuple[ResNet, dict]:
    """``train_models`` for a single seed."""
    return train_models(model_config, config, data, [seed], device, progress, checkpoint, graphs, deadline)[0]


def _snapshot_steps(steps: Iterable[int], total: int, on_snapshot: Callable | None) -> set[int]:
    """The requested snapshot steps as a set, checked against the run's ``total`` steps."""
    steps = list(steps)
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or not 0 <= step <= total:
            raise ValueError(f"snapshot steps must be integers in [0, {total}] (the run's SGD steps), got {step!r}")
    if steps and on_snapshot is None:
        raise ValueError("snapshot_steps need an on_snapshot callback to receive them")
    return {int(step) for step in steps}


def _load_checkpoint(path: str | os.PathLike | None, run: dict) -> dict | None:
    """The checkpoint at ``path`` if it is intact and of this very run, else None."""
    if path is None:
        return None
    try:
        saved = load_checked(Path(path))
    except Exception:  # noqa: BLE001 -- an unreadable checkpoint only costs a fresh start
        return None
    if not isinstance(saved, dict) or saved.get("run") != json.loads(json.dumps(run)):
        return None
    return saved
