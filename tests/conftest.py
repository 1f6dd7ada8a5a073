"""Shared test fixtures: locations of the real datasets.

Real data is looked up in ``$NA_LIGHTNING_DATA`` or, by default, in ``shared/data``
beside the repository checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("NA_LIGHTNING_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    folder = DATA_ROOT / "mnist"
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {folder}; set NA_LIGHTNING_DATA")
    return folder
