"""Execution profiles: lookup, misspellings, overrides."""

from __future__ import annotations

import dataclasses

import pytest

from repsim.models import ResNetConfig
from repsim.profiles import LAPTOP_EPOCHS, PROFILES, CKASettings, Profile, get_profile
from repsim.train import TrainConfig


@pytest.mark.parametrize("name", ["smoke", "laptop", "paper"])
def test_get_profile(name):
    profile = get_profile(name)
    assert isinstance(profile, Profile)
    assert profile.name == name and profile is PROFILES[name]
    assert profile.device in ("cpu", "cuda", "auto")
    assert isinstance(profile.train, TrainConfig) and isinstance(profile.cka, CKASettings)
    assert isinstance(profile.background.model, ResNetConfig)
    assert list(profile.background.sample_sizes) == sorted(profile.background.sample_sizes)


def test_profiles_are_ordered_by_scale():
    smoke, laptop, paper = (get_profile(n) for n in ("smoke", "laptop", "paper"))
    assert smoke.device == "cpu" and paper.device == "cuda"
    from repsim.data import train_count

    largest = [max(p.blocks.train_sizes, key=train_count) for p in (smoke, laptop, paper)]
    # images the model on the largest training set sees
    images = [p.training(n).epochs * train_count(n) for p, n in zip((smoke, laptop, paper), largest)]
    assert images == sorted(images) and len(set(images)) == 3
    assert paper.cka.batch_size == 256 and paper.cka.passes == 10  # the paper's CKA protocol
    assert smoke.cka.examples is not None and smoke.cka.examples <= 1000
    assert max(smoke.background.sample_sizes) <= smoke.background.probe_examples


@pytest.mark.parametrize("typo,suggestion", [("smok", "smoke"), ("Laptop", "laptop"), ("papr", "paper")])
def test_misspelled_profile_gets_a_suggestion(typo, suggestion):
    with pytest.raises(ValueError, match=f"unknown profile '{typo}' \\(did you mean '{suggestion}'\\?\\)"):
        get_profile(typo)


