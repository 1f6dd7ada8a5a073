"""Export of trained spiking networks to other formats.

:mod:`na_lightning.export.nir` writes a network as a NIR graph (Neuromorphic Intermediate
Representation, the ``nir`` package), which neuromorphic simulators and hardware toolchains
import. The ``nir`` package is imported on first use, so importing this package needs only
the core dependencies.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "export_nir": "na_lightning.export.nir",
    "write_nir": "na_lightning.export.nir",
    "graph_inputs": "na_lightning.export.nir",
    "simulate_nir": "na_lightning.export.nir",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'na_lightning.export' has no attribute {name!r}")
