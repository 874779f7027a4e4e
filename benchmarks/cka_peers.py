"""repsim's all-pairs minibatch CKA against the PyTorch CKA packages on PyPI.

    python -m benchmarks.cka_peers [--device cpu|cuda] [--depth 20] [--images 1024] ...

Every package gets the same model, the same layers, the same images in the same order
and the same batch size, and runs through its own public API:

- repsim: ``repsim.compare.model_cka`` (the ResNet) or ``MinibatchCKA.update`` per
  batch (synthetic features), and for the ResNet also the public call
  ``repsim.similarity.similarity`` on the same minibatches;
- pytorch-cka (``import cka``): ``compute_cka``, stacked float32 Grams and one einsum;
- torch-cka (``import torch_cka``): ``CKA.compare``, a Python loop over layer pairs.

All three compute the paper's minibatch estimator: unbiased HSIC_1 (Song et al. 2012)
per batch, summed (torch-cka: averaged, the same ratio) over batches, then
S_xy / sqrt(S_xx S_yy). pytorch-cka also clamps the result to [0, 1], so its error is
measured against the clamped reference. The float64 reference is written here in numpy
from Song et al.'s formula, on the activations each package saw.

Times are ratios within one run (absolute times drift on a shared machine). Peak memory
is the growth of the process's resident set during the call on the CPU (sampled every
millisecond) and ``torch.cuda.max_memory_allocated`` above the starting allocation on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import importlib.util
import io
import os
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from repsim.cka import MinibatchCKA
from repsim.compare import model_cka
from repsim.data import to_float
from repsim.devices import synchronize
from repsim.models import ResNet, ResNetConfig, layer_names
from repsim.similarity import similarity

PEERS = ("pytorch-cka", "torch-cka")
PEER_MODULES = {"pytorch-cka": "cka", "torch-cka": "torch_cka"}


def available_peers() -> list[str]:
    return [peer for peer in PEERS if importlib.util.find_spec(PEER_MODULES[peer]) is not None]


# ---------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------


@dataclass
class Workload:
    """One comparison: a model whose named modules produce the features, and its inputs.

    ``inputs`` is what the data loader yields, in batch order; ``make_model`` gives each
    package a fresh copy (torch-cka leaves its hooks on the model it was given).
    """

    name: str
    make_model: Callable[[], nn.Module]
    layers: list[str]
    inputs: torch.Tensor
    batch_size: int
    run_repsim: Callable[[str], torch.Tensor]  # device -> (L, L) CKA
    run_public: Callable[[str], torch.Tensor] | None = None  # the same through repsim.similarity.similarity
    features: list[int] = field(default_factory=list)  # per layer, for the Gram FLOP count
    description: str = ""

    @property
    def batches(self) -> int:
        return len(self.inputs) // self.batch_size

    def loader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.inputs), batch_size=self.batch_size, shuffle=False)

    def gram_flops(self) -> float:
        """FLOPs of the (n, n) Grams of every layer and batch, as one GEMM each: 2 n^2 p."""
        return 2.0 * self.batch_size**2 * sum(self.features) * self.batches


def resnet_workload(images: torch.Tensor, depth: int, width: int, batch_size: int, seed: int) -> Workload:
    """A randomly initialised (seeded) CIFAR ResNet and every analysed sub-layer.

    images: uint8 (N, 3, 32, 32); N is cut to a multiple of the batch size so that no
    package drops or rejects a short last batch. repsim shuffles inside ``model_cka``;
    the peers get the images in the same shuffled order.
    """
    torch.manual_seed(seed)
    model = ResNet(ResNetConfig(depth=depth, width=width)).eval()
    layers = layer_names(model)
    images = images[: len(images) // batch_size * batch_size]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        probe = _capture(model, layers, to_float(images[:2]))
    return Workload(
        name=f"ResNet-{depth} ({width}x), {len(layers)} layers, {len(images)} CIFAR-10 test images",
        make_model=lambda: copy.deepcopy(model),
        layers=layers,
        inputs=to_float(images[order]),
        batch_size=batch_size,
        run_repsim=lambda device: model_cka(
            model, images, layers=layers, batch_size=batch_size, passes=1, seed=seed, device=device
        ),
        # the same minibatches (repsim.compare.minibatches, same seed) through the public call
        run_public=lambda device: torch.from_numpy(similarity(
            model, images, layers=layers, batch_size=batch_size, passes=1, seed=seed, device=device).cka),
        features=[probe[name].shape[1] for name in layers],
        description="random He-normal weights (seeded), BN in inference mode; all pairs of layers",
    )


class FeatureTable(nn.Module):
    """A 'model' whose layers return stored features: its input is a batch of example
    indices, and layer ``layers.i`` outputs ``features[i][indices]``."""

    def __init__(self, features: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.features = list(features)  # a plain list: copies of the module share it
        self.layers = nn.ModuleList(nn.Identity() for _ in self.features)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        for table, layer in zip(self.features, self.layers):
            out = layer(table[idx.to(table.device)])
        return out


def synthetic_features(n: int, layers: int, p: int, mean: tuple[float, float], seed: int, device: str) -> list[torch.Tensor]:
    """float32 (n, p) features of a chain of layers (each a noisy random linear map of
    the previous one, so CKA falls off with distance), plus a per-feature mean drawn
    log-uniformly from ``mean``: the regime where uncentred float32 Grams lose HSIC."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, p, generator=g, dtype=torch.float64)
    out = []
    for _ in range(layers):
        h = h @ torch.randn(p, p, generator=g, dtype=torch.float64) / p**0.5 + 0.5 * torch.randn(n, p, generator=g, dtype=torch.float64)
        h = h / h.std()
        if mean[1] > 0:
            offset = 10 ** (np.log10(mean[0]) + (np.log10(mean[1]) - np.log10(mean[0])) * torch.rand(1, p, generator=g, dtype=torch.float64))
        else:  # (0, 0): centred features, where float32 loses nothing
            offset = torch.zeros(1, p, dtype=torch.float64)
        out.append((h + offset).float().to(device))
    return out


