"""The paper profile's store keys, pinned: harvested results are found by them.

The hashes were computed before the code was restructured into layers (issue 20) and
match entries of ``results/paper``; a change that moves any of them makes every
harvested result of that kind stale, so it must be made on purpose, here and in the
session's note.
"""

from __future__ import annotations

import pytest

from repsim import heatmaps, origins, populations, run_analyses, snapshots
from repsim.files import config_key
from repsim.models import ResNetConfig
from repsim.profiles import get_profile
from repsim.runs import Run

PAPER = get_profile("paper")
CIFAR10 = "04f1e88c401604e7207c"  # the data fingerprint of CIFAR-10 (any copy of it)
WIDE, SHALLOW, DEEP = Run(ResNetConfig(26, 4)), Run(ResNetConfig(20)), Run(ResNetConfig(110))

PINNED = {
    "model ResNet-26 (4x)": (lambda: WIDE.key(PAPER, CIFAR10), "d73c50b014b48acce9b6"),
    "model ResNet-20 on 3,000": (lambda: Run(ResNetConfig(20), 3000).key(PAPER, CIFAR10), "3c270477efd1355d7bfa"),
    "heatmap ResNet-164": (lambda: heatmaps.heatmap_key(Run(ResNetConfig(164)), PAPER, CIFAR10), "f22573c99688cf189e9e"),
    "training metrics": (lambda: run_analyses.training_metrics_key(SHALLOW, PAPER, CIFAR10), "ed3d0f9a8a726baf4c85"),
    "first PCs": (lambda: run_analyses.first_pcs_key(DEEP, PAPER, CIFAR10), "f99ebf5ee519a7b8650e"),
    "probes": (lambda: run_analyses.probe_accuracy_key(DEEP, PAPER, CIFAR10), "8818c72abc8214661fb4"),
    "deletion": (lambda: run_analyses.deletion_accuracy_key(DEEP, PAPER, CIFAR10), "518f5c6821a1c6f59f72"),
    "cross CKA": (lambda: run_analyses.cross_cka_key(DEEP, WIDE, PAPER, CIFAR10), "6c15b6caeeec1331ef73"),
    "predictions": (lambda: populations.predictions_key(Run(ResNetConfig(14, 2), None, 3), PAPER, CIFAR10),
                    "5f7fc6e7a17c73c0977b"),
    "snapshots": (lambda: snapshots.training_snapshots_key(WIDE, PAPER, CIFAR10), "b0923888610b55a8ed09"),
    "trajectory": (lambda: origins.trajectory_key(SHALLOW, PAPER, CIFAR10), "b08f10fb2ae4cd57112a"),
    "dominant images": (lambda: origins.dominance_key(WIDE, PAPER, CIFAR10), "bf0cfa42d0448f815c66"),
    "removal": (lambda: origins.removal_key(WIDE, PAPER, CIFAR10), "4be6d836a59ed0f555ea"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_paper_keys_are_unchanged(name):
    key, pinned = PINNED[name]
    assert config_key(key()) == pinned, f"the paper profile's key of {name} changed: its harvested results are stale"


def test_pinned_keys_name_committed_results():
    from repsim.results import ResultsArchive, default_root

    index = ResultsArchive(default_root()).index()
    assert {"f22573c99688cf189e9e", "ed3d0f9a8a726baf4c85", "b08f10fb2ae4cd57112a", "6c15b6caeeec1331ef73"} <= set(index)


def test_a_recipe_that_names_its_precision_has_keys_of_its_own():
    """precision None (the device's default) leaves a key as it was before the field
    existed; a named precision is part of the key, so bf16 and float32 models never mix."""
    import dataclasses

    run = Run(ResNetConfig(14), 250)
    default = run.key(PAPER, CIFAR10)
    assert "precision" not in default["TrainConfig"]
    named = {p: run.key(PAPER.with_overrides(train=dataclasses.replace(PAPER.train, precision=p)), CIFAR10)
             for p in ("float32", "bfloat16")}
    assert named["bfloat16"]["TrainConfig"]["precision"] == "bfloat16"
    assert len({config_key(k) for k in (default, *named.values())}) == 3
