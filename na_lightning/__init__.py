"""Spiking neural networks trained with Neighborhood Aggregation, as Lightning modules.

The main names are importable from the package itself; they load their modules on first
use, so ``import na_lightning`` stays cheap::

    from na_lightning import NAClassifier, MNISTDataModule, lif_psc
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "NAClassifier": "na_lightning.lightning.classifier",
    "FineTuneClassifier": "na_lightning.lightning.finetune",
    "SpikingNetwork": "na_lightning.models.backbone",
    "MNISTDataModule": "na_lightning.data.mnist",
    "CIFAR10DataModule": "na_lightning.data.cifar10",
    "NMNISTDataModule": "na_lightning.data.nmnist",
    "EventDataModule": "na_lightning.data.events",
    "lif_psc": "na_lightning.functional.neuron",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'na_lightning' has no attribute {name!r}")
