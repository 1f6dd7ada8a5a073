"""Fixtures of the zoo tests: a temporary repository with a registry built from tiny checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from na_lightning import zoo
from na_lightning.lightning.classifier import NAClassifier
from tests.zoo.zoo_helpers import (
    MNIST_BUILDER,
    TINY_BUILDER,
    TINY_CLASSES,
    TINY_INPUT,
    lightning_checkpoint,
    make_classifier,
)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A temporary repository root whose ``zoo/`` folder is the registry."""
    root = tmp_path / "repo"
    (root / "zoo").mkdir(parents=True)
    monkeypatch.setenv(zoo.ZOO_ENV, str(root / "zoo"))
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    return root


@pytest.fixture
def tiny_model() -> NAClassifier:
    return make_classifier(TINY_BUILDER)


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model) -> Path:
    path = tmp_path / "tiny.ckpt"
    torch.save(lightning_checkpoint(tiny_model), path)
    return path


def _import_tiny(checkpoint: Path, name: str = "tiny_cnn.t1", **options) -> zoo.ZooEntry:
    arguments = {
        "dataset": "shapes",
        "classes": TINY_CLASSES,
        "input_spec": TINY_INPUT,
        "license": "CC0-1.0",
        "recipe": {"config": "configs/tiny.yaml", "seed": 0},
        "metrics": [
            {
                "dataset": "shapes",
                "split": "test",
                "num_samples": 100,
                "accuracy": 0.5,
                "date": "2025-01-31",
                "command": "na-lightning zoo eval tiny_cnn.t1",
            }
        ],
    }
    arguments.update(options)
    return zoo.import_checkpoint(checkpoint, name, **arguments)


@pytest.fixture
def import_tiny(repo):
    """Return a function that registers a checkpoint of the tiny model in the temporary repository."""
    return _import_tiny


@pytest.fixture
def tiny_entry(repo, tiny_checkpoint) -> zoo.ZooEntry:
    """The tiny model registered as ``tiny_cnn.t1`` in the temporary repository."""
    return _import_tiny(tiny_checkpoint)


@pytest.fixture
def mnist_entry(repo, tmp_path) -> zoo.ZooEntry:
    """A small untrained network of MNIST shape registered as ``small_cnn_mnist.t1``."""
    model = make_classifier(MNIST_BUILDER)
    path = tmp_path / "mnist.ckpt"
    torch.save(lightning_checkpoint(model, epoch=0, datamodule="na_lightning.data.MNISTDataModule"), path)
    metric = {
        "dataset": "mnist",
        "split": "test",
        "num_samples": 10000,
        "accuracy": 0.1,
        "date": "2025-02-01",
        "command": "na-lightning zoo eval small_cnn_mnist.t1",
    }
    return zoo.import_checkpoint(path, "small_cnn_mnist.t1", metrics=[metric])
