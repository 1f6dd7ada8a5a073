"""Rebuild the NAClassifier of an entry from its ``builder`` hyperparameters."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch

from na_lightning.lightning.classifier import NAClassifier
from na_lightning.zoo._errors import InvalidEntryError

BUILDER_DEFAULTS = MappingProxyType(
    {
        name: parameter.default
        for name, parameter in inspect.signature(NAClassifier.__init__).parameters.items()
        if name != "self"
    }
)
"""The keyword arguments of :class:`NAClassifier` and their defaults (read-only)."""

BUILDER_PARAMETERS = tuple(BUILDER_DEFAULTS)
"""The keyword arguments of :class:`NAClassifier`, the only keys allowed in ``builder``."""


def check_builder_keys(builder: Mapping[str, Any], where: str) -> None:
    """Raise InvalidEntryError when ``builder`` has a key that NAClassifier does not take.

    Args:
        builder: hyperparameters by name.
        where: what the keys came from, e.g. ``"Invalid zoo entry zoo/x.json: builder"``.
    """
    unknown = sorted(key for key in builder if key not in BUILDER_PARAMETERS)
    if unknown:
        raise InvalidEntryError(
            f"{where} has unknown keys {unknown}; NAClassifier takes {sorted(BUILDER_PARAMETERS)}."
        )


def build_classifier(builder: Mapping[str, Any], device: str | torch.device | None = None) -> NAClassifier:
    """Construct an NAClassifier with freshly initialized weights.

    Args:
        builder: keyword arguments of NAClassifier. Tuples are passed as they are.
        device: where the parameters are created; ``"meta"`` allocates no memory and is enough to
            count parameters. None uses the current default device.
    """
    if device is None:
        return NAClassifier(**builder)
    with torch.device(device):
        return NAClassifier(**builder)


def count_parameters(builder: Mapping[str, Any]) -> int:
    """Return the number of parameter elements of the network that ``builder`` describes."""
    model = build_classifier(builder, device="meta")
    return sum(parameter.numel() for parameter in model.parameters())
