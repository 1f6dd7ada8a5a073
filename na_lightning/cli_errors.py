"""One-line error messages for the ``na-lightning`` command line.

:func:`run_cli` runs a command-line entry point and turns an error that a user can fix into one
line on stderr. Such errors are a missing or corrupt file, a folder in place of a file, a
checkpoint of another architecture, an invalid argument or a diverged training run::

    error: MNIST folder not found: data/mnist. Expected ...

followed by exit status 1, or 2 for invalid arguments. Any other exception is a bug and keeps its
traceback. Set the environment variable ``NA_LIGHTNING_DEBUG=1`` to see the traceback of every
error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from lightning_fabric.utilities.exceptions import MisconfigurationException

from na_lightning.data import (
    EventDataNotFoundError,
    EventFileError,
    EventFolderError,
    MNISTFormatError,
    MNISTNotFoundError,
)
from na_lightning.lightning.safety import CheckpointLoadError, NonFiniteError, describe_load_failure
from na_lightning.zoo._errors import ZooError

log = logging.getLogger(__name__)

DEBUG_VARIABLE = "NA_LIGHTNING_DEBUG"
"""Environment variable that, set to a value other than ``""`` or ``"0"``, shows full tracebacks."""

EXIT_ERROR = 1
"""Exit status after an error that the user can fix."""

EXIT_USAGE = 2
"""Exit status after invalid command-line arguments, as with argparse."""

PROG = "na-lightning"
SUBCOMMANDS = ("fit", "validate", "test", "predict")

_LIBRARY_ERRORS = (
    CheckpointLoadError,
    EventDataNotFoundError,
    EventFileError,
    EventFolderError,
    MisconfigurationException,
    MNISTFormatError,
    MNISTNotFoundError,
    NonFiniteError,
    ZooError,
)
"""Exceptions that the library and Lightning raise for a user's input, reported by their message."""

_USER_VALUE_ERROR_PACKAGES = ("na_lightning", "pytorch_lightning", "lightning_fabric", "jsonargparse")
"""Packages whose ValueErrors report a bad input. A ValueError raised elsewhere may be a bug."""

_LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning_fabric")

_UNION_FAILURE = "Does not validate against any of the Union subtypes"

_LIST_LIMIT = 3
_QUOTED = re.compile(r'"([^"]+)"')
_QUOTED_SINGLE = re.compile(r"'([^']+)'")

T = TypeVar("T")


def run_cli(command: Callable[[list[str] | None], T], argv: Sequence[str] | None = None) -> T:
    """Run ``command(argv)`` and report user errors as one line on stderr.

    Args:
        command: an entry point such as :func:`na_lightning.cli.main`, called with ``argv``.
        argv: the arguments without the program name; None lets ``command`` read ``sys.argv``.

    Returns:
        What ``command`` returns.

    Raises:
        SystemExit: status 1 after a user error, 2 after invalid arguments.
    """
    with report_errors(argv):
        return command(None if argv is None else list(argv))


