"""Populations: cached per-example predictions, and the statistics that compare them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repsim import engines, populations
from repsim.files import config_key
from repsim.models import ResNetConfig
from repsim.populations import Population, architecture_pairs
from repsim.prediction_stats import (
    class_accuracies,
    per_example_accuracy,
    spread,
    spread_excess,
    spread_with_error,
    welch_per_class,
)
from repsim.profiles import PredictionChapter, Profile
from repsim.runs import Run
from repsim.store import Store
from repsim.train import predict
from repsim.trained import train_run


def _members(p: np.ndarray, members: int, rng) -> np.ndarray:
    """Boolean (members, N): each member gets example x right with probability p[x]."""
    return rng.random((members, len(p))) < p[None, :]


def test_spread_is_about_zero_for_one_architecture_and_the_gap_otherwise():
    rng = np.random.default_rng(0)
    p = rng.beta(2, 1, size=20_000)
    same = [spread(_members(p, 10, rng), _members(p, 10, rng)) for _ in range(20)]
    assert abs(np.mean(same)) < 0.002  # the finite-population noise is removed
    q = np.clip(p + rng.normal(0, 0.2, size=p.shape), 0, 1)
    truth = np.mean((p - q) ** 2)
    assert spread(_members(p, 10, rng), _members(q, 10, rng)) == pytest.approx(truth, rel=0.05)


def test_spread_excess_separates_different_populations_and_its_error_is_honest():
    rng = np.random.default_rng(1)
    p = rng.beta(2, 1, size=5_000)
    q = np.clip(p + rng.normal(0, 0.15, size=p.shape), 0, 1)
    different = spread_excess(_members(p, 8, rng), _members(q, 8, rng), _members(p, 8, rng), _members(p, 8, rng))
    assert different["excess"] > 0 and different["z"] > 5
    # Under the null the jackknife error should match the actual scatter of the excess.
    nulls = [spread_excess(*(_members(p, 8, rng) for _ in range(4))) for _ in range(30)]
    scatter = np.std([n["excess"] for n in nulls])
    typical_error = np.median([n["standard_error"] for n in nulls])
    assert 0.6 < typical_error / scatter < 1.6
    assert abs(np.mean([n["z"] for n in nulls])) < 0.6


def test_spread_with_error_is_zero_within_noise_for_one_architecture():
    rng = np.random.default_rng(3)
    p = rng.beta(2, 1, size=5_000)
    q = np.clip(p + rng.normal(0, 0.15, size=p.shape), 0, 1)
    assert spread_with_error(_members(p, 8, rng), _members(q, 8, rng))["z"] > 5
    nulls = [spread_with_error(_members(p, 8, rng), _members(p, 8, rng)) for _ in range(30)]
    assert abs(np.mean([n["z"] for n in nulls])) < 0.6
    assert 0.6 < np.median([n["standard_error"] for n in nulls]) / np.std([n["spread"] for n in nulls]) < 1.6


def test_architecture_pairs_sort_pairs_into_depth_width_and_wide_vs_deep():
    r8, r8w, r14, r20 = ResNetConfig(8), ResNetConfig(8, 2), ResNetConfig(14), ResNetConfig(20)
    plain = ResNetConfig(14, 2, residual=False)
    runs = [Run(r20, 100), Run(r8w, 100), Run(r8, 100), Run(r14, 100), Run(plain, 100), Run(r14, 200)]
    pairs = architecture_pairs(runs)
    names = {kind: sorted((x.model.name, y.model.name) for x, y in found) for kind, found in pairs.items()}
    assert names == {"depth": [("ResNet-14 (1x)", "ResNet-20 (1x)"), ("ResNet-8 (1x)", "ResNet-14 (1x)"),
                               ("ResNet-8 (1x)", "ResNet-20 (1x)")],
                     "width": [("ResNet-8 (1x)", "ResNet-8 (2x)")],
                     "wide vs deep": [("ResNet-8 (2x)", "ResNet-14 (1x)"), ("ResNet-8 (2x)", "ResNet-20 (1x)")]}


def test_per_example_and_class_accuracies_count_correct_members():
    labels = np.array([0, 0, 1, 2])
    preds = np.array([[0, 1, 1, 2], [0, 0, 2, 2]])
    np.testing.assert_allclose(per_example_accuracy(preds, labels), [1.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(class_accuracies(preds, labels, 3), [[0.5, 1.0, 1.0], [1.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"classes \[3\] have no test examples"):
        class_accuracies(preds, labels, 4)
    with pytest.raises(ValueError, match="predictions must be"):
        per_example_accuracy(preds[:, :3], labels)


def test_welch_per_class_finds_the_class_that_differs():
    rng = np.random.default_rng(2)
    a = rng.normal(0.7, 0.02, size=(20, 5))
    b = rng.normal(0.7, 0.02, size=(25, 5))
    b[:, 3] -= 0.05
    rows = welch_per_class(a, b, list("vwxyz"))
    assert [row["class"] for row in rows if row["significant"]] == ["y"]
    assert rows[3]["difference"] == pytest.approx(a[:, 3].mean() - b[:, 3].mean())
    with pytest.raises(ValueError, match="one column per class"):
        welch_per_class(a, b, list("vwx"))


def test_a_population_needs_two_distinct_seeds():
    with pytest.raises(ValueError, match="at least 2 distinct seeds"):
        Population(ResNetConfig(8), 100, (0, 0))


def test_predictions_are_cached_per_member(tmp_path, make_tiny_data, make_tiny_profile, access_log):
    """Each member is trained once and its predictions computed once; a grown population
    trains only its new member and reads the others' predictions back."""
    data = make_tiny_data(96, 30)
    profile = make_tiny_profile(predictions=PredictionChapter(stack=1))
    store = Store(tmp_path)
    small = Population(ResNetConfig(8), 64, (0, 1))
    models = {run.seed: config_key(run.key(profile, data)) for run in Population(ResNetConfig(8), 64, (0, 1, 2)).runs}
    predicted = {seed: config_key(populations.predictions_key(Run(ResNetConfig(8), 64, seed), profile, data))
                 for seed in models}
    first = populations.population_predictions(small, profile, data, store, progress=False)
    assert first.shape == (2, 30) and first.dtype == torch.int64
    computed = [entry["key"] for entry in access_log("computed")]
    assert sorted(computed) == sorted([models[0], models[1], predicted[0], predicted[1]])  # each once
    # The predictions are the stored models' own on the profile's test images.
    for row, run in zip(first, small.runs):
        model, _ = train_run(run, profile, data, store)
        torch.testing.assert_close(row, predict(model, data.test_images, device="cpu").argmax(1))

    access_log.clear()
    grown = populations.population_predictions(Population(ResNetConfig(8), 64, (0, 1, 2)), profile, data, store,
                                               progress=False)
    assert sorted(entry["key"] for entry in access_log("computed")) == sorted([models[2], predicted[2]])
    # The old members' predictions read back; the new member's model read back for its predictions.
    assert sorted(entry["key"] for entry in access_log("store")) == sorted([predicted[0], predicted[1], models[2]])
    torch.testing.assert_close(grown[:2], first)  # read back, not recomputed
    assert grown.shape == (3, 30) and not torch.equal(grown[2], grown[0])

    access_log.clear()
    again = populations.population_predictions(Population(ResNetConfig(8), 64, (0, 1, 2)), profile, data, store,
                                               progress=False)
    assert access_log("computed") == [] and len(access_log("store")) == 3  # nothing trained or predicted again
    torch.testing.assert_close(again, grown)


