"""The page on your own model: models that are not the paper's, built from torchvision
and trained briefly here (``repsim.fit``), to be compared with ``repsim.similarity``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from .data import ImageDataset
from .fit import FitConfig, fit_classifier
from .similarity import Similarity, similarity
from .store import Store

if TYPE_CHECKING:
    from .profiles import Profile


@dataclass(frozen=True)
class OwnModel:
    """A torchvision model by its builder's name (``torchvision.models.get_model``, or
    ``"VisionTransformer"`` for the class itself, which takes any image size) and
    arguments, and how it is trained."""

    label: str  # for titles and prose: "ResNet-18 (torchvision)"
    builder: str
    args: tuple[tuple[str, Any], ...] = ()
    fit: FitConfig = FitConfig()

    def build(self) -> nn.Module:
        import torchvision

        if self.builder == "VisionTransformer":
            return torchvision.models.VisionTransformer(**dict(self.args))
        return torchvision.models.get_model(self.builder, weights=None, **dict(self.args))

    @property
    def description(self) -> dict:
        """What builds it, as the store key names it."""
        return {"torchvision": self.builder, "args": dict(self.args)}

    @property
    def name(self) -> str:
        return self.label


def trained_own_model(own: OwnModel, profile: Profile, data: ImageDataset, store: Store | None = None, device=None,
                      seed: int = 0) -> tuple[nn.Module, dict]:
    """``own`` trained on ``data`` (a ``Session.get`` analysis): from the store, or
    trained into it where the store may compute."""
    return fit_classifier(own.build, own.description, own.fit, data, seed, store, device or profile.device)


def block_layers(own: OwnModel) -> list[str]:
    """The outputs of ``own``'s blocks, first layer to logits: for a VisionTransformer its
    patch embedding, each encoder block, the final norm and the head; for a torchvision
    ResNet its stem, each residual block and the head."""
    args = dict(own.args)
    if own.builder == "VisionTransformer":
        blocks = [f"encoder.layers.encoder_layer_{i}" for i in range(args["num_layers"])]
        return ["conv_proj", *blocks, "encoder.ln", "heads.head"]
    model = own.build()
    stages = [name for name, _ in model.named_children() if name.startswith("layer")]
    blocks = [f"{stage}.{index}" for stage in stages for index, _ in enumerate(getattr(model, stage))]
    return ["relu", *blocks, "fc"] if blocks else [name for name, _ in model.named_children()]


def similarity_if_ready(model: nn.Module | None, images, other: nn.Module | None = None, wanted_other: bool = False,
                        **options) -> Similarity | None:
    """``repsim.similarity.similarity(model, images, other=other, **options)``, or None
    while ``model`` (or, with ``wanted_other``, ``other``) is pending."""
    if model is None or (wanted_other and other is None):
        return None
    return similarity(model, images, other=other, **options)


def summary_rows(entries: list[tuple[str, dict | None, int, int]]) -> list[dict]:
    """One row per (label, store record, training images, epochs) of a trained model:
    its data, epochs, accuracies and training time ("pending" while the record is)."""
    rows = []
    for label, record, images, epochs in entries:
        metrics = record["metrics"] if record is not None else {}
        train = metrics.get("train_accuracy", metrics.get("train_acc"))
        test = metrics.get("test_accuracy", metrics.get("best_test_acc"))
        rows.append({"model": label, "training images": f"{images:,}", "epochs": epochs,
                     "train accuracy": "pending" if train is None else f"{train:.1%}",
                     "test accuracy": "pending" if test is None else f"{test:.1%}",
                     # a model trained as one of a stack has no time of its own (store.put records 0)
                     "minutes": "pending" if record is None else f"{record['train_seconds'] / 60:.1f}"
                     if record["train_seconds"] else "in a stack"})
    return rows
