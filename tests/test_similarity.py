"""The public call ``repsim.similarity.similarity`` on models that are not the paper's:
torchvision's ResNet-18, a VisionTransformer and a sequence-first transformer encoder,
each against an independent float64 reference computed here from activations read with
plain forward hooks; and each bad input gets an error that names the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from repsim.compare import minibatches
from repsim.models import ResNet, ResNetConfig
from repsim.similarity import NonFiniteActivationError, Similarity, similarity

TOLERANCE = 1e-6  # the bound on the error against float64; repsim is near 1e-9


# ---------------------------------------------------------------------------------------
# The reference: U-centred float64 Grams (Szekely & Rizzo 2014), summed over the same
# minibatches unnormalised (the paper's released code), then the ratio.
# ---------------------------------------------------------------------------------------


def u_centred(x: np.ndarray) -> np.ndarray:
    k = x @ x.T
    n = len(k)
    np.fill_diagonal(k, 0.0)
    rows = k.sum(axis=1)
    k = k - rows[:, None] / (n - 2) - rows[None, :] / (n - 2) + rows.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(k, 0.0)
    return k


def reference_cka(batches_x: list[list[np.ndarray]], batches_y: list[list[np.ndarray]] | None = None) -> np.ndarray:
    """batches_x[b][l]: layer l's (n_b, p) float64 activations in minibatch b."""
    rows = len(batches_x[0])
    columns = rows if batches_y is None else len(batches_y[0])
    cross = np.zeros((rows, columns))
    self_x, self_y = np.zeros(rows), np.zeros(columns)
    for b, layers_x in enumerate(batches_x):
        kx = [u_centred(a) for a in layers_x]
        ky = kx if batches_y is None else [u_centred(a) for a in batches_y[b]]
        self_x += [np.sum(k * k) for k in kx]
        self_y += [np.sum(k * k) for k in ky]
        cross += np.array([[np.sum(k * l) for l in ky] for k in kx])
    return cross / np.sqrt(np.outer(self_x, self_y))


def hooked(model: nn.Module, x: torch.Tensor, names: list[str], read=lambda out: out) -> list[np.ndarray]:
    """The named outputs for x through hooks written here, as float64 (n, features): a
    clone of every call as the module returns (torchvision's ReLUs are in place), and
    "name_k" the module's (k+1)-th call."""
    modules = dict(model.named_modules())
    wanted = {name: (name, 0) if name in modules else (name.rsplit("_", 1)[0], int(name.rsplit("_", 1)[1]))
              for name in names}
    calls: dict[str, list[torch.Tensor]] = {module: [] for module, _ in wanted.values()}
    handles = [modules[module].register_forward_hook(lambda m, i, o, module=module: calls[module].append(read(o).clone()))
               for module in calls]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return [calls[module][call].double().flatten(1).numpy() for module, call in wanted.values()]


def per_batch(model, inputs, names, batch_size, read=lambda out: out, seed=0):
    return [hooked(model, inputs[index], names, read) for index in minibatches(len(inputs), batch_size, 1, seed)]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    # 44 examples in batches of 16: the last minibatch has 12, and counts with its weight.
    return torch.rand(44, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():  # BN with non-trivial inference statistics
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.running_mean.uniform_(-0.2, 0.2)
    return model.eval()


def tiny_vit() -> nn.Module:
    torch.manual_seed(1)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                               mlp_dim=32, num_classes=10)
    with torch.no_grad():  # torchvision starts the head at zero: give it weights to compare
        vit.heads.head.weight.normal_(0, 0.1)
    return vit.eval()


# ---------------------------------------------------------------------------------------
# Any model, against the reference
# ---------------------------------------------------------------------------------------


