"""Command-line argument types shared by the experiments."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

DEFAULT_OUTPUT = "runs/reproduction"
"""Default output folder. It is not ``docs/reproduction``, so a run with the defaults does not
replace the published results."""


def output_folder(text: str) -> Path:
    """Parse ``--out``: a folder that exists or will be created, checked before the run starts."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a file; expected a folder for the output files (created if missing)."
        )
    return path


def command_line_message(message: str, parser: argparse.ArgumentParser) -> str:
    """Rewrite ``name=value`` in a settings error as the option ``--name value`` of ``parser``.

    The settings dataclasses name their fields in Python syntax (``rounds=0 is invalid ...,
    e.g. rounds=500``), which a command-line user cannot paste. Only names that are the
    destination of one of the parser's options are rewritten.
    """
    options = {
        action.dest: action.option_strings[-1]
        for action in parser._actions
        if action.option_strings and action.option_strings[-1].startswith("--")
    }

    def replace(match: re.Match[str]) -> str:
        option = options.get(match.group(1))
        if option is None:
            return match.group(0)
        return f"{option} {match.group(2)}"

    return re.sub(r"\b([a-z_]+)='?([^\s,;')]*)'?", replace, message)