@contextlib.contextmanager
def report_errors(argv: Sequence[str] | None = None) -> Iterator[None]:
    """Turn a user error raised in the block into ``error: <message>`` on stderr and ``SystemExit``.

    ``argv`` (default ``sys.argv[1:]``) supplies the subcommand and the checkpoint path for the
    messages. With ``NA_LIGHTNING_DEBUG=1``, or for an exception that is not a user error, the
    exception propagates unchanged.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        yield
    except Exception as error:
        if debug_enabled():
            raise
        described = describe_error(error, arguments)
        if described is None:
            raise
        message, status = described
        log.debug("Command failed with %s", type(error).__name__, exc_info=True)
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
        raise SystemExit(status) from None


def debug_enabled() -> bool:
    """Return whether ``NA_LIGHTNING_DEBUG`` requests full tracebacks."""
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def describe_error(error: BaseException, argv: Sequence[str] = ()) -> tuple[str, int] | None:
    """Return the one-line message and exit status for a user error, or None for a bug.

    Args:
        error: the exception that ended the command.
        argv: the command's arguments, for the subcommand and ``--ckpt_path``.
    """
    if isinstance(error, argparse.ArgumentError):
        return _argument_message(str(error), argv), EXIT_USAGE

    cause = error.__cause__
    if str(error).startswith(_UNION_FAILURE) and isinstance(cause, Exception):
        # jsonargparse wraps the error of a class it could not build, e.g. NAClassifier's
        # ValueError for an invalid architecture, in a list of every Union subtype tried.
        described = describe_error(cause, argv)
        if described is not None:
            return described

    checkpoint = _option_value(argv, "--ckpt_path") or "the checkpoint"
    if _raised_in_torch_load(error):
        reason = describe_load_failure(error)
        if reason is not None:
            return one_line(f"Cannot load {checkpoint}: {reason}."), EXIT_ERROR
    if isinstance(error, RuntimeError) and "Error(s) in loading state_dict" in str(error):
        return _state_dict_message(str(error), checkpoint), EXIT_ERROR
    if isinstance(error, RuntimeError) and str(error).startswith("Error while merging hparams"):
        # Lightning (2.6) logs model and data hyperparameters together, so shared keys must agree.
        keys = _QUOTED_SINGLE.findall(str(error)) or ["<key>"]
        return (
            one_line(f"{error} Set the same value for both, e.g. with --model.{keys[0]} and --data.{keys[0]}."),
            EXIT_ERROR,
        )

    if isinstance(error, _LIBRARY_ERRORS):
        return one_line(_worker_message(str(error))[0]), EXIT_ERROR
    if isinstance(error, ImportError) and (_innermost_module(error) or "").startswith(_LIGHTNING_PACKAGES):
        # Lightning raises this for an accelerator or strategy whose package is not installed.
        message = str(error).rstrip(".")
        return one_line(f"{message}. Alternatively, choose another accelerator or strategy."), EXIT_ERROR
    if isinstance(error, OSError):
        return one_line(_os_error_message(error)), EXIT_ERROR
    if isinstance(error, ValueError):
        message, origin = _worker_message(str(error))
        if origin is None:
            origin = _innermost_module(error)
        if origin is not None and origin.startswith(_USER_VALUE_ERROR_PACKAGES):
            return one_line(message), EXIT_ERROR
    return None


def one_line(message: str) -> str:
    """Join the lines of ``message`` with single spaces."""
    return re.sub(r"\s*\n\s*", " ", message.strip())


def _option_value(argv: Sequence[str], option: str) -> str | None:
    """Return the value of ``option`` in ``argv`` (``--opt value`` or ``--opt=value``), the last one wins."""
    value = None
    for position, argument in enumerate(argv):
        if argument == option and position + 1 < len(argv):
            value = argv[position + 1]
        elif argument.startswith(option + "="):
            value = argument[len(option) + 1:]
    return value


def _argument_message(message: str, argv: Sequence[str]) -> str:
    """Condense a jsonargparse error, which lists every type of a Union, to its cause."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    subcommand = next((argument for argument in argv if argument in SUBCOMMANDS), None)
    command = f"{PROG} {subcommand}" if subcommand else PROG
    tip = f" Run `{command} --help` for the accepted options."
    if len(lines) <= 1 or _UNION_FAILURE not in message:
        return one_line(message).rstrip(".") + "." + tip

    head = lines[0].rstrip(":")
    causes: list[str] = []
    expected_types: list[str] = []
    given = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Given value:")), None)
    for index, line in enumerate(lines):
        class_problem = re.match(r"- Problem with given class_path '(.+)':", line)
        if class_problem and index + 1 < len(lines):
            causes.append(f"{lines[index + 1]} ({class_problem.group(1)})")
            continue
        expected = re.match(r"- Expected a <class '(.+)'>", line)
        if expected and expected.group(1) != "NoneType":
            expected_types.append(expected.group(1))
    if expected_types:
        causes.append(f"expected {' or '.join(expected_types)}, got {given!r}")
    if not causes:
        return one_line(message) + tip
    return f"{head}: {'; '.join(causes)}.{tip}"


