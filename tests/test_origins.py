"""Chapter 7 (the follow-up on the block's origins): snapshots, dominant images, overlap
across seeds, heatmaps without chosen images, and their summaries (the verdicts on them
are tested with the other claims, in test_claims.py). A cached result is told from a
recomputed one by the store's access log."""

from __future__ import annotations

import dataclasses
import itertools
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from repsim import dominant, heatmaps, origins, plots, snapshots, trained  # noqa: E402
from repsim.blocks import find_block  # noqa: E402
from repsim.compare import collect_activations, model_cka  # noqa: E402
from repsim.models import ResNet, ResNetConfig  # noqa: E402
from repsim.pca import first_pc  # noqa: E402
from repsim.profiles import CKASettings, OriginsChapter, ProbeChapter, Profile, get_profile  # noqa: E402
from repsim.runs import Run  # noqa: E402
from repsim.store import Store  # noqa: E402
from repsim.train import TrainConfig, train_models  # noqa: E402


@pytest.fixture
def tiny_profile() -> Profile:
    # evaluations=1: only the last epoch is scored, so the analysed model is the last step's.
    return Profile(name="tiny", device="cpu", train=TrainConfig(epochs=2, batch_size=32, eval_size=20, evaluations=1),
                   cka=CKASettings(examples=40, batch_size=20, passes=1), probes=ProbeChapter(pc_examples=36),
                   origins=OriginsChapter(snapshots=4, snapshot_examples=40, top_k=4, removal_counts=(0, 4, 8)))


RUN = Run(ResNetConfig(depth=8), train_size=64)


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)



def _lookups(access_log) -> list[tuple[str, str]]:
    """(analysis, source) of each store lookup logged since ``access_log.clear()``."""
    return [(entry["analysis"], entry["source"]) for entry in access_log()]


# -- snapshots ------------------------------------------------------------------------------
def test_snapshot_steps_are_log_spaced_from_initialisation_to_the_end():
    steps = snapshots.snapshot_steps(400, 8)
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == 400 and len(steps) == 8
    assert all(b > a for a, b in zip(steps, steps[1:]))
    ratios = np.diff(np.log(steps[1:]))
    np.testing.assert_allclose(ratios, ratios.mean(), rtol=0.2)  # evenly spaced in log step
    assert snapshots.snapshot_steps(3, 10) == [0, 1, 2, 3]  # duplicates collapse
    with pytest.raises(ValueError):
        snapshots.snapshot_steps(0, 4)


def test_snapshots_leave_the_trained_model_unchanged_and_come_at_the_requested_steps(tiny_data):
    config, recipe = ResNetConfig(depth=8), TrainConfig(epochs=2, batch_size=32, eval_size=20, evaluations=1,
                                                        train_size=160)
    (plain, plain_metrics), = train_models(config, recipe, tiny_data, [3], "cpu", progress=False)
    seen: dict[int, dict] = {}
    (model, metrics), = train_models(config, recipe, tiny_data, [3], "cpu", progress=False, snapshot_steps=[10, 0, 3, 5],
                                     on_snapshot=lambda step, states: seen.setdefault(step, states[0]))
    assert _states_equal(model.state_dict(), plain.state_dict())  # bit for bit
    assert [h["train_loss"] for h in metrics["history"]] == [h["train_loss"] for h in plain_metrics["history"]]
    assert list(seen) == [0, 3, 5, 10]  # 5 steps per epoch: 10 is the end of training
    torch.manual_seed(3)
    assert _states_equal({k: v for k, v in seen[0].items() if "running" not in k and "batches" not in k},
                         {k: v for k, v in ResNet(config).state_dict().items() if "running" not in k and "batches" not in k})
    assert _states_equal(seen[10], model.state_dict())  # only the last epoch scored: it is the analysed model
    assert not _states_equal(seen[3], seen[5])
    with pytest.raises(ValueError, match="snapshot steps"):
        train_models(config, recipe, tiny_data, [3], "cpu", progress=False, snapshot_steps=[11], on_snapshot=print)
    with pytest.raises(ValueError, match="on_snapshot"):
        train_models(config, recipe, tiny_data, [3], "cpu", progress=False, snapshot_steps=[1])


