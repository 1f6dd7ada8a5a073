"""N-MNIST (MNIST digits recorded by a moving ATIS event camera) as a Lightning data module."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import tonic.datasets

from na_lightning.data.events import EventDataModule, EventDataNotFoundError

logger = logging.getLogger(__name__)

SENSOR_SIZE = (34, 34, 2)
"""N-MNIST sensor ``(W, H, P)``: 34 x 34 pixels, OFF and ON polarity."""

SPLITS = ("Train", "Test")
"""Split folder names of the original N-MNIST archives."""

_TONIC_SUBDIR = "NMNIST"


class NMNISTDataModule(EventDataModule):
    """N-MNIST digits as binary frames ``[T, 2, 34, 34]``, read from the original ``.bin`` files.

    ``data_dir`` contains ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin`` as in the original
    archives, directly or in tonic's layout ``<data_dir>/NMNIST/Train``. Each recording is
    framed as in the N-MNIST preprocessing of the TSSL-BP and NA authors: 3 ms bins from the
    recording start, ``bin = ceil(t / 3000 µs)`` (bin 0 holds only events at exactly 0 µs),
    the first ``time_steps`` bins, one channel per polarity (0 = OFF, 1 = ON), and a pixel is
    1 when it had at least one event of that polarity in the bin. ``time_steps=30`` keeps the
    first 87 ms of a recording of about 300 ms; ``time_steps=100`` keeps 297 ms. Saccade
    motion compensation is not applied. Batches are float32 ``[B, T, 2, 34, 34]`` with int64
    labels ``[B]``.

    Args:
        data_dir: folder with ``Train/`` and ``Test/``. Default ``"data/nmnist"``, relative to
            the working directory.
        time_steps: frames ``T`` per recording. Default 30.
        bin_width_us: time bin of one frame, in µs. Default 3000.
        bin_rounding: ``"ceil"`` (default) or ``"floor"``, see
            :class:`~na_lightning.data.events.ToBinnedFrames`.
        binary: binary frames (default True) or event counts.
        batch_size: recordings per batch for every loader. Default 50.
        val_size: training recordings held out for validation. Default 5000 of the 60,000.
        seed: seed of the train/validation split and of the shuffle order. Default 0.
        num_workers: data loader worker processes, 0 loads in the main process. Default 0.
        download: let :meth:`prepare_data` download missing splits with
            ``tonic.datasets.NMNIST`` into ``<data_dir>/NMNIST/``. Default False.
        cache_dir: folder for the frame cache. Default None: ``~/.cache/na_lightning/event_frames``.
        cache: cache framed recordings on disk. Default True.

    Example:
        >>> datamodule = NMNISTDataModule(data_dir="data/nmnist", val_size=100)
        >>> datamodule.dims, datamodule.num_classes
        ((2, 34, 34), 10)
    """

    def __init__(
        self,
        data_dir: str = "data/nmnist",
        time_steps: int = 30,
        bin_width_us: float = 3000.0,
        bin_rounding: str = "ceil",
        binary: bool = True,
        batch_size: int = 50,
        val_size: int = 5000,
        seed: int = 0,
        num_workers: int = 0,
        download: bool = False,
        cache_dir: str | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            sensor_size=SENSOR_SIZE,
            time_steps=time_steps,
            bin_width_us=bin_width_us,
            bin_rounding=bin_rounding,
            time_origin="zero",
            polarity="split",
            binary=binary,
            classes=tuple("0123456789"),
            train_split=SPLITS[0],
            test_split=SPLITS[1],
            batch_size=batch_size,
            val_size=val_size,
            seed=seed,
            num_workers=num_workers,
            download=download,
            cache_dir=cache_dir,
            cache=cache,
        )

    def split_dirs(self, split: str) -> list[Path]:
        """Return ``<data_dir>/<split>`` and tonic's ``<data_dir>/NMNIST/<split>``."""
        return [self.data_dir / split, self.data_dir / _TONIC_SUBDIR / split]

    def prepare_data(self) -> None:
        """Check that both splits exist, downloading the missing ones if ``download`` is set.

        Lightning calls this hook before :meth:`setup`, on local rank 0 of each node only, so
        it assigns no state. Downloads go through ``tonic.datasets.NMNIST(save_to=data_dir)``
        into ``<data_dir>/NMNIST/Train`` and ``<data_dir>/NMNIST/Test`` (about 1 GB in all).

        Raises:
            EventDataNotFoundError: a split is missing and ``download`` is False, or the
                download did not produce it.
        """
        missing = [split for split in SPLITS if self.find_split_dir(split) is None]
        if not missing:
            return
        if not self.download:
            raise self._not_found_error(missing[0])

        if not _is_writable(self.data_dir):
            raise EventDataNotFoundError(
                f"Cannot download N-MNIST into {self.data_dir}: the folder is not writable. "
                "Pass a writable data_dir."
            )
        for split in missing:
            logger.info("Downloading the N-MNIST %s split into %s", split, self.data_dir / _TONIC_SUBDIR)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tonic.datasets.NMNIST(save_to=str(self.data_dir), train=split == SPLITS[0])
            if self.find_split_dir(split) is None:
                raise EventDataNotFoundError(
                    f"Downloading N-MNIST into {self.data_dir} did not produce the {split!r} "
                    f"folder. Copy the original {split}/<digit>/*.bin files into {self.data_dir}."
                )

    def _can_download(self) -> bool:
        return True

    def _not_found_error(self, split: str) -> EventDataNotFoundError:
        looked_in = ", ".join(str(folder) for folder in self.split_dirs(split))
        fix = (
            "Call prepare_data() before setup() to download it"
            if self.download
            else "Pass download=True to download it with tonic"
        )
        return EventDataNotFoundError(
            f"N-MNIST split folder {split!r} not found; looked in {looked_in}.",
            f"{fix}, or copy the original {split}/<digit>/*.bin files into {self.data_dir}.",
        )


def _is_writable(path: Path) -> bool:
    """Return whether ``path`` is writable, or its nearest existing parent if it does not exist."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return os.access(existing, os.W_OK)