def test_a_population_read_from_partial_results_needs_three_members(tmp_path, make_tiny_data, make_tiny_profile):
    """Read without computing (a paper chapter on a CPU), two harvested members of three
    are pending, not a crash in the spread's jackknife; three are a population."""
    data = make_tiny_data(96, 30)
    profile = make_tiny_profile(predictions=PredictionChapter(stack=1))
    populations.population_predictions(Population(ResNetConfig(8), 64, (0, 1)), profile, data, Store(tmp_path),
                                       progress=False)
    reading, three = Store(tmp_path, compute=False), Population(ResNetConfig(8), 64, (0, 1, 2))
    assert populations.population_correct(three, profile, data, reading) is None
    populations.population_predictions(three, profile, data, Store(tmp_path), progress=False)
    correct = populations.population_correct(three, profile, data, reading)
    assert correct.shape == (3, 30)
    assert np.isfinite(spread_with_error(correct, correct)["standard_error"])  # the jackknife has two left each time


def test_submitit_engine_trains_members_in_local_jobs_into_the_shared_store(cifar_source, tmp_path, make_tiny_profile, access_log):
    pytest.importorskip("submitit")
    profile = make_tiny_profile(predictions=PredictionChapter(test_examples=100))
    population = Population(ResNetConfig(8), 64, (0, 1))
    remote = engines.train_population(population, profile, "cifar10", source=str(cifar_source),
                                          engine="submitit", folder=tmp_path / "jobs", cluster="local",
                                          timeout_min=10, progress=False)
    assert remote.shape == (2, 100)
    assert len(list((tmp_path / "jobs").glob("*_result.pkl"))) == 2  # two jobs ran
    # The jobs wrote to this process's store: the local engine now only reads.
    access_log.clear()
    local = engines.train_population(population, profile, "cifar10", source=str(cifar_source), progress=False)
    assert access_log("computed") == [] and len(access_log("store")) == 2  # read, not retrained
    torch.testing.assert_close(local, remote)


