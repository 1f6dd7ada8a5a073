"""Data loader hooks shared by the data modules: a resumable training order and plain loaders."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler


class EpochRandomSampler(RandomSampler):
    """Random order that depends only on ``seed`` and the epoch, so that a resumed run repeats it.

    Lightning calls :meth:`set_epoch` before every training epoch, also after resuming from a
    checkpoint. Under DDP Lightning replaces this sampler with a ``DistributedSampler``, as it
    replaces a plain ``RandomSampler``.

    Args:
        data_source: the dataset to shuffle.
        seed: seed of the order; epoch ``e`` uses ``seed + e``.
    """

    def __init__(self, data_source: Dataset, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class SplitDataModule(pl.LightningDataModule):
    """Base of the data modules: the four loader hooks over datasets that ``setup`` builds.

    A subclass sets ``batch_size``, ``num_workers`` and ``seed`` and assigns
    :attr:`train_dataset`, :attr:`val_dataset` and :attr:`test_dataset` in ``setup``.
    """

    train_dataset: Dataset | None = None
    val_dataset: Dataset | None = None
    test_dataset: Dataset | None = None

    def train_dataloader(self) -> DataLoader:
        """Return a shuffled loader over :attr:`train_dataset`.

        The order of epoch ``e`` depends only on ``seed + e`` (:class:`EpochRandomSampler`), so a
        run resumed from an end-of-epoch checkpoint trains on the same batches as an uninterrupted one.
        The loader draws its worker seeds from a generator of its own, not from the global one.
        """
        dataset = self._require(self.train_dataset, "fit", "train_dataloader")
        generator = torch.Generator().manual_seed(self.seed)
        return self._loader(dataset, sampler=EpochRandomSampler(dataset, self.seed), generator=generator)

    def val_dataloader(self) -> DataLoader:
        """Return an unshuffled loader over :attr:`val_dataset`."""
        return self._loader(self._require(self.val_dataset, "fit", "val_dataloader"))

    def test_dataloader(self) -> DataLoader:
        """Return an unshuffled loader over :attr:`test_dataset`."""
        return self._loader(self._require(self.test_dataset, "test", "test_dataloader"))

    def predict_dataloader(self) -> DataLoader:
        """Return an unshuffled loader over :attr:`test_dataset`, labels included."""
        return self._loader(self._require(self.test_dataset, "predict", "predict_dataloader"))

    def _require(self, dataset: Dataset | None, stage: str, hook: str) -> Dataset:
        if dataset is None:
            raise RuntimeError(f"call setup({stage!r}) before {hook}()")
        return dataset

    def _loader(
        self, dataset: Dataset, sampler: Sampler | None = None, generator: torch.Generator | None = None
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
