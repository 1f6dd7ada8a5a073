"""Registry entries as frozen dataclasses, parsed and validated from JSON data.

An entry file ``zoo/<architecture>.<tag>.json`` contains one JSON object. :func:`parse_entry` checks
its keys and value types and returns a :class:`ZooEntry`; :meth:`ZooEntry.to_dict` returns the
JSON object again. Unknown keys are rejected at every level, so a typo never passes silently.
The check that ``num_params`` matches the rebuilt network lives in the registry, because it
needs the network class.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from types import MappingProxyType
from typing import Any

from na_lightning.zoo._errors import InvalidEntryError

NAME_PATTERN = re.compile(r"^([a-z][a-z0-9]*(?:_[a-z0-9]+)*)\.([a-z0-9]+(?:_[a-z0-9]+)*)$")
"""``architecture.tag``: lowercase words joined by single underscores on both sides of the dot.

Single underscores keep the hub entrypoint name (the dot replaced by ``__``) reversible.
"""

ENCODINGS = ("analog", "events")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")

ENTRY_REQUIRED = (
    "name", "dataset", "builder", "input", "classes", "weights", "metrics", "num_params", "recipe",
    "license",
)
ENTRY_OPTIONAL = ("notes",)
BUILDER_REQUIRED = (
    "architecture", "num_classes", "input_shape", "time_steps", "encoding", "tau_m", "tau_s",
    "theta", "padding", "loss",
)
INPUT_KEYS = {
    "analog": (("shape", "encoding", "mean", "std"), ()),
    "events": (("shape", "encoding", "sensor_size", "time_bin_us"), ()),
}
WEIGHTS_REQUIRED = ("file", "sha256", "num_bytes")
WEIGHTS_OPTIONAL = ("url",)
METRIC_REQUIRED = ("dataset", "split", "num_samples", "accuracy", "date", "command")
METRIC_OPTIONAL = ("tolerance",)
RECIPE_REQUIRED = ("config", "epochs", "seed", "hardware", "wall_time_s")

_FIX = "Correct the file, or write it again with `na-lightning zoo import`."


@dataclass(frozen=True)
class InputSpec:
    """Input format of the network, and the preprocessing of raw data into it.

    Attributes:
        shape: ``(C, H, W)`` of one image or event frame.
        encoding: ``"analog"`` (images ``[B, C, H, W]``) or ``"events"`` (frames
            ``[B, T, C, H, W]``).
        mean: per-channel mean subtracted from images scaled to 0..1 (analog only).
        std: per-channel standard deviation that images are divided by (analog only).
        sensor_size: ``(W, H, P)`` of the event sensor, P polarities (events only).
        time_bin_us: duration of one event frame, in microseconds (events only).
    """

    shape: tuple[int, int, int]
    encoding: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    sensor_size: tuple[int, int, int] | None = None
    time_bin_us: float | None = None


@dataclass(frozen=True)
class WeightsSpec:
    """Location, size and checksum of an entry's weights file.

    Attributes:
        file: safetensors file relative to the repository root, e.g.
            ``checkpoints/spiking_cnn_mnist.na_t5.safetensors``.
        sha256: full sha256 of the file, 64 lowercase hex digits.
        num_bytes: file size in bytes.
        url: where to download the file when it is not in the repository, or None.
    """

    file: str
    sha256: str
    num_bytes: int
    url: str | None = None


@dataclass(frozen=True)
class Metric:
    """One accuracy measurement of the registered weights.

    Attributes:
        dataset: dataset name, e.g. ``"mnist"``.
        split: ``"test"``, ``"val"`` or ``"train"``.
        num_samples: samples the accuracy was measured on.
        accuracy: fraction of correctly classified samples, in 0..1.
        date: ISO date of the measurement, ``YYYY-MM-DD``.
        command: the command that measured it.
        tolerance: largest accepted difference when the accuracy is measured again on a sample,
            as a fraction (0.015 is 1.5 percentage points); None for the default.
    """

    dataset: str
    split: str
    num_samples: int
    accuracy: float
    date: str
    command: str
    tolerance: float | None = None


@dataclass(frozen=True)
class Recipe:
    """Training recipe of the weights. None marks a value that was not recorded.

    Attributes:
        config: training config, relative to the repository root.
        epochs: training epochs.
        seed: global random seed.
        hardware: the device that trained the model, e.g. ``"1x NVIDIA A100"``.
        wall_time_s: training wall time, in seconds.
    """

    config: str | None
    epochs: int
    seed: int | None
    hardware: str | None
    wall_time_s: float | None


@dataclass(frozen=True)
class ZooEntry:
    """A registered model: how to build it, its weights, and what they were measured to do.

    Attributes:
        name: ``architecture.tag``, e.g. ``"spiking_cnn_mnist.na_t5"``.
        dataset: name of the dataset the model classifies, a key of
            :data:`na_lightning.zoo.DATASETS` for ``zoo eval``.
        builder: keyword arguments of :class:`~na_lightning.lightning.classifier.NAClassifier`
            that rebuild the network (read-only).
        input: the input specification.
        classes: class names, index ``k`` is output neuron ``k``.
        weights: the weights file, or None for a model registered without trained weights.
        metrics: accuracy measurements of the weights, empty when ``weights`` is None.
        num_params: parameter count of the network.
        recipe: the training recipe.
        license: license of the training data, e.g. ``"CC-BY-SA-3.0"``.
        notes: free text.
    """

    name: str
    dataset: str
    builder: Mapping[str, Any]
    input: InputSpec
    classes: tuple[str, ...]
    weights: WeightsSpec | None
    metrics: tuple[Metric, ...]
    num_params: int
    recipe: Recipe
    license: str
    notes: str = ""
    source: str | None = field(default=None, compare=False)
    """The file the entry was read from, for messages; not part of the JSON data."""

    @property
    def architecture(self) -> str:
        """The part of the name before the dot."""
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        """The part of the name after the dot."""
        return self.name.split(".", 1)[1]

    @property
    def hub_name(self) -> str:
        """The torch.hub entrypoint of this entry: the name with ``.`` replaced by ``__``."""
        return hub_name(self.name)

    def metric(self, dataset: str | None = None, split: str = "test") -> Metric | None:
        """Return the first metric for ``dataset`` (default: the entry's dataset) and ``split``."""
        dataset = self.dataset if dataset is None else dataset
        for metric in self.metrics:
            if metric.dataset == dataset and metric.split == split:
                return metric
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as the JSON object of its file, keys in the documented order."""
        weights = None
        if self.weights is not None:
            weights = _without_none(_to_json(self.weights.__dict__), keep=WEIGHTS_REQUIRED)
        metrics = [_without_none(_to_json(metric.__dict__), keep=METRIC_REQUIRED) for metric in self.metrics]

        data: dict[str, Any] = {
            "name": self.name,
            "dataset": self.dataset,
            "builder": _to_json(dict(self.builder)),
            "input": _without_none(_to_json(self.input.__dict__)),
            "classes": list(self.classes),
            "weights": weights,
            "metrics": metrics,
            "num_params": self.num_params,
            "recipe": _to_json(self.recipe.__dict__),
            "license": self.license,
        }
        if self.notes:
            data["notes"] = self.notes
        return data


def format_entry_json(data: Mapping[str, Any]) -> str:
    """Return an entry's JSON text: objects indented by 2 spaces, arrays of scalars on one line."""
    return _format_json(data, 0) + "\n"


def _format_json(value: Any, level: int) -> str:
    indent = "  " * (level + 1)
    if isinstance(value, Mapping) and value:
        items = [f"{indent}{json.dumps(key)}: {_format_json(item, level + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(value, (list, tuple)) and any(isinstance(item, (Mapping, list, tuple)) for item in value):
        items = [f"{indent}{_format_json(item, level + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * level + "]"
    return json.dumps(value, ensure_ascii=False)


def hub_name(name: str) -> str:
    """Return the torch.hub entrypoint for a model name: ``a.b`` becomes ``a__b``."""
    return name.replace(".", "__")


def check_name(name: str) -> None:
    """Raise InvalidEntryError unless ``name`` has the form ``architecture.tag``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidEntryError(
            f"Invalid model name {name!r}: expected 'architecture.tag' in lowercase letters, "
            "digits and single underscores, e.g. 'spiking_cnn_mnist.na_t5'."
        )


def parse_entry(data: Any, source: str = "<entry>") -> ZooEntry:
    """Validate the JSON data of one entry and return it as a :class:`ZooEntry`.

    Args:
        data: the decoded JSON object.
        source: the file name, used in error messages.

    Raises:
        InvalidEntryError: a key is unknown or missing, a value has the wrong type or range, or
            two fields disagree (input shape, encoding or class count versus the builder).
    """
    checker = _Checker(source)
    checker.keys(data, "entry", ENTRY_REQUIRED, ENTRY_OPTIONAL)

    name = checker.string(data["name"], "name")
    try:
        check_name(name)
    except InvalidEntryError as error:
        raise checker.error(str(error)) from None

    builder = _parse_builder(checker, data["builder"])
    spec = _parse_input(checker, data["input"])
    classes = tuple(
        checker.string(value, f"classes[{index}]")
        for index, value in enumerate(checker.list(data["classes"], "classes"))
    )
    weights = None if data["weights"] is None else _parse_weights(checker, data["weights"])
    metrics = tuple(
        _parse_metric(checker, value, f"metrics[{index}]")
        for index, value in enumerate(checker.list(data["metrics"], "metrics"))
    )
    entry = ZooEntry(
        name=name,
        dataset=checker.string(data["dataset"], "dataset"),
        builder=MappingProxyType(builder),
        input=spec,
        classes=classes,
        weights=weights,
        metrics=metrics,
        num_params=checker.integer(data["num_params"], "num_params", minimum=1),
        recipe=_parse_recipe(checker, data["recipe"]),
        license=checker.string(data["license"], "license"),
        notes=checker.string(data.get("notes", ""), "notes", allow_empty=True),
        source=source,
    )
    _check_consistency(checker, entry)
    return entry


def _parse_builder(checker: _Checker, data: Any) -> dict[str, Any]:
    # Only the required keys are checked here; the registry rejects keys that are not
    # NAClassifier arguments, because only it imports the class.
    checker.keys(data, "builder", BUILDER_REQUIRED, None)
    return {key: _to_tuples(value) for key, value in data.items()}


def _parse_input(checker: _Checker, data: Any) -> InputSpec:
    if not isinstance(data, Mapping):
        raise checker.error(f"input must be a JSON object, got {_describe(data)}")
    encoding = data.get("encoding")
    if encoding not in ENCODINGS:
        raise checker.error(f"input.encoding must be one of {ENCODINGS}, got {encoding!r}")
    required, optional = INPUT_KEYS[encoding]
    checker.keys(data, "input", required, optional)

    shape = checker.int_tuple(data["shape"], "input.shape", length=3)
    if encoding == "events":
        time_bin = checker.number(data["time_bin_us"], "input.time_bin_us")
        if time_bin <= 0:
            raise checker.error(f"input.time_bin_us must be > 0 microseconds, got {time_bin!r}")
        return InputSpec(
            shape=shape,
            encoding=encoding,
            sensor_size=checker.int_tuple(data["sensor_size"], "input.sensor_size", length=3),
            time_bin_us=time_bin,
        )

    channels = shape[0]
    mean = checker.float_tuple(data["mean"], "input.mean", length=channels)
    std = checker.float_tuple(data["std"], "input.std", length=channels)
    if min(std) <= 0:
        raise checker.error(f"input.std must be > 0 in every channel, got {list(std)}")
    return InputSpec(shape=shape, encoding=encoding, mean=mean, std=std)


def _parse_weights(checker: _Checker, data: Any) -> WeightsSpec:
    checker.keys(data, "weights", WEIGHTS_REQUIRED, WEIGHTS_OPTIONAL)
    file = checker.string(data["file"], "weights.file")
    if file.startswith("/") or ".." in file.split("/") or "\\" in file:
        raise checker.error(
            f"weights.file must be a relative path with '/' separators inside the repository, "
            f"e.g. 'checkpoints/<name>.safetensors', got {file!r}"
        )
    if not file.endswith(".safetensors"):
        raise checker.error(f"weights.file must be a .safetensors file, got {file!r}")
    sha256 = checker.string(data["sha256"], "weights.sha256")
    if not SHA256_PATTERN.match(sha256):
        raise checker.error(f"weights.sha256 must be 64 lowercase hex digits, got {sha256!r}")
    url = data.get("url")
    if url is not None and not (isinstance(url, str) and re.match(r"^(https?|file)://", url)):
        raise checker.error(f"weights.url must be an http(s):// or file:// URL or null, got {url!r}")
    return WeightsSpec(
        file=file,
        sha256=sha256,
        num_bytes=checker.integer(data["num_bytes"], "weights.num_bytes", minimum=1),
        url=url,
    )


def _parse_metric(checker: _Checker, data: Any, where: str) -> Metric:
    checker.keys(data, where, METRIC_REQUIRED, METRIC_OPTIONAL)
    accuracy = checker.number(data["accuracy"], f"{where}.accuracy")
    if not 0.0 <= accuracy <= 1.0:
        raise checker.error(f"{where}.accuracy must be a fraction in 0..1, got {accuracy!r}")
    date = checker.string(data["date"], f"{where}.date")
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise checker.error(f"{where}.date must be an ISO date YYYY-MM-DD, got {date!r}") from None
    tolerance = data.get("tolerance")
    if tolerance is not None:
        tolerance = checker.number(tolerance, f"{where}.tolerance")
        if not 0.0 < tolerance < 1.0:
            raise checker.error(f"{where}.tolerance must be a fraction in (0, 1), got {tolerance!r}")
    return Metric(
        dataset=checker.string(data["dataset"], f"{where}.dataset"),
        split=checker.string(data["split"], f"{where}.split"),
        num_samples=checker.integer(data["num_samples"], f"{where}.num_samples", minimum=1),
        accuracy=accuracy,
        date=date,
        command=checker.string(data["command"], f"{where}.command"),
        tolerance=tolerance,
    )


def _parse_recipe(checker: _Checker, data: Any) -> Recipe:
    checker.keys(data, "recipe", RECIPE_REQUIRED, ())
    config, seed, hardware, wall_time = (data[key] for key in ("config", "seed", "hardware", "wall_time_s"))
    return Recipe(
        config=None if config is None else checker.string(config, "recipe.config"),
        epochs=checker.integer(data["epochs"], "recipe.epochs", minimum=0),
        seed=None if seed is None else checker.integer(seed, "recipe.seed", minimum=0),
        hardware=None if hardware is None else checker.string(hardware, "recipe.hardware"),
        wall_time_s=None if wall_time is None else checker.number(wall_time, "recipe.wall_time_s"),
    )


def _check_consistency(checker: _Checker, entry: ZooEntry) -> None:
    file_name = PurePath(entry.source).name if entry.source else ""
    if file_name.endswith(".json") and file_name != f"{entry.name}.json":
        raise checker.error(
            f"name {entry.name!r} differs from the file name {file_name}; rename the file to "
            f"{entry.name}.json"
        )

    builder = entry.builder
    pairs = (
        ("builder.input_shape", tuple(builder["input_shape"]), "input.shape", entry.input.shape),
        ("builder.encoding", builder["encoding"], "input.encoding", entry.input.encoding),
        ("builder.num_classes", builder["num_classes"], "the number of classes", len(entry.classes)),
    )
    for left_name, left, right_name, right in pairs:
        if left != right:
            raise checker.error(f"{left_name} is {left!r} but {right_name} is {right!r}; they must be equal")
    if len(set(entry.classes)) != len(entry.classes):
        raise checker.error(f"classes contains duplicate names: {list(entry.classes)}")
    if entry.weights is None and entry.metrics:
        raise checker.error(
            f"weights is null but metrics lists {len(entry.metrics)} measurements. Metrics measure "
            "the registered weights, so set metrics to [] or register the weights"
        )


class _Checker:
    """Type checks that raise InvalidEntryError naming the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, problem: str) -> InvalidEntryError:
        return InvalidEntryError(f"Invalid zoo entry {self.source}: {problem}. {_FIX}")

    def keys(
        self, data: Any, where: str, required: Sequence[str], optional: Sequence[str] | None
    ) -> None:
        """Check that ``data`` is an object with all ``required`` keys; ``optional=None`` allows any other."""
        if not isinstance(data, Mapping):
            raise self.error(f"{where} must be a JSON object, got {_describe(data)}")
        missing = [key for key in required if key not in data]
        if missing:
            raise self.error(f"{where} is missing the required keys {missing}")
        if optional is None:
            return
        allowed = (*required, *optional)
        unknown = sorted(key for key in data if key not in allowed)
        if unknown:
            raise self.error(f"{where} has unknown keys {unknown}; the valid keys are {sorted(allowed)}")

    def string(self, value: Any, where: str, allow_empty: bool = False) -> str:
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise self.error(f"{where} must be a non-empty string, got {value!r}")
        return value

    def list(self, value: Any, where: str) -> list:
        if not isinstance(value, list):
            raise self.error(f"{where} must be a JSON array, got {_describe(value)}")
        return value

    def integer(self, value: Any, where: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"{where} must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(f"{where} must be a finite number, got {value!r}")
        return float(value)

    def int_tuple(self, value: Any, where: str, length: int) -> tuple[int, ...]:
        items = self.list(value, where)
        if len(items) != length:
            raise self.error(f"{where} must have {length} values, got {value!r}")
        return tuple(self.integer(item, f"{where}[{index}]", minimum=1) for index, item in enumerate(items))

    def float_tuple(self, value: Any, where: str, length: int) -> tuple[float, ...]:
        items = self.list(value, where)
        if len(items) != length:
            raise self.error(f"{where} must have {length} values, one per input channel, got {value!r}")
        return tuple(self.number(item, f"{where}[{index}]") for index, item in enumerate(items))


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:120]


def _to_tuples(value: Any) -> Any:
    """Convert JSON arrays to tuples, recursively, so that entries stay immutable."""
    if isinstance(value, list):
        return tuple(_to_tuples(item) for item in value)
    return value


def _to_json(value: Any) -> Any:
    """Convert tuples back to lists, recursively, for ``json.dumps``."""
    if isinstance(value, (tuple, list)):
        return [_to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _to_json(item) for key, item in value.items()}
    return value


def _without_none(data: dict[str, Any], keep: Sequence[str] = ()) -> dict[str, Any]:
    """Drop the keys whose value is None, except those in ``keep``."""
    return {key: value for key, value in data.items() if value is not None or key in keep}
