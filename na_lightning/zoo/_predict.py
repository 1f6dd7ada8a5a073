"""Classify image files with a zoo model."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from na_lightning.lightning.classifier import NAClassifier
from na_lightning.zoo._api import zoo_entry_of
from na_lightning.zoo._errors import ZooError

EVENT_SUFFIXES = (".bin", ".dat", ".aedat", ".aedat4", ".npy", ".npz", ".hdf5", ".h5")
"""File suffixes of event recordings, rejected by :func:`predict_files` with a clear error."""


class InputFileError(ZooError):
    """Raised when an input file is missing, a folder, or not a readable image."""


@dataclass(frozen=True)
class Prediction:
    """The predicted class of one file.

    Attributes:
        file: the input file.
        class_index: index of the predicted class.
        class_name: its name from the entry's ``classes``.
        score: its class score, the output PSC summed over time (not a probability).
    """

    file: Path
    class_index: int
    class_name: str
    score: float


def load_image(path: Path, channels: int) -> Image.Image:
    """Open an image file as a PIL image with ``channels`` channels (mode ``"L"`` or ``"RGB"``).

    Raises:
        InputFileError: the path is missing, a folder, or not a complete image.
    """
    if not path.exists():
        raise InputFileError(f"Input file {path} not found.")
    if path.is_dir():
        raise InputFileError(f"Input path {path} is a folder; pass image files.")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise InputFileError(f"Cannot read {path} as an image: {error}.") from error


def predict_files(
    model: NAClassifier, files: Iterable[str | os.PathLike[str]], batch_size: int = 64
) -> list[Prediction]:
    """Classify image files, one prediction per file, in the given order.

    Every file is read and checked before the model runs, so a bad file fails fast.

    Args:
        model: a model from :func:`~na_lightning.zoo.get_model`; it uses ``model.transforms`` and
            the class names of ``model.zoo_entry``.
        files: image files that PIL can read (PNG, JPEG, ...).
        batch_size: images per forward pass.

    Raises:
        InputFileError: a file is missing, a folder, or not an image.
        ZooError: the model takes events; prediction from event files is not supported yet.
    """
    entry = zoo_entry_of(model)
    paths = [Path(file) for file in files]
    if entry.input.encoding != "analog":
        raise ZooError(
            f"Prediction from files is not supported yet for event model {entry.name}; call the "
            "model on event frames [B, T, C, H, W] instead."
        )
    for path in paths:
        if path.suffix.lower() in EVENT_SUFFIXES:
            raise InputFileError(
                f"{path} looks like an event recording ({path.suffix}); model {entry.name} "
                "classifies images, and prediction from event files is not supported yet."
            )

    channels = entry.input.shape[0]
    inputs = [model.transforms(load_image(path, channels)) for path in paths]

    device = next(model.parameters()).device
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.stack(inputs[start : start + batch_size]).to(device)
            scores, indices = model(batch).max(dim=1)
            for offset, (score, index) in enumerate(zip(scores.tolist(), indices.tolist())):
                # A num_classes override can add outputs beyond the registered class names.
                class_name = entry.classes[index] if index < len(entry.classes) else str(index)
                predictions.append(Prediction(paths[start + offset], index, class_name, score))
    return predictions
