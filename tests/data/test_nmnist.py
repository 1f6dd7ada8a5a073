"""Tests for NMNISTDataModule on the real N-MNIST subset and on files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import tonic.datasets

from na_lightning.cli import build_cli
from na_lightning.data.events import EventDataNotFoundError, ToBinnedFrames, read_nmnist_bin
from na_lightning.data.nmnist import NMNISTDataModule
from tests.conftest import DATA_ROOT, REPO_ROOT
from tests.data.test_events import encode_nmnist, random_events, reference_frames

REAL_DIR = DATA_ROOT / "nmnist"
TRAIN_COUNTS = [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]
TEST_COUNTS = [8, 14, 8, 11, 14, 7, 10, 15, 2, 11]

needs_real_data = pytest.mark.skipif(
    not (REAL_DIR / "Train" / "0" / "00002.bin").is_file(),
    reason=f"the real N-MNIST subset is not in {REAL_DIR}; set NA_LIGHTNING_DATA",
)


def write_fake_nmnist(root: Path, per_class: int = 2) -> None:
    """Write Train/<digit>/ and Test/<digit>/ with ``per_class`` random recordings per digit."""
    seed = 0
    for split in ("Train", "Test"):
        for digit in range(10):
            for index in range(per_class):
                seed += 1
                events = random_events(30, seed)
                path = root / split / str(digit) / f"{seed:05d}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(encode_nmnist(events["x"], events["y"], events["t"], events["p"]))


@needs_real_data
def test_real_file_first_events():
    events = read_nmnist_bin(REAL_DIR / "Train" / "0" / "00002.bin")

    assert len(events) == 5028
    assert events["x"][:5].tolist() == [10, 33, 12, 33, 14]
    assert events["y"][:5].tolist() == [30, 20, 27, 3, 23]
    assert events["p"][:5].tolist() == [1, 1, 1, 1, 0]
    assert events["t"][:5].tolist() == [937, 1030, 1052, 2078, 2383]


@needs_real_data
@pytest.mark.parametrize("time_steps", [30, 100])
def test_real_frames_match_reference(time_steps):
    events = read_nmnist_bin(REAL_DIR / "Train" / "0" / "00002.bin")
    expected = reference_frames(events, time_steps=time_steps)

    frames = ToBinnedFrames((34, 34, 2), time_steps=time_steps)(events)

    assert frames.shape == (time_steps, 2, 34, 34)
    assert frames.dtype == np.float32
    assert set(np.unique(frames).tolist()) == {0.0, 1.0}
    assert frames.sum(axis=(1, 2, 3)).tolist() == expected.sum(axis=(1, 2, 3)).tolist()
    np.testing.assert_array_equal(frames, expected)
    # The first event is at 937 µs, so bin 0 (events at exactly 0 µs) is empty.
    assert frames[0].sum() == 0
    assert frames[1, 1, 30, 10] == 1.0


@needs_real_data
def test_real_datamodule(tmp_path):
    datamodule = NMNISTDataModule(str(REAL_DIR), val_size=100, batch_size=50, cache_dir=str(tmp_path))

    datamodule.prepare_data()
    datamodule.setup()
    inputs, labels = next(iter(datamodule.train_dataloader()))
    train_labels = datamodule.train_dataset.dataset.labels

    assert len(datamodule.train_dataset) == 900
    assert len(datamodule.val_dataset) == 100
    assert len(datamodule.test_dataset) == 100
    assert torch.bincount(train_labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(datamodule.test_dataset.labels).tolist() == TEST_COUNTS
    assert inputs.shape == (50, 30, 2, 34, 34)
    assert inputs.dtype == torch.float32
    assert set(inputs.unique().tolist()) == {0.0, 1.0}
    assert labels.dtype == torch.int64
    assert datamodule.dims == (2, 34, 34)


@needs_real_data
def test_real_labels_follow_folders(tmp_path):
    datamodule = NMNISTDataModule(str(REAL_DIR), val_size=100, cache_dir=str(tmp_path))
    datamodule.setup("test")
    dataset = datamodule.test_dataset

    for path, label in zip(dataset.paths, dataset.labels.tolist()):
        assert path.parent.name == str(label)


def test_tonic_layout_found(tmp_path):
    write_fake_nmnist(tmp_path / "NMNIST")
    datamodule = NMNISTDataModule(str(tmp_path), val_size=4, cache_dir=str(tmp_path / "cache"))

    datamodule.prepare_data()
    datamodule.setup()

    assert len(datamodule.train_dataset) == 16
    assert len(datamodule.test_dataset) == 20


def test_missing_data_without_download(tmp_path):
    datamodule = NMNISTDataModule(str(tmp_path), val_size=4)

    with pytest.raises(EventDataNotFoundError) as excinfo:
        datamodule.prepare_data()

    assert "'Train'" in str(excinfo.value)
    assert "download=True" in str(excinfo.value)


class FakeTonicNMNIST:
    """Stands in for tonic.datasets.NMNIST: writes a tiny N-MNIST under save_to/NMNIST."""

    calls: list[tuple[str, bool]] = []

    def __init__(self, save_to: str, train: bool = True) -> None:
        FakeTonicNMNIST.calls.append((save_to, train))
        split = "Train" if train else "Test"
        for digit in range(10):
            path = Path(save_to) / "NMNIST" / split / str(digit) / "00001.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_nmnist([digit], [digit], [100 * digit], [1]))


def test_download_through_tonic(tmp_path, monkeypatch):
    FakeTonicNMNIST.calls.clear()
    monkeypatch.setattr(tonic.datasets, "NMNIST", FakeTonicNMNIST)
    datamodule = NMNISTDataModule(str(tmp_path / "nmnist"), val_size=2, download=True, cache_dir=str(tmp_path / "cache"))

    datamodule.prepare_data()
    datamodule.setup()
    frames, label = datamodule.test_dataset[3]

    assert FakeTonicNMNIST.calls == [(str(tmp_path / "nmnist"), True), (str(tmp_path / "nmnist"), False)]
    assert len(datamodule.train_dataset) == 8
    assert int(label) == 3
    assert frames[1, 1, 3, 3] == 1.0
    assert frames.sum() == 1


def test_no_download_when_present(tmp_path, monkeypatch):
    FakeTonicNMNIST.calls.clear()
    monkeypatch.setattr(tonic.datasets, "NMNIST", FakeTonicNMNIST)
    write_fake_nmnist(tmp_path)
    datamodule = NMNISTDataModule(str(tmp_path), val_size=2, download=True)

    datamodule.prepare_data()

    assert FakeTonicNMNIST.calls == []


def test_time_steps_100_shape(tmp_path):
    write_fake_nmnist(tmp_path, per_class=1)
    datamodule = NMNISTDataModule(str(tmp_path), time_steps=100, val_size=2, cache_dir=str(tmp_path / "cache"))
    datamodule.setup("fit")

    frames, _ = datamodule.train_dataset[0]

    assert frames.shape == (100, 2, 34, 34)


@needs_real_data
def test_recipe_config(tmp_path):
    config = str(REPO_ROOT / "configs" / "nmnist_cnn.yaml")
    cli = build_cli(
        [
            "--config", config,
            "--data.init_args.data_dir", str(REAL_DIR),
            "--data.init_args.val_size", "100",
            "--data.init_args.cache_dir", str(tmp_path),
            "--model.kernel", "eager",
        ],
        run=False,
    )
    hparams = cli.model.hparams
    layers = cli.model.network.layers

    assert hparams.architecture == "12C5-P2-64C5-P2-D0.2"
    assert tuple(hparams.input_shape) == (2, 34, 34)
    assert hparams.encoding == "events"
    assert (hparams.tau_m, hparams.tau_s, hparams.padding) == (8.0, 4.0, 1)
    assert (hparams.loss, hparams.true_count, hparams.false_count) == ("count", 15.0, 3.0)
    assert layers[0].conv.weight.shape == (12, 2, 5, 5)
    assert layers[-1].linear.weight.shape == (10, 64 * 7 * 7)
    assert isinstance(cli.datamodule, NMNISTDataModule)
    assert cli.datamodule.batch_size == 50
    assert cli.datamodule.transform.time_steps == 30

    cli.datamodule.setup("fit")
    frames = torch.stack([cli.datamodule.train_dataset[index][0] for index in range(2)])
    assert cli.model(frames).shape == (2, 10)
