"""Shared fixtures: a private REPSIM_HOME for the session and the offline CIFAR-10 archive."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
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
