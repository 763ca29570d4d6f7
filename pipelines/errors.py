"""User-facing input errors: one line, no traceback."""

from __future__ import annotations

import functools


class InputError(ValueError):
    """A user-facing input problem; str(err) is ONE line naming the file (and row/column where there is one) and what is wrong."""


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
