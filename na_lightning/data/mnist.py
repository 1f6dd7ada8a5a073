"""MNIST handwritten digits as a Lightning data module.

The module reads the four original MNIST files, in the IDX format, from a folder that may be
read-only, decodes each file once into a uint8 tensor and transforms single samples on
access. The IDX format is a big-endian header (magic number, then one uint32 per dimension)
followed by the raw uint8 payload.
"""

from __future__ import annotations

import gzip
import logging
import numbers
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets
from torch.utils.data import Dataset, Subset, random_split
from torchvision import tv_tensors
from torchvision.transforms import v2

from na_lightning.data._loaders import SplitDataModule
from na_lightning.data.errors import DataNotFoundError

logger = logging.getLogger(__name__)

IMAGE_MAGIC = 2051
"""IDX magic number of an image file: unsigned byte data (0x08) with 3 dimensions."""

LABEL_MAGIC = 2049
"""IDX magic number of a label file: unsigned byte data (0x08) with 1 dimension."""

IMAGE_SIZE = 28
"""Height and width of an MNIST image, in pixels."""

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
EXPECTED_FILES = tuple(f"{name}.gz" for name in (*TRAIN_FILES, *TEST_FILES))
"""The four original MNIST file names. Each is also accepted without the .gz suffix."""

_TORCHVISION_SUBDIR = Path("MNIST") / "raw"
_DEFAULT_CACHE_DIR = Path(".cache") / "na_lightning" / "mnist"
_STAGES = ("fit", "validate", "test", "predict")


class MNISTNotFoundError(DataNotFoundError):
    """Raised when the MNIST folder or one of its four IDX files is missing."""


class MNISTFormatError(ValueError):
    """Raised when an MNIST IDX file is truncated, corrupt or not the expected kind of file."""


def _copy_fix(folder: Path, list_names: bool = True) -> str:
    names = f" ({', '.join(EXPECTED_FILES)})" if list_names else ""
    return (
        f"Pass download=True when online (on the command line: --data.init_args.download true), "
        f"or copy the four original MNIST files{names} into {folder}."
    )


def _format_error(path: Path, problem: str) -> MNISTFormatError:
    return MNISTFormatError(f"Invalid MNIST file {path}: {problem}. {_copy_fix(path.parent)}")


def _decompress(path: Path) -> tuple[bytes, bool]:
    """Read a file into memory, decompressing it when its name ends in .gz.

    Returns the bytes and whether they are complete. A gzip stream that ends early, as after an
    interrupted download, yields its decodable prefix so that the header check can report how
    much of the payload is present.
    """
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw, True

    try:
        return gzip.decompress(raw), True
    except EOFError:
        pass
    except (OSError, zlib.error) as error:
        raise _format_error(path, f"not a valid gzip file ({error})") from error

    try:
        prefix = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(raw)
    except zlib.error as error:
        raise _format_error(path, f"truncated and corrupt gzip stream ({error})") from error
    return prefix, False


def _check_magic(path: Path, magic: int, expected: int, kind: str) -> None:
    if magic == expected:
        return
    names = {IMAGE_MAGIC: "an image file", LABEL_MAGIC: "a label file"}
    found = f" ({names[magic]})" if magic in names else ""
    raise _format_error(
        path, f"magic number is {magic}{found}, expected {expected} for {kind} file"
    )


def read_idx_images(path: str | os.PathLike[str]) -> torch.Tensor:
    """Decode an MNIST IDX image file, compressed (.gz) or not.

    Args:
        path: an ``*-images-idx3-ubyte`` file, optionally gzip-compressed.

    Returns:
        uint8 tensor ``[N, 28, 28]`` of pixel intensities 0..255, where 0 is background.

    Raises:
        MNISTFormatError: the gzip stream or the header is invalid, the images are not 28x28,
            or the payload size differs from the image count in the header.
    """
    path = Path(path)
    data, complete = _decompress(path)

    header_size = 16
    if len(data) < header_size:
        raise _format_error(
            path, f"truncated: {len(data)} bytes, shorter than the {header_size}-byte IDX header"
        )
    magic, count, rows, cols = struct.unpack(">4I", data[:header_size])
    _check_magic(path, magic, IMAGE_MAGIC, "an image")
    if (rows, cols) != (IMAGE_SIZE, IMAGE_SIZE):
        raise _format_error(
            path, f"images are {rows}x{cols} pixels, expected {IMAGE_SIZE}x{IMAGE_SIZE}"
        )

    image_bytes = IMAGE_SIZE * IMAGE_SIZE
    payload = len(data) - header_size
    expected = count * image_bytes
    if payload < expected:
        raise _format_error(
            path,
            f"truncated: header says {count} images, payload contains {payload // image_bytes} "
            f"({payload} of {expected} bytes)",
        )
    if payload > expected:
        raise _format_error(
            path, f"header says {count} images, payload has {payload - expected} extra bytes"
        )
    if not complete:
        raise _format_error(path, "truncated: the gzip stream ends before its end-of-stream marker")

    array = np.frombuffer(data, dtype=np.uint8, count=expected, offset=header_size)
    return torch.from_numpy(array.reshape(count, IMAGE_SIZE, IMAGE_SIZE).copy())


