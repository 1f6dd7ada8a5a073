"""Named networks of the NA paper, as keyword arguments of :class:`NAClassifier`.

>>> from na_lightning.lightning.classifier import NAClassifier
>>> hparams = preset_hparams("alexnet_cifar10")
>>> hparams["architecture"]
'96C3-D0.2-256C3-D0.2-P2-384C3-D0.2-P2-384C3-D0.2-256C3-D0.2-1024-D0.2-1024-D0.2'
>>> model = NAClassifier(**hparams)  # doctest: +SKIP

Both CIFAR-10 networks are those of Table 4 of the NA paper (Yang, Zhang and Li,
"Backpropagated Neighborhood Aggregation for Accurate Training of Spiking Neural Networks",
ICML 2021). They use 3 x 3 convolutions with zero padding 1, so a convolution keeps the
32 x 32 size and each ``P2`` halves it. Dropout removes PSCs per sample and channel (see
:class:`~na_lightning.nn.layers.TemporalDropout`), so its place before or after a pooling
layer gives the same network.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["PRESETS", "Preset", "list_presets", "preset_hparams"]

_CIFAR10 = {"num_classes": 10, "input_shape": (3, 32, 32), "encoding": "analog", "padding": 1}

# The authors' CIFAR-10 recipe: T = 5, tau_m = 5, tau_s = 2, kernel loss, AdamW (lr 5e-4,
# weight decay 0.01), lr x 0.985 per epoch, weights clamped to [-4, 4], convolution weights
# initialized at 5 times PyTorch's default scale.
_CIFAR10_RECIPE = {
    "time_steps": 5,
    "tau_m": 5.0,
    "tau_s": 2.0,
    "theta": 1.0,
    "conv_weight_scale": 5.0,
    "linear_weight_scale": 1.0,
    "loss": "kernel",
    "lr": 5e-4,
    "weight_decay": 0.01,
    "lr_gamma": 0.985,
    "weight_clamp": 4.0,
}


@dataclass(frozen=True)
class Preset:
    """A named network and its training hyperparameters.

    Attributes:
        name: the preset name, ``<network>_<dataset>``.
        description: one line on where the network comes from.
        hparams: keyword arguments of :class:`~na_lightning.lightning.classifier.NAClassifier`
            (read-only).
    """

    name: str
    description: str
    hparams: Mapping[str, Any]


def _preset(name: str, description: str, **hparams: Any) -> Preset:
    return Preset(name, description, MappingProxyType(hparams))


PRESETS: Mapping[str, Preset] = MappingProxyType({
    "alexnet_cifar10": _preset(
        "alexnet_cifar10",
        "The NA paper's AlexNet for CIFAR-10 (96C3-256C3-P2-384C3-P2-384C3-256C3-1024-1024-10) "
        "with dropout 0.2 after every hidden layer, trained with NA.",
        architecture="96C3-D0.2-256C3-D0.2-P2-384C3-D0.2-P2-384C3-D0.2-256C3-D0.2-1024-D0.2-1024-D0.2",
        grad="na",
        **_CIFAR10,
        **_CIFAR10_RECIPE,
    ),
    # NOTE: Table 4 lists only the layers of CifarNet, and its CifarNet result is STBP at 12 time
    # steps (90.53 %, from Wu et al., 2019). T = 5, the loss, optimizer and weight scales here
    # are copied from the AlexNet recipe. Convolution scale 5 matters: with scale 1 the
    # untrained network emits no spikes after its second layer on CIFAR-10 images.
    "cifarnet_cifar10": _preset(
        "cifarnet_cifar10",
        "CifarNet of the NA paper's Table 4 (128C3-256C3-P2-512C3-P2-1024C3-512C3-1024-512-10), "
        "trained with STBP, the only method the paper reports for it.",
        architecture="128C3-256C3-P2-512C3-P2-1024C3-512C3-1024-512",
        grad="stbp",
        **_CIFAR10,
        **_CIFAR10_RECIPE,
    ),
})
"""The presets by name (read-only)."""


def list_presets() -> list[str]:
    """Return the sorted preset names."""
    return sorted(PRESETS)


def preset_hparams(name: str) -> dict[str, Any]:
    """Return a new dict of NAClassifier keyword arguments for preset ``name``.

    Tuples stay tuples. The returned dict may be changed freely, because the preset itself is
    a separate read-only mapping.

    Raises:
        ValueError: ``name`` is not a preset. The message suggests the closest names.
    """
    if isinstance(name, str) and name in PRESETS:
        return dict(PRESETS[name].hparams)
    close = difflib.get_close_matches(str(name), list(PRESETS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(candidate) for candidate in close)}?" if close else ""
    raise ValueError(f"Unknown preset {name!r}; the presets are {list_presets()}.{hint}")
