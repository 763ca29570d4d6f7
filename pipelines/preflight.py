"""Checks a bundle's ``initialize`` step runs before anything is read or written."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.errors import InputError, exit_on_input_error

__all__ = ["require_file"]


@exit_on_input_error
def require_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """Return ``path`` if it is an existing file, else end the run with one line naming it and ``hint``."""
    if not Path(path).is_file():
        raise InputError(f"{what} {path}: no such file" + (f" ({hint})" if hint else ""))
    return Path(path)
