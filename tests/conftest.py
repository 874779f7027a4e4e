"""Shared fixtures: a private REPSIM_HOME for the session, the offline CIFAR-10 archive,
tiny synthetic data sets and profiles, the store's access log, and a finder of object
reprs on rendered pages."""

from __future__ import annotations

import atexit
import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

# Set before repsim is imported anywhere, so every data cache and model store of this
# session lands in one temporary folder. CI sets REPSIM_HOME itself (a cache shared
# between runs); then it is left alone.
if not os.environ.get("REPSIM_HOME"):
    _SESSION_HOME = tempfile.mkdtemp(prefix="repsim-tests-")
    os.environ["REPSIM_HOME"] = _SESSION_HOME
    atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)

# The shared offline copy of CIFAR-10, beside the repository: <parent of repo>/shared/data.
SHARED_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def cifar_path() -> Path | None:
    """The CIFAR-10 source the tests use ($REPSIM_DATA, else the shared archive), or None."""
    path = Path(os.environ.get("REPSIM_DATA") or SHARED_ARCHIVE).expanduser()
    return path if path.exists() else None


@pytest.fixture(scope="session")
def cifar_source() -> Path:
    path = cifar_path()
    if path is None:
        pytest.skip(
            f"CIFAR-10 not available offline: set REPSIM_DATA or provide {SHARED_ARCHIVE} "
            f"(REPSIM_DATA={os.environ.get('REPSIM_DATA')!r})"
        )
    return path


@pytest.fixture(scope="session")
def cifar(cifar_source):
    """The full CIFAR-10 data set, decoded once (about 10 s) and then cached in REPSIM_HOME."""
    from repsim.data import DataUnavailableError, load_dataset

    try:
        return load_dataset("cifar10", source=cifar_source)
    except DataUnavailableError as err:
        pytest.skip(f"CIFAR-10 could not be loaded from {cifar_source}: {err}")


# -- tiny data and profiles: seconds of CPU, no download ------------------------------

TINY_CLASSES = tuple("abcdefghij")


@pytest.fixture(scope="session")
def make_tiny_data() -> Callable:
    """``make_tiny_data(n_train, n_test, seed=0)``: a fixed data set of random 32x32 images
    with random labels of 10 classes, drawn in order (training images, their labels, test
    images, their labels) from one generator, named like CIFAR-10 and held in memory."""
    import torch

    from repsim.data import ImageDataset

    def make(n_train: int = 160, n_test: int = 48, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        images = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = lambda n: torch.randint(0, len(TINY_CLASSES), (n,), generator=g)
        return ImageDataset(images(n_train), labels(n_train), images(n_test), labels(n_test), TINY_CLASSES,
                            "cifar10", "memory")

    return make


@pytest.fixture
def tiny_data_sizes() -> tuple[int, int]:
    """(training, test) images of ``tiny_data``; a test module overrides this fixture for others."""
    return 160, 48


@pytest.fixture
def tiny_data(make_tiny_data, tiny_data_sizes):
    return make_tiny_data(*tiny_data_sizes)


@pytest.fixture(scope="session")
def make_tiny_profile() -> Callable:
    """``make_tiny_profile(**fields)``: the CPU profile "tiny" (one epoch in batches of 32,
    the best epoch picked on 20 test images) with ``fields`` replacing its chapters'
    settings (or its ``train``)."""
    from repsim.profiles import Profile
    from repsim.train import TrainConfig

    def make(**fields):
        fields.setdefault("train", TrainConfig(epochs=1, batch_size=32, eval_size=20))
        return Profile(name="tiny", device="cpu", **fields)

    return make


@pytest.fixture
def tiny_profile(make_tiny_profile):
    """The tiny profile with small CKA and probe settings (Sec. 3-4 analyses in seconds)."""
    from repsim.profiles import CKASettings, ProbeChapter

    return make_tiny_profile(cka=CKASettings(examples=40, batch_size=20, passes=1),
                             probes=ProbeChapter(probe_train_size=64, probe_val_size=32, probe_epochs=1,
                                                 probe_max_features=256, test_examples=48, pc_examples=36))


# -- the store's access log ---------------------------------------------------------


class AccessLog:
    """The lines ``repsim.store`` appends to ``$REPSIM_ACCESS_LOG``: one per lookup, with
    where the result came from ("store", "results", "computed" or "pending")."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, source: str | None = None) -> list[dict]:
        """Every entry logged since the last ``clear``, or those from ``source``."""
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        entries = [json.loads(line) for line in lines]
        return [entry for entry in entries if source is None or entry["source"] == source]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def access_log(monkeypatch, tmp_path_factory) -> AccessLog:
    """The store's access log for this test: ``access_log("computed")`` lists what was
    computed (trained or analysed) since the last ``access_log.clear()``."""
    path = tmp_path_factory.mktemp("access") / "access.log"
    monkeypatch.setenv("REPSIM_ACCESS_LOG", str(path))
    return AccessLog(path)


# -- reprs on pages -------------------------------------------------------------------

OBJECT_REPR = re.compile(
    r"<[^<>\n]* at 0x[0-9a-fA-F]+>"  # <repsim.x.Y object at 0x7f...>, <function f at 0x...>
    r"|<Figure size \d+(?:\.\d+)?x\d+(?:\.\d+)? with \d+ Axes>"  # matplotlib
    r"|<[\w.]+ object>"  # <IPython.core.display.Markdown object>
    r"|\bobject at 0x[0-9a-fA-F]+"
)


@pytest.fixture(scope="session")
def object_reprs() -> Callable[[str], list[str]]:
    """A function giving the object reprs in a text (HTML entities decoded first)."""
    return lambda text: OBJECT_REPR.findall(html.unescape(text))