def test_every_leaf_layer_of_torchvision_resnet18_against_float64(resnet18, images):
    result = similarity(resnet18, images, batch_size=16, device="cpu")
    # every leaf call that returns a tensor, in the order they ran; the ReLU each
    # BasicBlock calls twice is two layers, named as torchvision's feature extraction does
    assert result.layers[:6] == ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1", "layer1.0.bn1"]
    assert "layer1.0.relu_1" in result.layers and result.layers[-2:] == ["avgpool", "fc"]
    assert len(result.layers) == 60 and result.cka.shape == (60, 60)
    expected = reference_cka(per_batch(resnet18, images, result.layers, 16))
    assert np.abs(result.cka - expected).max() < TOLERANCE
    assert result.examples == 44 and result.batch_size == 16 and result.tokens == "flatten"


def test_the_second_call_of_a_reused_relu_is_its_own_layer(resnet18, images):
    result = similarity(resnet18, images, layers=["layer1.0.bn2", "layer1.0.relu", "layer1.0.relu_1"], batch_size=16)
    second = []  # the reference: the block's output, relu(bn2 + identity)
    for index in minibatches(len(images), 16, 1, 0):
        with torch.no_grad():
            x = resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(images[index]))))
            block = resnet18.layer1[0]
            h = block.relu(block.bn1(block.conv1(x)))
            bn2 = block.bn2(block.conv2(h))
            second.append([a.double().flatten(1).numpy() for a in (bn2, h, torch.relu(bn2 + x))])
    assert np.abs(result.cka - reference_cka(second)).max() < TOLERANCE
    assert result["layer1.0.relu", "layer1.0.relu_1"] < 0.99  # two different layers


def test_graph_nodes_that_are_not_modules_are_read_through_torchvision_feature_extraction(resnet18, images):
    # "layer1.0.add" is torchvision's node for `out += identity`, which ReLU(inplace=True)
    # then overwrites: it must be read as it was computed
    result = similarity(resnet18, images, layers=["layer1.0.bn2", "layer1.0.add", "layer1.0.relu_1"], batch_size=16)
    reference = []
    for index in minibatches(len(images), 16, 1, 0):
        with torch.no_grad():
            x = resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(images[index]))))
            block = resnet18.layer1[0]
            bn2 = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
            reference.append([a.double().flatten(1).numpy() for a in (bn2, bn2 + x, torch.relu(bn2 + x))])
    assert np.abs(result.cka - reference_cka(reference)).max() < TOLERANCE
    assert result["layer1.0.add", "layer1.0.relu_1"] < 0.999


def test_layers_chosen_by_module_type(resnet18, images):
    result = similarity(resnet18, images, layers=nn.Conv2d, batch_size=16)
    convs = [name for name, module in resnet18.named_modules() if isinstance(module, nn.Conv2d)]
    assert sorted(result.layers) == sorted(convs) and len(convs) == 20
    assert np.abs(result.cka - reference_cka(per_batch(resnet18, images, result.layers, 16))).max() < TOLERANCE


@pytest.mark.parametrize("tokens", ["flatten", "mean"])
def test_vision_transformer_blocks_with_token_outputs(images, tokens):
    vit = tiny_vit()
    blocks = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1", "encoder.ln", "heads.head"]
    result = similarity(vit, images, layers=blocks, batch_size=16, tokens=tokens)
    read = (lambda out: out) if tokens == "flatten" else (lambda out: out.mean(dim=1) if out.dim() == 3 else out)
    expected = reference_cka(per_batch(vit, images, blocks, 16, read))
    assert np.abs(result.cka - expected).max() < TOLERANCE
    assert result.tokens == tokens and f"token outputs: {tokens}" in repr(result)


def test_the_choice_of_token_reduction_changes_the_answer(images):
    vit = tiny_vit()
    blocks = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    flat = similarity(vit, images, layers=blocks, batch_size=16, tokens="flatten")
    mean = similarity(vit, images, layers=blocks, batch_size=16, tokens="mean")
    assert abs(flat.cka[0, 1] - mean.cka[0, 1]) > 1e-4