def test_retraining_with_snapshots_reproduces_the_stored_run_and_is_cached(tmp_path, tiny_data, tiny_profile,
                                                                          access_log):
    store = Store(tmp_path)
    stored, _ = trained.train_run(RUN, tiny_profile, tiny_data, store)  # as chapter 3 trains it
    snaps = snapshots.training_snapshots(RUN, tiny_profile, tiny_data, store)
    assert snaps.reproduces is True  # the CPU loop is deterministic
    assert snaps.steps == snapshots.snapshot_steps(snapshots.total_steps(RUN, tiny_profile, tiny_data), 4) == [0, 1, 2, 4]
    assert _states_equal(snaps.final, stored.state_dict()) and _states_equal(snaps.states[-1], snaps.final)
    access_log.clear()
    assert snapshots.training_snapshots(RUN, tiny_profile, tiny_data, store).steps == snaps.steps
    # loaded, not retrained: one lookup, found in the store, and nothing computed
    assert _lookups(access_log) == [(snapshots.training_snapshots_key(RUN, tiny_profile, tiny_data)["analysis"], "store")]


def test_snapshot_training_stores_a_missing_run_so_nothing_trains_it_again(tmp_path, tiny_data, tiny_profile,
                                                                           access_log):
    store = Store(tmp_path)
    snaps = snapshots.training_snapshots(RUN, tiny_profile, tiny_data, store)
    assert snaps.reproduces is None
    access_log.clear()
    model, _ = trained.train_run(RUN, tiny_profile, tiny_data, store)
    assert _lookups(access_log) == [("trained model", "store")]  # not trained twice
    assert _states_equal(model.state_dict(), snaps.final)


def test_keys_need_only_the_data_fingerprint(tiny_data, tiny_profile):
    # The harvest plans with keys built from a fingerprint; they must be the chapter's.
    for key in (snapshots.training_snapshots_key, origins.trajectory_key, origins.dominance_key, origins.removal_key):
        assert key(RUN, tiny_profile, tiny_data.fingerprint) == key(RUN, tiny_profile, tiny_data)
    assert origins.trajectory_key(RUN, tiny_profile, tiny_data) != origins.trajectory_key(RUN.with_seed(1), tiny_profile,
                                                                                          tiny_data)


def test_the_followed_runs_keep_their_snapshots_when_first_trained(tmp_path, tiny_data, tiny_profile, access_log):
    followed = dataclasses.replace(tiny_profile, origins=dataclasses.replace(tiny_profile.origins, with_block=RUN))
    store = Store(tmp_path)
    model, _ = trained.train_run(RUN, followed, tiny_data, store)  # as chapter 3 trains it
    access_log.clear()
    snaps = snapshots.training_snapshots(RUN, followed, tiny_data, store)
    assert _lookups(access_log) == [(snapshots.training_snapshots_key(RUN, followed, tiny_data)["analysis"], "store")]
    assert snaps.reproduces is None and _states_equal(snaps.final, model.state_dict())
    other = Run(ResNetConfig(depth=8), train_size=32)  # not followed: trained without snapshots
    trained.train_run(other, followed, tiny_data, store)
    assert store.load(snapshots.training_snapshots_key(other, followed, tiny_data)) is None


def test_trajectory_ends_at_the_final_model(tmp_path, tiny_data, tiny_profile):
    t = origins.trajectory(RUN, tiny_profile, tiny_data, Store(tmp_path), device="auto")  # as on Colab
    s, n = len(t.steps), len(t.layers)
    assert t.cka.shape == (s, n, n) and t.to_final.shape == (s, n) and t.pc1_variance.shape == (s, len(t.late_layers))
    assert t.late_layers == ["stage2.block0.relu2", "stage3.block0.relu2"] and t.total_steps == 4
    np.testing.assert_allclose(t.cka[-1], t.final_cka, atol=1e-9)  # the last step is the analysed model here
    np.testing.assert_allclose(t.to_final[-1], 1.0, atol=1e-6)
    assert (t.to_final[0] < 0.999).any()  # the initialisation is not the final model
    assert t.test_acc[-1] == pytest.approx(t.final_acc)
    rows = origins.block_over_training([t, None], 0.9)
    assert [r["step"] for r in rows] == [0, 1, 2, 4] and rows[-1]["to_final"] == pytest.approx(1.0, abs=1e-6)
    assert rows[-1]["overlap"] in (0.0, 1.0)  # the last block is the final one (or there is none)