def test_unrelated_name_lists_choices():
    with pytest.raises(ValueError, match=r"choose one of \['laptop', 'paper', 'smoke'\]") as info:
        get_profile("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_with_overrides():
    smoke = get_profile("smoke")
    original_examples = smoke.cka.examples
    changed = smoke.with_overrides(device="auto", cka=CKASettings(examples=64, batch_size=32, passes=2))
    assert changed.device == "auto" and changed.cka.examples == 64
    assert changed.train == smoke.train and changed.name == "smoke"
    assert smoke.device == "cpu" and smoke.cka.examples == original_examples != 64  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        smoke.device = "cuda"  # type: ignore[misc]


def test_with_overrides_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown profile field 'devise' \\(did you mean 'device'\\?\\)"):
        get_profile("smoke").with_overrides(devise="cuda")
    with pytest.raises(ValueError, match="unknown profile field 'epochs'.*fields are"):
        get_profile("smoke").with_overrides(epochs=3)  # nested: not a top-level field


def test_training_sets_the_prefix_only():
    smoke = get_profile("smoke")
    recipe = smoke.training(3000)
    assert recipe.train_size == 3000
    assert dataclasses.replace(recipe, train_size=smoke.train.train_size) == smoke.train


def test_differences_from_paper_lists_each_changed_setting():
    from repsim.profiles import differences_from_paper

    rows = {row["setting"]: row for row in differences_from_paper(get_profile("laptop"), 12_500)}
    assert rows["epochs"]["the paper"] == "300" and rows["epochs"]["this profile"] == str(LAPTOP_EPOCHS)  # every size
    assert rows["train_size"]["the paper"] == "all" and rows["train_size"]["this profile"] == "12,500"
    assert rows["batch_size"]["the paper"] == "128" and rows["batch_size"]["this profile"] == "32"
    assert rows["evaluations"]["the paper"] == "all" and rows["bn_momentum"]["the paper"] == "0.01"
    assert rows["cka_passes"]["the paper"] == "10"
    paper = {row["setting"]: row for row in differences_from_paper(get_profile("paper"), None)}
    assert paper["nesterov"]["the paper"] == "no" and paper["nesterov"]["this profile"] == "yes"
    assert paper["lr_steps"]["the paper"] == "epoch" and paper["lr_steps"]["this profile"] == "step"


def test_small_training_sets_get_enough_steps():
    profile = dataclasses.replace(get_profile("laptop"), min_steps=400, train=TrainConfig(epochs=10, batch_size=128))
    assert profile.training(1_000).epochs == 58  # 7 full steps an epoch: 58 epochs reach 400 steps
    assert profile.training(12_500).epochs == 10  # 97 steps an epoch: the profile's 10 suffice
    assert profile.training(None).train_size is None and profile.training(None).epochs == 10


@pytest.mark.parametrize("name", ["smoke", "laptop", "paper"])
def test_figures_share_their_models(name):
    """Fig. 1, D.1 and chapter 2 reuse runs of the Fig. 2 / D.2 grid instead of training more."""
    profile = get_profile(name)
    blocks = profile.blocks
    assert blocks.full_size in blocks.train_sizes
    grid = {(d, 1) for d in blocks.depths} | {(blocks.base_depth, w) for w in blocks.widths}
    assert {(m.depth, m.width) for m in blocks.seed_architectures} <= grid
    assert all(m.residual for m in blocks.seed_architectures)
    background = profile.background
    assert (background.model.depth, background.model.width) in grid and background.train_size in blocks.train_sizes


def test_grid_vs_paper_shows_both_grids():
    from repsim.profiles import BlockChapter, grid_vs_paper

    rows = {row["grid"]: row for row in grid_vs_paper(get_profile("laptop").blocks)}
    assert rows["depths (1x)"]["paper"] == ", ".join(str(d) for d in BlockChapter().depths)
    assert rows["depths (1x)"]["this profile"] == "14, 32, 56"
    assert rows["widths"]["this profile"] == "1x, 2x, 4x at ResNet-14"
    assert rows["widths on smaller training sets"]["this profile"] == "1x, 2x at ResNet-14"
    assert rows["depths on smaller training sets"]["this profile"] == "14"
    assert rows["depths on smaller training sets"]["paper"] == rows["depths (1x)"]["paper"]
    assert rows["training-set prefixes"]["paper"].endswith("all")
    assert rows["seeds of"]["this profile"] == "3 of ResNet-56 (1x), ResNet-14 (4x)"


@pytest.mark.parametrize("name", ["smoke", "laptop", "paper"])
def test_chapter_4_analyses_models_of_chapter_3(name):
    from repsim.heatmaps import block_runs

    profile = get_profile(name)
    runs = block_runs(profile.blocks)
    assert profile.probes.with_block in runs and profile.probes.without_block in runs
    assert profile.probes.probe_train_size + profile.probes.probe_val_size <= 50_000


@pytest.mark.parametrize("name", ["smoke", "laptop", "paper"])
def test_chapter_5_compares_models_of_chapter_3(name):
    from repsim.heatmaps import block_runs

    profile = get_profile(name)
    runs = block_runs(profile.blocks)
    across = profile.across
    assert all(run.with_seed(0) in runs for run in across.seed_runs)  # chapter 3's architectures
    assert all(run in runs for pair in across.architecture_pairs for run in pair)
    assert across.seed_pair[0] != across.seed_pair[1]
    if 0 not in across.seed_pair:  # the paper profile: Fig. 6's pairs apart from Fig. 1's seed 0 ...
        seeds = {run.seed for run in runs if run.model in {r.model for r in across.seed_runs}}
        assert across.seed_pair[0] in seeds  # ... whose first seed is one of Fig. D.1's


def test_chapter_device_prefers_the_request_then_colab_then_the_profile(monkeypatch):
    import sys

    from repsim.profiles import chapter_device

    laptop = get_profile("laptop")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert chapter_device(None, laptop) == "cpu"
    assert chapter_device("cuda", laptop) == "cuda"
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert chapter_device(None, laptop) == "auto"
    assert chapter_device("cpu", laptop) == "cpu"


def test_every_compared_model_gets_the_profiles_seeds():
    from repsim.figures import fig6_pairs, seed_pairs

    laptop, paper = get_profile("laptop"), get_profile("paper")
    assert laptop.seed_list() == [0, 1, 2] and laptop.seed_list(3) == [3, 4, 5] and paper.seed_list(1) == [1]
    pairs = seed_pairs(laptop.across, [3, 4, 5])
    assert [(a.seed, b.seed) for a, b in pairs[:3]] == [(3, 4), (4, 5), (5, 3)]  # every pair of three, once
    assert len(pairs) == 3 * len(laptop.across.seed_runs)
    assert seed_pairs(paper.across, [0]) == fig6_pairs(paper.across)  # one seed: Fig. 6's pair
    assert [(a.seed, b.seed) for a, b in fig6_pairs(paper.across, 10)] == [(11, 12)] * 3