class SequenceFirstEncoder(nn.Module):
    """Token ids (batch, tokens) -> nn.TransformerEncoder without batch_first, whose
    layers return (tokens, batch, features)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1)
        self.encoder = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)
        self.head = nn.Linear(16, 4)

    def forward(self, ids):
        h = self.encoder(self.embed(ids).transpose(0, 1))  # (tokens, batch, features)
        return self.head(h.mean(dim=0))


def test_a_sequence_first_transformer_encoder_is_read_batch_first():
    torch.manual_seed(2)
    model = SequenceFirstEncoder().eval()
    ids = torch.randint(0, 50, (36, 7), generator=torch.Generator().manual_seed(3))
    layers = ["embed", "encoder.layers.0", "encoder.layers.1", "encoder.layers.2", "head"]
    result = similarity(model, ids, layers=layers, batch_size=12, tokens="mean")
    # The reference reads each output itself: the encoder layers' (tokens, batch,
    # features) turned batch first, then, like the embedding's, averaged over the tokens.
    modules = dict(model.named_modules())
    expected = []
    for index in minibatches(len(ids), 12, 1, 0):
        out = {}
        handles = [modules[name].register_forward_hook(lambda m, i, o, name=name: out.setdefault(name, o.clone()))
                   for name in layers]
        with torch.no_grad():
            model(ids[index])
        for handle in handles:
            handle.remove()
        batch_first = {name: out[name].transpose(0, 1) if name.startswith("encoder.") else out[name] for name in layers}
        expected.append([(o.mean(dim=1) if o.dim() == 3 else o).double().numpy() for o in batch_first.values()])
    assert out["encoder.layers.0"].shape == (7, 12, 16)  # sequence first indeed
    assert np.abs(result.cka - reference_cka(expected)).max() < TOLERANCE


def test_two_different_models_side_by_side(resnet18, images):
    torch.manual_seed(4)
    paper = ResNet(ResNetConfig(depth=8)).eval()
    rows = ["layer1.0.conv1", "layer2.0.relu_1", "layer4.1.bn2", "fc"]
    columns = ["stem.relu", "stage2.block0.add", "pool", "fc"]
    result = similarity(resnet18, images, layers=rows, other=paper, other_layers=columns, batch_size=16)
    assert result.cka.shape == (4, 4) and result.layers == rows and result.other_layers == columns
    assert result.model == "ResNet" and result.other == "ResNet (other)"
    # relu_1, the ReLU's second call, is what block layer2.0 returns: the reference hooks that
    blocks = ["layer1.0.conv1", "layer2.0", "layer4.1.bn2", "fc"]
    expected = reference_cka(per_batch(resnet18, images, blocks, 16), per_batch(paper, images, columns, 16))
    assert np.abs(result.cka - expected).max() < TOLERANCE
    assert result["fc", "fc"] == pytest.approx(expected[3, 3], abs=TOLERANCE)


def test_a_dataset_gives_the_same_result_as_a_tensor(resnet18, images):
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(len(images)))
    layers = ["conv1", "layer2.0.conv2", "fc"]
    from_tensor = similarity(resnet18, images, layers=layers, batch_size=16)
    from_dataset = similarity(resnet18, dataset, layers=layers, batch_size=16)
    assert np.array_equal(from_tensor.cka, from_dataset.cka)


def test_uint8_images_are_scaled_to_the_unit_interval(resnet18, images):
    as_bytes = (images * 255).round().to(torch.uint8)
    layers = ["conv1", "fc"]
    assert np.allclose(similarity(resnet18, as_bytes, layers=layers, batch_size=16).cka,
                       similarity(resnet18, as_bytes.float() / 255, layers=layers, batch_size=16).cka, atol=1e-12)


class Outputs(nn.Module):
    """Leaf modules whose outputs are not one tensor: a GRU (a tuple) and a dict."""

    class Named(nn.Module):
        def forward(self, x):
            return {"doubled": 2 * x, "squared": x * x}

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 6, batch_first=True)
        self.named = self.Named()
        self.unused = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(self.named(out)["squared"].mean(dim=1))


def test_tuple_and_dict_outputs_are_read_by_element():
    torch.manual_seed(5)
    model = Outputs().eval()
    x = torch.randn(24, 5, 4, generator=torch.Generator().manual_seed(6))
    default = similarity(model, x, batch_size=8)
    assert default.layers == ["head"]  # the others return a tuple or a dict
    assert any("rnn (returns a tuple" in note and "'rnn[0]'" in note for note in default.notes)
    assert any("unused (did not run" in note for note in default.notes)
    result = similarity(model, x, layers=["rnn[0]", "rnn[1]", "named[squared]", "head"], batch_size=8)
    batches = []  # the elements, computed by hand
    for index in minibatches(len(x), 8, 1, 0):
        with torch.no_grad():
            out, last = model.rnn(x[index])
            head = model.head((out * out).mean(dim=1))
        batches.append([a.double().flatten(1).numpy() for a in (out, last.transpose(0, 1), out * out, head)])
    assert np.abs(result.cka - reference_cka(batches)).max() < TOLERANCE


def test_negative_cka_is_kept_and_explained():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(3, 2), nn.Identity()).eval()
    other = nn.Sequential(nn.Linear(3, 2)).eval()
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(8))
    found = None
    for seed in range(40):  # small batches of unrelated features: some pair scores below 0
        torch.manual_seed(seed)
        other[0].reset_parameters()
        y = torch.randn(8, 3, generator=torch.Generator().manual_seed(100 + seed))
        result = similarity(model, x, layers=["0"], other=other, other_layers=["0"], other_inputs=y, batch_size=4)
        if result.cka[0, 0] < 0:
            found = (result, y)
            break
    assert found, "no negative CKA in 40 tries"
    result, y = found
    expected = reference_cka(per_batch(model, x, ["0"], 4), per_batch(other, y, ["0"], 4))
    assert result.cka[0, 0] == pytest.approx(expected[0, 0], abs=TOLERANCE) and expected[0, 0] < 0
    assert any("negative" in note and "not clamped" in note for note in result.notes)


def test_a_constant_layer_is_reported_and_scores_zero(images):
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 5)).eval()
    with torch.no_grad():
        model[2].weight.zero_()
    result = similarity(model, images, batch_size=16)
    assert np.all(result.cka[2] == 0) and np.all(result.cka[:, 2] == 0)
    assert any("no positive self-HSIC" in note and "'2'" in note for note in result.notes)


# ---------------------------------------------------------------------------------------
# Bad input: an error that names the problem, never a silent NaN
# ---------------------------------------------------------------------------------------


def test_an_unknown_layer_name_lists_the_closest_real_names(resnet18, images):
    with pytest.raises(KeyError, match="'layer1.0.conv' \\(did you mean .*'layer1.0.conv1'"):
        similarity(resnet18, images, layers=["layer1.0.conv"], batch_size=16)
    with pytest.raises(KeyError, match="unknown layer name.*'fcc'.*'fc'"):
        similarity(resnet18, images, other=resnet18, other_layers=["fcc"], batch_size=16)
    with pytest.raises(TypeError, match="got the string 'fc'; use \\['fc'\\]"):
        similarity(resnet18, images, layers="fc")


@pytest.mark.parametrize("batch_size", [3, 1, 0])
def test_a_batch_smaller_than_four_is_refused(resnet18, images, batch_size):
    with pytest.raises(ValueError, match="batch_size must be at least 4.*n >= 4"):
        similarity(resnet18, images, batch_size=batch_size)


def test_fewer_than_four_examples_are_refused(resnet18, images):
    with pytest.raises(ValueError, match="inputs holds 3 example\\(s\\).*at least 4"):
        similarity(resnet18, images[:3])


def test_a_layer_that_never_runs_is_named():
    torch.manual_seed(5)
    model = Outputs().eval()
    x = torch.randn(12, 5, 4)
    with pytest.raises(ValueError, match="\\['unused'\\] did not run in the forward pass"):
        similarity(model, x, layers=["unused", "head"], batch_size=4)


def test_non_finite_activations_name_the_layer_and_the_minibatch(resnet18, images):
    broken = images.clone()
    broken[29, 0, 5, 5] = float("nan")  # one pixel of one example
    with pytest.raises(NonFiniteActivationError) as caught:
        similarity(resnet18, broken, layers=["conv1", "layer2.0.conv1", "fc"], batch_size=16)
    message = str(caught.value)
    order = minibatches(len(images), 16, 1, 0)
    where = next(b for b, index in enumerate(order) if 29 in index.tolist())
    assert f"layer 'conv1' of the model has NaN or Inf activations in minibatch {where + 1} of 3" in message
    assert "[29]" in message


def test_two_models_given_different_numbers_of_examples_are_refused(resnet18, images):
    with pytest.raises(ValueError, match="different numbers of examples: inputs has 44, other_inputs 40"):
        similarity(resnet18, images, other=resnet18, other_inputs=images[:40])
    with pytest.raises(ValueError, match="without other"):
        similarity(resnet18, images, other_inputs=images)


def test_an_unknown_token_reduction_and_bad_settings_are_refused(resnet18, images):
    with pytest.raises(ValueError, match="tokens must be one of \\('flatten', 'mean'\\)"):
        similarity(resnet18, images, tokens="cls")
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        similarity(resnet18, images, batch_size=16.0)
    with pytest.raises(ValueError, match="passes must be at least 1"):
        similarity(resnet18, images, passes=0)
    with pytest.raises(TypeError, match="must be a tensor, a numpy array or a map-style dataset"):
        similarity(resnet18, 42)


def test_no_module_of_the_type_is_an_error(resnet18, images):
    with pytest.raises(ValueError, match="no module of type LSTM"):
        similarity(resnet18, images, layers=nn.LSTM)


# ---------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------


def test_the_result_saves_and_loads_with_its_layer_names(resnet18, images, tmp_path):
    result = similarity(resnet18, images, layers=["conv1", "fc"], other=tiny_vit(),
                        other_layers=["encoder.layers.encoder_layer_0", "heads.head"], batch_size=16, tokens="mean")
    loaded = Similarity.load(result.save(tmp_path / "cka.npz"))
    assert np.array_equal(loaded.cka, result.cka) and loaded.layers == result.layers
    assert loaded.other_layers == result.other_layers and loaded.tokens == "mean" and loaded.other == "VisionTransformer"
    text = result.save(tmp_path / "cka.csv").read_text().splitlines()
    assert '# tokens: "mean"' in text
    header = next(line for line in text if not line.startswith("#"))
    assert header == "layer,encoder.layers.encoder_layer_0,heads.head"
    assert text[-1].startswith("fc,") and float(text[-1].split(",")[2]) == pytest.approx(result.cka[1, 1], rel=1e-9)
    with pytest.raises(ValueError, match="writes .csv or .npz"):
        result.save(tmp_path / "cka.txt")


def test_the_plot_names_the_layers_on_both_axes(resnet18, images):
    import matplotlib.pyplot as plt

    result = similarity(resnet18, images, layers=["conv1", "layer1.0.relu_1", "fc"], batch_size=16)
    ax = result.plot()
    assert [t.get_text() for t in ax.get_yticklabels()] == result.layers
    assert [t.get_text() for t in ax.get_xticklabels()] == result.layers
    plt.close(ax.figure)
    many = similarity(resnet18, images, batch_size=16)
    ax = many.plot()
    assert 10 <= len(ax.get_yticklabels()) <= 24  # every k-th of 60, to stay legible
    plt.close(ax.figure)