def test_pc1_variance_is_the_first_pcs_share():
    x = torch.randn(50, 8, dtype=torch.float64) * torch.tensor([5.0, 1, 1, 1, 1, 1, 1, 1]) + 3
    for rows in (x, x.T.contiguous()):  # N > D and N < D: either Gram
        assert dominant.pc1_variance(rows) == pytest.approx(first_pc(rows.float()).variance_explained, rel=1e-4)
    assert dominant.pc1_variance(torch.ones(5, 3)) == 0.0


def test_snapshot_cka_agrees_with_model_cka():
    torch.manual_seed(0)
    final, other = ResNet(ResNetConfig(depth=8)).eval(), ResNet(ResNetConfig(depth=8)).eval()
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    within, to_final, own = origins.snapshot_cka([other, final], final, images, batch_size=16, passes=2, seed=5)
    np.testing.assert_allclose(own, model_cka(final, images, batch_size=16, passes=2, seed=5), atol=1e-6)
    np.testing.assert_allclose(within[0], model_cka(other, images, batch_size=16, passes=2, seed=5), atol=1e-6)
    np.testing.assert_allclose(to_final[1], 1.0, atol=1e-6)
    cross = model_cka(other, images, other=final, batch_size=16, passes=2, seed=5)
    np.testing.assert_allclose(to_final[0], np.diag(cross), atol=1e-6)


# -- dominant images ---------------------------------------------------------------------------
def test_dominance_finds_planted_points_and_their_share_of_pc1():
    rng = np.random.default_rng(0)
    planted = np.array([7, 50, 51, 120, 199])
    scores = []
    for layer in range(3):  # each layer: noise, and the planted rows far out along one direction
        x = rng.normal(size=(200, 30))
        x[planted] += 25 * rng.normal(size=30) / np.sqrt(30) * 4
        scores.append(first_pc(torch.tensor(x, dtype=torch.float32)).scores.numpy())
    d = dominant.dominance_scores(np.stack(scores))
    assert set(dominant.top_images(d, 5).tolist()) == set(planted.tolist())
    share = dominant.pc1_share(np.stack(scores), planted)
    assert share > 0.5 and share > 10 * 5 / 200  # 2.5% of the images carry most of PC1's variance
    assert dominant.pc1_share(np.stack(scores), np.arange(200)) == pytest.approx(1.0)
    assert dominant.top_images([1.0, 3.0, 3.0, 2.0], 3).tolist() == [1, 2, 3]


def test_image_statistics_single_out_the_bright_uniform_images():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 200, (60, 3, 32, 32), dtype=torch.uint8, generator=g)
    images[:5] = 250  # a white, uniform image
    stats = dominant.image_statistics(images)
    assert stats["border variation"][0] == 0 and stats["brightness"][0] == pytest.approx(250 / 255)
    rows = dominant.compare_statistics(stats, np.arange(5))
    assert rows[0]["statistic"] in {"brightness", "border brightness", "border variation", "contrast", "saturation"}
    brightness = next(r for r in rows if r["statistic"] == "brightness")
    assert brightness["cohen_d"] > 3 and brightness["p_bonferroni"] < 0.01
    assert brightness["p_bonferroni"] == pytest.approx(min(1, brightness["p"] * len(stats)))
    assert all(abs(a["cohen_d"]) >= abs(b["cohen_d"]) for a, b in zip(rows, rows[1:]))


