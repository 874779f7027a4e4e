"""Block deletion (Fig. 5): a new model without the last residual branches of a stage."""

from __future__ import annotations

import pytest
import torch

from repsim.models import ResNet, ResNetConfig, ShortcutOnly, delete_residual_units, layer_names


@pytest.fixture
def model() -> ResNet:
    torch.manual_seed(0)
    return ResNet(ResNetConfig(depth=20)).eval()  # 3 blocks per stage


def test_deletion_copies_and_leaves_the_original_untouched(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = delete_residual_units(model, stage=2, count=2)
    assert pruned is not model
    assert isinstance(pruned.stage2.block1, ShortcutOnly) and isinstance(pruned.stage2.block2, ShortcutOnly)
    assert not isinstance(pruned.stage2.block0, ShortcutOnly) and not isinstance(model.stage2.block2, ShortcutOnly)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pruned.stage1.block0.conv1.weight.data.zero_()
    assert model.stage1.block0.conv1.weight.abs().sum() > 0  # no shared parameters


def test_deleting_a_silent_branch_changes_nothing(model):
    # A block whose last BN outputs zero adds nothing to its input (which is post-ReLU,
    # so the block's final ReLU is the identity): deleting it must not change the logits.
    with torch.no_grad():
        model.stage3.block2.bn2.weight.zero_()
        model.stage3.block2.bn2.bias.zero_()
    x = torch.rand(8, 3, 32, 32)
    torch.testing.assert_close(delete_residual_units(model, 3, 1)(x), model(x))
    assert not torch.allclose(delete_residual_units(model, 3, 2)(x), model(x))


def test_deleting_zero_blocks_is_a_plain_copy(model):
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(delete_residual_units(model, 1, 0)(x), model(x))


def test_a_whole_stage_keeps_its_projection_shortcut(model):
    pruned = delete_residual_units(model, stage=3, count=3)
    assert isinstance(pruned.stage3.block0.shortcut, torch.nn.Conv2d)  # the stride-2 projection stays
    assert pruned(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    names = layer_names(pruned)
    assert "stage3.block0.shortcut" in names and "stage3.block0.conv1" not in names


@pytest.mark.parametrize("stage,count,match", [(0, 1, "stage must be"), (4, 1, "stage must be"),
                                               (1, 4, "count must be between 0 and 3"), (1, -1, "count")])
def test_bad_arguments_are_named(model, stage, count, match):
    with pytest.raises(ValueError, match=match):
        delete_residual_units(model, stage, count)


def test_networks_without_residuals_are_refused():
    with pytest.raises(ValueError, match="no residual connections"):
        delete_residual_units(ResNet(ResNetConfig(depth=8, residual=False)), 1, 1)
    with pytest.raises(TypeError, match="repsim ResNet"):
        delete_residual_units(torch.nn.Linear(2, 2), 1, 1)


def test_deletion_drop_reads_the_stage_rows():
    from repsim.run_analyses import deletion_drop

    rows = [{"stage": 3, "deleted": k, "test_acc": acc} for k, acc in enumerate([0.5, 0.48, 0.40, 0.2, 0.1])]
    rows += [{"stage": 2, "deleted": 0, "test_acc": 0.5}, {"stage": 2, "deleted": 1, "test_acc": 0.45}]
    assert deletion_drop(rows, stage=3, fraction=0.5) == (pytest.approx(0.10), 2)
    assert deletion_drop(rows, stage=2, fraction=0.5) == (pytest.approx(0.05), 1)  # at least one block
    with pytest.raises(ValueError, match="stage 1"):
        deletion_drop(rows, stage=1)
