"""How bad input reaches the user: one ``error: <message>`` line on stderr, no traceback, a non-zero exit code.

Code anywhere raises :class:`pipelines.errors.InputError`. The ``python -m pipelines`` commands print it and
return 2 (:func:`pipelines.cli.main`). A bundle run, ``python -m monai.bundle run``, ends in the same line
and exit code 1 through :func:`excepthook`, which importing this module installs: every bundle config imports
it (``"$import pipelines.cli.errors"``). MONAI wraps what a config expression or component raises in a
``RuntimeError``; the hook finds the InputError in the exception's chain. Callers of MONAI's Python API
(``create_workflow``) get the exception itself.
"""

from __future__ import annotations

import sys

from pipelines.errors import InputError

__all__ = ["input_error_in", "error_line", "print_error", "excepthook"]


def input_error_in(exc: BaseException | None) -> InputError | None:
    """The :class:`InputError` that ``exc`` is, or was raised from or while handling; None when there is none."""
    while exc is not None and not isinstance(exc, InputError):
        exc = exc.__cause__ or exc.__context__
    return exc


def error_line(err: InputError) -> str:
    """What the user sees of ``err``: ``error: <message>``."""
    return f"error: {err}"


def print_error(err: InputError) -> None:
    print(error_line(err), file=sys.stderr)


def excepthook(kind, value, traceback) -> None:
    """``sys.excepthook``: an exception that is or comes from an InputError is one ``error:`` line; others
    go to the hook that was installed before (Python's traceback)."""
    found = input_error_in(value)
    if found is None:
        _previous_excepthook(kind, value, traceback)
    else:
        print_error(found)


_previous_excepthook = sys.excepthook
sys.excepthook = excepthook
