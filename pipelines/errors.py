"""The one exception type for bad input, :class:`InputError` (defined in :mod:`pipelines.portable.errors`, which
exported bundles ship too), and helpers that raise it; the command-line layer (:mod:`pipelines.cli.errors`)
shows it as one line."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.portable.errors import InputError

__all__ = ["InputError", "first_line", "existing_dir"]


def first_line(err: BaseException) -> str:
    """The first line of a library exception's message (its type name when the message is empty), to quote in an InputError."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def existing_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path; a missing folder is an :class:`InputError` ``"<path>: <what> not found"``."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} not found")
    return folder
