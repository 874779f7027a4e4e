"""Device-seconds of training runs and analyses: counted estimates, then measured rates.

Until a device has been measured, a run's time is estimated from counts of the model
(``repsim.throughput.model_cost``) and a few rates of the device: a training step takes
the longest of its arithmetic (6 FLOPs per multiply-add), its memory traffic (each
element of every layer output is written and read several times, forward and backward)
and its launch overhead (one dispatch per module and pass), and forward-only work
(CKA, PCs, probes) is counted the same way in float32. The rates below are leads, not
measurements; every harvest records what it measured (training images per second of
each architecture, seconds of each analysis), and later estimates use those instead.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..data import test_count, train_count
from ..models import ResNetConfig
from ..throughput import model_cost


@dataclass(frozen=True)
class DeviceRates:
    """What a device sustains (leads until measured; see the module docstring)."""

    name: str
    train_flops: float  # FLOP/s of a training step's convolutions (bf16 on a GPU)
    train_bytes: float  # bytes/s of a training step's activation traffic
    launch: float  # seconds of dispatch per module per pass, eager
    graphed_launch: float  # the same, replayed from a CUDA graph
    forward_flops: float  # FLOP/s of float32 forward passes (CKA, PCs, probes)
    gram_flops: float  # FLOP/s of the float32 Gram products
    float64_flops: float  # FLOP/s of float64 matrix products (HSIC sums)
    window_seconds: float  # what each window spends before harvesting: start, data, self-check
    job_seconds: float  # fixed cost of a job: its scratch entries, packing, saving the bundle
    run_seconds: float  # fixed cost of training a run (or stack): set-up, data to the device, graph recording

    def scaled(self, factor: float) -> "DeviceRates":
        """Every rate divided by ``factor`` (a calibration: measured / estimated time)."""
        return dataclasses.replace(
            self, train_flops=self.train_flops / factor, train_bytes=self.train_bytes / factor,
            launch=self.launch * factor, graphed_launch=self.graphed_launch * factor,
            forward_flops=self.forward_flops / factor, gram_flops=self.gram_flops / factor,
            float64_flops=self.float64_flops / factor)


# One H200 (GPU.md, KINDS.md): bf16 GEMM measured at 770-800 TFLOP/s and copies at
# 4.3 TB/s; convolutions of a small ResNet reach a fraction of either. Eager PyTorch
# spends about 10 us per op on the host. Calibrated on the first window (2026-12-04,
# benchmarks/README.md): the six architectures trained there (ResNet-20 to -164 at 1x,
# ResNet-26 at 2x) took 1.5-2.3x (median 2.05x) the step time that 1.5 TB/s of activation
# traffic predicts, hence 0.73 TB/s; the heatmaps of seven models 1.7-2.0x (median 1.85x)
# the counts at 40 TFLOP/s, hence the analysis rates below. The start-up outside the
# harvest's budget (machine, transfers) measured 34 s; 60 s are counted.
H200 = DeviceRates("NVIDIA H200", train_flops=250e12, train_bytes=0.73e12, launch=18.5e-6, graphed_launch=2e-6,
                   forward_flops=21.6e12, gram_flops=21.6e12, float64_flops=21.6e12, window_seconds=60,
                   job_seconds=2, run_seconds=5)
# The 2-core development machine: float32 ResNet-14 trains at about 800 images/s
# (0.17 GFLOP each), ResNet-56 at about 200 (0.75 GFLOP); small models and small
# batches pay much more per image in dispatch, hence the launch cost.
CPU = DeviceRates("2-core CPU", train_flops=120e9, train_bytes=20e9, launch=60e-6, graphed_launch=60e-6,
                  forward_flops=100e9, gram_flops=50e9, float64_flops=15e9, window_seconds=30,
                  job_seconds=0.5, run_seconds=1)

BYTES_PER_TRAINING_ELEMENT = 12  # bf16: written and read forward, read, and its gradient written and read backward


def device_rates(device_type: str) -> DeviceRates:
    return H200 if device_type == "cuda" else CPU


def training_seconds(model: ResNetConfig, recipe, rates: DeviceRates, graphs: bool = False, members: int = 1) -> float:
    """Estimated seconds to train ``members`` models of ``model`` with ``recipe``
    (a ``train.TrainConfig``), scoring included."""
    cost = model_cost(model)
    images = train_count(recipe.train_size)
    steps = recipe.epochs * (images // recipe.batch_size)
    batch = recipe.batch_size * members
    arithmetic = cost.training_flops * batch / rates.train_flops
    traffic = cost.activation_elements * BYTES_PER_TRAINING_ELEMENT * batch / rates.train_bytes
    launches = 3 * cost.modules * (rates.graphed_launch if graphs else rates.launch)
    scoring = len(recipe.scored_epochs()) * forward_seconds(model, test_count(None, recipe.eval_size), rates)
    return steps * max(arithmetic, traffic, launches) + members * scoring


def forward_seconds(model: ResNetConfig, images: int, rates: DeviceRates, batch: int = 500) -> float:
    """Estimated seconds of float32 forward passes over ``images`` images."""
    cost = model_cost(model)
    arithmetic = 2 * cost.macs * images / rates.forward_flops
    launches = math.ceil(images / batch) * cost.modules * rates.launch
    return max(arithmetic, launches)


def subset_measures_seconds(layers: int, examples: int, rates: DeviceRates) -> float:
    """Estimated seconds of Procrustes and mutual k-NN between ``layers`` layers on
    ``examples`` images at once (``measure_maps.subset_maps``): per layer an eigendecomposition
    (about 9 n^3 float64 FLOPs) and the neighbours; per pair a product of the two factors
    (2 n^3) and its singular values (about 20 n^3), each decomposition also paying a
    launch per example (a GPU's eigensolvers and SVDs take about n sequential steps)."""
    n3 = float(examples) ** 3
    pairs = layers * (layers - 1) // 2
    latency = examples * rates.launch
    return (layers * (9 * n3 / rates.float64_flops + latency)
            + pairs * (22 * n3 / rates.float64_flops + latency))


def cka_seconds(models: list[ResNetConfig], examples: int, batch: int, passes: int, rates: DeviceRates,
                group: int = 8, accumulators: int = 1, features: list[int] | None = None) -> float:
    """Estimated seconds of minibatch CKA over all layers of ``models`` (one: within a
    model; two: across models), or over layers of ``features`` features each: forward
    passes, one Gram per layer, the HSIC products of each of ``accumulators`` (one per
    set of images left out, say); ``group`` minibatches share each forward pass and each
    layer's launches."""
    batches = passes * math.ceil(examples / batch)
    if features is None:
        features = [f for model in models for f in model_cost(model).layer_features]
    grams = sum(2 * batch * batch * f for f in features) / rates.gram_flops
    products = accumulators * 2 * len(features) ** 2 * batch * batch / rates.float64_flops
    launches = 12 * accumulators * len(features) * rates.launch  # centring and checks, per layer and group
    forward = sum(forward_seconds(m, passes * examples, rates, batch=batch * group) for m in models)
    return forward + batches * (grams + products) + math.ceil(batches / group) * launches
