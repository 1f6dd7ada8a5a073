"""Register a trained checkpoint: write its weights as safetensors and its entry as JSON.

Both files are written atomically: each is written to a temporary file that is then renamed
over the target. The entry is validated before either file is replaced. An interrupted or
failed import therefore never leaves a corrupt or inconsistent file in place of a good one.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from na_lightning.zoo._builder import BUILDER_DEFAULTS, build_classifier, check_builder_keys
from na_lightning.zoo._datasets import DATASETS, DatasetSpec, dataset_for_datamodule
from na_lightning.zoo._entry import Metric, ZooEntry, check_name, format_entry_json, parse_entry
from na_lightning.zoo._errors import InvalidEntryError, ZooError
from na_lightning.zoo._files import atomic_path, sha256_file, write_text_atomic
from na_lightning.zoo._registry import PathLike, clear_cache, find_entry, read_entry_file, registry_dir
from na_lightning.zoo._weights import check_state_dict, no_weights_error

logger = logging.getLogger(__name__)

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes added by DistributedDataParallel / DataParallel and by torch.compile."""

MODULE_PREFIXES = ("network.", "model.")
"""Key prefixes of the network inside a LightningModule: NAClassifier uses ``network.``."""

CHECKPOINT_DIR = "checkpoints"
"""Folder of the weights files, relative to the repository root."""


def import_checkpoint(
    checkpoint: str | os.PathLike[str],
    name: str,
    *,
    dataset: str | None = None,
    metrics: Sequence[Metric | Mapping[str, Any]] = (),
    recipe: Mapping[str, Any] | None = None,
    builder: Mapping[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    input_spec: Mapping[str, Any] | None = None,
    license: str | None = None,
    notes: str = "",
    url: str | None = None,
    zoo_dir: PathLike | None = None,
    overwrite: bool = False,
) -> ZooEntry:
    """Turn a checkpoint into ``checkpoints/<name>.safetensors`` and ``zoo/<name>.json``.

    The checkpoint is read with ``torch.load(..., weights_only=True)``, which unpickles only
    tensors and plain containers. It is a Lightning ``.ckpt`` (``state_dict`` plus
    ``hyper_parameters``) or a bare state dict. Key prefixes of DDP (``module.``),
    torch.compile (``_orig_mod.``) and the LightningModule (``network.``, ``model.``) are
    removed, and tensors outside the network (e.g. metric states) are dropped with a log line.

    Args:
        checkpoint: the ``.ckpt`` or ``.pt`` file.
        name: the new entry's name, ``architecture.tag``.
        dataset: dataset name; None reads it from the checkpoint's data module class. A dataset
            of :data:`~na_lightning.zoo.DATASETS` supplies the defaults of ``classes``, the
            normalization and ``license``.
        metrics: measured accuracies (:class:`Metric` or dicts with its fields). Nothing is
            measured here; record a measurement later with ``zoo eval NAME --record``.
        recipe: ``config``, ``epochs``, ``seed``, ``hardware``, ``wall_time_s``; missing values
            are null, except ``epochs``, which defaults to the checkpoint's ``epoch`` + 1
            (Lightning stores the 0-based index of the epoch that wrote the checkpoint).
        builder: NAClassifier arguments that replace those of the checkpoint. Arguments in
            neither take NAClassifier's defaults, and all are written to the entry.
        classes: class names in label order.
        input_spec: the entry's ``input`` object; None derives it from the builder and the
            dataset (analog models only).
        license: license of the training data.
        notes: free text for the entry.
        url: where the weights file will be downloadable, for files too large to commit.
        zoo_dir: registry folder; weights go to ``checkpoints/`` beside it.
        overwrite: replace an existing entry or weights file of the same name.

    Returns:
        The new entry, validated as the registry reads it.

    Raises:
        FileNotFoundError, IsADirectoryError: the checkpoint does not exist or is a folder.
        ZooError: the checkpoint is unreadable, the entry or weights exist and ``overwrite`` is
            False, or a required value (dataset, license, input spec, epochs) is unknown.
        StateDictMismatchError: the tensors do not fit the network that the builder describes.
    """
    check_name(name)
    path = Path(checkpoint)
    contents = _read_checkpoint(path)
    state, hyperparameters = _split_checkpoint(contents, path)
    state = network_state(state)

    full_builder = _resolve_builder(hyperparameters, builder or {}, path)
    model = build_classifier(full_builder)
    check_state_dict(model.network.state_dict(), state, f"checkpoint {path}")

    spec = _resolve_dataset(dataset, contents, path)
    directory = registry_dir(zoo_dir)
    entry_path = directory / f"{name}.json"
    weights_file = f"{CHECKPOINT_DIR}/{name}.safetensors"
    weights_path = directory.parent / CHECKPOINT_DIR / f"{name}.safetensors"
    if not overwrite:
        existing = [str(target) for target in (entry_path, weights_path) if target.exists()]
        if existing:
            raise ZooError(
                f"Model {name} is already registered ({', '.join(existing)}). Pass overwrite=True "
                "(--overwrite) to replace it, or choose another tag."
            )

    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}
    with atomic_path(weights_path) as temporary:
        safetensors.torch.save_file(tensors, str(temporary), metadata={"name": name, "format": "pt"})
        data = {
            "name": name,
            "dataset": _dataset_name(dataset, spec),
            "builder": full_builder,
            "input": _input_spec(input_spec, full_builder, spec),
            "classes": list(classes) if classes is not None else _from_spec(spec, "classes", "classes"),
            "weights": {
                "file": weights_file,
                "sha256": sha256_file(temporary),
                "num_bytes": temporary.stat().st_size,
                **({"url": url} if url else {}),
            },
            "metrics": [_metric_dict(metric) for metric in metrics],
            "num_params": sum(parameter.numel() for parameter in model.parameters()),
            "recipe": _recipe(recipe or {}, contents),
            "license": license if license is not None else _from_spec(spec, "license", "license"),
            **({"notes": notes} if notes else {}),
        }
        entry = parse_entry(_json_round_trip(data), str(entry_path))

    write_text_atomic(entry_path, format_entry_json(entry.to_dict()))
    clear_cache()
    logger.info("Registered %s: %s and %s", name, entry_path, weights_path)
    return read_entry_file(entry_path)


