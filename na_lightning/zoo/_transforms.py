"""Preprocessing of raw inputs into what a zoo model takes, built from the entry's input spec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

from na_lightning.zoo._entry import InputSpec, ZooEntry


def build_transforms(entry: ZooEntry) -> Callable[[Any], torch.Tensor]:
    """Return the preprocessing of ``entry``'s model, by input encoding.

    Analog models get :func:`image_transforms`. Event models get an
    :class:`EventTransformsUnavailable` placeholder until event preprocessing exists; a
    converter from event arrays to frames belongs here, selected by ``entry.input.encoding``.
    """
    if entry.input.encoding == "analog":
        return image_transforms(entry.input)
    return EventTransformsUnavailable(entry)


def image_transforms(spec: InputSpec) -> v2.Compose:
    """Return the transform from one image to the normalized model input.

    The transform takes a PIL image (mode ``"L"`` or ``"RGB"``) or a uint8 tensor ``[C, H, W]``
    with 1 or 3 channels. It returns a float32 tensor ``[C', H', W']`` of the entry's input
    shape, after these steps:

    - conversion to grayscale or RGB, as the model needs;
    - bilinear, antialiased resizing to ``H' x W'``, which leaves an image of that size as it is;
    - scaling from 0..255 to 0..1;
    - normalization with the entry's per-channel mean and std.

    Add the batch axis before calling the model: ``model(model.transforms(image).unsqueeze(0))``.
    """
    channels, height, width = spec.shape
    steps: list[v2.Transform] = [v2.ToImage()]
    if channels == 1:
        steps.append(v2.Grayscale(num_output_channels=1))
    elif channels == 3:
        steps.append(v2.RGB())
    steps += [
        v2.Resize((height, width), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(spec.mean), std=list(spec.std)),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


class EventTransformsUnavailable:
    """Placeholder preprocessing of event models: calling it raises NotImplementedError.

    Event models take frames ``[B, T, C, H, W]``; turning a structured event array into such
    frames is not implemented yet.
    """

    def __init__(self, entry: ZooEntry) -> None:
        self.name = entry.name
        self.spec = entry.input

    def __call__(self, events: Any) -> torch.Tensor:
        raise NotImplementedError(
            f"Preprocessing of event arrays is not implemented yet for model {self.name}. Bin "
            f"the events into frames of {self.spec.time_bin_us} microseconds (sensor size "
            f"{self.spec.sensor_size}, e.g. with tonic.transforms.ToFrame) and call the model on "
            f"a float tensor [B, T, {', '.join(map(str, self.spec.shape))}]."
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
