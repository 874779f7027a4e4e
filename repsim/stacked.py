"""Several models of one architecture as one grouped network.

Models that differ only in their seed can be fused into one network whose every
convolution has ``groups=M``: member m owns channels [m*c, (m+1)*c) of every layer and
sees only its own input images. BatchNorm statistics are per channel, ReLU and the
residual add are elementwise, the pool is per channel and the dense head is applied per
member, so no member ever reads another's activations. With the loss the sum of the
members' own mean losses, each member's gradient is the one it would get alone, and SGD
with momentum and weight decay is elementwise, so each member takes exactly its own step.

``train.train_models`` trains every model through such a stack (one member for a single
model), so M members trained at once are the M models trained alone, up to
floating-point rounding (tested), in fewer, larger kernel launches: small models leave a
GPU mostly idle and pay Python and dispatch overhead per layer, which stacking amortises
over M members. ``throughput.fastest_stack`` measures the speed-up on a device.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .data import to_float
from .devices import autocast_dtype
from .models import ResNet


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
        dtype = autocast_dtype(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(x.contiguous(memory_format=torch.channels_last)).float()
        correct += (logits.argmax(2) == labels[start : start + batch_size].to(device)[:, None]).sum(0)
    return (correct / len(images)).cpu()
