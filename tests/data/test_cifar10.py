"""Tests for the CIFAR-10 data module on small folders and batches written here, and on the real JPEG copy."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import pytest
import torch
import torchvision.datasets
from PIL import Image

from na_lightning.data import CIFAR10DataModule, CIFAR10FormatError, CIFAR10NotFoundError
from na_lightning.data import cifar10
from na_lightning.lightning.classifier import NAClassifier
from tests.conftest import DATA_ROOT

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
REAL_DIR = DATA_ROOT / "cifar10" / "cifar10-jpg"
MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)


@pytest.fixture(scope="module")
def cifar10_dir() -> Path:
    if not (REAL_DIR / "test" / "airplane" / "0000.jpg").is_file():
        pytest.skip(f"real CIFAR-10 JPEG folder not found in {REAL_DIR}; set NA_LIGHTNING_DATA")
    return REAL_DIR


def random_images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)


def save_image(pixels: np.ndarray, path: Path) -> None:
    # Uncompressed PNGs of one shape all have the same size, so a change shows only in the mtime.
    options = {"compress_level": 0} if path.suffix == ".png" else {}
    Image.fromarray(pixels).save(path, **options)


def write_image_folder(
    root: Path, per_class: int = 2, splits=("train", "test"), suffix: str = ".png"
) -> dict[str, dict[str, list[np.ndarray]]]:
    """Write ``root/<split>/<class>/<i>.png`` with random pixels, and return the pixels by split and class."""
    written: dict[str, dict[str, list[np.ndarray]]] = {}
    for split_index, split in enumerate(splits):
        written[split] = {}
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            images = random_images(per_class, seed=100 * split_index + label)
            for index, pixels in enumerate(images):
                save_image(pixels, folder / f"{index:04d}{suffix}")
            written[split][name] = list(images)
    return written


def batch_dict(images: np.ndarray, labels) -> dict:
    """Return a batch laid out like the original files: bytes keys, data ``[N, 3072]`` in R, G, B planes."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return {b"batch_label": b"test batch", b"labels": list(labels), b"data": data, b"filenames": []}