def read_idx_labels(path: str | os.PathLike[str]) -> torch.Tensor:
    """Decode an MNIST IDX label file, compressed (.gz) or not.

    Args:
        path: an ``*-labels-idx1-ubyte`` file, optionally gzip-compressed.

    Returns:
        int64 tensor ``[N]`` of digit classes 0..9.

    Raises:
        MNISTFormatError: the gzip stream or the header is invalid, the payload size differs
            from the label count in the header, or a label lies outside 0..9.
    """
    path = Path(path)
    data, complete = _decompress(path)

    header_size = 8
    if len(data) < header_size:
        raise _format_error(
            path, f"truncated: {len(data)} bytes, shorter than the {header_size}-byte IDX header"
        )
    magic, count = struct.unpack(">2I", data[:header_size])
    _check_magic(path, magic, LABEL_MAGIC, "a label")

    payload = len(data) - header_size
    if payload < count:
        raise _format_error(
            path, f"truncated: header says {count} labels, payload contains {payload}"
        )
    if payload > count:
        raise _format_error(
            path, f"header says {count} labels, payload has {payload - count} extra bytes"
        )
    if not complete:
        raise _format_error(path, "truncated: the gzip stream ends before its end-of-stream marker")

    labels = np.frombuffer(data, dtype=np.uint8, count=count, offset=header_size)
    invalid = np.flatnonzero(labels > 9)
    if invalid.size:
        first = int(invalid[0])
        raise _format_error(
            path,
            f"{invalid.size} labels lie outside 0..9, "
            f"the first is {labels[first]} at index {first}",
        )
    return torch.from_numpy(labels.astype(np.int64))


def _is_writable(path: Path) -> bool:
    """Return whether ``path`` is writable, or its nearest existing parent if it does not exist."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return os.access(existing, os.W_OK)


class MNISTTensorDataset(Dataset):
    """Decoded MNIST images and labels with a per-sample transform.

    Args:
        images: uint8 tensor ``[N, 28, 28]``, pixel intensities 0..255.
        labels: int64 tensor ``[N]``, digit classes 0..9.
        transform: maps a uint8 image ``[1, 28, 28]`` to the returned image tensor.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"got {len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the transformed image (float32 ``[1, 28, 28]``) and its int64 label ``[]``."""
        image = tv_tensors.Image(self.images[index].unsqueeze(0))
        image = self.transform(image).as_subclass(torch.Tensor)
        return image, self.labels[index]