def test_ray_engine_trains_members_as_tasks_into_the_shared_store(cifar_source, make_tiny_profile, access_log):
    ray = pytest.importorskip("ray")
    profile = make_tiny_profile(predictions=PredictionChapter(test_examples=100))
    population = Population(ResNetConfig(8), 64, (2, 3))
    remote = engines.train_population(population, profile, "cifar10", source=str(cifar_source), engine="ray",
                                          num_cpus=1, progress=False)
    assert remote.shape == (2, 100)
    assert not ray.is_initialized()  # the Ray instance started for the population is shut down
    access_log.clear()
    local = engines.train_population(population, profile, "cifar10", source=str(cifar_source), progress=False)
    assert access_log("computed") == [] and len(access_log("store")) == 2  # read, not retrained
    torch.testing.assert_close(local, remote)


def test_unknown_engine_and_stray_options_are_named():
    population, profile = Population(ResNetConfig(8), 64, (0, 1)), Profile(name="x", device="cpu")
    with pytest.raises(ValueError, match="unknown engine 'dask'"):
        engines.train_population(population, profile, engine="dask")
    with pytest.raises(TypeError, match=r"engine='local' takes no engine options, got \['num_gpus'\]"):
        engines.train_population(population, profile, num_gpus=1)


def test_describe_training_says_how_members_were_trained():
    summary = {"members": 3, "stacks": {1: 1, 2: 2}, "devices": ["cuda"], "train_seconds": 90.0}
    assert populations.describe_training(summary) == "1 alone, 2 in stacks of 2; 1.5 min on cuda"


def test_populations_may_start_at_any_seed_and_the_baseline_follows_them():
    chapter = PredictionChapter(wide=Run(ResNetConfig(14, 2), 250), deep=Run(ResNetConfig(32), 250), members=4,
                                baseline="wide", architectures=(Run(ResNetConfig(14), 250),))
    published, disjoint = populations.chapter_populations(chapter), populations.chapter_populations(chapter, 8)
    assert published["wide"].seeds == (0, 1, 2, 3) and published["wide, second population"].seeds == (4, 5, 6, 7)
    assert disjoint["deep"].seeds == (8, 9, 10, 11) and disjoint["wide, second population"].seeds == (12, 13, 14, 15)
    used = {s for p in published.values() for s in p.seeds}
    assert used.isdisjoint({s for p in disjoint.values() for s in p.seeds})
    assert populations.wide_and_deep(chapter, 100, 8)["wide"].seeds == (8, 9, 10, 11)
