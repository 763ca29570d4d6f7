"""User-facing input errors: one line, no traceback."""

from __future__ import annotations

import argparse
import functools
import os
import sys
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


def exit_on_input_error(func):
    """Wrap ``func`` so an :class:`InputError` ends the process with ``error: <message>`` and exit code 1.

    ``SystemExit`` passes through MONAI's config evaluation untouched, so a bundle run
    stops with that single line on stderr instead of a traceback.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InputError as err:
            raise SystemExit(f"error: {err}") from None

    return wrapper


def run_subcommand(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` and call the chosen subcommand's ``run(args)`` default.

    Returns 0 on success, 2 on an :class:`InputError` (printed as one ``error:`` line on stderr).
    """
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
