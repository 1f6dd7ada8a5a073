"""Exceptions of the model zoo. All derive from :class:`ZooError`."""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every error that the model zoo raises on purpose."""


class UnknownModelError(ZooError, LookupError):
    """Raised when a model name is not in the registry."""


class InvalidEntryError(ZooError, ValueError):
    """Raised when a registry entry is malformed or inconsistent with the network it describes."""


class NoWeightsError(ZooError):
    """Raised when pretrained weights are requested for a model registered without any."""


class WeightsNotFoundError(ZooError, FileNotFoundError):
    """Raised when a weights file is neither on disk nor downloadable."""


class WeightsIntegrityError(ZooError):
    """Raised when a weights file is truncated or its sha256 differs from the registry."""


class StateDictMismatchError(ZooError):
    """Raised when the tensors of a weights file do not fit the network built from the entry."""
