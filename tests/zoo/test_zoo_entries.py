"""The real entries of the repository's ``zoo/`` folder: valid, intact, and as accurate as recorded.

With no entries registered yet, each test checks that the registry is empty and passes.
"""

from __future__ import annotations

import pytest

from na_lightning import zoo
from na_lightning.zoo._builder import build_classifier
from na_lightning.zoo._datasets import dataset_spec
from na_lightning.zoo._weights import weights_path
from tests.conftest import DATA_ROOT, REPO_ROOT

ZOO_DIR = REPO_ROOT / "zoo"
SAMPLE_SIZE = 1000
"""Test samples re-measured per entry: a fixed random sample drawn with seed 0."""
DATA_SUBDIRS = {"cifar10": "cifar10/cifar10-jpg"}
"""Data folders under DATA_ROOT that differ from the dataset's default folder name."""

NAMES = zoo.list_models(zoo_dir=ZOO_DIR)


def test_registry_files_are_entries():
    json_files = sorted(path.stem for path in ZOO_DIR.glob("*.json")) if ZOO_DIR.is_dir() else []

    assert NAMES == json_files


@pytest.mark.parametrize("name", NAMES or [None])
def test_entry_num_params_recounted(name):
    if name is None:
        assert NAMES == []
        return
    entry = zoo.model_info(name, zoo_dir=ZOO_DIR)
    model = build_classifier(dict(entry.builder))

    assert entry.num_params == sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("name", NAMES or [None])
def test_entry_weights_intact(name):
    if name is None:
        assert NAMES == []
        return
    entry = zoo.model_info(name, zoo_dir=ZOO_DIR)
    if entry.weights is None:
        pytest.skip(f"{name} is registered without weights")
    local = REPO_ROOT / entry.weights.file
    if not local.is_file() and entry.weights.url:
        pytest.skip(f"{name} weights are downloaded from {entry.weights.url}; tests stay offline")

    assert weights_path(entry, zoo_dir=ZOO_DIR) == local


@pytest.mark.parametrize("name", NAMES or [None])
def test_entry_accuracy_reproduces(name):
    if name is None:
        assert NAMES == []
        return
    entry = zoo.model_info(name, zoo_dir=ZOO_DIR)
    recorded = entry.metric()
    if entry.weights is None or recorded is None:
        pytest.skip(f"{name} has no weights or no recorded {entry.dataset} test accuracy")
    if not (REPO_ROOT / entry.weights.file).is_file():
        pytest.skip(f"{name} weights are not in the repository; tests stay offline")
    spec = dataset_spec(entry.dataset)
    data_dir = DATA_ROOT / DATA_SUBDIRS.get(entry.dataset, spec.default_dir)

    model = zoo.get_model(name, zoo_dir=ZOO_DIR)
    try:
        result = zoo.evaluate(model, data_dir=data_dir, limit=SAMPLE_SIZE, seed=0)
    except FileNotFoundError as error:
        pytest.skip(f"real {entry.dataset} test data not found in {data_dir}: {error}")

    assert result.num_samples == min(SAMPLE_SIZE, result.split_size)
    assert abs(result.difference) <= result.tolerance, (
        f"{name}: {100 * result.accuracy:.2f} % on {result.num_samples} {entry.dataset} test samples, "
        f"recorded {100 * recorded.accuracy:.2f} %, tolerance {100 * result.tolerance:.2f} points"
    )
