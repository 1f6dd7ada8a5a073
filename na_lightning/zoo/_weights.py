"""Locate, download, verify and load the weights of a registry entry.

Weights are safetensors files and load only through :func:`safetensors.torch.load_file`, which
reads raw tensors and runs no code, so a weights file can never execute anything on load. The
file's size and full sha256 are checked against the entry before every load.

A weights file is looked up first at ``<repo root>/<weights.file>``. When it is not there and
the entry has a ``url``, it is downloaded once into ``<cache>/checkpoints/`` with
:func:`torch.hub.download_url_to_file`, where ``<cache>`` is ``$NA_LIGHTNING_CACHE`` or
``~/.cache/na_lightning``.
"""

from __future__ import annotations

import logging
import os
import urllib.error
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from na_lightning.zoo._entry import ZooEntry
from na_lightning.zoo._errors import (
    NoWeightsError,
    StateDictMismatchError,
    WeightsIntegrityError,
    WeightsNotFoundError,
)
from na_lightning.zoo._files import sha256_file
from na_lightning.zoo._registry import PathLike, repo_root

logger = logging.getLogger(__name__)

CACHE_ENV = "NA_LIGHTNING_CACHE"
"""Environment variable that overrides the cache folder ``~/.cache/na_lightning``."""


def checkpoint_cache_dir() -> Path:
    """Return the folder that downloaded weights are kept in."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "na_lightning"
    return Path(base).expanduser() / "checkpoints"


def weights_path(entry: ZooEntry, zoo_dir: PathLike | None = None, progress: bool = False) -> Path:
    """Return the verified weights file of ``entry``, downloading it first when needed.

    Args:
        entry: a registry entry with weights.
        zoo_dir: registry folder; None for the default (see :func:`registry_dir`).
        progress: show a download progress bar on stderr.

    Raises:
        NoWeightsError: the entry has no weights.
        WeightsNotFoundError: the file is missing and there is no URL, or the download failed.
        WeightsIntegrityError: the file's size or sha256 differs from the entry.
    """
    spec = entry.weights
    if spec is None:
        raise no_weights_error(entry)

    root = repo_root(zoo_dir)
    local = root.joinpath(*PurePosixPath(spec.file).parts)
    if local.exists() and not local.is_file():
        raise WeightsNotFoundError(
            f"Weights path {local} of model {entry.name} is not a file. Remove it, then restore the "
            f"file with `git checkout -- {spec.file}` in {root}."
        )
    if local.is_file():
        fix = f"Restore it with `git checkout -- {spec.file}` (run in {root})"
        if spec.url:
            fix += f", or delete it to download it again from {spec.url}"
        verify_file(local, entry, fix=fix + ".")
        return local

    if spec.url is None:
        raise WeightsNotFoundError(
            f"Weights file {local} of model {entry.name} not found, and the entry has no url to "
            f"download it from. Restore it with `git checkout -- {spec.file}` (run in {root}), or "
            f"set {CACHE_ENV} or the registry folder to a copy that has it."
        )

    cached = checkpoint_cache_dir() / PurePosixPath(spec.file).name
    if cached.is_file():
        verify_file(cached, entry, fix=f"Delete {cached} and load the model again to download it again.")
        return cached

    _download(spec.url, cached, entry, progress)
    try:
        verify_file(
            cached,
            entry,
            fix=(
                f"The downloaded file was deleted. Load the model again to retry; if the hash "
                f"differs again, {spec.url} serves another file than the one registered."
            ),
        )
    except WeightsIntegrityError:
        cached.unlink(missing_ok=True)
        raise
    return cached


def _download(url: str, destination: Path, entry: ZooEntry, progress: bool) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Downloading the weights of %s from %s to %s", entry.name, url, destination)
    try:
        # download_url_to_file writes a temporary file beside the destination and moves it into
        # place when complete, so an interrupted download leaves no partial file at destination.
        torch.hub.download_url_to_file(url, str(destination), hash_prefix=None, progress=progress)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise WeightsNotFoundError(
            f"Downloading the weights of model {entry.name} from {url} to {destination} failed: "
            f"{error}. Check the network connection and retry, or copy the file to {destination}."
        ) from error


def verify_file(path: Path, entry: ZooEntry, fix: str) -> None:
    """Check the size and full sha256 of a weights file against ``entry.weights``.

    Args:
        path: the weights file.
        entry: its registry entry.
        fix: the sentence that explains how to restore the file.

    Raises:
        WeightsIntegrityError: naming the file, the expected and actual sha256, and ``fix``.
    """
    spec = entry.weights
    assert spec is not None
    size = path.stat().st_size
    actual = sha256_file(path)
    if size == spec.num_bytes and actual == spec.sha256:
        return

    if size < spec.num_bytes:
        problem = f"is truncated ({size} of {spec.num_bytes} bytes)"
    elif size > spec.num_bytes:
        problem = f"is larger than registered ({size} instead of {spec.num_bytes} bytes)"
    else:
        problem = "has the registered size but different contents"
    raise WeightsIntegrityError(
        f"Weights file {path} of model {entry.name} {problem}: sha256 {actual}, expected "
        f"{spec.sha256}. {fix}"
    )


def load_weights(entry: ZooEntry, zoo_dir: PathLike | None = None, progress: bool = False) -> dict[str, Tensor]:
    """Return the verified tensors of ``entry``'s weights by name, on the CPU.

    Raises:
        NoWeightsError, WeightsNotFoundError, WeightsIntegrityError: see :func:`weights_path`.
    """
    path = weights_path(entry, zoo_dir, progress)
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except safetensors.SafetensorError as error:
        raise WeightsIntegrityError(
            f"Weights file {path} of model {entry.name} matches its sha256 but is not a valid "
            f"safetensors file ({error}). Register it again with `na-lightning zoo import`."
        ) from error


def no_weights_error(entry: ZooEntry) -> NoWeightsError:
    """Return the error for pretrained weights of a model registered without any.

    ``get_model(pretrained=True)``, ``zoo eval``, ``zoo predict`` and the torch.hub entrypoints
    all raise it.
    """
    config = entry.recipe.config
    train = f"train it with `na-lightning fit --config {config}`" if config else "train it"
    return NoWeightsError(
        f"Model {entry.name} has no trained weights yet: it is registered as an architecture "
        f"only (weights: null). To evaluate it or predict with it, {train} and register the "
        f"checkpoint with `na-lightning zoo import CHECKPOINT --name {entry.name} --overwrite`. "
        f"get_model({entry.name!r}, pretrained=False) builds the untrained network."
    )


def load_network_state(
    network: nn.Module,
    state: Mapping[str, Tensor],
    source: str,
    skip_prefixes: Iterable[str] = (),
) -> None:
    """Copy ``state`` into ``network`` after checking that names and shapes match exactly.

    Args:
        network: the module to fill, e.g. ``NAClassifier.network``.
        state: tensors by parameter or buffer name, without a ``network.`` prefix.
        source: where ``state`` came from, for the error message.
        skip_prefixes: names starting with one of these are neither loaded nor required; the
            network keeps its initialization there.

    Raises:
        StateDictMismatchError: naming every missing, unexpected and wrongly shaped tensor.
    """
    skip = tuple(skip_prefixes)
    expected = {key: value for key, value in network.state_dict().items() if not key.startswith(skip)}
    provided = {key: value for key, value in state.items() if not key.startswith(skip)}
    check_state_dict(expected, provided, source)
    network.load_state_dict(provided, strict=not skip)


def check_state_dict(expected: Mapping[str, Tensor], provided: Mapping[str, Tensor], source: str) -> None:
    """Raise StateDictMismatchError unless ``provided`` has exactly the names and shapes of ``expected``."""
    missing = sorted(key for key in expected if key not in provided)
    unexpected = sorted(key for key in provided if key not in expected)
    wrong_shape = [
        f"{key} {tuple(provided[key].shape)} instead of {tuple(expected[key].shape)}"
        for key in sorted(expected)
        if key in provided and provided[key].shape != expected[key].shape
    ]
    if not (missing or unexpected or wrong_shape):
        return

    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if wrong_shape:
        problems.append(f"wrong shapes: {', '.join(wrong_shape)}")
    raise StateDictMismatchError(
        f"The tensors of {source} do not fit the network: {'; '.join(problems)}. Check that the "
        "entry's builder (architecture, num_classes, input_shape, padding) is the one the weights "
        "were trained with."
    )
