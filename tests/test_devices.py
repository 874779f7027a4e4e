"""One device helper: "auto" means the same everywhere, and records name the hardware."""

from __future__ import annotations

import pytest
import torch

from repsim import devices
from repsim.book import provenance
from repsim.devices import resolve as resolve_device


def test_resolve_and_describe():
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.describe("cpu") == devices.cpu_name() != ""
    if not torch.cuda.is_available():
        assert devices.resolve(None) == devices.resolve("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            devices.resolve("cuda")
    else:
        assert devices.describe("cuda") == torch.cuda.get_device_name()


def test_train_keeps_its_name_for_the_helper():
    assert resolve_device is devices.resolve


def test_a_chapters_recorded_device_is_the_one_it_runs_on():
    used = provenance.device_used(None, "smoke")  # the smoke profile runs on the CPU
    assert used["device"] == "cpu" and used["gpu"] is None and used["cpu"] == devices.cpu_name()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            provenance.device_used(None, "paper")  # the paper profile asks for CUDA


def test_store_records_name_the_hardware():
    from repsim.store import provenance as store_provenance

    assert store_provenance()["device"] == devices.describe()


def test_a_recipes_precision_overrides_the_devices_default():
    import pytest
    import torch

    from repsim.devices import autocast_dtype
    from repsim.train import TrainConfig

    assert autocast_dtype("cpu") is None  # float32 on a CPU by default
    assert autocast_dtype("cpu", "bfloat16") == torch.bfloat16
    assert autocast_dtype("cpu", "float32") is None
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("cpu", "bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="half")