def write_pickle(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump(value, file, protocol=2)


def write_batches(folder: Path, per_batch: int = 6, test: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Write the five training batches, the test batch and batches.meta, and return the training images and labels."""
    train_images, train_labels = [], []
    for index in range(1, 6):
        images = random_images(per_batch, seed=index)
        labels = [(index + offset) % 10 for offset in range(per_batch)]
        write_pickle(folder / f"data_batch_{index}", batch_dict(images, labels))
        train_images.append(images)
        train_labels += labels
    write_pickle(folder / "test_batch", batch_dict(random_images(test, seed=99), [i % 10 for i in range(test)]))
    write_pickle(folder / "batches.meta", {b"label_names": [name.encode() for name in CLASSES], b"num_vis": 3072})
    return np.concatenate(train_images), np.array(train_labels)


def normalize(pixels: np.ndarray) -> torch.Tensor:
    """Normalize a uint8 image ``[32, 32, 3]`` as the data module does, into ``[3, 32, 32]``."""
    return torch.from_numpy(((pixels / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1))


def make_module(data_dir: Path, cache_dir: Path, **options) -> CIFAR10DataModule:
    arguments = {"val_size": 2, "augment": False, "batch_size": 4}
    arguments.update(options)
    return CIFAR10DataModule(data_dir=str(data_dir), cache_dir=str(cache_dir), **arguments)


@pytest.fixture
def image_folder(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "cifar10"
    return root, write_image_folder(root)


@pytest.fixture
def count_decodes(monkeypatch) -> list[Path]:
    decoded: list[Path] = []
    original = cifar10.decode_image

    def counting_decode(path):
        decoded.append(path)
        return original(path)

    monkeypatch.setattr(cifar10, "decode_image", counting_decode)
    return decoded


# Attributes and arguments


def test_class_attributes():
    assert CIFAR10DataModule.classes == CLASSES
    assert CIFAR10DataModule.num_classes == 10
    assert CIFAR10DataModule.dims == (3, 32, 32)
    assert CIFAR10DataModule.mean == (0.4914, 0.4822, 0.4465)
    assert CIFAR10DataModule.std == (0.2470, 0.2435, 0.2616)


def test_init_stores_hparams_only(tmp_path):
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path / "absent"), batch_size=7, train_subset=30)

    assert datamodule.hparams.batch_size == 7
    assert datamodule.hparams.train_subset == 30
    assert datamodule.hparams.cache_dir is None
    assert datamodule.cache_dir == Path.home() / ".cache" / "na_lightning" / "cifar10"
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    "argument",
    [{"batch_size": 0}, {"val_size": -1}, {"num_workers": -1}, {"train_subset": 0}, {"test_subset": 1.5}],
)
def test_init_rejects_invalid_arguments(argument):
    name = next(iter(argument))
    with pytest.raises(ValueError, match=f"{name} must be an integer"):
        CIFAR10DataModule(**argument)


def test_setup_rejects_unknown_stage(tmp_path):
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup("train")


def test_dataloader_before_setup(tmp_path):
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match=r"call setup\('fit'\) before train_dataloader"):
        datamodule.train_dataloader()


# Image folder layout


def test_image_folder_pixels_and_labels(image_folder, tmp_path):
    root, written = image_folder
    datamodule = make_module(root, tmp_path / "cache")
    datamodule.prepare_data()
    datamodule.setup("test")

    dataset = datamodule.test_dataset
    assert len(dataset) == 20
    # Round-robin order: the first file of every class, then the second.
    assert dataset.labels.tolist() == list(range(10)) * 2
    image, label = dataset[13]
    assert image.dtype == torch.float32
    assert image.shape == (3, 32, 32)
    assert int(label) == 3
    assert torch.allclose(image, normalize(written["test"]["cat"][1]), atol=1e-5)


def test_image_folder_fit_split(image_folder, tmp_path):
    root, _ = image_folder
    datamodule = make_module(root, tmp_path / "cache", val_size=5, seed=3)
    datamodule.setup("fit")

    train_indices = set(datamodule.train_dataset.indices)
    val_indices = set(datamodule.val_dataset.indices)
    assert len(train_indices) == 15
    assert len(val_indices) == 5
    assert train_indices.isdisjoint(val_indices)
    assert datamodule.test_dataset is None

    again = make_module(root, tmp_path / "cache", val_size=5, seed=3)
    again.setup("fit")
    assert set(again.val_dataset.indices) == val_indices


def test_subset_decodes_only_its_images(image_folder, tmp_path, count_decodes):
    root, _ = image_folder
    datamodule = make_module(root, tmp_path / "cache", test_subset=10)
    datamodule.setup("test")

    assert datamodule.test_dataset.labels.tolist() == list(range(10))
    assert len(count_decodes) == 10
    assert all(path.name == "0000.png" for path in count_decodes)


def test_jpeg_folder_matches_pil_decode(tmp_path):
    root = tmp_path / "jpg"
    write_image_folder(root, per_class=1, suffix=".jpg")
    datamodule = make_module(root, tmp_path / "cache", val_size=1)
    datamodule.setup()

    expected = np.asarray(Image.open(root / "train" / "bird" / "0000.jpg").convert("RGB"))
    assert torch.allclose(datamodule.train_dataset.dataset[2][0], normalize(expected), atol=1e-5)


def test_hidden_and_other_files_ignored(image_folder, tmp_path):
    root, _ = image_folder
    (root / "test" / "cat" / "notes.txt").write_text("not an image")
    (root / "test" / ".ipynb_checkpoints").mkdir()
    datamodule = make_module(root, tmp_path / "cache")
    datamodule.setup("test")

    assert len(datamodule.test_dataset) == 20


# Decoded-image cache


def test_second_setup_reads_cache(image_folder, tmp_path, count_decodes):
    root, _ = image_folder
    first = make_module(root, tmp_path / "cache")
    first.setup("test")
    assert len(count_decodes) == 20
    cached = sorted(path.name for path in (tmp_path / "cache").iterdir())
    assert len(cached) == 2
    assert cached[0].startswith("test-")
    assert cached[0].endswith(".images.npy")
    assert cached[1].endswith(".labels.npy")

    second = make_module(root, tmp_path / "cache")
    second.setup("test")

    assert len(count_decodes) == 20
    assert torch.equal(second.test_dataset.images, first.test_dataset.images)
    assert torch.equal(second.test_dataset.labels, first.test_dataset.labels)


def test_changed_file_invalidates_cache(image_folder, tmp_path, count_decodes):
    root, _ = image_folder
    make_module(root, tmp_path / "cache").setup("test")
    changed = root / "test" / "dog" / "0000.png"
    size = changed.stat().st_size
    new_pixels = np.full((32, 32, 3), 200, dtype=np.uint8)
    save_image(new_pixels, changed)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert stat.st_size == size

    datamodule = make_module(root, tmp_path / "cache")
    datamodule.setup("test")

    assert len(count_decodes) == 40
    assert torch.allclose(datamodule.test_dataset[5][0], normalize(new_pixels), atol=1e-5)
    # The stale entry of the same folder and split was removed.
    assert len(list((tmp_path / "cache").glob("test-*.images.npy"))) == 1


def test_added_file_invalidates_cache(image_folder, tmp_path, count_decodes):
    root, written = image_folder
    make_module(root, tmp_path / "cache").setup("test")
    save_image(random_images(1, seed=7)[0], root / "test" / "frog" / "0002.png")

    datamodule = make_module(root, tmp_path / "cache")
    datamodule.setup("test")

    assert len(datamodule.test_dataset) == 21
    assert len(count_decodes) == 41


def test_corrupt_cache_decoded_again(image_folder, tmp_path, count_decodes, caplog):
    root, written = image_folder
    make_module(root, tmp_path / "cache").setup("test")
    images_file = next((tmp_path / "cache").glob("*.images.npy"))
    images_file.write_bytes(images_file.read_bytes()[:1000])

    datamodule = make_module(root, tmp_path / "cache")
    datamodule.setup("test")

    assert len(count_decodes) == 40
    assert "Ignoring unreadable CIFAR-10 cache entry" in caplog.text
    assert torch.allclose(datamodule.test_dataset[0][0], normalize(written["test"]["airplane"][0]), atol=1e-5)


def test_cache_disabled_writes_nothing(image_folder, tmp_path, count_decodes):
    root, _ = image_folder
    for _ in range(2):
        make_module(root, tmp_path / "cache", cache=False).setup("test")

    assert len(count_decodes) == 40
    assert not (tmp_path / "cache").exists()


def test_unwritable_cache_logged(image_folder, tmp_path, caplog):
    root, written = image_folder
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    datamodule = make_module(root, blocked / "cache")
    datamodule.setup("test")

    assert "Cannot write the CIFAR-10 cache" in caplog.text
    assert torch.allclose(datamodule.test_dataset[1][0], normalize(written["test"]["automobile"][0]), atol=1e-5)


# Python batch layout


@pytest.mark.parametrize("subfolder", ["", "cifar-10-batches-py"])
def test_batches_pixels_and_labels(tmp_path, subfolder):
    train_images, train_labels = write_batches(tmp_path / "data" / subfolder)
    datamodule = make_module(tmp_path / "data", tmp_path / "cache", val_size=10)
    datamodule.setup()

    base = datamodule.train_dataset.dataset
    assert len(base) == 30
    assert base.labels.tolist() == train_labels.tolist()
    assert torch.allclose(base[17][0], normalize(train_images[17]), atol=1e-5)
    assert len(datamodule.test_dataset) == 8
    assert not (tmp_path / "cache").exists()


def test_batches_channel_order(tmp_path):
    write_batches(tmp_path)
    red = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    red[..., 0] = 255
    write_pickle(tmp_path / "test_batch", batch_dict(red, [0]))
    datamodule = make_module(tmp_path, tmp_path / "cache")
    datamodule.setup("test")

    image = datamodule.test_dataset[0][0]
    assert torch.allclose(image[:, 5, 5], torch.from_numpy((np.array([1.0, 0.0, 0.0]) - MEAN) / STD).float())


def test_batches_subset_reads_first_batch_only(tmp_path, monkeypatch):
    write_batches(tmp_path, per_batch=6)
    read = []
    original = cifar10.read_batch_file
    monkeypatch.setattr(cifar10, "read_batch_file", lambda path: read.append(Path(path).name) or original(path))
    datamodule = make_module(tmp_path, tmp_path / "cache", train_subset=5)
    datamodule.setup("fit")

    assert read == ["data_batch_1"]
    assert len(datamodule.train_dataset) + len(datamodule.val_dataset) == 5


def test_batches_preferred_over_image_folder(image_folder, tmp_path, count_decodes):
    root, _ = image_folder
    write_batches(root / "cifar-10-batches-py", test=3)
    datamodule = make_module(root, tmp_path / "cache")
    datamodule.setup("test")

    assert datamodule.find_layout() == ("batches", root / "cifar-10-batches-py")
    assert len(datamodule.test_dataset) == 3
    assert count_decodes == []


def test_python2_style_batch(tmp_path):
    """A batch written the way Python 2 wrote the original files: str keys, data as a byte string."""
    write_batches(tmp_path)
    images = random_images(2, seed=5)
    data = images.transpose(0, 3, 1, 2).reshape(2, -1)
    # Protocol 2 stores a numpy array through numpy.core.multiarray._reconstruct, as the originals do.
    text = pickle.dumps({"data": data, "labels": [4, 9]}, protocol=2)
    text = text.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "test_batch").write_bytes(text)
    datamodule = make_module(tmp_path, tmp_path / "cache")
    datamodule.setup("test")

    assert datamodule.test_dataset.labels.tolist() == [4, 9]
    assert torch.allclose(datamodule.test_dataset[1][0], normalize(images[1]), atol=1e-5)


# Errors


def test_missing_folder(tmp_path):
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path / "absent"))
    with pytest.raises(CIFAR10NotFoundError) as excinfo:
        datamodule.prepare_data()

    message = str(excinfo.value)
    assert f"CIFAR-10 folder not found: {tmp_path / 'absent'}" in message
    assert "cifar-10-batches-py/ with data_batch_1 to data_batch_5" in message
    assert "train/<class>/" in message
    assert "--data.init_args.download true" in message


def test_folder_with_neither_layout(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "readme.txt").write_text("nothing here")
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path))
    with pytest.raises(CIFAR10NotFoundError) as excinfo:
        datamodule.setup("test")

    message = str(excinfo.value)
    assert f"CIFAR-10 not found in {tmp_path}." in message
    assert "python batches" in message
    assert "image folder" in message
    assert "download=True" in message
    assert "looks like one" not in message


def test_layout_one_level_down_suggested(image_folder):
    root, _ = image_folder
    datamodule = CIFAR10DataModule(data_dir=str(root.parent))
    with pytest.raises(CIFAR10NotFoundError, match=f"The subfolder {root} looks like one; pass data_dir="):
        datamodule.prepare_data()


def test_split_folder_names_parent(image_folder):
    root, _ = image_folder
    datamodule = CIFAR10DataModule(data_dir=str(root / "train"))

    with pytest.raises(CIFAR10NotFoundError) as excinfo:
        datamodule.prepare_data()

    message = str(excinfo.value)
    assert f"{root / 'train'} is a split folder with class folders; pass its parent" in message
    assert f"data_dir={str(root.absolute())!r}" in message


def test_missing_class_folder(image_folder, tmp_path):
    root, _ = image_folder
    for path in (root / "test" / "ship").iterdir():
        path.unlink()
    (root / "test" / "ship").rmdir()
    datamodule = make_module(root, tmp_path / "cache")
    with pytest.raises(CIFAR10NotFoundError, match=r"class folders missing in .*test: \['ship'\]"):
        datamodule.setup("test")


def test_unknown_class_folder(image_folder, tmp_path):
    root, _ = image_folder
    (root / "train" / "planes").mkdir()
    datamodule = make_module(root, tmp_path / "cache")
    with pytest.raises(CIFAR10FormatError, match=r"Unexpected folders in .*train: \['planes'\]"):
        datamodule.setup("fit")


def test_empty_class_folder(image_folder, tmp_path):
    root, _ = image_folder
    for path in (root / "test" / "deer").iterdir():
        path.unlink()
    datamodule = make_module(root, tmp_path / "cache")
    with pytest.raises(CIFAR10NotFoundError, match=r"class folder .*deer contains no"):
        datamodule.setup("test")


def test_missing_test_split_folder(tmp_path):
    root = tmp_path / "cifar10"
    write_image_folder(root, splits=("train",))
    datamodule = make_module(root, tmp_path / "cache")
    datamodule.setup("fit")

    with pytest.raises(CIFAR10NotFoundError, match=f"split folder {root / 'test'} not found"):
        datamodule.setup("test")


@pytest.mark.parametrize(
    ("pixels", "mode", "expected"),
    [
        (np.zeros((28, 28, 3), dtype=np.uint8), "RGB", "28x28 pixels in mode RGB"),
        (np.zeros((32, 32), dtype=np.uint8), "L", "32x32 pixels in mode L"),
        (np.zeros((32, 32, 4), dtype=np.uint8), "RGBA", "32x32 pixels in mode RGBA"),
    ],
)
def test_image_of_wrong_shape(image_folder, tmp_path, pixels, mode, expected):
    root, _ = image_folder
    bad = root / "test" / "horse" / "0001.png"
    Image.fromarray(pixels, mode=mode).save(bad)
    datamodule = make_module(root, tmp_path / "cache")
    with pytest.raises(CIFAR10FormatError) as excinfo:
        datamodule.setup("test")

    message = str(excinfo.value)
    assert f"Invalid CIFAR-10 image {bad}" in message
    assert expected in message
    assert "expected 32x32 RGB" in message


def test_corrupt_image(image_folder, tmp_path):
    root, _ = image_folder
    bad = root / "test" / "truck" / "0000.png"
    bad.write_bytes(bad.read_bytes()[:60])
    datamodule = make_module(root, tmp_path / "cache")
    with pytest.raises(CIFAR10FormatError, match=f"Invalid CIFAR-10 image {bad}: cannot decode it"):
        datamodule.setup("test")


def test_missing_batch_file(tmp_path):
    write_batches(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    datamodule = make_module(tmp_path, tmp_path / "cache")
    datamodule.setup("test")

    with pytest.raises(CIFAR10NotFoundError, match=r"batch files missing in .*: \['data_batch_3'\]"):
        datamodule.setup("fit")


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        (None, "cannot unpickle it"),
        ([1, 2, 3], "it contains a list, expected a dict"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, r"the entries \['labels'\] are missing"),
        ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"data is a uint8 array of shape \(2, 1024\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "data is a float32 array"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but labels of shape"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "1 labels lie outside 0..9, the first is 10 at index 1"),
    ],
)
def test_corrupt_batch_file(tmp_path, contents, expected):
    write_batches(tmp_path)
    path = tmp_path / "test_batch"
    if contents is None:
        path.write_bytes(path.read_bytes()[:500])
    else:
        write_pickle(path, contents)
    datamodule = make_module(tmp_path, tmp_path / "cache")

    with pytest.raises(CIFAR10FormatError, match=expected) as excinfo:
        datamodule.setup("test")
    assert f"Invalid CIFAR-10 batch file {path}" in str(excinfo.value)


class _MakesFolder:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (str(self.path),))


def test_batch_with_foreign_global_not_executed(tmp_path):
    write_batches(tmp_path)
    marker = tmp_path / "created-by-unpickling"
    write_pickle(tmp_path / "test_batch", {b"data": _MakesFolder(marker), b"labels": []})
    datamodule = make_module(tmp_path, tmp_path / "cache")

    with pytest.raises(CIFAR10FormatError, match="refers to os.makedirs"):
        datamodule.setup("test")
    assert not marker.exists()


def test_meta_of_other_dataset(tmp_path):
    write_batches(tmp_path)
    write_pickle(tmp_path / "batches.meta", {b"label_names": [b"apple", b"aquarium_fish"]})
    datamodule = make_module(tmp_path, tmp_path / "cache")

    with pytest.raises(CIFAR10FormatError, match=r"the classes are \['apple', 'aquarium_fish'\]"):
        datamodule.setup("test")


def test_subset_larger_than_split(image_folder, tmp_path):
    root, _ = image_folder
    datamodule = make_module(root, tmp_path / "cache", test_subset=21)
    with pytest.raises(ValueError, match=r"test_subset=21 exceeds the 20 test images .* Pass at most 20"):
        datamodule.setup("test")


def test_val_size_too_large(image_folder, tmp_path):
    root, _ = image_folder
    datamodule = make_module(root, tmp_path / "cache", val_size=8, train_subset=8)
    with pytest.raises(ValueError, match=r"val_size=8 must be smaller than the 8 training images \(train_subset=8\)"):
        datamodule.setup("fit")


# Augmentation and loaders


def test_augment_changes_train_only(image_folder, tmp_path):
    root, written = image_folder
    datamodule = make_module(root, tmp_path / "cache", augment=True, val_size=4)
    datamodule.setup("fit")
    torch.manual_seed(0)

    base_index = datamodule.train_dataset.indices[0]
    exact = normalize(datamodule.train_dataset.dataset.images[base_index].permute(1, 2, 0).numpy())
    augmented = [datamodule.train_dataset[0][0] for _ in range(4)]
    assert all(image.shape == (3, 32, 32) for image in augmented)
    assert not any(torch.allclose(image, exact, atol=1e-3) for image in augmented)

    val_index = datamodule.val_dataset.indices[0]
    val_exact = normalize(datamodule.val_dataset.dataset.images[val_index].permute(1, 2, 0).numpy())
    assert torch.allclose(datamodule.val_dataset[0][0], val_exact, atol=1e-5)


def test_augment_steps():
    steps = [type(step).__name__ for step in CIFAR10DataModule().build_transform(train=True).transforms]
    jitter = CIFAR10DataModule().build_transform(train=True).transforms[1]

    assert steps == ["RandomCrop", "ColorJitter", "RandomHorizontalFlip", "ToDtype", "Normalize"]
    assert jitter.brightness == (0.8, 1.2)
    assert jitter.contrast == (0.8, 1.2)
    assert jitter.saturation is None
    assert jitter.hue == (-0.2, 0.2)


def test_dataloaders_batches_and_order(image_folder, tmp_path):
    root, _ = image_folder
    datamodule = make_module(root, tmp_path / "cache", batch_size=4, val_size=4, seed=1)
    datamodule.setup()

    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (4, 3, 32, 32)
    assert labels.dtype == torch.int64
    assert len(datamodule.val_dataloader()) == 1
    assert len(datamodule.test_dataloader()) == 5

    sampler = datamodule.train_dataloader().sampler
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


# Download


class FakeTorchvisionCIFAR10:
    """Stand-in for ``torchvision.datasets.CIFAR10`` that writes small valid batches, no network."""

    calls: list[str] = []

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        FakeTorchvisionCIFAR10.calls.append(root)
        if download:
            write_batches(Path(root) / "cifar-10-batches-py", per_batch=4, test=5)


def test_download_into_data_dir(tmp_path, monkeypatch):
    FakeTorchvisionCIFAR10.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeTorchvisionCIFAR10)
    datamodule = make_module(tmp_path / "new", tmp_path / "cache", download=True)
    datamodule.prepare_data()
    datamodule.prepare_data()
    datamodule.setup("test")

    assert FakeTorchvisionCIFAR10.calls == [str(tmp_path / "new")]
    assert len(datamodule.test_dataset) == 5


def test_download_failure(tmp_path, monkeypatch):
    def offline(root, train=True, download=False):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    datamodule = make_module(tmp_path / "new", tmp_path / "cache", download=True)
    with pytest.raises(CIFAR10NotFoundError, match="Downloading CIFAR-10 into .* failed: network unreachable"):
        datamodule.prepare_data()


# Lightning


def test_trainer_fit_and_test(image_folder, tmp_path):
    root, _ = image_folder
    datamodule = make_module(root, tmp_path / "cache", batch_size=5, val_size=5)
    model = NAClassifier(architecture="4C3-P2-16", input_shape=(3, 32, 32), padding=1, kernel="eager")
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=datamodule)
    results = trainer.test(model, datamodule=datamodule, verbose=False)

    assert trainer.global_step == 3
    assert 0.0 <= results[0]["test_acc"] <= 1.0


# Real data


def test_real_folder_scan(cifar10_dir):
    paths, labels = cifar10.scan_image_folder(cifar10_dir / "test")

    assert len(paths) == 10000
    assert np.bincount(labels).tolist() == [1000] * 10
    assert paths[0] == cifar10_dir / "test" / "airplane" / "0000.jpg"
    assert paths[11] == cifar10_dir / "test" / "automobile" / "0001.jpg"


def test_real_subset_decoded(cifar10_dir, tmp_path):
    datamodule = CIFAR10DataModule(
        data_dir=str(cifar10_dir), cache_dir=str(tmp_path), train_subset=40, test_subset=20, val_size=10, augment=False
    )
    datamodule.prepare_data()
    datamodule.setup()

    assert datamodule.find_layout() == ("images", cifar10_dir)
    assert len(datamodule.train_dataset) == 30
    assert datamodule.test_dataset.labels.tolist() == list(range(10)) * 2
    expected = np.asarray(Image.open(cifar10_dir / "test" / "ship" / "0001.jpg"))
    assert torch.allclose(datamodule.test_dataset[18][0], normalize(expected), atol=1e-5)
    # The 40 decoded training images are natural photographs, not blank or saturated.
    pixels = datamodule.train_dataset.dataset.images.float() / 255
    assert 0.3 < float(pixels.mean()) < 0.7
    assert float(pixels.std()) > 0.15
