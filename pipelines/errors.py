"""The one exception type for bad input; the command-line layer (:mod:`pipelines.cli.errors`) shows it as one line."""

from __future__ import annotations

import os
from pathlib import Path


class InputError(ValueError):
    """A user-facing input problem; str(err) is ONE line naming the file (and row/column where there is one) and what is wrong."""


def first_line(err: BaseException) -> str:
    """The first line of a library exception's message (its type name when the message is empty), to quote in an InputError."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def existing_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path; a missing folder is an :class:`InputError` ``"<path>: <what> not found"``."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} not found")
    return folder
