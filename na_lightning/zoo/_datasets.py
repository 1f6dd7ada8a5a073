"""The datasets that zoo models are evaluated on, by the name used in registry entries.

To support another dataset, add a :class:`DatasetSpec` to :data:`DATASETS` whose
``build_datamodule`` returns a LightningDataModule with unaugmented ``test_dataloader()``
batches ``(inputs, labels)`` in the model's input format.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytorch_lightning as pl

from na_lightning.data import CIFAR10DataModule, MNISTDataModule, NMNISTDataModule
from na_lightning.zoo._errors import ZooError

DATA_ENV = "NA_LIGHTNING_DATA"
"""Environment variable naming a folder with one subfolder per dataset, e.g. ``mnist/``."""


@dataclass(frozen=True)
class DatasetSpec:
    """How to evaluate on a dataset, and the facts that an imported entry copies from it.

    Attributes:
        name: the dataset name in registry entries, e.g. ``"mnist"``.
        datamodule_class: import path of its LightningDataModule, matched against the
            ``datamodule_hyper_parameters`` of a Lightning checkpoint.
        encoding: ``"analog"`` or ``"events"``.
        classes: class names, in label order.
        mean: per-channel mean of inputs scaled to 0..1 (analog), else None.
        std: per-channel standard deviation of inputs scaled to 0..1 (analog), else None.
        license: license of the data.
        default_dir: data folder name under ``$NA_LIGHTNING_DATA``.
        fallback_dir: data folder when ``$NA_LIGHTNING_DATA`` is not set, relative to the
            working directory.
        build_datamodule: returns the data module for a data folder and batch size; it must not
            download and must not augment.
    """

    name: str
    datamodule_class: str
    encoding: str
    classes: tuple[str, ...]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    license: str
    default_dir: str
    fallback_dir: str
    build_datamodule: Callable[[Path, int], pl.LightningDataModule]

    def data_dir(self) -> Path:
        """Return ``$NA_LIGHTNING_DATA/<default_dir>`` when the variable is set, else ``fallback_dir``."""
        root = os.environ.get(DATA_ENV)
        if root:
            return Path(root).expanduser() / self.default_dir
        return Path(self.fallback_dir)


def _mnist_datamodule(data_dir: Path, batch_size: int) -> MNISTDataModule:
    return MNISTDataModule(
        data_dir=str(data_dir), batch_size=batch_size, augment=False, download=False, num_workers=0
    )


def _cifar10_datamodule(data_dir: Path, batch_size: int) -> CIFAR10DataModule:
    return CIFAR10DataModule(
        data_dir=str(data_dir), batch_size=batch_size, augment=False, download=False, num_workers=0
    )


def _nmnist_datamodule(data_dir: Path, batch_size: int) -> NMNISTDataModule:
    # NOTE: frames use the module's defaults (T = 30 bins of 3 ms); a model trained on other
    # framing needs its own spec.
    return NMNISTDataModule(
        data_dir=str(data_dir), batch_size=batch_size, val_size=0, download=False, num_workers=0
    )


DATASETS = MappingProxyType(
    {
        "mnist": DatasetSpec(
            name="mnist",
            datamodule_class="na_lightning.data.MNISTDataModule",
            encoding="analog",
            classes=MNISTDataModule.classes,
            mean=MNISTDataModule.mean,
            std=MNISTDataModule.std,
            license="CC-BY-SA-3.0",
            default_dir="mnist",
            fallback_dir="data/mnist",
            build_datamodule=_mnist_datamodule,
        ),
        "cifar10": DatasetSpec(
            name="cifar10",
            datamodule_class="na_lightning.data.CIFAR10DataModule",
            encoding="analog",
            classes=CIFAR10DataModule.classes,
            mean=CIFAR10DataModule.mean,
            std=CIFAR10DataModule.std,
            license=(
                "No formal license; its authors ask to cite A. Krizhevsky, \"Learning Multiple "
                "Layers of Features from Tiny Images\", Tech. Report, University of Toronto, 2009"
            ),
            default_dir="cifar10",
            fallback_dir="data/cifar10",
            build_datamodule=_cifar10_datamodule,
        ),
        "nmnist": DatasetSpec(
            name="nmnist",
            datamodule_class="na_lightning.data.nmnist.NMNISTDataModule",
            encoding="events",
            classes=tuple("0123456789"),
            mean=None,
            std=None,
            license="N-MNIST terms of its authors (CC BY-SA 4.0 or CC BY 4.0; not verified)",
            default_dir="nmnist",
            fallback_dir="data/nmnist",
            build_datamodule=_nmnist_datamodule,
        ),
    }
)
"""Dataset specifications by name (read-only)."""


def dataset_spec(name: str) -> DatasetSpec:
    """Return the specification of dataset ``name``.

    Raises:
        ZooError: the dataset is unknown; the message lists the known ones.
    """
    if name in DATASETS:
        return DATASETS[name]
    raise ZooError(
        f"Unknown dataset {name!r}; the zoo can evaluate on {sorted(DATASETS)}. Add a "
        "DatasetSpec to na_lightning.zoo._datasets.DATASETS to support another one."
    )


def dataset_for_datamodule(class_path: str) -> DatasetSpec | None:
    """Return the specification whose data module has import path ``class_path``, or None."""
    for spec in DATASETS.values():
        if spec.datamodule_class == class_path:
            return spec
    return None
