"""Event-camera recordings as binary frames, with a disk cache and a Lightning data module.

An event is ``(x, y, t, p)``: pixel column and row, timestamp in microseconds and polarity
(1 = ON, brightness increase; 0 = OFF). A recording is a 1-D numpy structured array with the
fields ``x``, ``y``, ``t`` and, for sensors with two polarities, ``p``.

:class:`ToBinnedFrames` turns a recording into frames ``[T, C, H, W]``. It cuts time into bins
of ``bin_width_us`` from the time origin and keeps the first ``T`` bins. Each frame marks the
pixels and polarities that had at least one event in its bin. :class:`EventDataModule`
reads recordings from a folder ``<data_dir>/<split>/<class>/<file>`` or from a tonic dataset,
frames each recording on first access and caches the frames on disk.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import numbers
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tonic
import torch
from tonic.io import read_mnist_file
from tonic.transforms import ToFrame
from torch.utils.data import Dataset, Subset, random_split

from na_lightning.data.errors import DataNotFoundError
from na_lightning.data._loaders import SplitDataModule

logger = logging.getLogger(__name__)

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
"""Structured dtype of decoded recordings: pixel column, pixel row, time in µs, polarity."""

NMNIST_EVENT_BYTES = 5
"""Bytes per event in the N-MNIST binary format."""

EVENT_SUFFIXES = (".bin", ".npy")
"""File suffixes that :func:`read_events` decodes: N-MNIST binary and numpy structured arrays."""

BIN_ROUNDINGS = ("ceil", "floor")
TIME_ORIGINS = ("zero", "first_event")
POLARITY_MODES = ("split", "merge")

CACHE_FORMAT = 1
"""Version of the cache file layout, which is part of every cache key."""

_DEFAULT_CACHE_DIR = Path.home() / ".cache" / "na_lightning" / "event_frames"
_STAGES = ("fit", "validate", "test", "predict")
_TONIC_FRAME_LIMIT = int(np.iinfo(np.int16).max)


class EventFileError(ValueError):
    """Raised when a recording is truncated, malformed or does not fit the declared sensor."""


class EventFolderError(ValueError):
    """Raised when a dataset folder does not have the ``<split>/<class>/<file>`` layout."""


class EventDataNotFoundError(DataNotFoundError):
    """Raised when a split folder or a tonic dataset is not on disk and may not be downloaded."""


# --------------------------------------------------------------------------------------------
# Reading recordings


def read_nmnist_bin(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an N-MNIST binary recording.

    Each event is 5 bytes: x, y, then the polarity in bit 7 of byte 2 and a 23-bit big-endian
    timestamp in µs in the remaining bits of bytes 2 to 4. ``tonic.io.read_mnist_file`` decodes
    the events and also applies the format's timestamp-overflow events (``y == 240``). The file
    length is checked first, because tonic 1.7 fails with a shape error on a truncated file.

    Args:
        path: a ``.bin`` file.

    Returns:
        Structured array ``[N]`` of :data:`EVENT_DTYPE`; ``N`` may be 0.

    Raises:
        EventFileError: the file length is not a multiple of 5 bytes.
    """
    path = Path(path)
    size = path.stat().st_size
    extra = size % NMNIST_EVENT_BYTES
    if extra:
        raise EventFileError(
            f"Invalid N-MNIST file {path}: its length of {size} bytes is not a multiple of "
            f"{NMNIST_EVENT_BYTES} bytes per event, so the last event is truncated "
            f"({extra} bytes left over). Copy or download the file again."
        )
    return read_mnist_file(str(path), dtype=EVENT_DTYPE)


def read_npy_events(path: str | os.PathLike[str]) -> np.ndarray:
    """Load a recording saved with ``numpy.save`` as a 1-D structured array.

    The array needs the fields ``x``, ``y`` and ``t`` (µs), and ``p`` unless the sensor has
    one polarity. Pickled arrays are rejected.

    Returns:
        The structured array ``[N]`` as stored. :class:`ToBinnedFrames` checks its fields.

    Raises:
        EventFileError: the file is not a 1-D structured array with those fields.
    """
    path = Path(path)
    try:
        events = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise EventFileError(
            f"Invalid event file {path}: numpy cannot load it without pickle ({error}). "
            "Save recordings with numpy.save(path, events) as a structured array with the "
            "fields x, y, t, p."
        ) from error
    if not isinstance(events, np.ndarray) or events.dtype.names is None or events.ndim != 1:
        found = f"an array of dtype {events.dtype} and shape {events.shape}"
        raise EventFileError(
            f"Invalid event file {path}: expected a 1-D structured array with the fields "
            f"x, y, t, p, found {found}. Save recordings as numpy structured arrays, e.g. "
            "numpy.zeros(n, dtype=[('x', 'i2'), ('y', 'i2'), ('t', 'i8'), ('p', 'i1')])."
        )
    return events


