"""Base class of the errors that the data modules raise for missing dataset files."""

from __future__ import annotations


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset folder or file is missing.

    The message is ``problem`` followed by ``fix``. A command that takes its data folder from
    another option than the data module's ``data_dir`` (``na-lightning zoo eval --data-dir``, for
    example) replaces the fix with :meth:`with_fix`, so that the message names that option.

    Attributes:
        problem: what is missing and where it was looked for.
        fix: how to provide the files; may be empty.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip())

    def with_fix(self, fix: str) -> DataNotFoundError:
        """Return an error of the same class and problem whose message ends with ``fix``."""
        return type(self)(self.problem, fix)
