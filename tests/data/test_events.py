"""Tests for event reading, binary framing, the frame cache and EventDataModule, on files written here."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tonic.dataset import Dataset as TonicDataset

from na_lightning.data.events import (
    EVENT_DTYPE,
    EventDataModule,
    EventDataNotFoundError,
    EventFileError,
    EventFolderError,
    FrameCache,
    ToBinnedFrames,
    read_events,
    read_nmnist_bin,
    read_npy_events,
    scan_event_folder,
)

SENSOR = (34, 34, 2)


def make_events(x, y, t, p) -> np.ndarray:
    events = np.zeros(len(x), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


def encode_nmnist(x, y, t, p) -> bytes:
    """Encode events in the N-MNIST format: x, y, polarity bit 7 + 23-bit timestamp (big-endian)."""
    data = bytearray()
    for xi, yi, ti, pi in zip(*(np.asarray(values).tolist() for values in (x, y, t, p))):
        data += bytes([xi, yi, (pi << 7) | ((ti >> 16) & 0x7F), (ti >> 8) & 0xFF, ti & 0xFF])
    return bytes(data)


def write_bin(path: Path, x, y, t, p) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_nmnist(x, y, t, p))
    return path


def random_events(count: int, seed: int, sensor=SENSOR, max_t: int = 120_000) -> np.ndarray:
    generator = np.random.default_rng(seed)
    t = np.sort(generator.integers(0, max_t, count))
    return make_events(
        generator.integers(0, sensor[0], count),
        generator.integers(0, sensor[1], count),
        t,
        generator.integers(0, sensor[2], count),
    )


def reference_frames(events, time_steps=30, width_us=3000, sensor=SENSOR, rounding="ceil"):
    """Slow, obviously correct framing: one event at a time, bin = ceil(t / w) or floor(t / w)."""
    frames = np.zeros((time_steps, sensor[2], sensor[1], sensor[0]), dtype=np.float32)
    for event in events:
        t = int(event["t"])
        index = -(-t // width_us) if rounding == "ceil" else t // width_us
        if index < time_steps:
            frames[index, int(event["p"]), int(event["y"]), int(event["x"])] = 1.0
    return frames


def write_folder(root: Path, layout: dict[str, dict[str, int]], suffix: str = ".bin") -> None:
    """Write ``{split: {class: recordings}}`` of random events under ``root``."""
    seed = 0
    for split, classes in layout.items():
        for name, count in classes.items():
            for index in range(count):
                seed += 1
                events = random_events(50, seed)
                path = root / split / name / f"{index:05d}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                if suffix == ".bin":
                    path.write_bytes(encode_nmnist(events["x"], events["y"], events["t"], events["p"]))
                else:
                    np.save(path, events)


# --------------------------------------------------------------------------------------------
# Reading


def test_read_nmnist_bin_decodes_fields(tmp_path):
    x, y, t, p = [0, 33, 5], [33, 0, 7], [0, 1030, 2**23 - 1], [1, 0, 1]
    events = read_nmnist_bin(write_bin(tmp_path / "a.bin", x, y, t, p))

    assert events.dtype == EVENT_DTYPE
    assert events["x"].tolist() == x
    assert events["y"].tolist() == y
    assert events["t"].tolist() == t
    assert events["p"].tolist() == p


def test_read_truncated_bin_names_file(tmp_path):
    path = tmp_path / "cut.bin"
    path.write_bytes(encode_nmnist([1, 2], [3, 4], [5, 6], [0, 1])[:-2])

    with pytest.raises(EventFileError) as excinfo:
        read_nmnist_bin(path)

    message = str(excinfo.value)
    assert str(path) in message
    assert "8 bytes" in message
    assert "multiple of 5" in message
    assert "again" in message


def test_read_empty_bin_gives_no_events(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")

    events = read_nmnist_bin(path)

    assert events.shape == (0,)
    assert events.dtype == EVENT_DTYPE


def test_read_npy_structured(tmp_path):
    events = random_events(10, seed=1)
    np.save(tmp_path / "a.npy", events)

    loaded = read_events(tmp_path / "a.npy")

    np.testing.assert_array_equal(loaded, events)


def test_read_npy_plain_array_rejected(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros((5, 4)))

    with pytest.raises(EventFileError, match="structured array") as excinfo:
        read_npy_events(tmp_path / "plain.npy")
    assert "plain.npy" in str(excinfo.value)


def test_read_npy_pickle_rejected(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)

    with pytest.raises(EventFileError, match="pickle"):
        read_npy_events(tmp_path / "objects.npy")


def test_read_unknown_suffix_rejected(tmp_path):
    (tmp_path / "a.aedat").write_bytes(b"x")

    with pytest.raises(EventFileError, match="'.aedat'"):
        read_events(tmp_path / "a.aedat")


# --------------------------------------------------------------------------------------------
# Framing


def test_frames_match_slow_reference():
    events = random_events(3000, seed=2)
    transform = ToBinnedFrames(SENSOR, time_steps=30)

    frames = transform(events)

    assert frames.shape == (30, 2, 34, 34)
    assert frames.dtype == np.float32
    np.testing.assert_array_equal(frames, reference_frames(events))


def test_floor_rounding_matches_reference():
    events = random_events(3000, seed=3)
    transform = ToBinnedFrames(SENSOR, time_steps=30, rounding="floor")

    np.testing.assert_array_equal(transform(events), reference_frames(events, rounding="floor"))


@pytest.mark.parametrize(
    ("rounding", "t", "expected_bin"),
    [
        ("ceil", 0, 0),
        ("ceil", 1, 1),
        ("ceil", 3000, 1),
        ("ceil", 3001, 2),
        ("ceil", 87000, 29),
        ("ceil", 87001, None),
        ("floor", 0, 0),
        ("floor", 2999, 0),
        ("floor", 3000, 1),
        ("floor", 89999, 29),
        ("floor", 90000, None),
    ],
)
def test_bin_edges(rounding, t, expected_bin):
    transform = ToBinnedFrames(SENSOR, time_steps=30, rounding=rounding)

    frames = transform(make_events([3], [4], [t], [1]))

    per_bin = frames.sum(axis=(1, 2, 3))
    if expected_bin is None:
        assert per_bin.sum() == 0
    else:
        assert per_bin.nonzero()[0].tolist() == [expected_bin]
        assert frames[expected_bin, 1, 4, 3] == 1.0


def test_non_square_sensor_orientation():
    sensor = (40, 20, 2)
    events = random_events(500, seed=7, sensor=sensor)

    frames = ToBinnedFrames(sensor, time_steps=30)(events)

    assert frames.shape == (30, 2, 20, 40)
    np.testing.assert_array_equal(frames, reference_frames(events, sensor=sensor))


def test_zero_events_give_zero_frames():
    frames = ToBinnedFrames(SENSOR, time_steps=30)(make_events([], [], [], []))

    assert frames.shape == (30, 2, 34, 34)
    assert frames.dtype == np.float32
    assert frames.sum() == 0


def test_single_event_sets_one_pixel():
    frames = ToBinnedFrames(SENSOR, time_steps=30)(make_events([10], [30], [937], [1]))

    assert frames.sum() == 1
    assert frames[1, 1, 30, 10] == 1.0


def test_duplicates_count_once_when_binary():
    events = make_events([5, 5, 5], [6, 6, 6], [100, 200, 2999], [0, 0, 0])

    binary = ToBinnedFrames(SENSOR, time_steps=5)(events)
    counts = ToBinnedFrames(SENSOR, time_steps=5, binary=False)(events)

    assert binary[1, 0, 6, 5] == 1.0
    assert binary.sum() == 1
    assert counts[1, 0, 6, 5] == 3.0


def test_counts_beyond_int16_are_exact():
    count = 40_000
    events = make_events(np.full(count, 2), np.full(count, 3), np.zeros(count, dtype=np.int64), np.ones(count))

    frames = ToBinnedFrames(SENSOR, time_steps=2, binary=False)(events)

    assert frames[0, 1, 3, 2] == count
    assert frames.sum() == count


def test_unsorted_timestamps_bin_by_time(caplog):
    events = random_events(500, seed=4)
    shuffled = events[np.random.default_rng(5).permutation(len(events))]
    transform = ToBinnedFrames(SENSOR, time_steps=30)

    with caplog.at_level(logging.WARNING, logger="na_lightning.data.events"):
        frames = transform(shuffled, source="shuffled.bin")

    np.testing.assert_array_equal(frames, transform(events))
    assert "shuffled.bin" in caplog.text
    assert "not sorted" in caplog.text


def test_x_outside_sensor_rejected():
    events = make_events([1, 34], [1, 1], [10, 20], [0, 1])

    with pytest.raises(EventFileError) as excinfo:
        ToBinnedFrames(SENSOR)(events, source="rec.npy")

    message = str(excinfo.value)
    assert "rec.npy" in message
    assert "event 1" in message
    assert "x=34" in message
    assert "0..33" in message
    assert "sensor_size" in message


def test_negative_y_rejected():
    with pytest.raises(EventFileError, match="y=-1"):
        ToBinnedFrames(SENSOR)(make_events([1], [-1], [10], [0]))


def test_single_polarity_recording_fills_one_channel():
    events = make_events([1, 2, 3], [4, 5, 6], [10, 3100, 6100], [0, 0, 0])

    frames = ToBinnedFrames(SENSOR, time_steps=30)(events)

    assert frames.shape == (30, 2, 34, 34)
    assert frames[:, 0].sum() == 3
    assert frames[:, 1].sum() == 0


def test_on_events_on_one_polarity_sensor_rejected():
    events = make_events([1, 2], [1, 2], [10, 20], [0, 1])

    with pytest.raises(EventFileError) as excinfo:
        ToBinnedFrames((34, 34, 1))(events, source="rec.npy")

    message = str(excinfo.value)
    assert "p=1" in message
    assert "rec.npy" in message
    assert "polarity='merge'" in message


def test_minus_one_polarity_rejected_with_fix():
    with pytest.raises(EventFileError, match=r"p=-1.*p = \(p > 0\)"):
        ToBinnedFrames(SENSOR)(make_events([1], [1], [10], [-1]))


def test_missing_polarity_field():
    events = np.zeros(2, dtype=[("x", "i2"), ("y", "i2"), ("t", "i8")])
    events["x"] = [1, 2]

    with pytest.raises(EventFileError, match=r"missing \['p'\]"):
        ToBinnedFrames(SENSOR)(events)
    frames = ToBinnedFrames((34, 34, 1))(events)
    assert frames.shape == (30, 1, 34, 34)
    assert frames[0, 0, 0, 1] == 1.0
    assert frames[0, 0, 0, 2] == 1.0


def test_merge_polarity_gives_one_channel():
    events = make_events([1, 1], [1, 1], [10, 20], [0, 1])

    frames = ToBinnedFrames(SENSOR, time_steps=3, polarity="merge")(events)

    assert frames.shape == (3, 1, 34, 34)
    assert frames[1, 0, 1, 1] == 1.0
    assert frames.sum() == 1


def test_first_event_origin():
    events = make_events([1, 2], [1, 1], [1_000_000, 1_003_500], [1, 1])

    zero = ToBinnedFrames(SENSOR, time_steps=30)(events)
    first = ToBinnedFrames(SENSOR, time_steps=30, time_origin="first_event")(events)

    assert zero.sum() == 0
    assert first[0, 1, 1, 1] == 1.0
    assert first[2, 1, 1, 2] == 1.0


def test_negative_timestamp_rejected():
    with pytest.raises(EventFileError, match="t=-5 µs.*first_event"):
        ToBinnedFrames(SENSOR)(make_events([1], [1], [-5], [0]))


def test_float_coordinates_rejected():
    events = np.zeros(1, dtype=[("x", "f4"), ("y", "i2"), ("t", "i8"), ("p", "i1")])

    with pytest.raises(EventFileError, match="'x' has dtype float32"):
        ToBinnedFrames(SENSOR)(events)


def test_float_timestamps_binned():
    events = np.zeros(2, dtype=[("x", "i2"), ("y", "i2"), ("t", "f8"), ("p", "i1")])
    events["t"] = [2999.5, 3000.5]

    frames = ToBinnedFrames(SENSOR, time_steps=5)(events)

    assert frames[:, 0, 0, 0].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("sensor", [(34, 34, 2), (34, 34, 1)])
def test_input_never_modified(sensor):
    events = random_events(400, seed=6, sensor=sensor)[::-1].copy()
    original = events.copy()

    ToBinnedFrames(sensor, time_steps=30)(events)
    ToBinnedFrames(sensor, time_steps=30, polarity="merge", time_origin="first_event")(events)

    np.testing.assert_array_equal(events, original)


def test_invalid_transform_options():
    with pytest.raises(ValueError, match="rounding='round'"):
        ToBinnedFrames(SENSOR, rounding="round")
    with pytest.raises(ValueError, match="sensor_size"):
        ToBinnedFrames((34, 34))
    with pytest.raises(ValueError, match="bin_width_us"):
        ToBinnedFrames(SENSOR, bin_width_us=0)


# --------------------------------------------------------------------------------------------
# Cache


def test_cache_round_trip(tmp_path):
    source = write_bin(tmp_path / "a.bin", [1], [2], [3], [1])
    frames = ToBinnedFrames(SENSOR)(read_events(source))
    cache = FrameCache(tmp_path / "cache", {"framing": "x"}, frames.shape, binary=True)
    cache.prepare()
    path = cache.path_for(source)

    assert cache.load(path) is None
    cache.store(path, frames)
    loaded = cache.load(path)

    np.testing.assert_array_equal(loaded, frames)
    assert loaded.dtype == np.float32
    assert path.stat().st_size == 30 * 2 * 34 * 34 // 8
    assert (cache.directory / "config.json").is_file()
    assert not list(cache.directory.glob("*.tmp"))


def test_cache_key_depends_on_config_and_file(tmp_path):
    source = write_bin(tmp_path / "a.bin", [1], [2], [3], [1])
    first = FrameCache(tmp_path, {"time_steps": 30}, (30, 2, 34, 34), True)
    other = FrameCache(tmp_path, {"time_steps": 100}, (100, 2, 34, 34), True)
    path = first.path_for(source)

    assert other.path_for(source) != path
    assert first.path_for(source) == path
    write_bin(source, [1, 2], [2, 2], [3, 4], [1, 1])
    assert first.path_for(source) != path


def test_cache_ignores_wrong_size_file(tmp_path, caplog):
    source = write_bin(tmp_path / "a.bin", [1], [2], [3], [1])
    cache = FrameCache(tmp_path / "cache", {}, (30, 2, 34, 34), True)
    cache.prepare()
    path = cache.path_for(source)
    path.write_bytes(b"\x00" * 10)

    with caplog.at_level(logging.WARNING, logger="na_lightning.data.events"):
        assert cache.load(path) is None
    assert "10 bytes" in caplog.text


def test_count_frames_cached_as_float(tmp_path):
    source = write_bin(tmp_path / "a.bin", [1, 1], [2, 2], [3, 4], [1, 1])
    transform = ToBinnedFrames(SENSOR, time_steps=4, binary=False)
    frames = transform(read_events(source))
    cache = FrameCache(tmp_path / "cache", {}, frames.shape, binary=False)
    cache.prepare()
    path = cache.path_for(source)

    cache.store(path, frames)

    np.testing.assert_array_equal(cache.load(path), frames)
    assert cache.load(path)[1, 1, 2, 1] == 2.0


def test_unwritable_cache_dir_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = FrameCache(blocker / "cache", {}, (30, 2, 34, 34), True)

    with pytest.raises(OSError, match="cache=False"):
        cache.prepare()


# --------------------------------------------------------------------------------------------
# Folders and the data module


def test_scan_sorts_classes_and_files(tmp_path):
    write_folder(tmp_path, {"train": {"b": 2, "a": 1, "c": 1}})
    (tmp_path / "train" / "a" / "notes.txt").write_text("ignored")

    classes, paths, labels = scan_event_folder(tmp_path / "train")

    assert classes == ("a", "b", "c")
    assert [path.relative_to(tmp_path).as_posix() for path in paths] == [
        "train/a/00000.bin",
        "train/b/00000.bin",
        "train/b/00001.bin",
        "train/c/00000.bin",
    ]
    assert labels == [0, 1, 1, 2]


def test_scan_empty_class_folder_rejected(tmp_path):
    write_folder(tmp_path, {"train": {"a": 1}})
    (tmp_path / "train" / "b").mkdir()

    with pytest.raises(EventFolderError) as excinfo:
        scan_event_folder(tmp_path / "train")

    assert str(tmp_path / "train" / "b") in str(excinfo.value)
    assert "remove the folder" in str(excinfo.value)


def test_scan_without_class_folders_rejected(tmp_path):
    (tmp_path / "train").mkdir()

    with pytest.raises(EventFolderError, match="No class folders"):
        scan_event_folder(tmp_path / "train")


def test_scan_unknown_class_rejected(tmp_path):
    write_folder(tmp_path, {"test": {"a": 1, "z": 1}})

    with pytest.raises(EventFolderError, match=r"\['z'\]"):
        scan_event_folder(tmp_path / "test", classes=("a", "b"))


def test_train_order_depends_on_epoch_only(tmp_path):
    write_folder(tmp_path / "data", {"train": {"cat": 8, "dog": 8}, "test": {"dog": 1}})
    datamodule = EventDataModule(
        str(tmp_path / "data"), sensor_size=SENSOR, batch_size=16, val_size=0, cache_dir=str(tmp_path / "cache")
    )
    datamodule.setup("fit")

    def epoch_order(epoch):
        # A new loader per epoch, as after resuming from a checkpoint.
        loader = datamodule.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return list(loader.sampler)

    assert epoch_order(1) == epoch_order(1)
    assert epoch_order(1) != epoch_order(0)
    assert sorted(epoch_order(1)) == list(range(16))


@pytest.mark.parametrize("suffix", [".bin", ".npy"])
def test_datamodule_on_folder(tmp_path, suffix):
    write_folder(tmp_path / "data", {"train": {"cat": 6, "dog": 6}, "test": {"dog": 3}}, suffix)
    datamodule = EventDataModule(
        str(tmp_path / "data"), sensor_size=SENSOR, batch_size=4, val_size=3, cache_dir=str(tmp_path / "cache")
    )

    datamodule.setup()
    inputs, labels = next(iter(datamodule.train_dataloader()))
    test_labels = [int(label) for _, label in datamodule.test_dataset]

    assert datamodule.classes == ("cat", "dog")
    assert datamodule.num_classes == 2
    assert len(datamodule.train_dataset) == 9
    assert len(datamodule.val_dataset) == 3
    assert inputs.shape == (4, 30, 2, 34, 34)
    assert inputs.dtype == torch.float32
    assert set(inputs.unique().tolist()) <= {0.0, 1.0}
    assert labels.dtype == torch.int64
    assert test_labels == [1, 1, 1]


def test_datamodule_frames_match_reference(tmp_path):
    write_folder(tmp_path / "data", {"train": {"a": 2}})
    datamodule = EventDataModule(
        str(tmp_path / "data"), sensor_size=SENSOR, val_size=1, cache_dir=str(tmp_path / "cache")
    )
    datamodule.setup("fit")
    dataset = datamodule.train_dataset.dataset

    for index, path in enumerate(dataset.paths):
        frames, _ = dataset[index]
        np.testing.assert_array_equal(frames.numpy(), reference_frames(read_events(path)))


def test_split_is_seeded(tmp_path):
    write_folder(tmp_path / "data", {"train": {"a": 10, "b": 10}})

    def val_indices(seed):
        datamodule = EventDataModule(
            str(tmp_path / "data"), sensor_size=SENSOR, val_size=5, seed=seed, cache=False
        )
        datamodule.setup("fit")
        return list(datamodule.val_dataset.indices)

    assert val_indices(0) == val_indices(0)
    assert val_indices(0) != val_indices(1)
    assert len(val_indices(0)) == 5


def test_cache_hit_skips_reading(tmp_path):
    write_folder(tmp_path / "data", {"train": {"a": 2}})
    datamodule = EventDataModule(
        str(tmp_path / "data"), sensor_size=SENSOR, val_size=1, cache_dir=str(tmp_path / "cache")
    )
    datamodule.setup("fit")
    dataset = datamodule.train_dataset.dataset
    first = dataset[0][0]

    def fail(index):
        raise AssertionError(f"recording {index} was read despite a cached copy")

    dataset.read = fail
    np.testing.assert_array_equal(dataset[0][0], first)


def test_cache_reframes_changed_file_and_options(tmp_path):
    write_folder(tmp_path / "data", {"train": {"a": 2}})
    cache_dir = str(tmp_path / "cache")

    def first_frames(**options):
        datamodule = EventDataModule(
            str(tmp_path / "data"), sensor_size=SENSOR, val_size=1, cache_dir=cache_dir, **options
        )
        datamodule.setup("fit")
        return datamodule.train_dataset.dataset[0][0]

    before = first_frames()
    assert first_frames(time_steps=10).shape == (10, 2, 34, 34)
    wider = first_frames(bin_width_us=6000.0)
    assert not torch.equal(wider, before)
    np.testing.assert_array_equal(first_frames(), before)

    path = tmp_path / "data" / "train" / "a" / "00000.bin"
    stat = path.stat()
    write_bin(path, [7], [8], [10], [1])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = first_frames()

    assert changed.sum() == 1
    assert changed[1, 1, 8, 7] == 1.0


def test_datamodule_bad_file_error_names_it(tmp_path):
    write_folder(tmp_path / "data", {"train": {"a": 3}})
    bad = tmp_path / "data" / "train" / "a" / "00001.bin"
    bad.write_bytes(bad.read_bytes()[:-1])
    datamodule = EventDataModule(str(tmp_path / "data"), sensor_size=SENSOR, val_size=1, cache=False)
    datamodule.setup("fit")

    with pytest.raises(EventFileError, match="00001.bin"):
        datamodule.train_dataset.dataset[1]


def test_val_size_too_large(tmp_path):
    write_folder(tmp_path / "data", {"train": {"a": 3}})
    datamodule = EventDataModule(str(tmp_path / "data"), sensor_size=SENSOR, val_size=3, cache=False)

    with pytest.raises(ValueError, match="val_size=3 must be smaller than the 3"):
        datamodule.setup("fit")


def test_missing_split_folder(tmp_path):
    datamodule = EventDataModule(str(tmp_path), sensor_size=SENSOR, cache=False)

    with pytest.raises(EventDataNotFoundError, match="'train' not found"):
        datamodule.setup("fit")


def test_datamodule_requires_sensor_size(tmp_path):
    with pytest.raises(ValueError, match="sensor_size is required"):
        EventDataModule(str(tmp_path))


def test_loader_before_setup(tmp_path):
    datamodule = EventDataModule(str(tmp_path), sensor_size=SENSOR)

    with pytest.raises(RuntimeError, match=r"setup\('fit'\)"):
        datamodule.train_dataloader()


class FakeTonicDataset(TonicDataset):
    """A tonic-style dataset: files under save_to/FakeTonicDataset, downloaded in the constructor."""

    sensor_size = (34, 34, 2)
    classes = ["zero", "one"]
    downloads: list[bool] = []

    def __init__(self, save_to, train=True, transform=None):
        super().__init__(save_to, transform=transform)
        self.folder = Path(self.location_on_system) / ("train" if train else "test")
        if not self.folder.is_dir():
            self.download()
        for path in sorted(self.folder.glob("*.npy")):
            self.data.append(str(path))
            self.targets.append(int(path.stem[-1]))

    def download(self):
        FakeTonicDataset.downloads.append(True)
        for index in range(6):
            path = self.folder / f"{index:03d}_{index % 2}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, random_events(40, seed=index))

    def __getitem__(self, index):
        return np.load(self.data[index]), self.targets[index]

    def __len__(self):
        return len(self.data)


def test_tonic_dataset_without_download_raises(tmp_path):
    FakeTonicDataset.downloads.clear()
    datamodule = EventDataModule(str(tmp_path), tonic_dataset=FakeTonicDataset, val_size=2, cache=False)

    with pytest.raises(EventDataNotFoundError, match="download=True"):
        datamodule.setup("fit")
    assert FakeTonicDataset.downloads == []


def test_tonic_dataset_downloads_in_prepare_data(tmp_path):
    FakeTonicDataset.downloads.clear()
    datamodule = EventDataModule(
        str(tmp_path), tonic_dataset=FakeTonicDataset, val_size=2, download=True, cache_dir=str(tmp_path / "cache")
    )

    datamodule.prepare_data()
    datamodule.setup()
    dataset = datamodule.train_dataset.dataset
    frames, label = dataset[3]

    assert FakeTonicDataset.downloads == [True, True]
    assert datamodule.classes == ("zero", "one")
    assert len(datamodule.train_dataset) == 4
    assert len(datamodule.test_dataset) == 6
    assert type(dataset.read.dataset) is FakeTonicDataset
    assert int(label) == 1
    np.testing.assert_array_equal(frames.numpy(), reference_frames(np.load(dataset.paths[3])))
    assert len(list(Path(tmp_path / "cache").rglob("*.frames"))) == 1


def test_tonic_kwargs_reserved_names(tmp_path):
    with pytest.raises(ValueError, match=r"\['train'\]"):
        EventDataModule(str(tmp_path), tonic_dataset=FakeTonicDataset, tonic_kwargs={"train": False})


def test_tonic_dataset_import_path_invalid(tmp_path):
    with pytest.raises(ValueError, match="tonic.datasets.NoSuchSet"):
        EventDataModule(str(tmp_path), tonic_dataset="tonic.datasets.NoSuchSet")


def test_real_tonic_class_never_downloads_in_setup(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("setup tried to download")

    monkeypatch.setattr("tonic.dataset.download_and_extract_archive", no_network)
    datamodule = EventDataModule(str(tmp_path), tonic_dataset="tonic.datasets.NMNIST", cache=False)

    with pytest.raises(EventDataNotFoundError) as excinfo:
        datamodule.setup("fit")

    assert "NMNIST is not in" in str(excinfo.value)
    assert "download=True" in str(excinfo.value)
    assert datamodule.transform.sensor_size == (34, 34, 2)
