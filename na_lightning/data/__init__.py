"""Lightning data modules for the datasets that the models train on."""

from na_lightning.data.cifar10 import CIFAR10DataModule, CIFAR10FormatError, CIFAR10NotFoundError
from na_lightning.data.errors import DataNotFoundError
from na_lightning.data.events import (
    EventDataModule,
    EventDataNotFoundError,
    EventFileError,
    EventFolderError,
    ToBinnedFrames,
)
from na_lightning.data.mnist import MNISTDataModule, MNISTFormatError, MNISTNotFoundError
from na_lightning.data.nmnist import NMNISTDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR10FormatError",
    "CIFAR10NotFoundError",
    "DataNotFoundError",
    "EventDataModule",
    "EventDataNotFoundError",
    "EventFileError",
    "EventFolderError",
    "MNISTDataModule",
    "MNISTFormatError",
    "MNISTNotFoundError",
    "NMNISTDataModule",
    "ToBinnedFrames",
]
