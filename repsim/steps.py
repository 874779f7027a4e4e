"""One SGD step of a stack of members, run eagerly or replayed from a CUDA graph.

Narrow ResNets leave a GPU waiting on Python: each of their hundreds of small kernels is
launched one at a time. A CUDA graph records the whole step (forward, backward and the
optimizer's update) once and replays it with a single launch, so the step costs what
the GPU needs and no more. The replay runs exactly the kernels the recording saw, so
it computes what the eager step computes; ``graphs_match_eager`` checks that on the
device before a harvest relies on it.

What a graph needs, and how this module provides it:

- fixed shapes: every step has ``batch_size`` images (``train.py`` drops a last
  incomplete batch), copied into the same input buffers before each replay;
- no host synchronisation inside the step: the learning rate is a tensor on the device
  (fused SGD reads it there), refilled in place before each replay;
- autocast without its weight cache, which would otherwise hold casts made during
  recording (``cache_enabled=False``);
- a warm-up before recording (cuDNN and the allocator settle, the optimizer creates its
  momentum buffers). Warm-up steps are real updates, so the model and optimizer state
  are copied before and put back, in place, afterwards: training starts from the very
  state it would have had without the graph.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .devices import autocast_dtype


class EagerStep:
    """``step(x, targets)``: one SGD step of every member on its own batch.

    x: (B, M*3, H, W) float, member m's images in channels [3m, 3m + 3); targets: (B, M).
    Returns the members' mean losses, (M,), as a tensor on the device (no sync).
    Autocast follows the recipe's precision, by default the device's
    (``devices.autocast_dtype``); float16 gradients go
    through a gradient scaler, whose overflow check waits for the device.
    """

    graphed = False
    fallback: str | None = None  # why a graph was asked for and not used

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, precision: str | None = None) -> None:
        self.model, self.optimizer = model, optimizer
        self.device = next(model.parameters()).device
        self.dtype = autocast_dtype(self.device, precision)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None

    def _compute(self, x: torch.Tensor, targets: torch.Tensor, cache: bool = True) -> torch.Tensor:
        reduced = self.dtype is not None
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=reduced, cache_enabled=cache and reduced):
            logits = self.model(x)  # (B, M, classes)
            losses = F.cross_entropy(logits.permute(0, 2, 1).float(), targets, reduction="none").mean(0)
        self.optimizer.zero_grad(set_to_none=True)
        total = losses.sum()  # member m's gradient is that of its own mean loss
        if self.scaler is None:
            total.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return losses.detach()

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._compute(x, targets)


class GraphedStep(EagerStep):
    """The same step, recorded once as a CUDA graph and replayed (CUDA only)."""

    graphed = True

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, x_shape: tuple, targets_shape: tuple,
                 classes: int, warmup: int = 3, precision: str | None = None) -> None:
        super().__init__(model, optimizer, precision)
        if self.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        if self.scaler is not None:
            raise RuntimeError("float16 training scales its gradients, which waits for the device: no CUDA graph")
        saved_model = copy.deepcopy(model.state_dict())
        saved_optimizer = copy.deepcopy(optimizer.state_dict())
        try:
            filler = torch.Generator(device=self.device).manual_seed(0)  # leaves every training stream alone
            self.x = torch.rand(x_shape, device=self.device, generator=filler).contiguous(
                memory_format=torch.channels_last)
            self.targets = torch.randint(0, classes, targets_shape, device=self.device, generator=filler)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self._compute(self.x, self.targets, cache=False)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                self.losses = self._compute(self.x, self.targets, cache=False)
        finally:  # recorded or not, training starts from the state it was given
            torch.cuda.synchronize(self.device)
            _restore_in_place(model, optimizer, saved_model, saved_optimizer)

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.x.copy_(x)
        self.targets.copy_(targets)
        self.graph.replay()
        return self.losses


def _restore_in_place(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optimizer_state: dict) -> None:
    """Put back the state saved before the warm-up without moving any tensor (the graph
    recorded their addresses). Momentum buffers the warm-up created are zeroed, which is
    what a first step does: a buffer that starts at zero and one that starts as the
    first gradient give the same update."""
    with torch.no_grad():
        for key, value in model.state_dict().items():
            value.copy_(model_state[key])
        saved = optimizer_state["state"]
        for index, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
            buffer = optimizer.state.get(param, {}).get("momentum_buffer")
            if buffer is None:
                continue
            if index in saved and saved[index].get("momentum_buffer") is not None:
                buffer.copy_(saved[index]["momentum_buffer"])
            else:
                buffer.zero_()


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, x_shape: tuple, targets_shape: tuple,
              classes: int, graphs: bool, precision: str | None = None) -> EagerStep:
    """A ``GraphedStep`` when ``graphs`` is true and this model's step can be recorded,
    else an ``EagerStep``. A recording that fails (a real model can meet what the
    self-check's small one did not) falls back to the eager step, whose ``fallback``
    says why: the run goes on, only slower."""
    if graphs:
        try:
            return GraphedStep(model, optimizer, x_shape, targets_shape, classes, precision=precision)
        except Exception as err:  # noqa: BLE001 -- any failed recording leaves the eager step
            step = EagerStep(model, optimizer, precision)
            step.fallback = f"{type(err).__name__}: {err}"
            return step
    return EagerStep(model, optimizer, precision)