class MNISTDataModule(SplitDataModule):
    """MNIST digits with a seeded train/validation split, read from the original IDX files.

    ``data_dir`` contains ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``, or the same names without
    ``.gz``, directly or in the torchvision layout ``<data_dir>/MNIST/raw/``. The folder may be
    read-only. Each sample is a float32 image ``[1, 28, 28]``, normalized with :attr:`mean` and
    :attr:`std`, and an int64 label ``[]``.

    Args:
        data_dir: folder with the four MNIST files. Default ``"data/mnist"``, relative to the
            working directory.
        batch_size: samples per batch for every data loader. Default 64.
        val_size: training images held out for validation, in images. Default 5000.
        seed: seed of the train/validation split and of the training shuffle order. Default 0.
        num_workers: data loader worker processes, 0 loads in the main process. Default 0.
        augment: apply ``RandomCrop(28, padding=4)`` and ``RandomRotation(15)`` (degrees) to
            training images. Validation and test images are never augmented. Default True.
        download: let :meth:`prepare_data` download missing files with torchvision. Default
            False. Construction never downloads.
        cache_dir: folder that receives downloads, in ``<cache_dir>/MNIST/raw/``, and is also
            searched for the files. Default None: ``data_dir`` when it is writable, otherwise
            ``~/.cache/na_lightning/mnist``.
        train_subset: keep only the first ``train_subset`` training images, before the
            train/validation split. Default None keeps all 60,000.
        test_subset: keep only the first ``test_subset`` test images. Default None keeps all
            10,000.

    Example:
        >>> datamodule = MNISTDataModule(data_dir="data/mnist", batch_size=128)
        >>> datamodule.hparams.batch_size, datamodule.dims
        (128, (1, 28, 28))

    Note:
        Augmentation draws from the global torch random state, so augmented samples repeat
        across runs only after ``pytorch_lightning.seed_everything``. ``seed`` fixes only the
        split and the shuffle order.
    """

    classes = tuple("0123456789")
    num_classes = 10
    dims = (1, IMAGE_SIZE, IMAGE_SIZE)
    mean = (0.1307,)
    """Per-channel mean of the training images, with pixel intensities scaled to 0..1."""
    std = (0.3081,)
    """Per-channel standard deviation of the training images, with intensities scaled to 0..1."""

    def __init__(
        self,
        data_dir: str = "data/mnist",
        batch_size: int = 64,
        val_size: int = 5000,
        seed: int = 0,
        num_workers: int = 0,
        augment: bool = True,
        download: bool = False,
        cache_dir: str | None = None,
        train_subset: int | None = None,
        test_subset: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

        _check_count("batch_size", batch_size, minimum=1)
        _check_count("val_size", val_size, minimum=0)
        _check_count("num_workers", num_workers, minimum=0)
        for name, subset in (("train_subset", train_subset), ("test_subset", test_subset)):
            if subset is not None:
                _check_count(name, subset, minimum=1)

        self.data_dir = Path(data_dir).expanduser()
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.batch_size = batch_size
        self.val_size = val_size
        self.seed = seed
        self.num_workers = num_workers
        self.augment = augment
        self.download = download
        self.train_subset = train_subset
        self.test_subset = test_subset

        self.train_dataset: Subset | None = None
        self.val_dataset: Subset | None = None
        self.test_dataset: MNISTTensorDataset | None = None

    def download_root(self) -> Path:
        """Return the folder that :meth:`prepare_data` passes to torchvision as ``root``."""
        if self.cache_dir is not None:
            return self.cache_dir
        if _is_writable(self.data_dir):
            return self.data_dir
        return Path.home() / _DEFAULT_CACHE_DIR

    def search_dirs(self) -> list[Path]:
        """Return the folders searched for the MNIST files, in order of preference."""
        folders = [self.data_dir, self.data_dir / _TORCHVISION_SUBDIR]
        if self.download or self.cache_dir is not None:
            downloaded = self.download_root() / _TORCHVISION_SUBDIR
            if downloaded not in folders:
                folders.append(downloaded)
        return folders

    def prepare_data(self) -> None:
        """Check that the four MNIST files exist, downloading the missing ones if ``download``.

        Lightning calls this hook before :meth:`setup`, on local rank 0 of each node only, so it
        assigns no state. Downloads go to ``<download_root()>/MNIST/raw/`` through
        ``torchvision.datasets.MNIST``.

        Raises:
            MNISTNotFoundError: files are missing and ``download`` is False, or the download
                failed.
        """
        missing = self._missing_files((*TRAIN_FILES, *TEST_FILES))
        if not missing:
            return
        if not self.download:
            raise self._not_found_error(missing)
        if self._subfolder_with_files() is not None:
            # A data_dir one level too high is a likelier cause than absent files.
            raise self._not_found_error(missing)

        root = self.download_root()
        logger.info("Downloading MNIST into %s because %s are missing", root, ", ".join(missing))
        root.mkdir(parents=True, exist_ok=True)
        try:
            torchvision.datasets.MNIST(root=str(root), train=True, download=True)
        except (RuntimeError, OSError) as error:
            raise MNISTNotFoundError(
                f"Downloading MNIST into {root} failed: {error}. Retry when online, or copy the "
                f"four original MNIST files ({', '.join(EXPECTED_FILES)}) into {self.data_dir}."
            ) from error

        missing = self._missing_files((*TRAIN_FILES, *TEST_FILES))
        if missing:
            raise self._not_found_error(
                missing,
                fix=f"The download into {root} did not produce them. Copy the four original "
                f"MNIST files into {self.data_dir}.",
            )

    def setup(self, stage: str | None = None) -> None:
        """Decode the files and build the datasets that ``stage`` needs.

        Lightning calls this hook on every process after :meth:`prepare_data`. ``"fit"`` and
        ``"validate"`` split the training images into :attr:`train_dataset` and
        :attr:`val_dataset` with a generator seeded by ``seed``. ``"test"`` and ``"predict"``
        build :attr:`test_dataset` from the 10,000 test images. None builds all three. A
        dataset that already exists is kept.

        Raises:
            MNISTNotFoundError: a needed file is missing.
            MNISTFormatError: a needed file is invalid, or image and label counts differ.
            ValueError: ``stage`` is unknown, a subset exceeds the images in the file, or
                ``val_size`` is not smaller than the number of training images.
        """
        if stage is not None and stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}, expected one of {_STAGES} or None")

        if stage in (None, "fit", "validate") and self.train_dataset is None:
            self._setup_train_val()
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self._setup_test()

    def build_transform(self, train: bool) -> v2.Compose:
        """Return the transform from a uint8 image ``[1, 28, 28]`` to a normalized float32 one.

        Training images (``train=True``) are augmented when ``augment`` is set.
        """
        steps: list[v2.Transform] = []
        if train and self.augment:
            steps += [v2.RandomCrop(IMAGE_SIZE, padding=4), v2.RandomRotation(15)]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        return v2.Compose(steps)

    def _setup_train_val(self) -> None:
        images, labels = self._load_pair(TRAIN_FILES, self.train_subset, "train_subset")

        count = len(labels)
        if self.val_size >= count:
            if self.train_subset is None:
                limit, fix = "", "Pass a smaller val_size."
            else:
                limit = f" (train_subset={self.train_subset})"
                fix = "Pass a smaller val_size or a larger train_subset."
            raise ValueError(
                f"val_size={self.val_size} must be smaller than the {count} training "
                f"images{limit}. {fix}"
            )

        generator = torch.Generator().manual_seed(self.seed)
        train_split, val_split = random_split(
            range(count), [count - self.val_size, self.val_size], generator=generator
        )
        train_base = MNISTTensorDataset(images, labels, self.build_transform(train=True))
        val_base = MNISTTensorDataset(images, labels, self.build_transform(train=False))
        self.train_dataset = Subset(train_base, train_split.indices)
        self.val_dataset = Subset(val_base, val_split.indices)

    def _setup_test(self) -> None:
        images, labels = self._load_pair(TEST_FILES, self.test_subset, "test_subset")
        self.test_dataset = MNISTTensorDataset(images, labels, self.build_transform(train=False))

    def _load_pair(
        self, names: tuple[str, str], subset: int | None, subset_name: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode an image file and its label file, keeping the first ``subset`` samples."""
        missing = self._missing_files(names)
        if missing:
            raise self._not_found_error(missing)
        image_path, label_path = (self._find_file(name) for name in names)
        images = read_idx_images(image_path)
        labels = read_idx_labels(label_path)

        if len(images) != len(labels):
            raise MNISTFormatError(
                f"Invalid MNIST files: {image_path} contains {len(images)} images but {label_path} "
                f"contains {len(labels)} labels. {_copy_fix(image_path.parent)}"
            )
        if subset is not None:
            if subset > len(labels):
                raise ValueError(
                    f"{subset_name}={subset} exceeds the {len(labels)} images in {image_path}. "
                    f"Pass at most {len(labels)} or None."
                )
            images, labels = images[:subset], labels[:subset]

        logger.info("Loaded %d MNIST images from %s", len(labels), image_path)
        return images, labels

    def _find_file(self, name: str) -> Path | None:
        for folder in self.search_dirs():
            for candidate in (folder / f"{name}.gz", folder / name):
                if candidate.is_file():
                    return candidate
        return None

    def _missing_files(self, names: Sequence[str]) -> list[str]:
        return [f"{name}.gz" for name in names if self._find_file(name) is None]

    def _subfolder_with_files(self) -> Path | None:
        """Return the first subfolder of ``data_dir`` that contains all four MNIST files, if any."""
        if not self.data_dir.is_dir():
            return None
        for child in sorted(item for item in self.data_dir.iterdir() if item.is_dir()):
            if all(
                (child / f"{name}.gz").is_file() or (child / name).is_file()
                for name in (*TRAIN_FILES, *TEST_FILES)
            ):
                return child
        return None

    def _not_found_error(
        self, missing: Sequence[str], fix: str | None = None
    ) -> MNISTNotFoundError:
        folders = self.search_dirs()
        if self.data_dir.is_file():
            problem = f"MNIST data_dir {self.data_dir} is a file; expected the folder that contains it"
        elif not any(folder.is_dir() for folder in folders):
            problem = f"MNIST folder not found: {self.data_dir}"
        else:
            looked_in = ", ".join(str(folder) for folder in folders)
            problem = f"MNIST files missing: {', '.join(missing)} not found in {looked_in}"

        problem = (
            f"{problem}. Expected {', '.join(EXPECTED_FILES)} (each also accepted without .gz or "
            "under MNIST/raw/)."
        )
        subfolder = self._subfolder_with_files()
        if subfolder is not None:
            problem += f" The subfolder {subfolder} contains all four."

        if fix is None and subfolder is not None:
            fix = (
                f"Pass data_dir={str(subfolder)!r} (on the command line: --data.init_args.data_dir "
                f"{subfolder})."
            )
        elif fix is None and self.download:
            fix = (
                "Call prepare_data() before setup() to download the files, or copy the four "
                f"original MNIST files into {self.data_dir}."
            )
        elif fix is None:
            fix = _copy_fix(self.data_dir, list_names=False)
        return MNISTNotFoundError(problem, fix)


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