def read_events(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a recording by its suffix: ``.bin`` (N-MNIST binary) or ``.npy`` (structured array).

    Raises:
        EventFileError: the suffix is not one of :data:`EVENT_SUFFIXES`, or the file is invalid.
    """
    path = Path(path)
    if path.suffix == ".bin":
        return read_nmnist_bin(path)
    if path.suffix == ".npy":
        return read_npy_events(path)
    raise EventFileError(
        f"Unsupported event file {path}: suffix {path.suffix!r} is not one of {EVENT_SUFFIXES}. "
        "Convert the recording to a numpy structured array and save it as .npy."
    )


# --------------------------------------------------------------------------------------------
# Framing


@dataclass(frozen=True)
class ToBinnedFrames:
    """Transform a recording into frames ``[T, C, H, W]`` of time bins from the recording start.

    An event at time ``t`` (µs) falls into bin ``ceil((t - origin) / bin_width_us)`` with
    ``rounding="ceil"`` or ``floor((t - origin) / bin_width_us)`` with ``rounding="floor"``.
    Bins ``0 .. T-1`` become the frames and later events are dropped. ``"ceil"`` is the
    binning of the N-MNIST preprocessing used to train NA. With it, bin 0 contains only events
    at exactly ``t = origin``, so it is almost always empty. Bin ``k >= 1`` contains
    ``(origin + (k-1) w, origin + k w]``, and the ``T`` frames cover
    ``[origin, origin + (T-1) w]``: 87 ms for ``T = 30`` and ``w = 3000``. With ``"floor"``,
    bin ``k`` contains ``[origin + k w, origin + (k+1) w)`` and the frames cover ``T w``. That
    is how ``tonic.transforms.ToFrame(time_window=w, start_time=origin)`` bins.

    Frames are float32. With ``binary=True`` a pixel is 1 when its polarity channel had at
    least one event in the bin (duplicates count once), else 0. With ``binary=False`` it is
    the number of events. Timestamps need not be sorted, because binning does not depend on
    event order, but an unsorted recording is logged as a warning. The input array is never
    modified.

    Args:
        sensor_size: ``(W, H, P)``: width and height in pixels, number of polarities.
        time_steps: frames ``T`` to keep.
        bin_width_us: bin width ``w``, in µs.
        rounding: ``"ceil"`` or ``"floor"``, see above.
        time_origin: ``"zero"`` starts the bins at ``t = 0`` µs, the start of an N-MNIST
            recording. ``"first_event"`` starts them at the earliest timestamp of the
            recording, for timestamps that do not start at 0.
        polarity: ``"split"`` gives one channel per polarity, ``C = P``, and ``p`` must lie
            in ``0 .. P-1``. ``"merge"`` puts all events in one channel, ``C = 1``, and
            ignores ``p``.
        binary: binary frames (True) or event counts (False).

    Example:
        >>> transform = ToBinnedFrames(sensor_size=(34, 34, 2), time_steps=30)
        >>> events = np.zeros(2, dtype=EVENT_DTYPE)
        >>> events["t"] = [0, 3000]
        >>> frames = transform(events)
        >>> frames.shape, frames.dtype, frames[:2].sum(axis=(1, 2, 3)).tolist()
        ((30, 2, 34, 34), dtype('float32'), [1.0, 1.0])
    """

    sensor_size: tuple[int, int, int]
    time_steps: int = 30
    bin_width_us: float = 3000.0
    rounding: str = "ceil"
    time_origin: str = "zero"
    polarity: str = "split"
    binary: bool = True

    def __post_init__(self) -> None:
        if len(self.sensor_size) != 3:
            raise ValueError(
                f"sensor_size={self.sensor_size!r} is invalid. Expected (width, height, "
                "polarities), e.g. (34, 34, 2) for N-MNIST."
            )
        for name, value in zip(("width", "height", "polarities"), self.sensor_size):
            _check_count(f"sensor_size {name}", value, minimum=1)
        object.__setattr__(self, "sensor_size", tuple(int(size) for size in self.sensor_size))
        _check_count("time_steps", self.time_steps, minimum=1)
        if not np.isfinite(self.bin_width_us) or self.bin_width_us <= 0:
            raise ValueError(f"bin_width_us must be a positive number of µs, got {self.bin_width_us!r}")
        _check_choice("rounding", self.rounding, BIN_ROUNDINGS)
        _check_choice("time_origin", self.time_origin, TIME_ORIGINS)
        _check_choice("polarity", self.polarity, POLARITY_MODES)

    @property
    def channels(self) -> int:
        """Channels ``C`` of a frame: the sensor's polarities, or 1 with ``polarity="merge"``."""
        return self.sensor_size[2] if self.polarity == "split" else 1

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """Shape ``(T, C, H, W)`` of the output."""
        width, height, _ = self.sensor_size
        return (self.time_steps, self.channels, height, width)

    def config(self) -> dict[str, Any]:
        """Return the fields as a JSON-serializable dict (part of every cache key)."""
        fields = asdict(self)
        fields["sensor_size"] = list(self.sensor_size)
        fields["bin_width_us"] = float(self.bin_width_us)
        return fields

    def __call__(self, events: np.ndarray, source: str = "events") -> np.ndarray:
        """Frame one recording.

        Args:
            events: structured array ``[N]`` with the fields ``x``, ``y``, ``t`` (µs) and ``p``
                (``p`` may be absent when ``C = 1``). It is not modified.
            source: the recording's name in error messages and logs, usually its path.

        Returns:
            float32 array ``[T, C, H, W]``.

        Raises:
            EventFileError: a field is missing or not numeric, a coordinate lies outside the
                sensor, a polarity is outside ``0 .. P-1``, or a timestamp is before the origin
                or not finite. The message names ``source``, the event and the fix.
        """
        x, y, t, channel = self._checked_fields(events, source)
        origin = self._origin(t)
        bins = self._bin_indices(t, origin, source)
        keep = bins < self.time_steps
        if len(t) and not keep.any():
            logger.warning(
                "%s: all %d events lie after the first %d bins of %s µs from t=%s µs, so its "
                "frames are empty. Set time_origin='first_event' if its timestamps do not "
                "start at 0.",
                source, len(t), self.time_steps, self.bin_width_us, origin,
            )
        return self._accumulate(x[keep], y[keep], bins[keep], channel[keep])

    def _checked_fields(
        self, events: np.ndarray, source: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        names = getattr(getattr(events, "dtype", None), "names", None)
        if names is None or events.ndim != 1:
            raise EventFileError(
                f"{source}: expected a 1-D numpy structured array with the fields x, y, t, p, "
                f"got {type(events).__name__} {getattr(events, 'dtype', '')}. Build one with "
                "numpy.zeros(n, dtype=[('x', 'i2'), ('y', 'i2'), ('t', 'i8'), ('p', 'i1')])."
            )
        needs_polarity = self.polarity == "split" and self.sensor_size[2] > 1
        required = ("x", "y", "t", "p") if needs_polarity else ("x", "y", "t")
        missing = [name for name in required if name not in names]
        if missing:
            fix = (
                " For a sensor with one polarity, declare sensor_size=(W, H, 1) or pass "
                "polarity='merge'."
                if missing == ["p"]
                else ""
            )
            raise EventFileError(
                f"{source}: the events have the fields {names}, missing {missing}. Expected "
                f"x, y, t (µs) and p.{fix}"
            )

        for name in ("x", "y", "p"):
            if name in names and not _is_integer_dtype(events.dtype[name]):
                raise EventFileError(
                    f"{source}: field {name!r} has dtype {events.dtype[name]}, expected integers. "
                    f"Round and cast it, e.g. events[{name!r}].astype('int16')."
                )
        if not (_is_integer_dtype(events.dtype["t"]) or np.issubdtype(events.dtype["t"], np.floating)):
            raise EventFileError(
                f"{source}: field 't' has dtype {events.dtype['t']}, expected integer or float µs."
            )

        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        t = events["t"].astype(np.int64 if _is_integer_dtype(events.dtype["t"]) else np.float64)
        width, height, polarities = self.sensor_size
        _check_range(source, "x", x, width, "width", self.sensor_size)
        _check_range(source, "y", y, height, "height", self.sensor_size)

        if self.polarity == "merge" or "p" not in names:
            channel = np.zeros(len(events), dtype=np.int64)
        else:
            channel = events["p"].astype(np.int64)
            invalid = np.flatnonzero((channel < 0) | (channel >= polarities))
            if invalid.size:
                index = int(invalid[0])
                fix = (
                    "Map OFF events to 0 and ON events to 1, e.g. p = (p > 0)."
                    if polarities == 2
                    else f"Declare sensor_size=({width}, {height}, 2) for ON/OFF events, or "
                    "pass polarity='merge' to ignore polarity."
                )
                raise EventFileError(
                    f"{source}: event {index} has polarity p={channel[index]}, expected "
                    f"0..{polarities - 1} for sensor_size {self.sensor_size} "
                    f"({invalid.size} such events). {fix}"
                )

        if np.issubdtype(t.dtype, np.floating) and not np.isfinite(t).all():
            index = int(np.flatnonzero(~np.isfinite(t))[0])
            raise EventFileError(
                f"{source}: event {index} has timestamp t={t[index]}, expected a finite "
                "number of µs. Drop or repair that event."
            )
        if len(t) > 1:
            decreasing = np.flatnonzero(np.diff(t) < 0)
            if decreasing.size:
                index = int(decreasing[0]) + 1
                logger.warning(
                    "%s: timestamps are not sorted (event %d at t=%s µs follows t=%s µs, %d "
                    "decreases). Each event is binned by its own timestamp.",
                    source, index, t[index], t[index - 1], decreasing.size,
                )
        return x, y, t, channel

    def _origin(self, t: np.ndarray) -> int | float:
        if self.time_origin == "zero" or len(t) == 0:
            return 0
        return t.min().item()

    def _bin_indices(self, t: np.ndarray, origin: int | float, source: str) -> np.ndarray:
        delta = t - origin
        negative = np.flatnonzero(delta < 0)
        if negative.size:
            index = int(negative[0])
            raise EventFileError(
                f"{source}: event {index} has timestamp t={t[index]} µs, before the time origin "
                f"{origin} µs ({negative.size} such events). Pass time_origin='first_event' or "
                "shift the timestamps so that the recording starts at 0."
            )

        width = self.bin_width_us
        if float(width).is_integer() and np.issubdtype(delta.dtype, np.integer):
            width = int(width)
        if self.rounding == "ceil":
            bins = -np.floor_divide(-delta, width)
        else:
            bins = np.floor_divide(delta, width)
        return bins.astype(np.int64)

    def _accumulate(
        self, x: np.ndarray, y: np.ndarray, bins: np.ndarray, channel: np.ndarray
    ) -> np.ndarray:
        """Accumulate binned events into frames with ``tonic.transforms.ToFrame``.

        ToFrame in tonic 1.7 bins from the first event unless ``start_time`` is set, and it
        needs sorted timestamps. It returns int16 counts, and an array of another shape and
        dtype for an empty recording. For one-polarity sensors it sets ``p`` to 0 in its input.
        So ToFrame gets a new array, sorted, with the bin index as timestamp and one time unit
        per bin. Empty recordings never reach it, and counts are summed in chunks small enough
        that no int16 count can overflow.
        """
        counts = np.zeros(self.frame_shape, dtype=np.int32)
        if len(bins):
            order = np.argsort(bins, kind="stable")
            binned = np.empty(len(bins), dtype=EVENT_DTYPE)
            binned["x"] = x[order]
            binned["y"] = y[order]
            binned["t"] = bins[order]
            binned["p"] = channel[order]

            width, height, _ = self.sensor_size
            to_frame = ToFrame(
                sensor_size=(width, height, self.channels),
                time_window=1,
                start_time=0,
                end_time=self.time_steps,
            )
            for start in range(0, len(binned), _TONIC_FRAME_LIMIT):
                counts += to_frame(binned[start : start + _TONIC_FRAME_LIMIT])

        if self.binary:
            return (counts > 0).astype(np.float32)
        return counts.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Cache


class FrameCache:
    """Disk cache of framed recordings, one ``.frames`` file per recording.

    The key of a recording hashes (SHA-256) the framing configuration (every field of
    :class:`ToBinnedFrames`, the dataset source, the cache format and tonic's version) together
    with the recording file's absolute path, size and modification time, so that other framing
    options never return old frames and a changed file is framed again. Files live in
    ``<directory>/<configuration digest>/`` beside a ``config.json`` that lists the
    configuration. They are written to a temporary file and renamed into place, so readers
    never see a partial file. Stale entries are not deleted: remove the folder to reclaim space.

    A file contains the raw frame values in C order: bit-packed for binary frames
    (``T * C * H * W / 8`` bytes: 8,670 bytes for N-MNIST with ``T = 30``), little-endian
    float32 for count frames.

    Args:
        directory: a writable folder, created when missing.
        config: JSON-serializable framing configuration.
        frame_shape: ``(T, C, H, W)`` of the frames.
        binary: whether the frames are binary.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        config: Mapping[str, Any],
        frame_shape: Sequence[int],
        binary: bool,
    ) -> None:
        self.config = {"cache_format": CACHE_FORMAT, "tonic": tonic.__version__, **config}
        self.digest = _digest(self.config)
        self.directory = Path(directory).expanduser() / self.digest[:16]
        self.frame_shape = tuple(int(size) for size in frame_shape)
        self.binary = binary
        self._values = int(np.prod(self.frame_shape))
        self.file_size = (self._values + 7) // 8 if binary else 4 * self._values
        self._store_failed = False

    def prepare(self) -> None:
        """Create the folder and write ``config.json``.

        Raises:
            OSError: the folder cannot be created or written. The message names it and the fix.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            config_path = self.directory / "config.json"
            if not config_path.is_file():
                _write_atomic(config_path, json.dumps(self.config, indent=2, default=repr).encode())
        except OSError as error:
            raise OSError(
                f"Cannot write the frame cache in {self.directory}: {error}. Pass a writable "
                "cache_dir, or cache=False to frame every recording on each access."
            ) from error

    def path_for(self, source: Path) -> Path:
        """Return the cache file of a recording file, keyed by its current size and mtime."""
        stat = source.stat()
        identity = {
            "config": self.digest,
            "path": os.path.abspath(source),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
        }
        return self.directory / f"{_digest(identity)[:32]}.frames"

    def load(self, path: Path) -> np.ndarray | None:
        """Return the cached float32 frames ``[T, C, H, W]``, or None on a miss.

        A cache file that cannot be read or has the wrong size is logged and treated as a miss.
        """
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            logger.warning("Ignoring unreadable cache file %s: %s", path, error)
            return None

        if len(payload) != self.file_size:
            logger.warning(
                "Ignoring cache file %s of %d bytes, expected %d", path, len(payload), self.file_size
            )
            return None
        if self.binary:
            bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), count=self._values)
            return bits.reshape(self.frame_shape).astype(np.float32)
        return np.frombuffer(payload, dtype="<f4").reshape(self.frame_shape).astype(np.float32)

    def store(self, path: Path, frames: np.ndarray) -> None:
        """Write frames ``[T, C, H, W]`` atomically. A failed write is logged once and skipped."""
        if self.binary:
            payload = np.packbits(frames.reshape(-1) > 0).tobytes()
        else:
            payload = frames.astype("<f4").tobytes()
        try:
            _write_atomic(path, payload)
        except OSError as error:
            if not self._store_failed:
                logger.warning(
                    "Cannot write frame cache file %s (%s). Recordings are framed on each "
                    "access until the cache folder is writable.", path, error,
                )
                self._store_failed = True


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file in the same folder, then rename it to ``path``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _digest(value: Mapping[str, Any]) -> str:
    text = json.dumps(value, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Datasets


class EventFrameDataset(Dataset):
    """Recordings framed on access, with frames cached on disk when a cache is given.

    Args:
        paths: the file of each recording, or None where a recording has no file (never cached).
        labels: class index of each recording.
        read: loads the events of recording ``index`` as a structured array.
        transform: frames one recording.
        cache: frame cache, or None to frame on every access.
    """

    def __init__(
        self,
        paths: Sequence[Path | None],
        labels: Sequence[int],
        read: Callable[[int], np.ndarray],
        transform: ToBinnedFrames,
        cache: FrameCache | None = None,
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"got {len(paths)} recordings but {len(labels)} labels")
        self.paths = list(paths)
        self.labels = torch.as_tensor(list(labels), dtype=torch.int64)
        self.read = read
        self.transform = transform
        self.cache = cache

    def __len__(self) -> int:
        return len(self.paths)

    def frames(self, index: int) -> np.ndarray:
        """Return the float32 frames ``[T, C, H, W]`` of recording ``index``, from the cache if present."""
        path = self.paths[index]
        cache_path = None
        if self.cache is not None and path is not None:
            cache_path = self.cache.path_for(path)
            cached = self.cache.load(cache_path)
            if cached is not None:
                return cached

        source = str(path) if path is not None else f"recording {index}"
        frames = self.transform(self.read(index), source=source)
        if cache_path is not None:
            self.cache.store(cache_path, frames)
        return frames

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the frames (float32 ``[T, C, H, W]``) and the int64 label ``[]``."""
        return torch.from_numpy(self.frames(index)), self.labels[index]


@dataclass(frozen=True)
class _ReadFile:
    """Read recording ``index`` from its file (a picklable callable for loader workers)."""

    paths: tuple[Path, ...]

    def __call__(self, index: int) -> np.ndarray:
        return read_events(self.paths[index])


@dataclass(frozen=True)
class _ReadTonic:
    """Read recording ``index`` from a tonic dataset, dropping the label."""

    dataset: Any

    def __call__(self, index: int) -> np.ndarray:
        return self.dataset[index][0]


def scan_event_folder(
    split_dir: str | os.PathLike[str], classes: Sequence[str] | None = None
) -> tuple[tuple[str, ...], list[Path], list[int]]:
    """List the recordings of ``<split_dir>/<class>/<file>``.

    Class folders and files are sorted by name. Hidden folders (``.name``) and files with a
    suffix outside :data:`EVENT_SUFFIXES` are skipped.

    Args:
        split_dir: a split folder such as ``<data_dir>/train``.
        classes: class names that fix the label indices, e.g. those of the training split;
            None takes the sorted folder names.

    Returns:
        The class names, the recording paths, and each recording's class index.

    Raises:
        EventFolderError: the folder has no class folders, a class folder has no recordings,
            or a folder name is not in ``classes``.
    """
    split_dir = Path(split_dir)
    folders = sorted(
        entry for entry in split_dir.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if not folders:
        raise EventFolderError(
            f"No class folders in {split_dir}. Expected {split_dir}/<class>/<recording> with "
            f"recordings ending in {' or '.join(EVENT_SUFFIXES)}."
        )
    names = tuple(folder.name for folder in folders)
    if classes is None:
        classes = names
    else:
        classes = tuple(classes)
        unknown = [name for name in names if name not in classes]
        if unknown:
            raise EventFolderError(
                f"Class folders {unknown} in {split_dir} are not among the classes {list(classes)}. "
                "Rename or remove them, or pass classes that include them."
            )

    paths: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        files = sorted(
            entry for entry in folder.iterdir() if entry.is_file() and entry.suffix in EVENT_SUFFIXES
        )
        if not files:
            raise EventFolderError(
                f"Class folder {folder} contains no recordings ending in "
                f"{' or '.join(EVENT_SUFFIXES)}. Add recordings or remove the folder."
            )
        paths += files
        labels += [classes.index(folder.name)] * len(files)
    return classes, paths, labels


# --------------------------------------------------------------------------------------------
# Data module


class EventDataModule(SplitDataModule):
    """Event-camera recordings as binary frames ``[T, C, H, W]``, with a seeded validation split.

    The recordings come from a folder ``<data_dir>/<split>/<class>/<file>``, with files in the
    N-MNIST binary format (``.bin``) or numpy structured arrays (``.npy`` with the fields x, y,
    t in µs, p), or from a tonic dataset class. Each recording is framed by
    :class:`ToBinnedFrames` on first access and the frames are cached in ``cache_dir``
    (see :class:`FrameCache`). Batches are float32 ``[B, T, C, H, W]``, the input of
    ``SpikingNetwork(encoding="events")``, with int64 labels ``[B]``.

    Args:
        data_dir: folder with one subfolder per split, or the ``save_to`` folder of the tonic
            dataset. Default ``"data/events"``, relative to the working directory.
        sensor_size: ``(W, H, P)``: sensor width and height in pixels and number of
            polarities. Required for folders; default for tonic datasets: the class's
            ``sensor_size``.
        time_steps: frames ``T`` per recording. Default 30.
        bin_width_us: time bin of one frame, in µs. Default 3000.
        bin_rounding: ``"ceil"`` (default) or ``"floor"``, see :class:`ToBinnedFrames`.
        time_origin: ``"zero"`` (default) or ``"first_event"``, see :class:`ToBinnedFrames`.
        polarity: ``"split"`` (default, one channel per polarity) or ``"merge"`` (one channel).
        binary: binary frames (default True) or event counts.
        classes: class names in label order; None takes the sorted class folder names of the
            training split, or the tonic class's ``classes``.
        train_split: folder name of the training split. Default ``"train"``.
        test_split: folder name of the test split. Default ``"test"``.
        tonic_dataset: import path of a tonic dataset class, e.g. ``"tonic.datasets.NMNIST"``,
            or the class itself; None reads ``data_dir`` as a folder. Default None.
        tonic_kwargs: further keyword arguments of the tonic class (``save_to`` and ``train``
            are set here). Default None.
        batch_size: recordings per batch for every loader. Default 50.
        val_size: training recordings held out for validation. Default 100.
        seed: seed of the train/validation split and of the shuffle order. Default 0.
        num_workers: data loader worker processes, 0 loads in the main process. Default 0.
        download: let :meth:`prepare_data` download a missing tonic dataset. Default False.
            Construction and :meth:`setup` never download.
        cache_dir: folder for the frame cache. Default None: ``~/.cache/na_lightning/event_frames``.
        cache: cache framed recordings on disk. Default True.

    Example:
        >>> datamodule = EventDataModule("data/gestures", sensor_size=(128, 128, 2), time_steps=50)
        >>> datamodule.dims
        (2, 128, 128)
    """

    def __init__(
        self,
        data_dir: str = "data/events",
        sensor_size: Sequence[int] | None = None,
        time_steps: int = 30,
        bin_width_us: float = 3000.0,
        bin_rounding: str = "ceil",
        time_origin: str = "zero",
        polarity: str = "split",
        binary: bool = True,
        classes: Sequence[str] | None = None,
        train_split: str = "train",
        test_split: str = "test",
        tonic_dataset: str | type | None = None,
        tonic_kwargs: dict[str, Any] | None = None,
        batch_size: int = 50,
        val_size: int = 100,
        seed: int = 0,
        num_workers: int = 0,
        download: bool = False,
        cache_dir: str | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

        _check_count("batch_size", batch_size, minimum=1)
        _check_count("val_size", val_size, minimum=0)
        _check_count("num_workers", num_workers, minimum=0)

        self.data_dir = Path(data_dir).expanduser()
        self.tonic_class = None if tonic_dataset is None else _resolve_class(tonic_dataset)
        self.tonic_kwargs = dict(tonic_kwargs or {})
        reserved = sorted({"save_to", "train"} & set(self.tonic_kwargs))
        if reserved:
            raise ValueError(
                f"tonic_kwargs must not set {reserved}: data_dir is passed as save_to and the "
                "split as train. Remove them from tonic_kwargs."
            )
        if sensor_size is None and self.tonic_class is not None:
            sensor_size = getattr(self.tonic_class, "sensor_size", None)
        if sensor_size is None:
            raise ValueError(
                "sensor_size is required: pass (width, height, polarities) of the recordings, "
                "e.g. (34, 34, 2) for N-MNIST."
            )
        if download and self.tonic_class is None and not self._can_download():
            raise ValueError(
                f"download=True needs a tonic_dataset, but {type(self).__name__} reads the folder "
                f"{self.data_dir} and cannot download it. Pass download=False."
            )

        self.transform = ToBinnedFrames(
            sensor_size=tuple(sensor_size),
            time_steps=time_steps,
            bin_width_us=bin_width_us,
            rounding=bin_rounding,
            time_origin=time_origin,
            polarity=polarity,
            binary=binary,
        )
        self.classes = None if classes is None else tuple(str(name) for name in classes)
        if self.classes is None and self.tonic_class is not None:
            tonic_classes = getattr(self.tonic_class, "classes", None)
            self.classes = None if tonic_classes is None else tuple(str(name) for name in tonic_classes)
        self.train_split = train_split
        self.test_split = test_split
        self.batch_size = batch_size
        self.val_size = val_size
        self.seed = seed
        self.num_workers = num_workers
        self.download = download
        self.cache_dir = _DEFAULT_CACHE_DIR if cache_dir is None else Path(cache_dir).expanduser()
        self.cache = cache

        self.train_dataset: Subset | None = None
        self.val_dataset: Subset | None = None
        self.test_dataset: EventFrameDataset | None = None

    @property
    def dims(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one frame."""
        return self.transform.frame_shape[1:]

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or None while the class folders are not yet scanned."""
        return None if self.classes is None else len(self.classes)

    def split_dirs(self, split: str) -> list[Path]:
        """Return the folders searched for a split, in order of preference."""
        return [self.data_dir / split]

    def find_split_dir(self, split: str) -> Path | None:
        """Return the first existing folder of :meth:`split_dirs`, or None."""
        for folder in self.split_dirs(split):
            if folder.is_dir():
                return folder
        return None

    def prepare_data(self) -> None:
        """Download a missing tonic dataset when ``download`` is set.

        Lightning calls this hook before :meth:`setup`, on local rank 0 of each node only, so
        it assigns no state. For folders it does nothing, and :meth:`setup` reports missing ones.
        """
        if self.tonic_class is None or not self.download:
            return
        for train in (True, False):
            if train or _has_train_argument(self.tonic_class):
                logger.info("Preparing %s (train=%s) in %s", self.tonic_class.__name__, train, self.data_dir)
                self._tonic_split(train, allow_download=True)

    def setup(self, stage: str | None = None) -> None:
        """Scan the recordings and build the datasets that ``stage`` needs.

        Lightning calls this hook on every process after :meth:`prepare_data`. ``"fit"`` and
        ``"validate"`` split the training recordings into :attr:`train_dataset` and
        :attr:`val_dataset` with a generator seeded by ``seed``. ``"test"`` and ``"predict"``
        build :attr:`test_dataset`, and None builds all three. A dataset that already exists is
        kept.
        Recordings are read and framed later, on access.

        Raises:
            EventDataNotFoundError: a needed split folder or tonic dataset is missing.
            EventFolderError: a split folder has an invalid layout.
            ValueError: ``stage`` is unknown, or ``val_size`` is not smaller than the number of
                training recordings.
            OSError: the cache folder is not writable.
        """
        if stage is not None and stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}, expected one of {_STAGES} or None")

        if stage in (None, "fit", "validate") and self.train_dataset is None:
            dataset = self._build_dataset(train=True)
            count = len(dataset)
            if self.val_size >= count:
                raise ValueError(
                    f"val_size={self.val_size} must be smaller than the {count} training "
                    "recordings. Pass a smaller val_size."
                )
            generator = torch.Generator().manual_seed(self.seed)
            train_split, val_split = random_split(
                range(count), [count - self.val_size, self.val_size], generator=generator
            )
            self.train_dataset = Subset(dataset, train_split.indices)
            self.val_dataset = Subset(dataset, val_split.indices)
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self.test_dataset = self._build_dataset(train=False)

    def frame_cache(self) -> FrameCache | None:
        """Return the cache for the current framing options, or None when ``cache`` is False."""
        if not self.cache:
            return None
        if self.tonic_class is None:
            source = {"kind": "folder", "reader": "na_lightning.data.events.read_events"}
        else:
            source = {
                "kind": "tonic",
                "class": f"{self.tonic_class.__module__}.{self.tonic_class.__qualname__}",
                "kwargs": self.tonic_kwargs,
            }
        config = {"framing": self.transform.config(), "source": source}
        return FrameCache(self.cache_dir, config, self.transform.frame_shape, self.transform.binary)

    def _can_download(self) -> bool:
        """Return whether :meth:`prepare_data` can download folder data (True in subclasses that can)."""
        return False

    def _build_dataset(self, train: bool) -> EventFrameDataset:
        cache = self.frame_cache()
        if cache is not None:
            cache.prepare()
        if self.tonic_class is not None:
            return self._tonic_dataset(train, cache)

        split = self.train_split if train else self.test_split
        split_dir = self.find_split_dir(split)
        if split_dir is None:
            raise self._not_found_error(split)
        classes = self.classes if self.classes is not None else self._folder_classes(split_dir, train)
        classes, paths, labels = scan_event_folder(split_dir, classes)
        self.classes = classes
        logger.info("Found %d recordings of %d classes in %s", len(paths), len(classes), split_dir)
        return EventFrameDataset(paths, labels, _ReadFile(tuple(paths)), self.transform, cache)

    def _folder_classes(self, split_dir: Path, train: bool) -> tuple[str, ...] | None:
        """Class names for the label indices: those of the training split when present."""
        train_dir = split_dir if train else self.find_split_dir(self.train_split)
        if train_dir is None:
            return None
        classes, _, _ = scan_event_folder(train_dir)
        return classes

    def _tonic_split(self, train: bool, allow_download: bool) -> Any:
        """Construct the tonic dataset of one split, downloading only with ``allow_download``."""
        dataset_class = self.tonic_class
        kwargs = dict(self.tonic_kwargs)
        if _has_train_argument(dataset_class):
            kwargs["train"] = train
        elif not train:
            raise EventDataNotFoundError(
                f"{dataset_class.__name__} has no test split (its constructor takes no 'train' "
                "argument). Evaluate on the validation split instead."
            )
        if allow_download:
            return dataset_class(save_to=str(self.data_dir), **kwargs)

        # tonic 1.7 datasets download missing files in their constructor through
        # Dataset.download. A same-named subclass that raises instead keeps setup offline, and
        # the instance gets its original class back so that loader workers can pickle it.
        guarded = type(dataset_class.__name__, (dataset_class,), {"download": _raise_dataset_missing})
        guarded.__module__ = dataset_class.__module__
        guarded.__qualname__ = dataset_class.__qualname__
        dataset = guarded(save_to=str(self.data_dir), **kwargs)
        dataset.__class__ = dataset_class
        return dataset

    def _tonic_dataset(self, train: bool, cache: FrameCache | None) -> EventFrameDataset:
        dataset = self._tonic_split(train, allow_download=False)
        count = len(dataset)
        files = getattr(dataset, "data", None)
        paths: list[Path | None] = [None] * count
        if isinstance(files, Sequence) and len(files) == count:
            paths = [Path(item) if isinstance(item, (str, os.PathLike)) and os.path.isfile(item) else None for item in files]
        if cache is not None and any(path is None for path in paths):
            logger.warning(
                "%s does not list a file per recording, so %d recordings are not cached.",
                type(dataset).__name__, sum(path is None for path in paths),
            )

        targets = getattr(dataset, "targets", None)
        if isinstance(targets, Sequence) and len(targets) == count:
            labels = [int(target) for target in targets]
        else:
            logger.info("Reading all %d recordings of %s for their labels", count, type(dataset).__name__)
            labels = [int(dataset[index][1]) for index in range(count)]
        if self.classes is None:
            self.classes = tuple(str(label) for label in sorted(set(labels)))
        return EventFrameDataset(paths, labels, _ReadTonic(dataset), self.transform, cache)

    def _not_found_error(self, split: str) -> EventDataNotFoundError:
        looked_in = ", ".join(str(folder) for folder in self.split_dirs(split))
        return EventDataNotFoundError(
            f"Split folder {split!r} not found in {looked_in}. Expected "
            f"<data_dir>/{split}/<class>/<recording>.",
            "Pass the data_dir that contains it.",
        )


def _raise_dataset_missing(dataset: Any) -> None:
    raise EventDataNotFoundError(
        f"{type(dataset).__name__} is not in {dataset.location_on_system}. Pass download=True "
        "and call prepare_data() to download it, or copy it there."
    )


def _resolve_class(target: str | type) -> type:
    if isinstance(target, type):
        return target
    module_name, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(
            f"tonic_dataset={target!r} cannot be imported ({error}). Expected an import path "
            "such as 'tonic.datasets.NMNIST'."
        ) from error


def _has_train_argument(dataset_class: type) -> bool:
    return "train" in inspect.signature(dataset_class).parameters


def _is_integer_dtype(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_)


def _check_range(
    source: str, name: str, values: np.ndarray, limit: int, dimension: str, sensor_size: tuple
) -> None:
    invalid = np.flatnonzero((values < 0) | (values >= limit))
    if invalid.size:
        index = int(invalid[0])
        raise EventFileError(
            f"{source}: event {index} has {name}={values[index]}, outside the sensor "
            f"{dimension} 0..{limit - 1} of sensor_size {sensor_size} ({invalid.size} such "
            f"events, {name} spans {values.min()}..{values.max()}). Declare the sensor_size "
            "of the camera that recorded the events, or drop the events outside it."
        )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is invalid. Expected one of {choices}.")


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
