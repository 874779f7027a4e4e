"""python -m repsim.similarity: writes the heatmap and the numbers with layer names, from
any torchvision model, the paper's ResNet or a module of the user's, with weights; bad
input ends with one line that names the problem and exit status 2."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

from repsim.models import ResNet, ResNetConfig
from repsim.similarity import Similarity
from repsim.similarity.__main__ import main
from repsim.similarity.loading import load_model, parse_args


def test_the_command_writes_png_csv_and_npz_for_two_models(cifar_source, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "resnet8.pt"
    torch.save(ResNet(ResNetConfig(depth=8)).state_dict(), weights)
    out = tmp_path / "out"
    env = {**os.environ, "REPSIM_DATA": str(cifar_source)}
    done = subprocess.run(
        [sys.executable, "-m", "repsim.similarity", "--model", "torchvision:resnet18", "--arg", "num_classes=10",
         "--other", "cifar-resnet:8", "--other-weights", str(weights), "--other-layers", "stem.relu", "pool", "fc",
         "--images", "40", "--batch-size", "16", "--device", "cpu", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "torchvision:resnet18 (60 layers) x cifar-resnet:8 (3 layers) on 40 examples" in done.stdout
    assert "CKA" in done.stderr  # the progress bar
    assert (out / "cka.png").stat().st_size > 10_000
    rows = [row for row in csv.reader(line for line in (out / "cka.csv").open() if not line.startswith("#"))]
    assert rows[0] == ["layer", "stem.relu", "pool", "fc"] and rows[1][0] == "conv1" and rows[-1][0] == "fc"
    loaded = Similarity.load(out / "cka.npz")
    assert loaded.cka.shape == (60, 3) and loaded.examples == 40 and loaded.model == "torchvision:resnet18"
    assert np.allclose(np.array([row[1:] for row in rows[1:]], dtype=float), loaded.cka, atol=1e-9)


def test_weights_are_loaded_into_the_model(tmp_path):
    torch.manual_seed(1)
    trained = torchvision.models.resnet18(num_classes=10)
    torch.save({"state_dict": trained.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pt")
    model = load_model("torchvision:resnet18", tmp_path / "checkpoint.pt", {"num_classes": 10})
    assert torch.equal(model.fc.weight, trained.fc.weight)
    with pytest.raises(ValueError, match="do not fit ResNet"):
        load_model("torchvision:resnet18", tmp_path / "checkpoint.pt")  # 1,000 classes by default


def test_a_module_of_the_users_is_imported_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(
        "import torch.nn as nn\n"
        "def build(hidden=8):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, hidden), nn.ReLU(), nn.Linear(hidden, 10))\n")
    monkeypatch.chdir(tmp_path)
    model = load_model("mynet:build", args=parse_args(["hidden=5"]))
    assert model[1].out_features == 5


@pytest.mark.parametrize("argv, message", [
    (["--model", "torchvision:resnet19"], "torchvision has no model 'resnet19' (did you mean"),
    (["--model", "resnet18"], "a model is torchvision:NAME"),
    (["--model", "cifar-resnet:21"], "depth must be 6n + 2"),
    (["--model", "nosuchmodule:Net"], "cannot import 'nosuchmodule'"),
    (["--model", "cifar-resnet:8", "--weights", "missing.pt"], "no weights file missing.pt"),
    (["--model", "cifar-resnet:8", "--layers", "stem.cnv"], "'stem.cnv' (did you mean 'stem.conv'"),
    (["--model", "cifar-resnet:8", "--batch-size", "2"], "batch_size must be at least 4"),
    (["--model", "cifar-resnet:8", "--data", "imagenet"], "--data is cifar10, cifar100 or a .pt or .npy file"),
    (["--model", "cifar-resnet:8", "--other-layers", "fc"], "need --other"),
    (["--model", "cifar-resnet:8", "--arg", "depth"], "--arg takes KEY=VALUE"),
])
def test_bad_input_is_one_line_and_status_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = [] if "--data" in argv else ["--data", str(_examples(tmp_path))]
    assert main([*argv, *data, "--images", "8", "--device", "cpu", "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _examples(folder):
    path = folder / "examples.npy"
    np.save(path, np.random.default_rng(0).random((12, 3, 32, 32), dtype=np.float32))
    return path


def test_examples_from_a_file_and_too_many_images(tmp_path, capsys):
    path = _examples(tmp_path)
    assert main(["--model", "cifar-resnet:8", "--layers", "stem.conv", "fc", "--data", str(path), "--images", "12",
                 "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    assert Similarity.load(tmp_path / "out" / "cka.npz").layers == ["stem.conv", "fc"]
    assert main(["--model", "cifar-resnet:8", "--data", str(path), "--images", "13", "--out", str(tmp_path / "o")]) == 2
    assert "--images must be between 4 and the 12 examples" in capsys.readouterr().err
