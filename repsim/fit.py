"""A short training of any image classifier: how the page on your own model trains
torchvision's ResNet-18 and a small VisionTransformer on CIFAR-10.

The paper's ResNets are trained by ``repsim.train`` (several seeds at once, the paper's
recipe); this loop is for models that are not theirs, one at a time: SGD with Nesterov
momentum or AdamW, a linear warm-up then a cosine decay stepped every batch, the book's
crop-and-flip augmentation, weight decay on weight matrices and kernels only. It
checkpoints every epoch into the store's partial folder, so an interrupted training
resumes where it stopped, and keeps its weights in the model store under the model's
description, the recipe, the seed and the data: a page executed twice trains once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import ImageDataset, augment, to_float
from .devices import resolve as resolve_device
from .files import as_config, load_checked, save_checked
from .progress import report_epoch
from .store import Store
from .train import accuracy

OPTIMIZERS = ("sgd", "adamw")
SCORED_IMAGES = 2_000  # training and test images scored at the end


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05  # peak learning rate
    optimizer: str = "sgd"  # "sgd" (Nesterov, momentum 0.9) or "adamw"
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    train_size: int | None = 5_000  # the first images of the training set (None: all)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name, least in (("epochs", 1), ("batch_size", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be between 0 and epochs ({self.epochs}), got {self.warmup_epochs!r}")


def classifier_key(description: dict, config: FitConfig, seed: int, data) -> dict:
    """The store key of a classifier that ``description`` names (what builds it, as
    JSON), trained by ``config`` with ``seed`` on ``data`` (or its fingerprint)."""
    fingerprint = data if isinstance(data, str) else data.fingerprint
    return as_config(config, classifier=description, seed=int(seed), data=fingerprint)


def fit_classifier(build: Callable[[], nn.Module], description: dict, config: FitConfig, data: ImageDataset, seed: int,
                   store: Store | None = None, device=None) -> tuple[nn.Module, dict]:
    """The trained classifier in eval mode on ``device`` and its store record: read from
    the store, or trained into it first (``PendingResult`` where the store may not
    compute). The record's metrics hold accuracies on the first ``SCORED_IMAGES``
    training and test images, and the epochs and seconds it took."""
    store, device = store or Store(), resolve_device(device)
    key = classifier_key(description, config, seed, data)
    name = description.get("torchvision", "classifier")
    state, record = store.load_or_train(key, lambda: _train(build, name, config, data, seed, store.partial(key), device))
    model = build()
    model.load_state_dict(state)
    return model.to(device).eval(), record


def _train(build, name: str, config: FitConfig, data: ImageDataset, seed: int, partial, device) -> tuple[dict, dict]:
    torch.manual_seed(seed)
    model = build().to(device)
    images, labels = data.train_prefix(config.train_size)
    images, labels = images.to(device), labels.to(device)
    steps_per_epoch = max(1, len(images) // config.batch_size)  # the last partial batch is dropped
    total, warmup = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch
    optimizer = _optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    checkpoint, first_epoch, spent = partial / "checkpoint.pt", 0, 0.0
    saved = load_checked(checkpoint) if checkpoint.exists() else None
    if saved is not None:  # resume an interrupted training
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        first_epoch, spent = saved["epoch"], saved["seconds"]
    start = time.perf_counter() - spent
    for epoch in tqdm(range(first_epoch, config.epochs), desc="epochs", leave=False):
        model.train()
        order = torch.randperm(len(images), generator=generator).to(device)
        for step in range(steps_per_epoch):
            at = epoch * steps_per_epoch + step
            lr = config.lr * (at / warmup if at < warmup else 0.5 * (1 + math.cos(math.pi * (at - warmup) / max(total - warmup, 1))))
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss = F.cross_entropy(model(augment(to_float(images[batch]), generator=generator)), labels[batch])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}: "
                                         f"lower the learning rate ({config.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        save_checked({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                      "epoch": epoch + 1, "seconds": time.perf_counter() - start}, checkpoint)
        report_epoch(name, [seed], len(images), epoch + 1, config.epochs, (time.perf_counter() - start) / (epoch + 1))
    metrics = {
        "train_accuracy": accuracy(model, data.train_images[:SCORED_IMAGES], data.train_labels[:SCORED_IMAGES], device),
        "test_accuracy": accuracy(model, data.test_images[:SCORED_IMAGES], data.test_labels[:SCORED_IMAGES], device),
        "epochs": config.epochs, "steps": total, "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return {name: value.cpu() for name, value in model.state_dict().items()}, metrics


def _optimizer(model: nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    # Decay on weight matrices and kernels only: not on biases, norms' scales, or a
    # transformer's class token and position embedding.
    decayed = [p for name, p in model.named_parameters() if p.dim() >= 2 and "pos_embedding" not in name]
    rest = [p for name, p in model.named_parameters() if not (p.dim() >= 2 and "pos_embedding" not in name)]
    groups = [{"params": decayed, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