def record_metric(name: str, metric: Metric | Mapping[str, Any], zoo_dir: PathLike | None = None) -> ZooEntry:
    """Add a measured metric to an entry, replacing one for the same dataset and split.

    The entry file is rewritten atomically.

    Returns:
        The updated entry.

    Raises:
        NoWeightsError: the entry has no weights, so there is nothing the metric could measure.
    """
    entry = find_entry(name, zoo_dir)
    if entry.weights is None:
        raise no_weights_error(entry)
    new = _metric_dict(metric)
    data = entry.to_dict()
    other_metrics = [
        old for old in data["metrics"] if (old["dataset"], old["split"]) != (new["dataset"], new["split"])
    ]
    data["metrics"] = [*other_metrics, new]

    path = registry_dir(zoo_dir) / f"{name}.json"
    updated = parse_entry(data, str(path))
    write_text_atomic(path, format_entry_json(updated.to_dict()))
    clear_cache()
    return read_entry_file(path)


def network_state(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """Return the tensors of the spiking network, keyed as in ``SpikingNetwork.state_dict()``.

    Wrapper prefixes (``module.``, ``_orig_mod.``) are removed from every key, then the
    LightningModule prefix (``network.`` or ``model.``) selects and strips the network's keys;
    keys outside it are dropped with a log line. Both steps repeat for nested wrappers.

    Raises:
        ZooError: a value is not a tensor.
    """
    current: dict[str, Any] = dict(state)
    changed = True
    while changed:
        changed = False
        unwrapped = {}
        for key, value in current.items():
            original = key
            while key.startswith(WRAPPER_PREFIXES):
                key = key.split(".", 1)[1]
            changed |= key != original
            unwrapped[key] = value
        current = unwrapped

        for prefix in MODULE_PREFIXES:
            inside = {key[len(prefix):]: value for key, value in current.items() if key.startswith(prefix)}
            if inside:
                dropped = sorted(key for key in current if not key.startswith(prefix))
                if dropped:
                    logger.warning("Dropping checkpoint tensors outside the network: %s", dropped)
                current = inside
                changed = True
                break

    not_tensors = sorted(key for key, value in current.items() if not isinstance(value, Tensor))
    if not_tensors:
        raise ZooError(f"The state dict has values that are not tensors: {not_tensors}.")
    return current


def _read_checkpoint(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint {path} not found.")
    if path.is_dir():
        raise IsADirectoryError(f"Checkpoint path {path} is a folder; pass the .ckpt file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        from na_lightning.lightning.safety import describe_load_failure

        reason = describe_load_failure(error)
        raise ZooError(
            f"Cannot register checkpoint {path}: {reason}. Save the state dict and hyperparameters "
            "as plain values, or load the file in trusted code and pass its state dict."
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise ZooError(f"Cannot read checkpoint {path}: {error}. The file may be truncated.") from error


def _split_checkpoint(contents: Any, path: Path) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """Return the state dict and the hyperparameters of a Lightning or bare checkpoint."""
    if isinstance(contents, Mapping) and isinstance(contents.get("state_dict"), Mapping):
        return contents["state_dict"], contents.get("hyper_parameters") or {}
    is_state_dict = isinstance(contents, Mapping) and bool(contents)
    if is_state_dict and all(isinstance(value, Tensor) for value in contents.values()):
        return contents, {}
    raise ZooError(
        f"Checkpoint {path} is neither a Lightning checkpoint (a dict with 'state_dict') nor a "
        f"state dict of tensors; its top level is {type(contents).__name__}"
        + (f" with keys {sorted(map(str, contents))[:10]}" if isinstance(contents, Mapping) else "")
        + "."
    )


def _resolve_builder(
    hyperparameters: Mapping[str, Any], overrides: Mapping[str, Any], path: Path
) -> dict[str, Any]:
    # Lightning adds private keys such as "_instantiator" or "_class_path".
    public = {key: value for key, value in hyperparameters.items() if not str(key).startswith("_")}
    check_builder_keys(public, f"The hyperparameters of checkpoint {path}")
    check_builder_keys(overrides, "builder")

    combined = {**public, **overrides}
    defaulted = sorted(key for key in BUILDER_DEFAULTS if key not in combined)
    if defaulted:
        logger.info("Checkpoint %s does not set %s; using the NAClassifier defaults", path, defaulted)
    merged = {key: combined.get(key, default) for key, default in BUILDER_DEFAULTS.items()}
    return _json_round_trip(merged)


def _resolve_dataset(dataset: str | None, contents: Any, path: Path) -> DatasetSpec | None:
    if dataset is not None:
        return DATASETS.get(dataset)
    datamodule = contents.get("datamodule_hyper_parameters") if isinstance(contents, Mapping) else None
    class_path = datamodule.get("_class_path") if isinstance(datamodule, Mapping) else None
    spec = dataset_for_datamodule(class_path) if class_path else None
    if spec is None:
        raise ZooError(
            f"Cannot tell the dataset of checkpoint {path} (data module {class_path!r}). Pass "
            "dataset= (--dataset), e.g. 'mnist'."
        )
    return spec


def _dataset_name(dataset: str | None, spec: DatasetSpec | None) -> str:
    return dataset if dataset is not None else spec.name


def _from_spec(spec: DatasetSpec | None, attribute: str, argument: str) -> Any:
    if spec is None:
        raise ZooError(
            f"The dataset is not one of the known datasets, so {argument} cannot be derived from "
            f"it. Pass {argument}= (--{argument.replace('_', '-')})."
        )
    value = getattr(spec, attribute)
    return list(value) if isinstance(value, tuple) else value


def _input_spec(given: Mapping[str, Any] | None, builder: Mapping[str, Any], spec: DatasetSpec | None) -> dict:
    if given is not None:
        return dict(given)
    if builder["encoding"] != "analog":
        raise ZooError(
            "Event models need input_spec= with shape, encoding, sensor_size and time_bin_us; "
            "it cannot be derived from the dataset yet."
        )
    mean = _from_spec(spec, "mean", "input_spec")
    std = _from_spec(spec, "std", "input_spec")
    return {"shape": list(builder["input_shape"]), "encoding": "analog", "mean": mean, "std": std}


def _recipe(options: Mapping[str, Any], contents: Any) -> dict[str, Any]:
    unknown = sorted(set(options) - {"config", "epochs", "seed", "hardware", "wall_time_s"})
    if unknown:
        raise InvalidEntryError(
            f"recipe has unknown keys {unknown}; the valid keys are config, epochs, seed, "
            "hardware, wall_time_s."
        )
    epochs = options.get("epochs")
    if epochs is None and isinstance(contents, Mapping) and isinstance(contents.get("epoch"), int):
        epochs = contents["epoch"] + 1
    if epochs is None:
        raise ZooError("The checkpoint does not record its epoch; pass recipe={'epochs': N} (--epochs).")
    return {
        "config": options.get("config"),
        "epochs": epochs,
        "seed": options.get("seed"),
        "hardware": options.get("hardware"),
        "wall_time_s": options.get("wall_time_s"),
    }


def _metric_dict(metric: Metric | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(metric, Metric):
        data = dict(metric.__dict__)
        if data["tolerance"] is None:
            del data["tolerance"]
        return data
    return dict(metric)


def _json_round_trip(data: Any) -> Any:
    """Return ``data`` as JSON would store it, so that the validated entry equals the written one."""
    return json.loads(json.dumps(data))
