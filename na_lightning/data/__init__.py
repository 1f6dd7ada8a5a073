"""Lightning data modules for the datasets that the models train on."""

from na_lightning.data.mnist import MNISTDataModule, MNISTFormatError, MNISTNotFoundError

__all__ = ["MNISTDataModule", "MNISTFormatError", "MNISTNotFoundError"]
