"""Which device a computation runs on, and the name it is recorded under.

Every part of repsim that picks a device (training, the analyses, the chapters' runner)
or records one (the model store, a notebook's provenance) goes through these two
functions, so "auto" means the same everywhere and a record says "NVIDIA H200" or the
CPU's model rather than just "cuda" or "cpu".
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def resolve(device: str | torch.device | None = None) -> torch.device:
    """"auto" or None picks CUDA when present, else the CPU; CUDA asked for on a
    machine without it is an error rather than a silent fallback."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but no CUDA GPU is available; use 'cpu' or 'auto'")
    return device


def synchronize(device: str | torch.device) -> None:
    """Wait for the work queued on ``device`` (a CUDA GPU; nothing to wait for elsewhere),
    so that a timer read next measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def device_type(device: str | torch.device | None = None) -> str:
    """The type ("cpu", "cuda") a computation on ``device`` runs on: "auto" and None as
    ``resolve`` picks, others as named, whether or not this machine has them."""
    return resolve(device).type if device is None or device == "auto" else torch.device(device).type


def describe(device: str | torch.device | None = None) -> str:
    """The hardware behind ``device`` (resolved as ``resolve`` does): the GPU's name, or
    the CPU's model; other device types by their type."""
    device = resolve(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_name()
    return device.type


def cpu_name() -> str:
    """The CPU's model ("AMD EPYC 7B13"); Linux names it in /proc/cpuinfo, elsewhere
    ``platform`` gives what it can."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


PRECISIONS = (None, "float32", "bfloat16", "float16")


def autocast_dtype(device: str | torch.device | None = None, precision: str | None = None) -> torch.dtype | None:
    """The reduced precision that training and prediction use on ``device`` (None: float32).

    ``precision`` None is the device's default: bf16 on GPUs with native bf16 (compute
    capability 8.0 and later: A100, H100, H200), float16 before that (Colab's T4 has no
    bf16 units, and emulated bf16 runs several times slower), float32 on a CPU. A recipe
    may name one instead ("float32", "bfloat16", "float16"): the laptop's trains under
    bf16 on CPUs too (``benchmarks/README.md``, "bf16 on the CPU"). CKA and every
    analysis stay in float32 or float64."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision is not None:
        return None if precision == "float32" else getattr(torch, precision)
    device = resolve(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def native_bf16(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` computes bf16 in hardware (CPUs: AVX512-BF16 or AMX, as oneDNN
    sees them); elsewhere bf16 is emulated and slower than float32."""
    device = resolve(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def precision_name(dtype: torch.dtype | None) -> str:
    """How records name an autocast dtype: "bfloat16", "float16", or "float32" for None."""
    return str(dtype).removeprefix("torch.") if dtype is not None else "float32"
