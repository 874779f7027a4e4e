"""The training recipe's schedule, the step functions, deadlines and cost counts."""

from __future__ import annotations

import math

import pytest
import torch

from repsim.data import ImageDataset
from repsim.models import ResNetConfig
from repsim.stacked import StackedResNet
from repsim.steps import EagerStep, GraphedStep, _restore_in_place, make_step
from repsim.throughput import model_cost
from repsim.train import DeadlineExceeded, TrainConfig, make_optimizer, new_model, set_learning_rate, train_model


def test_the_papers_schedule_is_cosine_stepped_per_epoch():
    config = TrainConfig(epochs=4, lr=0.1)
    rates = [config.learning_rate(step, steps_per_epoch=10) for step in range(40)]
    assert rates[:10] == [0.1] * 10  # constant within an epoch
    assert rates[10] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_warm_up_then_per_step_cosine_decay_to_zero():
    config = TrainConfig(epochs=10, lr=0.4, warmup_epochs=2, lr_steps="step")
    rates = [config.learning_rate(step, steps_per_epoch=5) for step in range(50)]
    assert rates[:10] == pytest.approx([0.04 * (k + 1) for k in range(10)])  # linear up to the peak
    assert max(rates) == pytest.approx(0.4) and all(b <= a for a, b in zip(rates[10:], rates[11:]))
    assert rates[-1] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 39 / 40)))  # nearly zero at the end
    with pytest.raises(ValueError, match="lr_steps"):
        TrainConfig(lr_steps="batch")
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(epochs=2, warmup_epochs=2)
    with pytest.raises(ValueError, match="Nesterov"):
        TrainConfig(momentum=0.0, nesterov=True)


def _stack(seed: int = 0):
    config = TrainConfig(epochs=1, batch_size=8, lr=0.1, nesterov=True)
    model = StackedResNet([new_model(ResNetConfig(8), config, seed)]).train()
    optimizer = make_optimizer(model, config)
    set_learning_rate(optimizer, 0.1)
    g = torch.Generator().manual_seed(1)
    return model, optimizer, torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8, 1), generator=g)


def test_the_learning_rate_lives_in_one_tensor_the_optimizer_reads():
    model, optimizer, x, targets = _stack()
    assert all(isinstance(group["lr"], torch.Tensor) for group in optimizer.param_groups)
    before = [p.detach().clone() for p in model.parameters()]
    set_learning_rate(optimizer, 0.0)
    EagerStep(model, optimizer)(x, targets)
    # With lr 0 only the momentum buffers move, never the weights.
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_warm_up_is_undone_in_place_so_training_starts_where_it_would_have():
    model, optimizer, x, targets = _stack()
    reference_model, reference_optimizer, _, _ = _stack()
    saved_model, saved_optimizer = {k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict()
    pointers = [p.data_ptr() for p in model.parameters()]
    step = EagerStep(model, optimizer)
    for _ in range(3):  # what a graph's warm-up does
        step(x, targets)
    _restore_in_place(model, optimizer, saved_model, saved_optimizer)
    assert [p.data_ptr() for p in model.parameters()] == pointers  # nothing moved
    step(x, targets)
    EagerStep(reference_model, reference_optimizer)(x, targets)
    for a, b in zip(model.state_dict().values(), reference_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cuda_graphs_are_refused_off_a_gpu():
    model, optimizer, x, targets = _stack()
    assert isinstance(make_step(model, optimizer, x.shape, targets.shape, 10, graphs=False), EagerStep)
    with pytest.raises(RuntimeError, match="CUDA device"):
        GraphedStep(model, optimizer, x.shape, targets.shape, 10)


def test_a_graph_that_cannot_be_recorded_falls_back_to_the_eager_step_and_says_why():
    model, optimizer, x, targets = _stack()
    step = make_step(model, optimizer, x.shape, targets.shape, 10, graphs=True)  # no CUDA here: recording fails
    assert type(step) is EagerStep and "CUDA device" in step.fallback
    before = [p.detach().clone() for p in model.parameters()]
    step(x, targets)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the eager step trains


def test_a_run_asked_for_graphs_trains_eagerly_where_none_can_be_recorded():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    data = ImageDataset(images, labels, images[:16], labels[:16], tuple("abcdefghij"), "cifar10", "memory")
    _, metrics = train_model(ResNetConfig(8), TrainConfig(epochs=1, batch_size=32), data, seed=0, device="cpu",
                             progress=False, graphs=True)
    assert metrics["cuda_graphs"] is False and "CUDA device" in metrics["graph_fallback"]
    assert metrics["autocast"] == "float32" and math.isfinite(metrics["history"][0]["train_loss"])


def test_a_recipe_may_train_under_bf16_on_the_cpu():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    data = ImageDataset(images, labels, images[:16], labels[:16], tuple("abcdefghij"), "cifar10", "memory")
    config = TrainConfig(epochs=1, batch_size=32, precision="bfloat16")
    _, metrics = train_model(ResNetConfig(8), config, data, seed=0, device="cpu", progress=False)
    assert metrics["autocast"] == "bfloat16" and math.isfinite(metrics["history"][0]["train_loss"])


@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_training_precision_follows_the_gpu(monkeypatch, capability, dtype):
    """bf16 where the GPU has it natively (A100 and later), float16 before (Colab's T4)."""
    from repsim import devices

    assert devices.autocast_dtype("cpu") is None  # float32 on a CPU
    monkeypatch.setattr(devices, "resolve", lambda device=None: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert devices.autocast_dtype("cuda") == dtype


def test_float16_steps_scale_their_gradients_and_refuse_a_graph(monkeypatch):
    """The float16 path (a T4), run on the CPU: the gradient scaler unscales before the
    update, so the step equals a float32 step up to float16 rounding."""
    from repsim import steps

    model, optimizer, x, targets = _stack()
    reference, reference_optimizer, _, _ = _stack()
    EagerStep(reference, reference_optimizer)(x, targets)
    monkeypatch.setattr(steps, "autocast_dtype", lambda device, precision=None: torch.float16)
    step = EagerStep(model, optimizer)
    assert step.scaler is not None and step.dtype == torch.float16
    losses = step(x, targets)
    assert torch.isfinite(losses).all()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0.05, atol=2e-3)
    fallback = make_step(model, optimizer, x.shape, targets.shape, 10, graphs=True)
    assert type(fallback) is EagerStep and fallback.fallback


def test_a_run_that_would_overrun_its_deadline_stops_after_an_epoch():
    import time

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (96,), generator=g)
    data = ImageDataset(images, labels, images[:16], labels[:16], tuple("abcdefghij"), "cifar10", "memory")
    config = TrainConfig(epochs=50, batch_size=32)
    start = time.perf_counter()
    with pytest.raises(DeadlineExceeded, match="epochs left"):
        train_model(ResNetConfig(8), config, data, seed=0, device="cpu", progress=False, deadline=start + 0.01)
    assert time.perf_counter() - start < 30  # one epoch, not fifty


def test_cost_counts_match_the_architecture():
    cost = model_cost(ResNetConfig(20))
    # Stem 3->16 and 18 convs of 2.36M multiply-adds each, two 1x1 projections, the head.
    assert cost.macs == pytest.approx(40.8e6, rel=0.01)
    assert len(cost.layer_features) == 70 and max(cost.layer_features) == 16 * 32 * 32
    assert model_cost(ResNetConfig(20, 2)).macs == pytest.approx(4 * cost.macs, rel=0.03)
    assert cost.training_flops == 6 * cost.macs
