"""Measure the accuracy of a zoo model again on the real test data of its dataset."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from na_lightning.data.errors import DataNotFoundError
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.zoo._api import get_model, zoo_entry_of
from na_lightning.zoo._datasets import DATA_ENV, dataset_spec
from na_lightning.zoo._entry import Metric, ZooEntry
from na_lightning.zoo._errors import ZooError
from na_lightning.zoo._registry import PathLike

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.015
"""Smallest accepted difference between a re-measured and a recorded accuracy when the entry
states none, as a fraction: 1.5 percentage points. That is about 3 standard errors of an
accuracy near 97 % measured on 1,000 samples (sqrt(0.97 * 0.03 / 1000) = 0.54 points)."""

SAMPLING_STANDARD_ERRORS = 3.0
"""Standard errors of a random sample's accuracy that the default tolerance accepts."""


@dataclass(frozen=True)
class EvalResult:
    """The outcome of :func:`evaluate`.

    Attributes:
        name: the model name.
        dataset: the dataset name.
        split: the evaluated split, ``"test"``.
        num_samples: samples evaluated.
        split_size: samples in the whole split.
        num_correct: samples classified correctly.
        seed: seed of the random sample when ``num_samples < split_size``, else None.
        recorded: the entry's metric for this dataset and split, or None.
    """

    name: str
    dataset: str
    split: str
    num_samples: int
    split_size: int
    num_correct: int
    seed: int | None
    recorded: Metric | None

    @property
    def accuracy(self) -> float:
        """Fraction of samples classified correctly, in 0..1."""
        return self.num_correct / self.num_samples

    @property
    def difference(self) -> float | None:
        """Measured minus recorded accuracy, as a fraction; None without a recorded metric."""
        return None if self.recorded is None else self.accuracy - self.recorded.accuracy

    @property
    def tolerance(self) -> float:
        """Return the accepted absolute difference to the recorded accuracy, as a fraction.

        This is the recorded metric's tolerance when it states one. Otherwise it is the larger
        of :data:`DEFAULT_TOLERANCE` and :data:`SAMPLING_STANDARD_ERRORS` standard errors of
        an accuracy measured on a random sample of ``num_samples`` out of ``split_size``
        (with the finite-population correction, so 0 for the whole split), at the recorded
        accuracy. A 1,000-sample check of a model near 55 % accuracy accepts 4.5 points.
        """
        if self.recorded is not None and self.recorded.tolerance is not None:
            return self.recorded.tolerance
        if self.recorded is None or self.num_samples >= self.split_size or self.split_size < 2:
            return DEFAULT_TOLERANCE
        accuracy = self.recorded.accuracy
        variance = accuracy * (1.0 - accuracy) / self.num_samples
        correction = (self.split_size - self.num_samples) / (self.split_size - 1)
        sampling = SAMPLING_STANDARD_ERRORS * math.sqrt(variance * correction)
        return max(DEFAULT_TOLERANCE, sampling)


def _check_device(device: str | torch.device) -> None:
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ZooError(f"Invalid device {str(device)!r}: {error}. Pass e.g. cpu or cuda.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ZooError(f"Device {str(device)!r} is not available: PyTorch finds no CUDA GPU. Pass --device cpu.")


def evaluate(
    model: str | NAClassifier,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device | None = None,
    zoo_dir: PathLike | None = None,
) -> EvalResult:
    """Classify the test split of the model's dataset and count the correct predictions.

    The data comes from the dataset's LightningDataModule (see
    :data:`na_lightning.zoo.DATASETS`) without augmentation, normalized as in training.

    Args:
        model: a registered model name, or a model returned by :func:`get_model`.
        data_dir: folder with the dataset files; None for ``$NA_LIGHTNING_DATA/<dataset>`` or
            the data module's default folder.
        limit: evaluate a fixed random sample of this many test samples, drawn with ``seed``;
            None evaluates the whole split.
        batch_size: samples per forward pass.
        seed: seed of the sample drawn for ``limit``.
        device: where to run the model; None keeps it where it is. The model is moved there.
        zoo_dir: registry folder when ``model`` is a name.

    Raises:
        ZooError: the model has no zoo entry, the dataset is unknown, the entry's
            normalization differs from the data module's, or ``device`` is not available.
        FileNotFoundError: the dataset files are missing (raised by the data module).
    """
    if device is not None:
        _check_device(device)
    if isinstance(model, str):
        model = get_model(model, zoo_dir=zoo_dir)
    entry = zoo_entry_of(model)
    spec = dataset_spec(entry.dataset)
    _check_normalization(entry, spec.mean, spec.std)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of samples or None, got {limit!r}")

    datamodule = spec.build_datamodule(
        spec.data_dir() if data_dir is None else Path(data_dir), batch_size
    )
    try:
        # Only setup: prepare_data would also require the training split, which evaluation
        # does not read, and the data modules are built with download=False.
        datamodule.setup("test")
    except DataNotFoundError as error:
        # The data module's own fix names its download option, which evaluation never uses.
        if data_dir is None:
            fix = (
                f"Pass the {entry.dataset} folder as data_dir (--data-dir on the command line), or "
                f"set {DATA_ENV} to a folder that contains {spec.default_dir}/."
            )
        else:
            fix = f"Check data_dir (--data-dir on the command line): it must be the {entry.dataset} folder."
        raise error.with_fix(fix) from error
    dataset = datamodule.test_dataloader().dataset
    split_size = len(dataset)

    sample_seed = None
    if limit is not None and limit < split_size:
        generator = torch.Generator().manual_seed(seed)
        indices = torch.randperm(split_size, generator=generator)[:limit].sort().values
        dataset = Subset(dataset, indices.tolist())
        sample_seed = seed

    if device is not None:
        model.to(device)
    run_device = next(model.parameters()).device
    model.eval()
    num_correct = 0
    with torch.inference_mode():
        for inputs, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            predicted = model(inputs.to(run_device)).argmax(dim=1).cpu()
            num_correct += int((predicted == labels).sum())

    result = EvalResult(
        name=entry.name,
        dataset=entry.dataset,
        split="test",
        num_samples=len(dataset),
        split_size=split_size,
        num_correct=num_correct,
        seed=sample_seed,
        recorded=entry.metric(entry.dataset, "test"),
    )
    logger.info(
        "Model %s: accuracy %.4f on %d of %d %s test samples",
        entry.name, result.accuracy, result.num_samples, split_size, entry.dataset,
    )
    return result


def _check_normalization(entry: ZooEntry, mean, std) -> None:
    if entry.input.encoding != "analog" or mean is None:
        return
    same = all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(entry.input.mean, mean)) and all(
        math.isclose(a, b, rel_tol=1e-6) for a, b in zip(entry.input.std, std)
    )
    if not same or len(entry.input.mean) != len(mean):
        raise ZooError(
            f"Model {entry.name} normalizes with mean {list(entry.input.mean)} and std "
            f"{list(entry.input.std)}, but the {entry.dataset} data module uses mean {list(mean)} "
            f"and std {list(std)}, so its accuracy would not be comparable. Correct input.mean "
            "and input.std in the entry."
        )
