"""CIFAR-10 color images as a Lightning data module.

The module reads one of two layouts from a folder that may be read-only:

- the original python batches: ``cifar-10-batches-py/`` with ``data_batch_1`` to
  ``data_batch_5``, ``test_batch`` and ``batches.meta``, pickled dicts whose ``data`` entry is
  a uint8 array ``[N, 3072]`` (the red, green and blue 32 x 32 planes of each image, row-major);
- an image folder: ``train/<class>/*.png`` and ``test/<class>/*.png`` (or ``.jpg``), with one
  folder per CIFAR-10 class.

Image folders are decoded once into a uint8 cache (``[N, 32, 32, 3]`` ``.npy`` plus a labels
``.npy``), because decoding 60,000 small image files is much slower than reading one array.
The cache key hashes the decoded file list with each file's size and modification time, so a
changed folder is decoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset, random_split
from torchvision import tv_tensors
from torchvision.transforms import v2
from tqdm import tqdm

from na_lightning.data.errors import DataNotFoundError
from na_lightning.data._loaders import SplitDataModule
from na_lightning.data.mnist import _check_count, _is_writable

logger = logging.getLogger(__name__)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
"""The CIFAR-10 class names in label order, as in ``batches.meta``."""

IMAGE_SIZE = 32
"""Height and width of a CIFAR-10 image, in pixels."""

BATCHES_DIR = "cifar-10-batches-py"
"""Folder name of the python batches in the original archive and in torchvision's layout."""

TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCHES = ("test_batch",)
META_FILE = "batches.meta"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Image file suffixes read from class folders, in any case. Other files are ignored."""

CACHE_FORMAT = 1
"""Version of the decoded-image cache layout, which is part of every cache key."""

_DEFAULT_CACHE_DIR = Path(".cache") / "na_lightning" / "cifar10"
_STAGES = ("fit", "validate", "test", "predict")
_SPLITS = {"train": TRAIN_BATCHES, "test": TEST_BATCHES}

# The python batches are pickles of numpy arrays, lists and bytes. These are the only globals
# such a file refers to, so the unpickler resolves nothing else and a crafted file cannot call
# arbitrary functions. "_codecs.encode" appears when Python 3 writes bytes with protocol 2.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class CIFAR10NotFoundError(DataNotFoundError):
    """Raised when the CIFAR-10 folder, a batch file, a split folder or a class folder is missing."""


class CIFAR10FormatError(ValueError):
    """Raised when a CIFAR-10 batch file or image file is corrupt or not of the expected shape."""


def _layouts_help(folder: Path) -> str:
    names = ", ".join(CLASSES)
    return (
        f"Expected the python batches ({folder}/{BATCHES_DIR}/ with data_batch_1 to data_batch_5, "
        f"test_batch and batches.meta) or an image folder ({folder}/train/<class>/ and "
        f"{folder}/test/<class>/ with .png or .jpg files, one folder per class: {names})"
    )


def _download_fix() -> str:
    return (
        "Pass download=True when online (on the command line: --data.init_args.download true) "
        "to download the python batches, or point data_dir at a folder with one of these layouts."
    )


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"the file refers to {module}.{name}, which a CIFAR-10 batch never contains"
            )
        # numpy 2 moved numpy.core to numpy._core, and the original files name numpy.core.
        if module.startswith("numpy.core."):
            try:
                return super().find_class(module.replace("numpy.core.", "numpy._core.", 1), name)
            except (ImportError, AttributeError):
                pass
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    """Read one pickled dict of the python batches, with its keys as ``str``.

    The batches are pickles because that is the format CIFAR-10 is distributed in. The original
    files were written by Python 2, so its byte strings are decoded as latin-1, as numpy expects.
    """
    try:
        with open(path, "rb") as file:
            data = _BatchUnpickler(file, encoding="latin1").load()
    except (
        pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, KeyError, IndexError
    ) as error:
        raise CIFAR10FormatError(
            f"Invalid CIFAR-10 batch file {path}: cannot unpickle it ({type(error).__name__}: "
            f"{error}). The file is truncated or not a CIFAR-10 python batch. {_download_fix()}"
        ) from error
    if not isinstance(data, dict):
        raise CIFAR10FormatError(
            f"Invalid CIFAR-10 batch file {path}: it contains a {type(data).__name__}, expected a "
            f"dict. {_download_fix()}"
        )
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in data.items()}


def read_batch_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Decode one CIFAR-10 python batch (``data_batch_<i>`` or ``test_batch``).

    Args:
        path: the batch file.

    Returns:
        uint8 images ``[N, 32, 32, 3]`` (height, width, RGB channel) and int64 labels ``[N]``
        in 0..9.

    Raises:
        CIFAR10FormatError: the file cannot be unpickled, lacks the ``data`` or ``labels`` entry,
            its data is not ``[N, 3072]`` uint8, or the labels do not match the data.
    """
    path = Path(path)
    batch = _unpickle(path)
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise CIFAR10FormatError(
            f"Invalid CIFAR-10 batch file {path}: the entries {missing} are missing (found "
            f"{sorted(map(str, batch))}). {_download_fix()}"
        )

    data = batch["data"]
    values = IMAGE_SIZE * IMAGE_SIZE * 3
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != values:
        found = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CIFAR10FormatError(
            f"Invalid CIFAR-10 batch file {path}: data is a {found}, expected a uint8 array "
            f"[N, {values}]. {_download_fix()}"
        )

    labels = np.asarray(batch["labels"])
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise CIFAR10FormatError(
            f"Invalid CIFAR-10 batch file {path}: {len(data)} images but labels of shape "
            f"{labels.shape} and type {labels.dtype}, expected {len(data)} integers. {_download_fix()}"
        )
    invalid = np.flatnonzero((labels < 0) | (labels >= len(CLASSES)))
    if invalid.size:
        first = int(invalid[0])
        raise CIFAR10FormatError(
            f"Invalid CIFAR-10 batch file {path}: {invalid.size} labels lie outside 0..9, the first "
            f"is {labels[first]} at index {first}. {_download_fix()}"
        )

    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def read_label_names(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Return the class names stored in ``batches.meta``.

    Raises:
        CIFAR10FormatError: the file cannot be unpickled or has no ``label_names`` list.
    """
    path = Path(path)
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list) or not all(isinstance(name, (str, bytes)) for name in names):
        raise CIFAR10FormatError(
            f"Invalid CIFAR-10 meta file {path}: label_names is {names!r}, expected a list of class "
            f"names. {_download_fix()}"
        )
    return tuple(name.decode("latin1") if isinstance(name, bytes) else name for name in names)


def scan_image_folder(split_dir: str | os.PathLike[str]) -> tuple[list[Path], np.ndarray]:
    """List the image files of one split folder ``<split>/<class>/*``, in round-robin class order.

    The order takes the first file of every class (file names sorted), then the second file of
    every class, and so on, so that the first ``n`` files are balanced over the classes.

    Returns:
        The image paths and their int64 labels ``[N]``, the index of the class in :data:`CLASSES`.

    Raises:
        CIFAR10NotFoundError: the folder, a class folder, or every image of a class is missing.
        CIFAR10FormatError: a subfolder is not named after a CIFAR-10 class.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise CIFAR10NotFoundError(
            f"CIFAR-10 split folder {split_dir} not found. {_layouts_help(split_dir.parent)}."
        )
    folders = sorted(item.name for item in split_dir.iterdir() if item.is_dir() and not item.name.startswith("."))
    missing = [name for name in CLASSES if name not in folders]
    if missing:
        raise CIFAR10NotFoundError(
            f"CIFAR-10 class folders missing in {split_dir}: {missing} (found {folders}). Every "
            f"split needs one folder per class, named {', '.join(CLASSES)}."
        )
    unknown = [name for name in folders if name not in CLASSES]
    if unknown:
        raise CIFAR10FormatError(
            f"Unexpected folders in {split_dir}: {unknown}. Class folders must be named after the "
            f"CIFAR-10 classes ({', '.join(CLASSES)}); remove or rename the others."
        )

    per_class = []
    for name in CLASSES:
        files = sorted(
            path for path in (split_dir / name).iterdir()
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        )
        if not files:
            raise CIFAR10NotFoundError(
                f"CIFAR-10 class folder {split_dir / name} contains no {'/'.join(IMAGE_SUFFIXES)} images."
            )
        per_class.append(files)

    paths, labels = [], []
    for position in range(max(len(files) for files in per_class)):
        for label, files in enumerate(per_class):
            if position < len(files):
                paths.append(files[position])
                labels.append(label)
    return paths, np.array(labels, dtype=np.int64)


def decode_image(path: Path) -> np.ndarray:
    """Decode one image file into a uint8 array ``[32, 32, 3]`` (height, width, RGB channel).

    Raises:
        CIFAR10FormatError: the file is not a readable image, or not 32 x 32 pixels in RGB.
    """
    try:
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
            if mode == "RGB" and size == (IMAGE_SIZE, IMAGE_SIZE):
                return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise CIFAR10FormatError(
            f"Invalid CIFAR-10 image {path}: cannot decode it ({error}). Replace or remove the file."
        ) from error
    raise CIFAR10FormatError(
        f"Invalid CIFAR-10 image {path}: it is {size[0]}x{size[1]} pixels in mode {mode}, expected "
        f"{IMAGE_SIZE}x{IMAGE_SIZE} RGB (3 channels of 8 bits). Convert it, or remove the file."
    )


def decode_images(paths: list[Path], description: str = "Decoding CIFAR-10 images") -> np.ndarray:
    """Decode image files into one uint8 array ``[N, 32, 32, 3]``, with a progress bar on stderr."""
    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for index, path in enumerate(tqdm(paths, desc=description, unit="img", mininterval=1.0)):
        images[index] = decode_image(path)
    return images


class DecodedImageCache:
    """Decoded image folders on disk: ``<name>.images.npy`` (uint8 ``[N, 32, 32, 3]``) and
    ``<name>.labels.npy`` (int64 ``[N]``).

    The name of a cache entry hashes (SHA-256) the cache format and every decoded file's path,
    size and modification time. A file that is added, removed, replaced or edited therefore
    changes the name, and the stale entry is never read. Files are written to a temporary file
    and renamed into place, so a reader never sees a partial file. Storing an entry deletes the
    older entries of the same folder, split and image count.

    Args:
        directory: the cache folder, created on the first store.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def entry_name(self, split: str, split_dir: Path, paths: list[Path]) -> str:
        """Return the file-name stem of the cache entry for ``paths``, read from ``split_dir``."""
        files = []
        for path in paths:
            stat = path.stat()
            files.append([path.relative_to(split_dir).as_posix(), stat.st_size, stat.st_mtime_ns])
        content = json.dumps([CACHE_FORMAT, files], separators=(",", ":"))
        return f"{self._group(split, split_dir, len(paths))}-{hashlib.sha256(content.encode()).hexdigest()[:32]}"

    def load(self, name: str, count: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the cached images and labels of entry ``name``, or None on a miss.

        An entry that is missing, unreadable or not ``count`` images is a miss. Unreadable
        entries are logged.
        """
        image_path, label_path = self._paths(name)
        if not (image_path.is_file() and label_path.is_file()):
            return None
        try:
            images = np.load(image_path, allow_pickle=False)
            labels = np.load(label_path, allow_pickle=False)
        except (OSError, ValueError) as error:
            logger.warning("Ignoring unreadable CIFAR-10 cache entry %s: %s", image_path, error)
            return None
        if images.shape != (count, IMAGE_SIZE, IMAGE_SIZE, 3) or images.dtype != np.uint8 or labels.shape != (count,):
            logger.warning(
                "Ignoring CIFAR-10 cache entry %s: images %s %s and labels %s, expected %d images",
                image_path, images.dtype, images.shape, labels.shape, count,
            )
            return None
        return images, labels.astype(np.int64)

    def store(self, name: str, images: np.ndarray, labels: np.ndarray) -> None:
        """Write entry ``name`` atomically. A write failure is logged, not raised."""
        image_path, label_path = self._paths(name)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Labels first: an entry counts as present only once its images file exists.
            _save_atomic(label_path, labels)
            _save_atomic(image_path, images)
        except OSError as error:
            logger.warning(
                "Cannot write the CIFAR-10 cache in %s (%s), so the images will be decoded again "
                "next time. Pass a writable cache_dir to keep them.", self.directory, error,
            )
            return
        logger.info("Cached %d decoded CIFAR-10 images in %s", len(labels), image_path)
        self._remove_stale(name)

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"{name}.images.npy", self.directory / f"{name}.labels.npy"

    def _group(self, split: str, split_dir: Path, count: int) -> str:
        folder = hashlib.sha256(str(split_dir.absolute()).encode()).hexdigest()[:12]
        return f"{split}-{folder}-n{count}"

    def _remove_stale(self, name: str) -> None:
        group = name.rsplit("-", 1)[0]
        for path in self.directory.glob(f"{group}-*.npy"):
            if not path.name.startswith(f"{name}."):
                path.unlink(missing_ok=True)
                logger.info("Removed stale CIFAR-10 cache file %s", path)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, array, allow_pickle=False)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


class CIFAR10TensorDataset(Dataset):
    """Decoded CIFAR-10 images and labels with a per-sample transform.

    Args:
        images: uint8 tensor ``[N, 3, 32, 32]``, RGB intensities 0..255.
        labels: int64 tensor ``[N]``, class indices 0..9.
        transform: maps a uint8 image ``[3, 32, 32]`` to the returned image tensor.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        if len(images) != len(labels):
            raise ValueError(f"got {len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the transformed image (float32 ``[3, 32, 32]``) and its int64 label ``[]``."""
        image = self.transform(tv_tensors.Image(self.images[index])).as_subclass(torch.Tensor)
        return image, self.labels[index]


class CIFAR10DataModule(SplitDataModule):
    """CIFAR-10 with a seeded train/validation split, read from python batches or image folders.

    ``data_dir`` contains the python batches, directly or in ``<data_dir>/cifar-10-batches-py/``,
    or an image folder ``<data_dir>/{train,test}/<class>/*.{png,jpg}`` with the ten CIFAR-10
    class folders. When both are present the batches are read, because they hold the original
    pixels. The folder may be read-only. Image folders are decoded once into ``cache_dir`` (see
    :class:`DecodedImageCache`). Each sample is a float32 image ``[3, 32, 32]``, normalized
    with :attr:`mean` and :attr:`std`, and an int64 label ``[]``.

    Args:
        data_dir: folder with one of the two layouts. Default ``"data/cifar10"``, relative to
            the working directory.
        batch_size: samples per batch for every data loader. Default 50.
        val_size: training images held out for validation, in images. Default 5000.
        seed: seed of the train/validation split and of the training shuffle order. Default 0.
        num_workers: data loader worker processes, 0 loads in the main process. Default 0.
        augment: apply ``RandomCrop(32, padding=4)``, ``ColorJitter(brightness=0.2,
            contrast=0.2, hue=0.2)`` and a random horizontal flip to training images.
            Validation and test images are never augmented. Default True.
        download: let :meth:`prepare_data` download the python batches with torchvision when
            neither layout is found. Default False. Construction never downloads.
        cache_dir: folder of the decoded-image cache, and of downloads when ``data_dir`` is not
            writable. Default None: ``~/.cache/na_lightning/cifar10``.
        cache: keep decoded image folders in ``cache_dir``. Default True. The python batches
            are read directly and never cached.
        train_subset: keep only the first ``train_subset`` training images, before the
            train/validation split. In an image folder the first images are balanced over
            the classes (see :func:`scan_image_folder`), and only they are decoded. Default
            None keeps all 50,000.
        test_subset: keep only the first ``test_subset`` test images. Default None keeps all
            10,000.

    Example:
        >>> datamodule = CIFAR10DataModule(data_dir="data/cifar10", batch_size=128)
        >>> datamodule.hparams.batch_size, datamodule.dims
        (128, (3, 32, 32))

    Note:
        Augmentation draws from the global torch random state, so augmented samples repeat
        across runs only after ``pytorch_lightning.seed_everything``. ``seed`` fixes only the
        split and the shuffle order. Under DDP every process decodes an uncached image folder
        in :meth:`setup`, which is safe because cache files are written atomically.
    """

    classes = CLASSES
    num_classes = len(CLASSES)
    dims = (3, IMAGE_SIZE, IMAGE_SIZE)
    mean = (0.4914, 0.4822, 0.4465)
    """Per-channel (R, G, B) mean of the 50,000 original training images, intensities scaled to 0..1."""
    std = (0.2470, 0.2435, 0.2616)
    """Per-channel standard deviation over all pixels of the 50,000 original training images,
    intensities scaled to 0..1. These are the widely published values. The lossy JPEG copy gives
    0.2452, 0.2428 and 0.2606. The often copied (0.2023, 0.1994, 0.2010) is the mean of the
    per-image standard deviations instead."""

    def __init__(
        self,
        data_dir: str = "data/cifar10",
        batch_size: int = 50,
        val_size: int = 5000,
        seed: int = 0,
        num_workers: int = 0,
        augment: bool = True,
        download: bool = False,
        cache_dir: str | None = None,
        cache: bool = True,
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
        self.cache_dir = Path.home() / _DEFAULT_CACHE_DIR if cache_dir is None else Path(cache_dir).expanduser()
        self.batch_size = batch_size
        self.val_size = val_size
        self.seed = seed
        self.num_workers = num_workers
        self.augment = augment
        self.download = download
        self.cache = cache
        self.train_subset = train_subset
        self.test_subset = test_subset

        self.train_dataset: Subset | None = None
        self.val_dataset: Subset | None = None
        self.test_dataset: CIFAR10TensorDataset | None = None

    def download_root(self) -> Path:
        """Return the folder that :meth:`prepare_data` passes to torchvision as ``root``."""
        return self.data_dir if _is_writable(self.data_dir) else self.cache_dir

    def find_layout(self) -> tuple[str, Path] | None:
        """Return ``("batches", folder)`` or ``("images", data_dir)``, or None when neither exists.

        The batches are looked for in ``data_dir``, ``data_dir/cifar-10-batches-py`` and, when
        ``download`` is set, ``<download_root()>/cifar-10-batches-py``.
        """
        folders = [self.data_dir, self.data_dir / BATCHES_DIR]
        if self.download and self.download_root() / BATCHES_DIR not in folders:
            folders.append(self.download_root() / BATCHES_DIR)
        for folder in folders:
            if any((folder / name).is_file() for name in (*TRAIN_BATCHES, *TEST_BATCHES, META_FILE)):
                return "batches", folder
        if any((self.data_dir / split).is_dir() for split in _SPLITS):
            return "images", self.data_dir
        return None

    def prepare_data(self) -> None:
        """Check that CIFAR-10 is present, downloading the python batches if ``download``.

        Lightning calls this hook before :meth:`setup`, on local rank 0 of each node only, so it
        assigns no state. Downloads go to ``<download_root()>/cifar-10-batches-py/`` through
        ``torchvision.datasets.CIFAR10``, which checks the archive's md5.

        Raises:
            CIFAR10NotFoundError: neither layout is found and ``download`` is False, or the
                download failed.
        """
        if self.find_layout() is not None:
            return
        if not self.download:
            raise self._not_found_error()

        root = self.download_root()
        logger.info("Downloading CIFAR-10 into %s", root)
        root.mkdir(parents=True, exist_ok=True)
        try:
            torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)
        except (RuntimeError, OSError) as error:
            raise CIFAR10NotFoundError(
                f"Downloading CIFAR-10 into {root} failed: {error}. Retry when online, or copy the "
                f"python batches ({BATCHES_DIR}/) into {self.data_dir}."
            ) from error
        if self.find_layout() is None:
            raise self._not_found_error()

    def setup(self, stage: str | None = None) -> None:
        """Load the images and build the datasets that ``stage`` needs.

        Lightning calls this hook on every process after :meth:`prepare_data`. ``"fit"`` and
        ``"validate"`` split the training images into :attr:`train_dataset` and
        :attr:`val_dataset` with a generator seeded by ``seed``. ``"test"`` and ``"predict"``
        build :attr:`test_dataset` from the 10,000 test images. None builds all three. A
        dataset that already exists is kept.

        Raises:
            CIFAR10NotFoundError: neither layout is found, or a file or folder of the split is
                missing.
            CIFAR10FormatError: a batch or image file is invalid.
            ValueError: ``stage`` is unknown, a subset exceeds the images of the split, or
                ``val_size`` is not smaller than the number of training images.
        """
        if stage is not None and stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}, expected one of {_STAGES} or None")

        if stage in (None, "fit", "validate") and self.train_dataset is None:
            self._setup_train_val()
        if stage in (None, "test", "predict") and self.test_dataset is None:
            images, labels = self.load_split("test")
            self.test_dataset = CIFAR10TensorDataset(images, labels, self.build_transform(train=False))

    def build_transform(self, train: bool) -> v2.Compose:
        """Return the transform from a uint8 image ``[3, 32, 32]`` to a normalized float32 one.

        Training images (``train=True``) are augmented when ``augment`` is set.
        """
        steps: list[v2.Transform] = []
        if train and self.augment:
            steps += [
                v2.RandomCrop(IMAGE_SIZE, padding=4),
                v2.ColorJitter(brightness=0.2, contrast=0.2, hue=0.2),
                v2.RandomHorizontalFlip(),
            ]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        return v2.Compose(steps)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the uint8 images ``[N, 3, 32, 32]`` and int64 labels ``[N]`` of ``"train"`` or ``"test"``.

        The subset option of the split applies. Image folders are read from the cache when it
        has them, else decoded and cached.
        """
        subset_name = f"{split}_subset"
        subset = getattr(self, subset_name)
        layout = self.find_layout()
        if layout is None:
            raise self._not_found_error()

        kind, folder = layout
        if kind == "batches":
            images, labels, source = self._read_batches(folder, split, subset, subset_name)
        else:
            images, labels, source = self._read_image_folder(folder / split, split, subset, subset_name)

        logger.info("Loaded %d CIFAR-10 %s images from %s", len(labels), split, source)
        images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        return images, torch.from_numpy(labels)

    def _setup_train_val(self) -> None:
        images, labels = self.load_split("train")

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
        train_base = CIFAR10TensorDataset(images, labels, self.build_transform(train=True))
        val_base = CIFAR10TensorDataset(images, labels, self.build_transform(train=False))
        self.train_dataset = Subset(train_base, train_split.indices)
        self.val_dataset = Subset(val_base, val_split.indices)

    def _read_batches(
        self, folder: Path, split: str, subset: int | None, subset_name: str
    ) -> tuple[np.ndarray, np.ndarray, Path]:
        names = _SPLITS[split]
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise CIFAR10NotFoundError(
                f"CIFAR-10 batch files missing in {folder}: {missing}. {_layouts_help(folder.parent)}. "
                f"{_download_fix()}"
            )
        if (folder / META_FILE).is_file():
            label_names = read_label_names(folder / META_FILE)
            if label_names != CLASSES:
                raise CIFAR10FormatError(
                    f"Invalid CIFAR-10 meta file {folder / META_FILE}: the classes are "
                    f"{list(label_names)}, expected {list(CLASSES)}. This is not CIFAR-10; "
                    "CIFAR-100 is not supported."
                )

        parts = []
        for name in names:
            parts.append(read_batch_file(folder / name))
            if subset is not None and sum(len(labels) for _, labels in parts) >= subset:
                break
        images = np.concatenate([images for images, _ in parts])
        labels = np.concatenate([labels for _, labels in parts])
        if subset is not None:
            if subset > len(labels):
                raise ValueError(
                    f"{subset_name}={subset} exceeds the {len(labels)} {split} images in {folder}. "
                    f"Pass at most {len(labels)} or None."
                )
            images, labels = images[:subset], labels[:subset]
        return images, labels, folder

    def _read_image_folder(
        self, split_dir: Path, split: str, subset: int | None, subset_name: str
    ) -> tuple[np.ndarray, np.ndarray, Path]:
        paths, labels = scan_image_folder(split_dir)
        if subset is not None:
            if subset > len(paths):
                raise ValueError(
                    f"{subset_name}={subset} exceeds the {len(paths)} {split} images in {split_dir}. "
                    f"Pass at most {len(paths)} or None."
                )
            paths, labels = paths[:subset], labels[:subset]

        if not self.cache:
            return decode_images(paths, f"Decoding CIFAR-10 {split}"), labels, split_dir

        cache = DecodedImageCache(self.cache_dir)
        name = cache.entry_name(split, split_dir, paths)
        cached = cache.load(name, len(paths))
        if cached is not None and np.array_equal(cached[1], labels):
            return cached[0], labels, split_dir

        logger.info("Decoding %d CIFAR-10 %s images from %s into the cache %s", len(paths), split, split_dir, self.cache_dir)
        images = decode_images(paths, f"Decoding CIFAR-10 {split}")
        cache.store(name, images, labels)
        return images, labels, split_dir

    def _not_found_error(self) -> CIFAR10NotFoundError:
        if not self.data_dir.is_dir():
            problem = f"CIFAR-10 folder not found: {self.data_dir}"
        else:
            problem = f"CIFAR-10 not found in {self.data_dir}"

        hint = ""
        if self.data_dir.is_dir():
            for child in sorted(item for item in self.data_dir.iterdir() if item.is_dir()):
                if (child / "train").is_dir() or (child / BATCHES_DIR).is_dir():
                    hint = f" The subfolder {child} looks like one; pass data_dir={str(child)!r}."
                    break
            # A data_dir one level too deep: a split folder of the image-folder layout.
            if not hint and any((self.data_dir / name).is_dir() for name in CLASSES):
                parent = self.data_dir.absolute().parent
                hint = (
                    f" {self.data_dir} is a split folder with class folders; pass its parent, "
                    f"data_dir={str(parent)!r}."
                )

        if self.download:
            fix = (
                "Call prepare_data() before setup() to download the python batches, or point "
                "data_dir at a folder with one of these layouts."
            )
        else:
            fix = _download_fix()
        return CIFAR10NotFoundError(f"{problem}. {_layouts_help(self.data_dir)}.{hint}", fix)
