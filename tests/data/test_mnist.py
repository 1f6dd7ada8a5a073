"""Tests for the MNIST data module on the real IDX files and on small files written here."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import pytest
import torch
import torchvision.datasets

from na_lightning.data import MNISTDataModule, MNISTFormatError, MNISTNotFoundError
from na_lightning.data import mnist

REAL_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_real_data = pytest.mark.skipif(
    not all((REAL_DIR / f"{name}.gz").is_file() for name in FILE_NAMES),
    reason=f"the four original MNIST .gz files are not in {REAL_DIR}",
)


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """Write ``array`` as an IDX file of unsigned bytes, gzip-compressed if the name ends in .gz."""
    if magic is None:
        magic = 0x0800 + array.ndim
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_fake_mnist(folder: Path, train: int = 60, test: int = 20, suffix: str = ".gz") -> None:
    """Write four valid MNIST files with random images and labels cycling through 0..9."""
    generator = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        images = generator.integers(0, 256, size=(count, 28, 28))
        labels = np.arange(count) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


def normalize(image: torch.Tensor) -> torch.Tensor:
    """Normalize a uint8 image ``[28, 28]`` the way the data module does, without augmentation."""
    scaled = image.float().unsqueeze(0) / 255
    return (scaled - MNISTDataModule.mean[0]) / MNISTDataModule.std[0]


class FakeTorchvisionMNIST:
    """Stand-in for ``torchvision.datasets.MNIST`` that writes small valid files, no network."""

    calls: list[str] = []

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        FakeTorchvisionMNIST.calls.append(root)
        if download:
            write_fake_mnist(Path(root) / "MNIST" / "raw", train=40, test=10)


@pytest.fixture
def fake_download(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    FakeTorchvisionMNIST.calls = []
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeTorchvisionMNIST)
    return FakeTorchvisionMNIST.calls


# Attributes and arguments


def test_class_attributes():
    assert MNISTDataModule.classes == tuple("0123456789")
    assert MNISTDataModule.num_classes == 10
    assert MNISTDataModule.dims == (1, 28, 28)
    assert MNISTDataModule.mean == (0.1307,)
    assert MNISTDataModule.std == (0.3081,)


def test_init_stores_hparams_only(tmp_path, fake_download):
    datamodule = MNISTDataModule(data_dir=str(tmp_path / "absent"), download=True, batch_size=8)

    assert datamodule.hparams.batch_size == 8
    assert datamodule.hparams.download is True
    assert datamodule.hparams.val_size == 5000
    assert fake_download == []
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    "argument",
    [
        {"batch_size": 0},
        {"val_size": -1},
        {"num_workers": -1},
        {"train_subset": 0},
        {"test_subset": 0},
        {"batch_size": 2.5},
    ],
)
def test_init_rejects_invalid_arguments(argument):
    (name, value), = argument.items()
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= \d, got {value}"):
        MNISTDataModule(**argument)


def test_setup_rejects_unknown_stage(tmp_path):
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("train")


def test_dataloader_before_setup(tmp_path):
    with pytest.raises(RuntimeError, match=r"call setup\('fit'\) before train_dataloader"):
        MNISTDataModule(data_dir=str(tmp_path)).train_dataloader()


# Real data


@needs_real_data
def test_real_test_split_labels_and_shapes():
    datamodule = MNISTDataModule(data_dir=str(REAL_DIR))
    datamodule.prepare_data()
    datamodule.setup("test")

    dataset = datamodule.test_dataset
    assert len(dataset) == 10000
    image, label = dataset[0]
    assert image.shape == (1, 28, 28)
    assert image.dtype == torch.float32
    assert label.dtype == torch.int64
    assert label.item() == 7
    assert torch.bincount(dataset.labels, minlength=10).tolist() == TEST_CLASS_COUNTS
    assert datamodule.train_dataset is None


@needs_real_data
def test_real_train_files():
    images = mnist.read_idx_images(REAL_DIR / "train-images-idx3-ubyte.gz")
    labels = mnist.read_idx_labels(REAL_DIR / "train-labels-idx1-ubyte.gz")

    assert images.shape == (60000, 28, 28)
    assert images.dtype == torch.uint8
    assert labels.shape == (60000,)
    assert labels.dtype == torch.int64
    assert labels[0].item() == 5
    assert int(images.max()) == 255


@needs_real_data
def test_real_fit_split_sizes_and_disjoint():
    datamodule = MNISTDataModule(data_dir=str(REAL_DIR))
    datamodule.setup("fit")

    train_indices = set(datamodule.train_dataset.indices)
    val_indices = set(datamodule.val_dataset.indices)
    assert len(train_indices) == 55000
    assert len(val_indices) == 5000
    assert train_indices.isdisjoint(val_indices)
    assert train_indices | val_indices == set(range(60000))
    assert datamodule.test_dataset is None


@needs_real_data
def test_real_split_depends_only_on_seed():
    def val_indices(seed: int) -> list[int]:
        datamodule = MNISTDataModule(
            data_dir=str(REAL_DIR), seed=seed, train_subset=2000, val_size=500
        )
        datamodule.setup("fit")
        return list(datamodule.val_dataset.indices)

    first = val_indices(seed=0)
    assert val_indices(seed=0) == first
    assert val_indices(seed=1) != first
    assert max(first) < 2000


@needs_real_data
def test_real_normalization_stats():
    datamodule = MNISTDataModule(data_dir=str(REAL_DIR), batch_size=10000)
    datamodule.setup("test")

    images, labels = next(iter(datamodule.test_dataloader()))
    assert images.shape == (10000, 1, 28, 28)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # The test images have mean 0.1325 and std 0.3105 on the 0..1 scale, close to the
    # training statistics used for normalization.
    assert images.mean().item() == pytest.approx(0.0, abs=0.02)
    assert images.std().item() == pytest.approx(1.0, abs=0.02)
    assert images.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    assert images.max().item() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)


@needs_real_data
def test_real_augment_changes_train_only():
    torch.manual_seed(0)
    datamodule = MNISTDataModule(data_dir=str(REAL_DIR), train_subset=200, val_size=50)
    datamodule.setup("fit")
    raw_images = datamodule.train_dataset.dataset.images

    train_index = datamodule.train_dataset.indices[0]
    first, _ = datamodule.train_dataset[0]
    second, _ = datamodule.train_dataset[0]
    assert not torch.equal(first, second)
    assert not torch.equal(first, normalize(raw_images[train_index]))

    val_index = datamodule.val_dataset.indices[0]
    val_image, _ = datamodule.val_dataset[0]
    assert torch.equal(val_image, datamodule.val_dataset[0][0])
    assert torch.allclose(val_image, normalize(raw_images[val_index]), atol=1e-6)


@needs_real_data
def test_real_augment_off_leaves_train_images():
    datamodule = MNISTDataModule(
        data_dir=str(REAL_DIR), train_subset=100, val_size=10, augment=False
    )
    datamodule.setup("fit")

    index = datamodule.train_dataset.indices[0]
    image, label = datamodule.train_dataset[0]
    raw_image = datamodule.train_dataset.dataset.images[index]
    assert torch.allclose(image, normalize(raw_image), atol=1e-6)
    assert label == datamodule.train_dataset.dataset.labels[index]


@needs_real_data
def test_real_test_subset_keeps_first_images():
    datamodule = MNISTDataModule(data_dir=str(REAL_DIR), test_subset=100)
    datamodule.setup("predict")

    labels = mnist.read_idx_labels(REAL_DIR / "t10k-labels-idx1-ubyte.gz")
    assert len(datamodule.test_dataset) == 100
    assert torch.equal(datamodule.test_dataset.labels, labels[:100])


# Data loaders


def test_dataloaders_batches_and_options(tmp_path):
    write_fake_mnist(tmp_path, train=60, test=20)
    datamodule = MNISTDataModule(data_dir=str(tmp_path), batch_size=8, val_size=12)
    datamodule.setup()

    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 1, 28, 28)
    assert images.dtype == torch.float32
    assert labels.shape == (8,)
    assert labels.dtype == torch.int64

    val_loader = datamodule.val_dataloader()
    val_labels = torch.cat([batch_labels for _, batch_labels in val_loader])
    expected = datamodule.val_dataset.dataset.labels[datamodule.val_dataset.indices]
    assert torch.equal(val_labels, expected)
    assert len(datamodule.test_dataloader().dataset) == 20
    assert len(datamodule.predict_dataloader().dataset) == 20

    for loader in (datamodule.train_dataloader(), val_loader, datamodule.test_dataloader()):
        assert loader.persistent_workers is False
        assert loader.pin_memory is torch.cuda.is_available()


def test_train_dataloader_order_follows_seed(tmp_path):
    write_fake_mnist(tmp_path, train=60, test=20)

    def first_batch(seed: int) -> torch.Tensor:
        datamodule = MNISTDataModule(
            data_dir=str(tmp_path), batch_size=20, val_size=10, seed=seed, augment=False
        )
        datamodule.setup("fit")
        return next(iter(datamodule.train_dataloader()))[0]

    assert torch.equal(first_batch(0), first_batch(0))
    assert not torch.equal(first_batch(0), first_batch(1))


def test_workers_are_persistent(tmp_path):
    write_fake_mnist(tmp_path)
    datamodule = MNISTDataModule(data_dir=str(tmp_path), val_size=10, num_workers=2)
    datamodule.setup("fit")

    loader = datamodule.val_dataloader()
    assert loader.num_workers == 2
    assert loader.persistent_workers is True


# File layouts


@pytest.mark.parametrize(
    ("subfolder", "suffix"),
    [(".", ".gz"), (".", ""), ("MNIST/raw", ".gz"), ("MNIST/raw", "")],
)
def test_accepted_layouts(tmp_path, subfolder, suffix):
    write_fake_mnist(tmp_path / subfolder, train=30, test=15, suffix=suffix)
    datamodule = MNISTDataModule(data_dir=str(tmp_path), val_size=5)
    datamodule.prepare_data()
    datamodule.setup()

    assert len(datamodule.train_dataset) == 25
    assert len(datamodule.val_dataset) == 5
    assert len(datamodule.test_dataset) == 15
    assert datamodule.test_dataset[3][1].item() == 3


# Invalid input


def test_missing_folder(tmp_path):
    folder = tmp_path / "absent"
    datamodule = MNISTDataModule(data_dir=str(folder))

    for step in (datamodule.prepare_data, lambda: datamodule.setup("fit")):
        with pytest.raises(MNISTNotFoundError) as raised:
            step()
        message = str(raised.value)
        assert f"MNIST folder not found: {folder}" in message
        for name in FILE_NAMES:
            assert f"{name}.gz" in message
        assert "Pass download=True when online" in message
        assert f"into {folder}." in message


def test_missing_one_file(tmp_path):
    write_fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    datamodule = MNISTDataModule(data_dir=str(tmp_path), val_size=10)

    with pytest.raises(MNISTNotFoundError) as raised:
        datamodule.prepare_data()
    message = str(raised.value)
    assert f"MNIST files missing: t10k-labels-idx1-ubyte.gz not found in {tmp_path}" in message
    assert "Expected train-images-idx3-ubyte.gz" in message
    assert message.count("train-images-idx3-ubyte.gz") == 1
    assert "copy the four original MNIST files" in message

    datamodule.setup("fit")
    assert len(datamodule.train_dataset) == 50
    with pytest.raises(MNISTNotFoundError, match="t10k-labels-idx1-ubyte.gz not found"):
        datamodule.setup("test")


@needs_real_data
def test_truncated_gzip(tmp_path):
    for name in FILE_NAMES:
        shutil.copyfile(REAL_DIR / f"{name}.gz", tmp_path / f"{name}.gz")
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200_000])

    with pytest.raises(MNISTFormatError) as raised:
        MNISTDataModule(data_dir=str(tmp_path)).setup("fit")
    message = str(raised.value)
    assert f"Invalid MNIST file {path}" in message
    assert "truncated: header says 60000 images, payload contains " in message
    assert "Pass download=True when online" in message
    assert f"({', '.join(f'{name}.gz' for name in FILE_NAMES)}) into {tmp_path}." in message


def test_truncated_uncompressed(tmp_path):
    write_fake_mnist(tmp_path, train=20, test=10, suffix="")
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[: 16 + 3 * 784 + 100])

    with pytest.raises(MNISTFormatError, match="header says 10 images, payload contains 3 "):
        MNISTDataModule(data_dir=str(tmp_path)).setup("test")


def test_gzip_missing_end_marker(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(10) % 10)
    # The last 8 bytes of a gzip member are its CRC-32 and size, so the payload stays complete.
    path.write_bytes(path.read_bytes()[:-8])

    with pytest.raises(MNISTFormatError, match="gzip stream ends before its end-of-stream marker"):
        mnist.read_idx_labels(path)


def test_not_gzip(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"<html>not found</html>")

    with pytest.raises(MNISTFormatError, match=r"t10k-images-idx3-ubyte.gz: not a valid gzip file"):
        mnist.read_idx_images(path)


def test_wrong_magic(tmp_path):
    write_fake_mnist(tmp_path)
    # A label file stored under an image file name.
    shutil.copyfile(tmp_path / "t10k-labels-idx1-ubyte.gz", tmp_path / "t10k-images-idx3-ubyte.gz")

    with pytest.raises(MNISTFormatError) as raised:
        MNISTDataModule(data_dir=str(tmp_path)).setup("test")
    message = str(raised.value)
    assert f"Invalid MNIST file {tmp_path / 't10k-images-idx3-ubyte.gz'}" in message
    assert "magic number is 2049 (a label file), expected 2051 for an image file" in message
    assert f"into {tmp_path}." in message


def test_unknown_magic(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.zeros(5), magic=1234)

    expected = "magic number is 1234, expected 2049 for a label file"
    with pytest.raises(MNISTFormatError, match=expected):
        mnist.read_idx_labels(path)


def test_wrong_image_size(tmp_path):
    path = tmp_path / "images"
    write_idx(path, np.zeros((4, 32, 32)))

    with pytest.raises(MNISTFormatError, match="images are 32x32 pixels, expected 28x28"):
        mnist.read_idx_images(path)


def test_extra_payload_bytes(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.zeros(5))
    path.write_bytes(path.read_bytes() + b"\x00\x00")

    with pytest.raises(MNISTFormatError, match="header says 5 labels, payload has 2 extra bytes"):
        mnist.read_idx_labels(path)


def test_header_too_short(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x08\x03")

    expected = "truncated: 4 bytes, shorter than the 16-byte IDX header"
    with pytest.raises(MNISTFormatError, match=expected):
        mnist.read_idx_images(path)


def test_label_out_of_range(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.array([1, 2, 12, 3, 10]))

    expected = "2 labels lie outside 0..9, the first is 12 at index 2"
    with pytest.raises(MNISTFormatError, match=expected):
        mnist.read_idx_labels(path)


def test_image_label_count_mismatch(tmp_path):
    write_fake_mnist(tmp_path, train=30, test=20)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(19) % 10)

    with pytest.raises(MNISTFormatError, match="contains 20 images but .* contains 19 labels"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("test")


@needs_real_data
def test_val_size_too_large():
    datamodule = MNISTDataModule(data_dir=str(REAL_DIR), val_size=60000)

    with pytest.raises(ValueError) as raised:
        datamodule.setup("fit")
    message = str(raised.value)
    assert "val_size=60000 must be smaller than the 60000 training images." in message
    assert "Pass a smaller val_size." in message
    assert "train_subset" not in message


def test_val_size_too_large_for_subset(tmp_path):
    write_fake_mnist(tmp_path)
    datamodule = MNISTDataModule(data_dir=str(tmp_path), train_subset=50)

    with pytest.raises(ValueError) as raised:
        datamodule.setup("fit")
    message = str(raised.value)
    assert "val_size=5000 must be smaller than the 50 training images (train_subset=50)" in message
    assert "Pass a smaller val_size" in message


def test_subset_larger_than_file(tmp_path):
    write_fake_mnist(tmp_path, train=60, test=20)

    with pytest.raises(ValueError, match="test_subset=21 exceeds the 20 images in"):
        MNISTDataModule(data_dir=str(tmp_path), test_subset=21).setup("test")


# Download, with torchvision.datasets.MNIST replaced by a fake that writes files


def test_download_into_cache_dir(tmp_path, fake_download):
    data_dir = tmp_path / "data"
    cache_dir = tmp_path / "cache"
    datamodule = MNISTDataModule(
        data_dir=str(data_dir), cache_dir=str(cache_dir), download=True, val_size=10
    )
    datamodule.prepare_data()

    assert fake_download == [str(cache_dir)]
    assert (cache_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()
    assert not data_dir.exists()

    datamodule.setup()
    assert len(datamodule.train_dataset) == 30
    assert len(datamodule.test_dataset) == 10


def test_download_into_writable_data_dir(tmp_path, fake_download):
    datamodule = MNISTDataModule(data_dir=str(tmp_path / "data"), download=True, val_size=10)
    datamodule.prepare_data()
    datamodule.setup("fit")

    assert fake_download == [str(tmp_path / "data")]
    assert len(datamodule.val_dataset) == 10


def test_download_read_only_data_dir(tmp_path, fake_download, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(mnist, "_is_writable", lambda path: False)
    datamodule = MNISTDataModule(data_dir=str(tmp_path / "read_only"), download=True, val_size=10)
    datamodule.prepare_data()
    datamodule.setup("test")

    cache = tmp_path / "home" / ".cache" / "na_lightning" / "mnist"
    assert fake_download == [str(cache)]
    assert (cache / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()
    assert len(datamodule.test_dataset) == 10


def test_download_skipped_when_present(tmp_path, fake_download):
    write_fake_mnist(tmp_path)
    datamodule = MNISTDataModule(data_dir=str(tmp_path), download=True, val_size=10)
    datamodule.prepare_data()

    assert fake_download == []


def test_download_failure(tmp_path, monkeypatch):
    def offline(root: str, train: bool = True, download: bool = False) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    datamodule = MNISTDataModule(
        data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), download=True
    )

    with pytest.raises(MNISTNotFoundError) as raised:
        datamodule.prepare_data()
    message = str(raised.value)
    assert f"Downloading MNIST into {tmp_path / 'cache'} failed" in message
    assert "Error downloading train-images-idx3-ubyte.gz" in message
    assert f"into {tmp_path / 'data'}." in message


def test_setup_before_prepare_data_with_download(tmp_path, fake_download):
    datamodule = MNISTDataModule(data_dir=str(tmp_path / "data"), download=True)

    with pytest.raises(MNISTNotFoundError, match=r"Call prepare_data\(\) before setup\(\)"):
        datamodule.setup("fit")
    assert fake_download == []


# Lightning integration


class TinyClassifier(pl.LightningModule):
    """Linear classifier over flattened images, just enough to drive the Trainer hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(28 * 28, 10)

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        return torch.nn.functional.cross_entropy(self.linear(images.flatten(1)), labels)

    def training_step(self, batch, batch_index):
        return self._loss(batch)

    def validation_step(self, batch, batch_index):
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch, batch_index):
        self.log("test_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_fit_and_test(tmp_path, fake_download):
    datamodule = MNISTDataModule(
        data_dir=str(tmp_path / "data"), download=True, batch_size=10, val_size=10
    )
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    model = TinyClassifier()
    trainer.fit(model, datamodule=datamodule)

    assert fake_download == [str(tmp_path / "data")]
    assert trainer.num_training_batches == 3
    assert "val_loss" in trainer.callback_metrics

    results = trainer.test(model, datamodule=datamodule, verbose=False)
    assert len(results) == 1
    assert "test_loss" in results[0]


def test_data_dir_one_level_too_high(tmp_path):
    write_fake_mnist(tmp_path / "mnist")
    datamodule = MNISTDataModule(data_dir=str(tmp_path), download=True)

    # The files are in a subfolder, so prepare_data reports it instead of downloading.
    with pytest.raises(MNISTNotFoundError) as raised:
        datamodule.prepare_data()
    message = str(raised.value)
    assert f"The subfolder {tmp_path / 'mnist'} contains all four." in message
    assert f"Pass data_dir={str(tmp_path / 'mnist')!r}" in message
    assert not (tmp_path / "MNIST").exists()


def test_not_found_fix_replaced(tmp_path):
    folder = tmp_path / "absent"
    with pytest.raises(MNISTNotFoundError) as raised:
        MNISTDataModule(data_dir=str(folder)).prepare_data()
    error = raised.value

    replaced = error.with_fix("Pass --data-dir.")

    assert type(replaced) is MNISTNotFoundError
    assert replaced.problem == error.problem
    assert str(replaced) == f"{error.problem} Pass --data-dir."
    assert "download" not in str(replaced)


def test_data_dir_is_a_file(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"")

    with pytest.raises(MNISTNotFoundError, match=f"MNIST data_dir {path} is a file; expected the folder that contains it"):
        MNISTDataModule(data_dir=str(path)).prepare_data()