def _state_dict_message(message: str, checkpoint: str) -> str:
    """Summarize PyTorch's ``Error(s) in loading state_dict`` on one line."""
    model = re.search(r"Error\(s\) in loading state_dict for (\w+)", message)
    problems = []
    missing = re.search(r"Missing key\(s\) in state_dict: (.+?)\.\s*$", message, re.MULTILINE)
    if missing:
        problems.append(f"missing keys {_short_list(_QUOTED.findall(missing.group(1)))}")
    unexpected = re.search(r"Unexpected key\(s\) in state_dict: (.+?)\.\s*$", message, re.MULTILINE)
    if unexpected:
        problems.append(f"unexpected keys {_short_list(_QUOTED.findall(unexpected.group(1)))}")
    shapes = re.findall(
        r"size mismatch for ([\w.]+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, "
        r"the shape in current model is torch\.Size\((\[[^\]]*\])\)",
        message,
    )
    if shapes:
        described = [f"{name} {ours} in the checkpoint, {theirs} in the model" for name, ours, theirs in shapes]
        problems.append(f"wrong shapes: {_short_list(described)}")
    name = model.group(1) if model else "the model"
    details = "; ".join(problems) if problems else one_line(message)
    return (
        f"{checkpoint} does not fit {name}: {details}. Pass the model arguments that the "
        "checkpoint was trained with (e.g. --model.architecture), or a checkpoint of this model."
    )


def _short_list(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown if len(items) <= _LIST_LIMIT else f"{shown} and {len(items) - _LIST_LIMIT} more"


def _os_error_message(error: OSError) -> str:
    """Describe an OSError without the ``[Errno N]`` prefix where it has a file name."""
    if error.filename is None or error.strerror is None:
        return str(error)
    path = os.fsdecode(error.filename)
    if isinstance(error, IsADirectoryError):
        return f"{path} is a folder, expected a file."
    if isinstance(error, NotADirectoryError):
        return f"{path} is not a folder (a part of the path is a file)."
    return f"{error.strerror}: {path}"


def _worker_message(message: str) -> tuple[str, str | None]:
    """Extract the original message from an error that a DataLoader worker raised.

    PyTorch re-raises a worker's exception in the main process with the message ``Caught X in
    DataLoader worker process N. Original Traceback ...``. Returns the original message and the
    module that raised it, or ``(message, None)`` for another message.
    """
    if "Original Traceback (most recent call last):" not in message:
        return message, None
    lines = message.split("Original Traceback (most recent call last):", 1)[1].splitlines()
    files = [re.match(r'\s*File "([^"]+)"', line) for line in lines]
    last_file = next((match.group(1) for match in reversed(files) if match), None)
    first_message_line = next(
        (index for index, line in enumerate(lines) if line and not line.startswith(" ")), None
    )
    if first_message_line is None:
        return message, None
    original = "\n".join(lines[first_message_line:])
    original = re.sub(r"^[\w.]+(Error|Exception)\w*: ", "", original)
    return original, _module_of_file(last_file)


def _innermost_module(error: BaseException) -> str | None:
    """Return the module name of the innermost frame of ``error``'s traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    return _module_of_file(frames[-1].filename) if frames else None


def _module_of_file(filename: str | None) -> str | None:
    """Return the dotted package path of a source file, e.g. ``na_lightning.data.mnist``."""
    if filename is None:
        return None
    parts = Path(filename).with_suffix("").parts
    for package in _USER_VALUE_ERROR_PACKAGES + ("torch",):
        if package in parts:
            return ".".join(parts[parts.index(package):])
    return None


def _raised_in_torch_load(error: BaseException) -> bool:
    """Return whether ``error`` came out of ``torch.load``, directly or through another error."""
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.name == "load" and Path(frame.filename).name == "serialization.py":
            return True
    cause = error.__cause__
    return cause is not None and _raised_in_torch_load(cause)
