"""The paper's training recipe, with the whole data set resident on the device.

SGD with momentum 0.9, batch 128, cosine decay per epoch, L2 on conv and dense kernels
only (Keras L2 lambda = 1e-4 is PyTorch weight decay 2e-4), no decay on biases or BN.
The analysed checkpoint is the epoch with the best test accuracy (PAPER.md, Setup).
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import ImageDataset, augment, to_float
from .models import ResNet, ResNetConfig
from .store import Store, as_config, load_checked, save_checked

_OPTIONAL = ("train_size", "eval_size", "evaluations")


def _or_none(field: str) -> str:
    return " or None" if field in _OPTIONAL else ""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 300  # the paper's schedule; profiles shorten it
    batch_size: int = 128
    lr: float = 0.01  # peak learning rate, cosine-decayed to 0 over the epochs
    momentum: float = 0.9
    weight_decay: float = 2e-4  # on conv/dense kernels only
    train_size: int | None = None  # fixed prefix of the training set (None: all 50,000)
    eval_size: int | None = None  # test images scored to pick the best epoch (None: all)
    # PyTorch convention: the paper's 0.01 (Keras 0.99) averages over ~100 steps, too slowly
    # for runs of a few hundred steps, whose eval-mode accuracy it then drags down.
    bn_momentum: float = 0.01
    evaluations: int | None = None  # epochs scored, evenly spaced, ending at the last (None: every epoch)

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
        for field in ("lr", "momentum", "weight_decay", "bn_momentum"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{field} must be a finite number, got {value!r}")
            object.__setattr__(self, field, float(value))
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")

    def scored_epochs(self) -> set[int]:
        """The 1-based epochs after which the test set is scored; always includes the last.

        Scoring every epoch of a long run on a small training set can cost as much as the
        training itself on a CPU, so profiles may score only a few evenly spaced epochs.
        """
        if self.evaluations is None or self.evaluations >= self.epochs:
            return set(range(1, self.epochs + 1))
        return {math.ceil(self.epochs * k / self.evaluations) for k in range(1, self.evaluations + 1)}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """"auto" or None picks CUDA when present, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is available; use 'cpu' or 'auto'")
    return device


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    # Kernels of convolutions and dense layers (stacked ones included) are the weights of
    # two or more dimensions; biases and BatchNorm's scale and shift are vectors.
    kernels = [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() >= 2]
    kernel_ids = {id(p) for p in kernels}
    others = [p for p in model.parameters() if id(p) not in kernel_ids]
    return [{"params": kernels, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000, device: str | torch.device | None = None) -> torch.Tensor:
    """Logits (N, classes) for uint8 images (N, 3, 32, 32), in eval mode, on ``device``."""
    device = resolve_device(device)
    model.eval().to(device)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = to_float(images[start : start + batch_size].to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            outputs.append(model(batch).float())
    return torch.cat(outputs)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device=None) -> float:
    logits = predict(model, images, device=device)
    return (logits.argmax(1).cpu() == labels.cpu()).float().mean().item()


def train_model(
    model_config: ResNetConfig,
    config: TrainConfig,
    data: ImageDataset,
    seed: int,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
) -> tuple[ResNet, dict]:
    """Train a fresh model; return it at its best-test-accuracy epoch, and metrics.

    With ``checkpoint`` (a file path), the model, optimizer, sampling generator, history
    and best epoch so far are saved there after every epoch, and a run that finds a
    checkpoint of the same run (same configs, seed, data and device type) resumes after
    its last epoch. On the CPU with a fixed thread count the resumed run is bitwise the
    uninterrupted one; with bf16 on a GPU it is the same recipe, not the same bits.
    """
    device = resolve_device(device)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    torch.manual_seed(seed)
    # channels_last: about 25% faster convolutions on CPU (oneDNN) and on GPU tensor cores.
    model = ResNet(model_config).to(device, memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = config.bn_momentum
    generator = torch.Generator(device=device).manual_seed(seed)
    images, labels = data.train_prefix(config.train_size)
    images, labels = images.to(device), labels.to(device)  # uint8: 150 MB for all of CIFAR
    test_images = data.test_images[: config.eval_size].to(device)
    test_labels = data.test_labels[: config.eval_size]
    optimizer = torch.optim.SGD(_param_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum)
    use_bf16 = device.type == "cuda"
    scored = config.scored_epochs()
    history, best = [], (-1.0, None, -1)
    run = as_config(model_config, config, seed=int(seed), data=data.fingerprint, device=device.type)
    done, earlier_seconds, resumed = 0, 0.0, []
    saved = _load_checkpoint(checkpoint, run)
    if saved is not None:
        model.load_state_dict(saved["model"])  # copies into the channels_last parameters
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        history, done, earlier_seconds = saved["history"], saved["epoch"], saved["seconds"]
        best = (saved["best_acc"], saved["best_state"], saved["best_epoch"])
        resumed = saved["resumed"] + [done]
    start = time.perf_counter()
    for epoch in tqdm(range(done, config.epochs), desc=model_config.name, disable=not progress, leave=False,
                      initial=done, total=config.epochs):
        for group in optimizer.param_groups:  # cosine decay, stepped once per epoch
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
        model.train()
        order = torch.randperm(len(labels), device=device, generator=generator)
        total_loss = torch.zeros((), device=device)
        for first in range(0, len(order), config.batch_size):
            idx = order[first : first + config.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single example
                continue
            x = augment(to_float(images[idx]), generator).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = F.cross_entropy(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(idx)
        train_loss = total_loss.item() / len(labels)
        if not math.isfinite(train_loss):
            # Stop before a NaN model reaches the store (or a checkpoint) as a result.
            raise FloatingPointError(
                f"training {model_config.name} diverged in epoch {epoch + 1}: the training loss is {train_loss}; "
                f"lower the learning rate (lr={config.lr})"
            )
        test_acc = accuracy(model, test_images, test_labels, device) if epoch + 1 in scored else None
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "test_acc": test_acc})
        if test_acc is not None and test_acc > best[0]:
            best = (test_acc, copy.deepcopy(model.state_dict()), epoch + 1)
        if checkpoint is not None:
            save_checked({
                "run": run, "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "history": history, "best_acc": best[0],
                "best_state": best[1], "best_epoch": best[2], "resumed": resumed,
                "seconds": earlier_seconds + time.perf_counter() - start,
            }, Path(checkpoint))
    model.load_state_dict(best[1])
    model = model.to(memory_format=torch.contiguous_format)
    metrics = {
        "best_test_acc": best[0],
        "best_epoch": best[2],
        "final_test_acc": history[-1]["test_acc"],
        "eval_size": len(test_labels),
        "history": history,
        "train_seconds": earlier_seconds + time.perf_counter() - start,
        "device": str(device),
        "resumed_after_epochs": resumed,  # epochs at which an interrupted run was picked up
    }
    return model, metrics


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


def trained_model(
    model_config: ResNetConfig,
    config: TrainConfig,
    data: ImageDataset,
    seed: int,
    store: Store | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[ResNet, dict]:
    """Load the model for (model_config, config, data, seed) from the store, or train it.

    Returns the model in eval mode on ``device`` and its store record.
    """
    store = store or Store()
    key = as_config(model_config, config, seed=seed, data=data.fingerprint)

    def train() -> tuple[dict, dict]:
        # Runs under the store's lock for this key, so the checkpoint file is ours alone.
        model, metrics = train_model(model_config, config, data, seed, device, progress,
                                     checkpoint=store.partial(key) / "checkpoint.pt")
        return {k: v.cpu() for k, v in model.state_dict().items()}, metrics

    state, record = store.load_or_train(key, train)
    model = ResNet(model_config)
    model.load_state_dict(state)
    return model.to(resolve_device(device)).eval(), record
