"""File helpers: streaming sha256 and atomic replacement of a file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    """Return the sha256 of a file as 64 lowercase hex digits, reading it in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` that replaces ``target`` when the block succeeds.

    The caller writes the complete file to the yielded path. After the block, the file is
    flushed to disk and renamed over ``target`` with :func:`os.replace`, which is atomic on
    POSIX and Windows file systems, so ``target`` is always either the old or the new complete
    file. If the block raises, the temporary file is deleted and ``target`` is untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        # mkstemp creates the file readable by its owner only; use the usual mode of a new file.
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Write ``target`` through ``write(temporary_path)`` and :func:`atomic_path`."""
    with atomic_path(target) as temporary:
        write(temporary)


def write_text_atomic(target: Path, text: str) -> None:
    """Replace ``target`` with ``text`` (UTF-8) atomically."""
    write_atomic(target, lambda temporary: temporary.write_text(text, encoding="utf-8"))
