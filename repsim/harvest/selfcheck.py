"""Seconds of checks before a harvest spends its budget: does this device compute right?

Each check raises ``SelfCheckError`` with what failed; the harvest stops before it trains
anything. On a GPU the checks also decide whether training steps are replayed from CUDA
graphs (only if a graphed step computes what the eager step computes, and is faster) and
measure the device's bf16 matrix rate, the ceiling the benchmarks compare against.
"""

from __future__ import annotations

import time

import torch

from ..activations import ActivationCapture
from ..cka import MinibatchCKA, batch_gram
from ..compare import GramCapture
from ..devices import autocast_dtype, precision_name
from ..models import ResNet, ResNetConfig, layer_names
from ..stacked import StackedResNet
from ..steps import EagerStep, GraphedStep
from ..train import TrainConfig, make_optimizer, new_model, set_learning_rate

CKA_TOLERANCE = 1e-5


class SelfCheckError(RuntimeError):
    """The device failed a check: nothing was trained."""


def set_numerics(device: torch.device) -> dict:
    """The harvest's numerical settings, explicit whatever the defaults or environment:
    no TF32 (float32 stays float32 in CKA's forward passes and Grams), and cuDNN's
    benchmark mode (each training shape picks its fastest convolution once)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return {"tf32": False, "cudnn_benchmark": True, "autocast": precision_name(autocast_dtype(device))}


def run_checks(device: torch.device, log=print) -> dict:
    """Every check on ``device``; returns what was measured and decided."""
    report = {"device": device_name(device), "numerics": set_numerics(device)}
    log(f"self-check: numerics {report['numerics']}")
    for name, check in (("random generators", _generators), ("training step", _training_step),
                        ("CKA against the CPU", _cka_matches_cpu), ("capture", _capture_matches_hooks)):
        start = time.perf_counter()
        try:
            detail = check(device)
        except SelfCheckError:
            raise
        except Exception as err:  # noqa: BLE001 -- any failure of a check is the check failing
            raise SelfCheckError(f"self-check '{name}' raised {type(err).__name__}: {err}") from err
        report[name] = detail
        log(f"self-check: {name}: ok ({time.perf_counter() - start:.1f} s) {detail if detail else ''}")
    report["cuda_graphs"] = _graphs_decision(device, log) if device.type == "cuda" else {"use": False,
                                                                                           "why": "not a CUDA device"}
    report["matmul_tflops"] = _matmul_rate(device)
    log(f"self-check: matrix rate {report['matmul_tflops']:.3g} TFLOP/s "
        f"({'bf16' if device.type == 'cuda' else 'float32'})")
    return report


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _generators(device: torch.device) -> str:
    draws = [torch.randperm(1000, device=device, generator=torch.Generator(device=device).manual_seed(s))
             for s in (7, 7, 8)]
    if not torch.equal(draws[0], draws[1]):
        raise SelfCheckError("a seeded generator gave two different permutations for one seed")
    if torch.equal(draws[0], draws[2]):
        raise SelfCheckError("two seeds gave the same permutation")
    if sorted(draws[0].tolist()) != list(range(1000)):
        raise SelfCheckError("randperm did not return a permutation")
    return ""


def _tiny_stack(device: torch.device, members: int = 2):
    config = TrainConfig(epochs=1, batch_size=16, lr=0.05, nesterov=True)
    model = StackedResNet([new_model(ResNetConfig(8), config, seed) for seed in range(members)])
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model, config)
    set_learning_rate(optimizer, config.lr)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(16, 3 * members, 32, 32, device=device, generator=generator).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (16, members), device=device, generator=generator)
    return model, optimizer, x, targets


def _training_step(device: torch.device) -> str:
    model, optimizer, x, targets = _tiny_stack(device)
    before = [p.detach().clone() for p in model.parameters()]
    losses = EagerStep(model, optimizer)(x, targets)
    if not torch.isfinite(losses).all():
        raise SelfCheckError(f"a training step gave non-finite losses {losses.tolist()}")
    if all(torch.equal(a, b) for a, b in zip(before, model.parameters())):
        raise SelfCheckError("a training step left every parameter unchanged")
    return f"losses {[round(v, 3) for v in losses.tolist()]}"


def _cka_matches_cpu(device: torch.device) -> str:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 256, 300, generator=generator) * torch.tensor([1.0, 1e3, 1e-2])[:, None, None]
    y = x[0] @ torch.randn(300, 40, generator=generator) + torch.randn(256, 40, generator=generator)
    layers = {"a": x[0], "b": x[1] + x[0], "c": x[2], "d": y}
    results = []
    for where in ("cpu", device):
        accumulator = MinibatchCKA(list(layers))
        for half in (slice(0, 128), slice(128, 256)):
            accumulator.update({name: value[half].to(where) for name, value in layers.items()})
        results.append(accumulator.compute())
    error = (results[0] - results[1]).abs().max().item()
    # 1e-5: float32 Grams differ by ~1e-7 across devices, and TF32 forced on by the
    # environment (NVIDIA_TF32_OVERRIDE) by ~1e-6; every figure reads two decimals.
    if error > CKA_TOLERANCE:
        raise SelfCheckError(f"CKA on {device} differs from the CPU by {error:.2e} (more than {CKA_TOLERANCE:g})")
    return f"max difference {error:.1e}"


def _capture_matches_hooks(device: torch.device) -> str:
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(8)).to(device).eval()
    layers = layer_names(model)
    x = torch.rand(32, 3, 32, 32, device=device)
    hooked = GramCapture(model, layers)(x)
    captured = ActivationCapture(model, layers)(x)
    worst = 0.0
    for name in layers:
        reference = batch_gram(captured[name].double())
        worst = max(worst, ((hooked[name].double() - reference).abs().max() / reference.abs().max().clamp_min(1e-30)).item())
    if worst > 1e-4:
        raise SelfCheckError(f"Grams computed in the hooks and from captured activations differ by {worst:.1e} (relative)")
    return f"{len(layers)} layers, max relative difference {worst:.1e}"


def _graphs_decision(device: torch.device, log) -> dict:
    """Replay a recorded step only if three graphed steps (with a changing learning rate)
    leave the parameters where three eager steps leave them, and the replay is faster."""
    try:
        results, seconds = [], []
        for graphed in (False, True):
            model, optimizer, x, targets = _tiny_stack(device)
            step = GraphedStep(model, optimizer, x.shape, targets.shape, 10) if graphed else EagerStep(model, optimizer)
            for lr in (0.05, 0.02, 0.01):
                set_learning_rate(optimizer, lr)
                step(x, targets)
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(20):
                step(x, targets)
            torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
            results.append([p.detach().float().clone() for p in model.parameters()])
    except Exception as err:  # noqa: BLE001 -- a graph that cannot be recorded is simply not used
        decision = {"use": False, "why": f"recording failed: {type(err).__name__}: {err}"}
        log(f"self-check: CUDA graphs not used ({decision['why']})")
        return decision
    error = max(((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item() for a, b in zip(*results))
    speedup = seconds[0] / seconds[1]
    use = error < 1e-2 and speedup > 1.05
    decision = {"use": use, "relative_difference": error, "speedup": speedup,
                "why": "matches eager and is faster" if use else "differs from eager or is not faster"}
    log(f"self-check: CUDA graphs {'used' if use else 'not used'}: difference {error:.1e}, speed-up {speedup:.2f}x")
    return decision


def _matmul_rate(device: torch.device) -> float:
    """TFLOP/s of a large square product: bf16 on a GPU, float32 on a CPU."""
    n, dtype, repeats = (8192, torch.bfloat16, 10) if device.type == "cuda" else (512, torch.float32, 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12
