"""Find, read and cache the registry: one JSON entry file per model in a folder.

The registry folder is ``$NA_LIGHTNING_ZOO`` when that variable is set, else ``zoo/`` in the
folder that contains the ``na_lightning`` package, which is the repository root of a clone or
an editable install. Weights paths in the entries are relative to the registry's parent folder.

Nothing is read at import. The first lookup lists the folder, parses every entry and caches the
result. The cache key is the folder path plus the names, sizes and modification times of its
entry files, so an added or edited entry is read again on the next lookup.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import na_lightning
from na_lightning.zoo._builder import check_builder_keys, count_parameters
from na_lightning.zoo._entry import ZooEntry, parse_entry
from na_lightning.zoo._errors import InvalidEntryError, UnknownModelError

logger = logging.getLogger(__name__)

ZOO_ENV = "NA_LIGHTNING_ZOO"
"""Environment variable that overrides the registry folder."""

PathLike = str | os.PathLike[str]


def registry_dir(zoo_dir: PathLike | None = None) -> Path:
    """Return the registry folder: ``zoo_dir``, else ``$NA_LIGHTNING_ZOO``, else ``<repo>/zoo``."""
    if zoo_dir is not None:
        return Path(zoo_dir).expanduser().absolute()
    from_env = os.environ.get(ZOO_ENV)
    if from_env:
        return Path(from_env).expanduser().absolute()
    return Path(na_lightning.__file__).absolute().parent.parent / "zoo"


def repo_root(zoo_dir: PathLike | None = None) -> Path:
    """Return the folder that ``weights.file`` paths are relative to: the registry's parent."""
    return registry_dir(zoo_dir).parent


def load_registry(zoo_dir: PathLike | None = None) -> Mapping[str, ZooEntry]:
    """Return every entry of the registry by name (read-only, sorted by name).

    A missing registry folder is an empty registry.

    Raises:
        InvalidEntryError: an entry file is not valid JSON or fails validation; the message
            names the file.
    """
    directory = registry_dir(zoo_dir)
    return _read_registry(directory, _signature(directory))


def clear_cache() -> None:
    """Forget the parsed entries, so that the next lookup reads the registry files again."""
    _read_registry.cache_clear()


def cache_size() -> int:
    """Return how many registry folders are parsed and cached."""
    return _read_registry.cache_info().currsize


def list_names(pattern: str = "*", zoo_dir: PathLike | None = None) -> list[str]:
    """Return the sorted model names that match the shell-style ``pattern`` (case-sensitive)."""
    return sorted(name for name in load_registry(zoo_dir) if fnmatch.fnmatchcase(name, pattern))


def find_entry(name: str, zoo_dir: PathLike | None = None) -> ZooEntry:
    """Return the entry called ``name``.

    Raises:
        UnknownModelError: no entry has this name; the message suggests the closest names.
    """
    registry = load_registry(zoo_dir)
    if isinstance(name, str) and name in registry:
        return registry[name]
    raise UnknownModelError(_unknown_model_message(name, registry, registry_dir(zoo_dir)))


def _unknown_model_message(name: object, registry: Mapping[str, ZooEntry], directory: Path) -> str:
    if not registry:
        return (
            f"Unknown model {name!r}: the registry {directory} contains no models. Set "
            f"{ZOO_ENV} to a folder of entry files, or register one with `na-lightning zoo import`."
        )
    names = list(registry)
    text = name if isinstance(name, str) else str(name)
    same_architecture = [candidate for candidate in names if candidate.startswith(f"{text}.")]
    close = difflib.get_close_matches(text, names, n=5, cutoff=0.6)
    suggestions = list(dict.fromkeys([*same_architecture, *close]))[:5]
    if suggestions:
        hint = f"Did you mean {', '.join(repr(candidate) for candidate in suggestions)}?"
    else:
        hint = "Run `na-lightning zoo list` to see them."
    count = f"{len(names)} model" + ("" if len(names) == 1 else "s")
    return f"Unknown model {name!r} in the registry {directory} ({count}). {hint}"


def _signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Return (name, size, mtime) of each entry file; listing a folder reads no file contents."""
    try:
        scanned = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return ()
    files = []
    for item in scanned:
        if item.name.endswith(".json") and item.is_file():
            stat = item.stat()
            files.append((item.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(files))


@functools.lru_cache(maxsize=8)
def _read_registry(directory: Path, signature: tuple[tuple[str, int, int], ...]) -> Mapping[str, ZooEntry]:
    entries = {}
    for file_name, _, _ in signature:
        entry = read_entry_file(directory / file_name)
        entries[entry.name] = entry
    logger.debug("Read %d zoo entries from %s", len(entries), directory)
    return MappingProxyType(dict(sorted(entries.items())))


def read_entry_file(path: Path) -> ZooEntry:
    """Read, parse and validate one entry file, including the parameter count of its network.

    Raises:
        InvalidEntryError: invalid JSON, invalid fields, builder keys that NAClassifier does not
            take, a builder that NAClassifier rejects, or ``num_params`` that differs from the
            rebuilt network's count.
    """
    source = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidEntryError(f"Invalid zoo entry {source}: not valid UTF-8 JSON ({error}).") from error
    entry = parse_entry(data, source)

    check_builder_keys(entry.builder, f"Invalid zoo entry {source}: builder")
    try:
        counted = count_parameters(entry.builder)
    except (TypeError, ValueError) as error:
        raise InvalidEntryError(
            f"Invalid zoo entry {source}: NAClassifier rejects the builder ({error})."
        ) from error
    if counted != entry.num_params:
        raise InvalidEntryError(
            f"Invalid zoo entry {source}: num_params is {entry.num_params} but the network built "
            f"from the builder has {counted} parameters. Set num_params to {counted} if the "
            "builder is right."
        )
    return entry