def test_jaccard_and_its_chance_level():
    assert dominant.jaccard([1, 2, 3], [2, 3, 4]) == 0.5 and dominant.jaccard([], []) == 1.0
    overlap, expected = dominant.chance_overlap(20, 2000)
    assert overlap == pytest.approx(20 * 20 / 2000)
    rng = np.random.default_rng(0)
    simulated = np.mean([dominant.jaccard(rng.choice(2000, 20, replace=False), rng.choice(2000, 20, replace=False))
                         for _ in range(20_000)])
    assert expected == pytest.approx(simulated, abs=0.001)
    assert expected == pytest.approx(20 / (2 * 2000 - 20), rel=0.05)  # ~ k / (2N - k) for k << N
    assert dominant.overlap_p_value(0, 3, 10) == pytest.approx(1.0)
    assert dominant.overlap_p_value(3, 3, 10) == pytest.approx(1 / math.comb(10, 3))


def test_seed_overlaps_compare_every_pair(tiny_profile):
    def dom(seed, planted):
        z = np.ones((2, 100))
        z[:, planted] = 50.0
        return origins.Dominance(Run(ResNetConfig(depth=8), 64, seed), ["a", "b"], z, np.ones(2), (0, 2))

    ds = [dom(0, [1, 2, 3, 4]), dom(1, [1, 2, 3, 4]), dom(2, [10, 11, 12, 13])]
    rows = origins.seed_overlaps(ds, 4)
    assert [(r["seed_a"], r["seed_b"], r["overlap"], r["jaccard"]) for r in rows] == [
        (0, 1, 4, 1.0), (0, 2, 0, 0.0), (1, 2, 0, 0.0)]
    assert rows[0]["p"] == pytest.approx(1 / math.comb(100, 4)) and rows[1]["p"] == pytest.approx(1.0)


