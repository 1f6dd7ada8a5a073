"""Command-line argument types shared by the experiments."""

from __future__ import annotations

import argparse
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