def synthetic_workload(n: int, layers: int, p: int, mean: tuple[float, float], batch_size: int, seed: int, device: str) -> Workload:
    n = n // batch_size * batch_size
    features = synthetic_features(n, layers, p, mean, seed, device)
    names = [f"layers.{i}" for i in range(layers)]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))

    def run_repsim(dev: str) -> torch.Tensor:
        acc = MinibatchCKA(names)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size].to(dev)
            acc.update({name: table[idx] for name, table in zip(names, features)})
        return acc.compute()

    return Workload(
        name=f"synthetic, {layers} layers x {p} features, mean {mean[0]:g} to {mean[1]:g}, {n} examples",
        make_model=lambda: FeatureTable(features),
        layers=names,
        inputs=order,
        batch_size=batch_size,
        run_repsim=run_repsim,
        features=[p] * layers,
        description="float32 features with a large per-feature mean; all pairs of layers",
    )


# ---------------------------------------------------------------------------------------
# The float64 reference: Song et al. (2012), Eq. 5, for all pairs of layers at once
# ---------------------------------------------------------------------------------------


def _capture(model: nn.Module, layers: Sequence[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Flattened outputs of the named modules for one batch, through plain forward hooks."""
    modules = dict(model.named_modules())
    out: dict[str, torch.Tensor] = {}
    handles = [
        modules[name].register_forward_hook(lambda _m, _i, o, name=name: out.__setitem__(name, o.detach().flatten(1).clone()))
        for name in layers
    ]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    if list(out) != list(layers):  # torch-cka labels its rows in hook-firing order
        raise RuntimeError("the layers' forward hooks fire in a different order from `layers`")
    return out


def hsic1_all_pairs(acts: Sequence[np.ndarray]) -> np.ndarray:
    """(L, L) unbiased HSIC_1 of every pair of (n, p_l) float64 representations:
    [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), K~ = the
    Gram with a zeroed diagonal. HSIC_1 is unchanged by a common shift of the examples,
    so each representation is centred first (in float64 that costs no precision)."""
    n = acts[0].shape[0]
    grams = []
    for x in acts:
        x = x - x.mean(axis=0, keepdims=True)
        k = x @ x.T
        np.fill_diagonal(k, 0.0)
        grams.append(k)
    flat = np.stack([k.ravel() for k in grams])  # (L, n^2)
    rows = np.stack([k.sum(axis=1) for k in grams])  # (L, n): K~ 1
    totals = rows.sum(axis=1)  # (L,): 1'K~1
    value = flat @ flat.T + np.outer(totals, totals) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * rows @ rows.T
    return value / (n * (n - 3))


def reference_cka(workload: Workload, device: str) -> np.ndarray:
    """The float64 minibatch CKA of the workload's batches: summed HSIC_1, then the ratio."""
    model = workload.make_model().to(device).eval()
    total = np.zeros((len(workload.layers),) * 2)
    with torch.no_grad():
        for (x,) in workload.loader():
            acts = _capture(model, workload.layers, x.to(device))
            total += hsic1_all_pairs([acts[name].double().cpu().numpy() for name in workload.layers])
    diag = np.sqrt(np.clip(np.diag(total), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        cka = total / np.outer(diag, diag)
    return np.where(np.outer(diag, diag) > 0, cka, 0.0)


# ---------------------------------------------------------------------------------------
# The packages, each through its public API
# ---------------------------------------------------------------------------------------


def run_pytorch_cka(workload: Workload, device: str) -> torch.Tensor:
    import cka

    if not hasattr(cka, "compute_cka"):
        raise ImportError("the module `cka` is not pytorch-cka's (pip install pytorch-cka)")
    model = workload.make_model()
    # Same model on both sides: pytorch-cka runs one forward pass and one einsum of all Grams.
    return cka.compute_cka(model, model, workload.loader(), layers=workload.layers, device=device, progress=False)[0]


def run_torch_cka(workload: Workload, device: str) -> torch.Tensor:
    from torch_cka import CKA

    model = workload.make_model()
    # torch-cka hooks the model it is given twice (once per side) and runs it twice per batch.
    comparison = CKA(model, model, "model", "same model", workload.layers, workload.layers, device=device)
    loader = workload.loader()
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar has no switch
        comparison.compare(loader, loader)
    return comparison.export()["CKA"]


RUNNERS: dict[str, Callable[[Workload, str], torch.Tensor]] = {
    "repsim": lambda w, device: w.run_repsim(device),
    "repsim.similarity": lambda w, device: w.run_public(device),
    "pytorch-cka": run_pytorch_cka,
    "torch-cka": run_torch_cka,
}
CLAMPED = {"pytorch-cka"}  # packages that clamp CKA to [0, 1]


# ---------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------


class PeakRSS:
    """Highest resident set size of this process while the block runs, sampled in a thread."""

    def __init__(self, interval: float = 0.001) -> None:
        import psutil  # only the CPU measurement needs it

        self.interval = interval
        self.process = psutil.Process()

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


@dataclass
class Measurement:
    package: str
    seconds: float  # best of the repeats
    peak_bytes: int  # largest over the repeats
    max_error: float  # against the float64 reference of this package's estimator; inf if it failed
    cka: np.ndarray | None
    failure: str = ""  # the exception a package raised instead of returning a result


def measure(run: Callable[[], torch.Tensor], device: str) -> tuple[float, int, np.ndarray]:
    """One timed call: (seconds, peak memory growth in bytes, result as float64 numpy)."""
    synchronize(device)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = run()
        synchronize(device)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with PeakRSS() as rss:
            start = time.perf_counter()
            result = run()
            seconds = time.perf_counter() - start
        peak = rss.growth
    return seconds, peak, result.detach().double().cpu().numpy()


def compare_packages(
    workload: Workload, packages: Sequence[str], device: str, repeats: int = 1, once: Sequence[str] = ()
) -> tuple[list[Measurement], np.ndarray]:
    """Run each package ``repeats`` times, interleaved (so drift hits all alike), and
    compare each result with the float64 reference of its estimator.

    Packages in ``once`` run a single time (torch-cka, whose pairwise loop is so slow
    that machine noise cannot change its ratio)."""
    reference = reference_cka(workload, device)
    seconds = {p: [] for p in packages}
    peaks = {p: [] for p in packages}
    results, failures = {}, {}
    for r in range(repeats):
        for package in packages:
            if package in failures or (r > 0 and package in once):
                continue
            try:
                t, peak, results[package] = measure(lambda: RUNNERS[package](workload, device), device)
            except Exception as err:
                if package.startswith("repsim"):
                    raise
                # A peer that breaks (torch-cka asserts on its own NaNs) is a result too.
                failures[package] = f"{type(err).__name__}: {err}"
                continue
            seconds[package].append(t)
            peaks[package].append(peak)
    out = []
    for package in packages:
        if package in failures:
            out.append(Measurement(package, float("nan"), 0, float("inf"), None, failures[package]))
            continue
        expected = np.clip(reference, 0.0, 1.0) if package in CLAMPED else reference
        result = results[package]
        # A NaN anywhere is an infinitely wrong answer, not one to skip over.
        error = float(np.abs(result - expected).max()) if np.isfinite(result).all() else float("inf")
        out.append(Measurement(package, min(seconds[package]), max(peaks[package]), error, result))
    return out, reference


def gemm_rate(device: str, size: int, repeats: int = 3) -> float:
    """float32 FLOP/s of one big square matrix product: the machine's practical peak."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=g)
    b = torch.randn(size, size, device=device, generator=g)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def one_batch_seconds(workload: Workload, device: str, repeats: int, peers: Sequence[str] = PEERS) -> dict[str, float]:
    """Best-of-``repeats`` times of the CKA arithmetic alone on the first batch's
    activations (no forward pass): repsim's ``MinibatchCKA.update``, pytorch-cka's
    stacked Grams and ``hsic_cross`` (if installed), and the bare Gram GEMMs x @ x.T,
    the floor that every method pays."""
    model = workload.make_model().to(device).eval()
    (x,) = next(iter(workload.loader()))
    with torch.no_grad():
        acts = _capture(model, workload.layers, x.to(device))
    feats = [acts[name] for name in workload.layers]
    runs: dict[str, Callable[[], object]] = {
        "repsim": lambda: MinibatchCKA(workload.layers).update(acts).compute(),
        "gemm": lambda: [f @ f.T for f in feats],
    }
    if "pytorch-cka" in peers and "pytorch-cka" in available_peers():
        import cka

        def pytorch_cka_batch():
            grams = torch.stack([f @ f.T for f in feats])
            return cka.hsic_cross(grams, grams)

        runs["pytorch-cka"] = pytorch_cka_batch
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats + 1):  # the first round warms up
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------

ESTIMATOR = {
    "repsim": "HSIC_1 per batch, summed; float32 Grams of centred features (or, on a CPU where the mean is small, "
              "uncentred and centred in float64), float64 HSIC of all pairs from the Grams and their row sums",
    "repsim.similarity": "the same, through the public call (layers chosen by name, hooks on any model)",
    "pytorch-cka": "HSIC_1 per batch, summed; uncentred float32 Grams and sums; clamped to [0, 1]",
    "torch-cka": "HSIC_1 per batch, averaged; uncentred float32 Grams, float32 sums",
}


def table(workload: Workload, measurements: list[Measurement], batch: dict[str, float], rate: float) -> str:
    base = next(m for m in measurements if m.package == "repsim")
    lines = [
        f"### {workload.name}",
        "",
        f"{workload.description}; batch size {workload.batch_size}, {workload.batches} batches. "
        f"repsim took {base.seconds:.2f} s.",
        "",
        "| package | time / repsim time | peak memory (MiB) | max abs error vs float64 | estimator |",
        "|---|---|---|---|---|",
    ]
    for m in measurements:
        if m.failure:
            lines.append(f"| {m.package} | failed | - | - | {ESTIMATOR[m.package]}; raised {m.failure} |")
            continue
        lines.append(
            f"| {m.package} | {m.seconds / base.seconds:.2f} | {m.peak_bytes / 2**20:.0f} | "
            f"{m.max_error:.1e} | {ESTIMATOR[m.package]} |"
        )
    flops = 2.0 * workload.batch_size**2 * sum(workload.features)  # one batch's Grams
    lines += ["", f"CKA arithmetic alone on one batch ({flops / 1e9:.1f} GFLOP of Grams as GEMMs), no forward pass:", ""]
    for name, seconds in batch.items():
        what = "bare Gram GEMMs x @ x.T" if name == "gemm" else name
        lines.append(f"- {what}: {seconds / batch['repsim']:.2f} x repsim's time, Grams at "
                     f"{flops / seconds / 1e9:.1f} GFLOP/s = {flops / seconds / rate:.0%} of the big-GEMM rate")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--depth", type=int, default=20, help="CIFAR ResNet depth (6n + 2)")
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--images", type=int, default=512, help="CIFAR-10 test images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--synthetic-examples", type=int, default=2048)
    parser.add_argument("--synthetic-layers", type=int, default=24)
    parser.add_argument("--synthetic-features", type=int, default=1024)
    parser.add_argument("--mean", type=float, nargs=2, default=(1e3, 1e4), help="range of the per-feature means")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per package (torch-cka: 1)")
    parser.add_argument("--gemm-size", type=int, default=4096)
    parser.add_argument("--peers", nargs="*", default=None, help=f"subset of {PEERS} (default: those installed)")
    parser.add_argument("--workloads", nargs="*", default=["resnet", "synthetic"], choices=["resnet", "synthetic"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available")
        # Same convolution algorithm every pass, so every package sees the same activations.
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    peers = available_peers() if args.peers is None else list(args.peers)
    missing = [p for p in peers if p not in available_peers()]
    if missing:
        raise SystemExit(f"not installed: {missing}; pip install -r benchmarks/requirements.txt")

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    print(f"# CKA against its peers, {datetime.date.today()}")
    print(f"\ndevice {args.device} ({device_name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    rate = gemm_rate(args.device, args.gemm_size, repeats=5)
    print(f"float32 GEMM ({args.gemm_size}^3): {rate / 1e9:.1f} GFLOP/s\n")

    for kind in args.workloads:
        if kind == "resnet":
            from repsim.data import load_dataset

            images = load_dataset("cifar10").test_images[: args.images]
            workload = resnet_workload(images, args.depth, args.width, args.batch_size, args.seed)
        else:
            workload = synthetic_workload(args.synthetic_examples, args.synthetic_layers, args.synthetic_features,
                                          tuple(args.mean), args.batch_size, args.seed, args.device)
        mine = ["repsim", "repsim.similarity"] if workload.run_public is not None else ["repsim"]
        measurements, _ = compare_packages(workload, [*mine, *peers], args.device, args.repeats, once=["torch-cka"])
        batch = one_batch_seconds(workload, args.device, max(args.repeats, 3), peers)
        print(table(workload, measurements, batch, rate), flush=True)


if __name__ == "__main__":
    main()