# -- removing them --------------------------------------------------------------------------
class Halves(nn.Module):
    """Two 'layers': the first and the second half of the pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Identity(), nn.Identity()

    def forward(self, x):
        x = x.flatten(1)
        return self.left(x[:, : x.shape[1] // 2]), self.right(x[:, x.shape[1] // 2 :])


def test_removing_planted_dominant_images_removes_a_planted_block():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(100, 140, (120, 3, 32, 32), dtype=torch.uint8, generator=g)
    planted = [3, 30, 31, 77, 100, 118]
    images[planted] = 255  # far out, and in both halves alike: the halves look similar
    model, layers = Halves(), ["left", "right"]
    acts = collect_activations(model, images, layers)
    pcs = np.stack([first_pc(acts[name]).scores.numpy() for name in layers])
    top = dominant.top_images(dominant.dominance_scores(pcs), 6)
    assert set(top.tolist()) == set(planted)
    others = [i for i in range(120) if i not in planted][:6]
    cka = dominant.cka_without_images(model, images, [[], top, others], layers=layers, batch_size=40, seed=0)
    block = [find_block(c, threshold=0.9).size for c in cka]
    assert cka[0, 0, 1] > 0.95 and cka[2, 0, 1] > 0.95 and abs(cka[1, 0, 1]) < 0.2
    assert block == [2, 0, 2]


def test_removing_nothing_is_model_cka():
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(depth=8)).eval()
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    cka = dominant.cka_without_images(model, images, [[], [0, 5, 9]], batch_size=16, passes=2, seed=4)
    np.testing.assert_allclose(cka[0], model_cka(model, images, batch_size=16, passes=2, seed=4), atol=1e-6)
    assert not np.allclose(cka[1], cka[0])


def test_dominance_and_removal_are_cached_and_start_from_the_chapter_3_heatmap(tmp_path, tiny_data, tiny_profile,
                                                                               access_log):
    store = Store(tmp_path)
    d = origins.dominance(RUN, tiny_profile, tiny_data, 0.9, store)
    assert d.pc_scores.shape == (len(d.layers), 40) and 1 <= len(d.layers) <= tiny_profile.origins.max_layers
    removal = origins.removal_heatmaps(RUN, tiny_profile, tiny_data, 0.9, store)
    np.testing.assert_allclose(removal.dominant[0], heatmaps.heatmap(RUN, tiny_profile, tiny_data, store).cka, atol=1e-6)
    np.testing.assert_allclose(removal.random[0], removal.dominant[0])
    assert removal.dominant.shape == (3, len(removal.layers), len(removal.layers))
    access_log.clear()
    again = origins.removal_heatmaps(RUN, tiny_profile, tiny_data, 0.9, store)
    again_d = origins.dominance(RUN, tiny_profile, tiny_data, 0.9, store)
    assert _lookups(access_log) == [("heatmaps without dominant images", "store"), ("dominant images", "store")]
    np.testing.assert_array_equal(again.dominant, removal.dominant)
    np.testing.assert_array_equal(again_d.pc_scores, d.pc_scores)
    rows = origins.removal_rows(again, 0.9)
    assert [(r["images"], r["removed"]) for r in rows] == list(itertools.product(["dominant", "random"], [0, 4, 8]))


# -- summaries ----------------------------------------------------------------------------------
def _block_cka(size: int, layers: int = 10) -> np.ndarray:
    cka = np.full((layers, layers), 0.3)
    cka[layers - size :, layers - size :] = 0.95
    np.fill_diagonal(cka, 1.0)
    return cka


def test_block_overlap_is_the_jaccard_index_of_the_layers():
    from repsim.blocks import Block

    assert origins.block_overlap(Block(0, 4, 10, 1.0), Block(2, 6, 10, 1.0)) == pytest.approx(2 / 6)
    assert origins.block_overlap(Block(0, 4, 10, 1.0), Block(0, 4, 10, 1.0)) == 1.0
    assert origins.block_overlap(Block(0, 4, 10, 1.0), Block(5, 9, 10, 1.0)) == 0.0
    assert origins.block_overlap(Block(0, 0, 10, None), Block(0, 4, 10, 1.0)) == 0.0


def test_formation_is_the_first_snapshot_from_which_the_block_stays():
    sizes = [0, 0, 6, 3, 8, 8]
    steps = np.array([0, 1, 3, 10, 30, 100])
    t = origins.Trajectory(Run(ResNetConfig(depth=8)), steps, 100, np.linspace(0.1, 0.5, 6),
                           np.stack([_block_cka(s) for s in sizes]), np.linspace(0.2, 1.0, 6)[:, None] * np.ones((6, 10)),
                           _block_cka(8), 0.5, np.full((6, 2), 0.4), [f"l{i}" for i in range(10)], ["a", "b"], True)
    formed = origins.formation(t, 0.9, share=0.5)
    assert formed["step"] == 30 and formed["fraction_of_training"] == 0.3 and formed["final_block"] == 0.8
    assert formed["init_block"] == formed["init_overlap"] == 0.0 and formed["overlap"] == 1.0
    assert formed["to_final"] == pytest.approx(np.linspace(0.2, 1.0, 6)[4])
    assert formed["init_to_final"] == pytest.approx(0.2) and formed["init_acc"] == pytest.approx(0.1)
    assert formed["init_pc1"] == formed["pc1"] == formed["final_pc1"] == pytest.approx(0.4)
    assert origins.formation(None, 0.9)["step"] is None


@pytest.mark.parametrize("name", ["smoke", "laptop", "paper"])
def test_followed_runs_come_from_the_block_grid(name):
    profile = get_profile(name)
    grid_runs = set(heatmaps.block_runs(profile.blocks))
    with_block, without_block = profile.followed_runs()
    assert with_block in grid_runs and without_block in grid_runs and with_block != without_block
    assert set(origins.seed_runs(profile)) <= grid_runs and origins.seed_runs(profile)[0] == with_block


def test_plots_draw_images_and_curves():
    images = np.zeros((12, 3, 32, 32), dtype=np.uint8)
    ax = plots.image_grid(images, columns=5)
    assert ax.images[0].get_array().shape == (3 * 33 - 1, 5 * 33 - 1, 3)
    rows = [{"model": "m", "step": s, "block": b} for s, b in ((0, 0.1), (10, 0.4), (100, 0.5))]
    ax = plots.over_training(rows, "block")
    assert ax.get_xscale() == "symlog" and len(ax.lines) >= 1
    fig = plots.image_panels([images, images[:3]], ["a", "b"])
    assert len(fig.axes) == 2
    plt.close("all")
