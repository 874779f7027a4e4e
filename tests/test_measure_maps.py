"""Chapter 8: a run's heatmaps under the four measures, with and without dominant images,
the matched thresholds, the block rows and their verdicts (``claims.measure_claims``).
The measures themselves are tested against references in test_measures.py."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from repsim import claims, heatmaps, measure_maps, origins, plots  # noqa: E402
from repsim.measure_maps import CONDITIONS, MeasureMaps  # noqa: E402
from repsim.measures import MEASURES, knn_matrix, neighbour_sets, procrustes_factors, procrustes_matrix  # noqa: E402
from repsim.models import ResNetConfig  # noqa: E402
from repsim.profiles import CKASettings, MeasuresChapter, OriginsChapter, Profile, get_profile  # noqa: E402
from repsim.runs import Run  # noqa: E402
from repsim.store import Store  # noqa: E402
from repsim.train import TrainConfig  # noqa: E402

RUN = Run(ResNetConfig(depth=8), train_size=64)
OTHER = Run(ResNetConfig(depth=8, width=2), train_size=64)


@pytest.fixture
def profile() -> Profile:
    return Profile(name="tiny", device="cpu", train=TrainConfig(epochs=2, batch_size=32, eval_size=20, evaluations=1),
                   cka=CKASettings(examples=40, batch_size=20, passes=1),
                   origins=OriginsChapter(with_block=RUN, without_block=OTHER, snapshots=3, snapshot_examples=40,
                                          top_k=4, removal_counts=(0, 6), max_layers=4),
                   measures=MeasuresChapter(with_block=(RUN,), subset=24, neighbours=3))


def test_the_measured_layers_are_the_stem_the_block_outputs_and_the_pool():
    names = ["stem.conv", "stem.relu", "stage1.block0.conv1", "stage1.block0.relu2", "stage2.block0.add",
             "stage2.block0.relu2", "pool", "fc"]
    assert measure_maps.measured_layers(names) == ["stem.relu", "stage1.block0.relu2", "stage2.block0.relu2", "pool"]


def test_measured_runs_add_chapter_7s_runs_and_the_seed():
    laptop = get_profile("laptop")
    runs = laptop.measured_runs(2)
    with_block, without_block = laptop.followed_runs(2)
    assert runs[-1] == without_block and with_block in runs and all(run.seed == 2 for run in runs)
    assert [run.model for run in runs[:-1]] == list(laptop.blocks.seed_architectures)
    paper = get_profile("paper")  # chapter 7's two models, named once each
    assert paper.measured_runs() == paper.followed_runs()
    assert measure_maps.removes_dominant(with_block, laptop) and not measure_maps.removes_dominant(without_block, laptop)


def test_maps_repeat_chapter_3s_heatmap_and_leave_out_the_dominant_images(tmp_path, tiny_data, profile, access_log):
    store = Store(tmp_path)
    maps = measure_maps.measure_maps(RUN, profile, tiny_data, store=store)
    assert maps.conditions == list(CONDITIONS) and maps.removed == 6
    n = len(maps.layers)
    assert all(maps.maps[name].shape == (3, n, n) for name in MEASURES)
    # Linear CKA is chapter 3's heatmap at the measured layers: same images, same minibatches.
    full = heatmaps.heatmap(RUN, profile, tiny_data, store)
    index = [full.layers.index(name) for name in maps.layers]
    np.testing.assert_allclose(maps.matrix("linear CKA"), full.cka[np.ix_(index, index)], atol=1e-9)
    # ... and without the dominant images, chapter 7's heatmap without them at those layers.
    removal = origins.removal_heatmaps(RUN, profile, tiny_data, store=store)
    np.testing.assert_allclose(maps.matrix("linear CKA", CONDITIONS[1]), removal.dominant[-1][np.ix_(index, index)],
                               atol=1e-9)
    np.testing.assert_allclose(maps.matrix("linear CKA", CONDITIONS[2]), removal.random[-1][np.ix_(index, index)],
                               atol=1e-9)
    for name in MEASURES:  # every measure is 1 for a layer with itself
        np.testing.assert_allclose(np.diagonal(maps.maps[name], axis1=1, axis2=2), 1.0, atol=1e-9)
    # The subset measures on the first 24 images, without the left-out ones among them.
    top = origins.dominance(RUN, profile, tiny_data, store=store).top(6)
    random = origins.random_images(40, 6, RUN.seed)
    assert maps.subset_removed == [0, int((top < 24).sum()), int((random < 24).sum())]
    access_log.clear()
    again = measure_maps.measure_maps(RUN, profile, tiny_data, store=store)
    assert [entry["source"] for entry in access_log()] == ["store"]  # cached: one lookup, nothing recomputed
    assert all(np.array_equal(again.maps[name], maps.maps[name]) for name in MEASURES)
    other = measure_maps.measure_maps(OTHER, profile, tiny_data, store=store)  # chapter 7's model without a block
    assert other.conditions == [CONDITIONS[0]] and other.subset_removed == [0]


def test_subset_maps_equal_the_measures_on_the_kept_images(tiny_data, profile):
    from repsim.compare import collect_activations
    from repsim.trained import train_run

    model, _ = train_run(RUN, profile, tiny_data, Store(compute=True))
    layers = ["stem.relu", "stage2.block0.relu2", "pool"]
    images = tiny_data.test_images[:20]
    left_out = [np.array([], dtype=int), np.array([3, 7, 11])]
    procrustes, knn = measure_maps.subset_maps(model, images, layers, left_out, neighbours=3)
    acts = collect_activations(model, images, layers)
    kept = np.setdiff1d(np.arange(20), left_out[1])
    grams = [(a[kept] - a[kept].mean(0)).double() @ (a[kept] - a[kept].mean(0)).double().T for a in acts.values()]
    np.testing.assert_allclose(procrustes[1], procrustes_matrix([procrustes_factors(k) for k in grams]), atol=1e-6)
    np.testing.assert_allclose(knn[1], knn_matrix([neighbour_sets(k, 3) for k in grams]), atol=1e-12)


def _maps(run: Run, matrices: dict[str, np.ndarray], conditions=CONDITIONS[:1]) -> MeasureMaps:
    n = len(next(iter(matrices.values())))
    return MeasureMaps(run, [f"layer{i}" for i in range(n)], list(conditions),
                       {name: np.stack([matrices[name]] * len(conditions)) for name in MEASURES}, 0,
                       [0] * len(conditions))


def _block_matrix(n: int, start: int, stop: int, inside: float, outside: float) -> np.ndarray:
    m = np.full((n, n), outside)
    m[start:stop, start:stop] = inside
    np.fill_diagonal(m, 1.0)
    return m


def test_thresholds_match_the_number_of_pairs_that_reach_linear_ckas():
    linear = _block_matrix(6, 1, 4, 0.95, 0.5)  # 3 pairs at 0.95
    scaled = _block_matrix(6, 2, 5, 0.4, 0.1)  # 3 pairs at 0.4, in other layers
    maps = [_maps(RUN, {"linear CKA": linear, "RBF CKA": linear, "Procrustes": scaled, "mutual k-NN": scaled})]
    thresholds = measure_maps.matched_thresholds(maps, 0.9)
    assert thresholds == {"linear CKA": 0.9, "RBF CKA": 0.95, "Procrustes": 0.4, "mutual k-NN": 0.4}
    rows = {r["measure"]: r for r in measure_maps.block_rows(maps, thresholds)}
    assert rows["linear CKA"]["block"] == rows["Procrustes"]["block"] == 0.5
    assert rows["linear CKA"]["start"] == "layer1" and rows["Procrustes"]["start"] == "layer2"
    assert rows["Procrustes"]["overlap"] == pytest.approx(2 / 4) and rows["RBF CKA"]["overlap"] == 1.0
    nothing = [_maps(RUN, dict.fromkeys(MEASURES, _block_matrix(6, 1, 4, 0.8, 0.5)))]
    none = measure_maps.matched_thresholds(nothing, 0.9)
    assert all(v == float("inf") for k, v in none.items() if k != "linear CKA")
    assert all(r["block"] == 0 and r["overlap"] is None for r in measure_maps.block_rows(nothing, none))
    assert measure_maps.matched_thresholds([None], 0.9) == dict.fromkeys(MEASURES, 0.9)  # all pending


def _rows(with_blocks, without_blocks, measure_blocks=None, removal=None):
    """block_rows of a with-block run A and a without run B over seeds; every measure as
    linear CKA unless ``measure_blocks`` gives (with, without) per measure."""
    rows = []
    for seed, (w, o) in enumerate(zip(with_blocks, without_blocks)):
        for measure in MEASURES:
            mw, mo = (measure_blocks or {}).get(measure, ([w] * 9, [o] * 9))
            rows.append({"run": "A", "seed": seed, "measure": measure, "condition": CONDITIONS[0], "block": mw[seed],
                         "overlap": 0.8 if mw[seed] else 0.0})
            rows.append({"run": "B", "seed": seed, "measure": measure, "condition": CONDITIONS[0], "block": mo[seed],
                         "overlap": None})
            for condition, block in zip(CONDITIONS[1:], (removal or {}).get(measure, ())):
                rows.append({"run": "A", "seed": seed, "measure": measure, "condition": condition, "block": block[seed],
                             "overlap": None})
    return rows


def test_measure_claims_call_each_question_over_seeds():
    rows = _rows([0.5, 0.6, 0.55], [0.1, 0.1, 0.12],
                 measure_blocks={"mutual k-NN": ([0.1, 0.12, 0.1], [0.1, 0.1, 0.12])},
                 removal={name: ([0.1, 0.2, 0.1], [0.5, 0.6, 0.5]) for name in MEASURES})
    verdicts = claims.measure_claims(rows, MEASURES, ["A"], "B", "A")
    assert len(verdicts) == 4 + 3 + 4
    larger = {name: v["verdict"] for name, v in zip(MEASURES, verdicts[:4])}
    assert larger["linear CKA"] == larger["Procrustes"] == "agrees (1 of 1)"
    assert larger["mutual k-NN"] == "too close to call (1 of 1)"
    assert "+0.40" in verdicts[0]["evidence"] and "seeds" in verdicts[0]["evidence"]
    same_layers = verdicts[4:7]
    assert same_layers[0]["verdict"] == "agrees (1 of 1)"  # overlap 0.8 in every seed
    assert same_layers[2]["verdict"] == "agrees (1 of 1)"  # k-NN's tiny blocks still overlap by 0.8 here
    shrinks = verdicts[7:]
    assert all(v["verdict"] == "agrees" for v in shrinks) and "50% → 10% (random: 50%)" in shrinks[0]["evidence"]
    # Nothing computed: every question is pending, none is judged.
    assert {v["verdict"] for v in claims.measure_claims([], MEASURES, ["A"], "B", "A")} == {claims.PENDING}


def test_the_meaning_follows_the_verdicts():
    from repsim.book.prose import measure_meaning

    agree = "agrees (2 of 2)"
    assert "property of the networks" in measure_meaning(dict.fromkeys(MEASURES, agree))
    lost = measure_meaning({**dict.fromkeys(MEASURES, agree), "mutual k-NN": "too close to call (2 of 2)"})
    assert "cannot rule out" in lost and "under mutual k-NN it does not" in lost
    assert "no block for the other measures" in measure_meaning({**dict.fromkeys(MEASURES, agree),
                                                                 "linear CKA": "does not agree (0 of 2)"})
    assert "pending" in measure_meaning(dict.fromkeys(MEASURES, claims.PENDING))


def test_the_figures_draw_computed_and_pending_maps():
    maps = [_maps(RUN, dict.fromkeys(MEASURES, _block_matrix(5, 1, 4, 0.95, 0.3)), CONDITIONS), None]
    rows, titles, labels = measure_maps.panels(maps)
    assert len(rows) == 1 and len(rows[0]) == 4 and titles[0] == list(MEASURES)
    rows, titles, labels = measure_maps.condition_panels(maps, RUN)
    assert labels == ["all images", "without\ndominant", "without\nrandom"] and len(rows) == 3
    assert measure_maps.condition_panels([None], RUN) == ([], [], [])
    fig = plots.wrapped_heatmaps(rows, titles, labels, columns=4, bar_label="similarity")
    assert "similarity" in [ax.get_ylabel() for ax in fig.axes]  # the colour bar
    thresholds = measure_maps.matched_thresholds(maps, 0.9)
    fig = plots.measure_blocks_figure(measure_maps.block_rows(maps, thresholds), RUN.label)
    assert len(fig.axes) == 2
    fig = plots.measure_blocks_figure([], None)  # pending: empty panels, not an error
    plt.close("all")


def test_keys_need_only_the_data_fingerprint_and_change_with_the_settings(tiny_data, profile):
    key = measure_maps.measure_maps_key
    assert key(RUN, profile, tiny_data.fingerprint) == key(RUN, profile, tiny_data)
    assert "dominance" in key(RUN, profile, tiny_data)["settings"] and "dominance" not in key(OTHER, profile, tiny_data)["settings"]
    changed = dataclasses.replace(profile, measures=dataclasses.replace(profile.measures, neighbours=5))
    assert key(OTHER, changed, tiny_data) != key(OTHER, profile, tiny_data)


def test_rank_agreement_is_spearmans_rho_on_the_pairs_of_layers():
    linear = _block_matrix(5, 1, 4, 0.95, 0.3)
    linear[0, 4] = linear[4, 0] = 0.1
    flipped = 1.0 - linear  # the opposite order of every pair, the diagonal aside
    np.fill_diagonal(flipped, 1.0)
    maps = [_maps(RUN, {"linear CKA": linear, "RBF CKA": linear ** 2, "Procrustes": flipped, "mutual k-NN": linear}),
            None]
    rows = {r["measure"]: r["spearman"] for r in measure_maps.rank_agreement(maps)}
    assert rows == {"RBF CKA": pytest.approx(1.0), "Procrustes": pytest.approx(-1.0), "mutual k-NN": pytest.approx(1.0)}
    from repsim.book.prose import chapter8

    values = chapter8(get_profile("smoke"), get_profile("smoke").measured_runs(), RUN, dict.fromkeys(MEASURES, 0.9),
                      [None], measure_maps.rank_agreement(maps), 2, 0.9)
    assert values["rho_procrustes"] == "-1.00 (-1.00 to -1.00)" and values["subset_removed"] == "pending"
    assert chapter8(get_profile("smoke"), get_profile("smoke").measured_runs(), RUN, dict.fromkeys(MEASURES, 0.9),
                    [None], [], 2, 0.9)["rho_rbf"] == "pending"


def test_the_protocol_sentence_says_when_linear_cka_is_chapter_3s():
    from repsim.book.prose import chapter8

    laptop, paper = get_profile("laptop"), get_profile("paper")
    same = chapter8(laptop, laptop.measured_runs(), RUN, dict.fromkeys(MEASURES, 0.9), [None], [], 3, 0.9)["protocol"]
    fewer = chapter8(paper, paper.measured_runs(), RUN, dict.fromkeys(MEASURES, 0.9), [None], [], 1, 0.9)["protocol"]
    assert "is chapter 3's heatmap" in same and "2,048" in same
    assert "1 pass(es)" in fewer and "chapter 3 makes 10" in fewer and "10,000" in fewer
