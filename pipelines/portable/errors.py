"""The one exception type for bad input, and the ``sys.excepthook`` that shows it as one ``error: <message>`` line.

Standard library only: the ``python -m pipelines`` command line imports this before anything heavy.
"""

from __future__ import annotations

import sys

__all__ = ["InputError", "input_error_in", "error_line", "print_error", "excepthook", "install_excepthook", "set_interrupt_hint"]


class InputError(ValueError):
    """A user-facing input problem; str(err) is ONE line naming the file (and row/column where there is one) and what is wrong."""


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


_interrupt_hint = ""


def set_interrupt_hint(hint: str) -> None:
    """What the line printed after Ctrl-C adds, e.g. how to continue the interrupted run ("" for nothing)."""
    global _interrupt_hint
    _interrupt_hint = hint


def excepthook(kind, value, traceback) -> None:
    """``sys.excepthook``: an exception that is or comes from an InputError (MONAI wraps what a config expression
    raises in a ``RuntimeError``) is one ``error:`` line, and Python exits with code 1; so is Ctrl-C (with the
    :func:`set_interrupt_hint`), after which Python ends as killed by SIGINT. Others go to the hook installed
    before (Python's traceback)."""
    if issubclass(kind, KeyboardInterrupt):
        print(error_line(InputError("interrupted (Ctrl-C)" + (f"; {_interrupt_hint}" if _interrupt_hint else ""))), file=sys.stderr)
    elif (found := input_error_in(value)) is None:
        _previous_excepthook(kind, value, traceback)
    else:
        print_error(found)


_previous_excepthook = None


def install_excepthook() -> None:
    """Make :func:`excepthook` the ``sys.excepthook``, once per process."""
    global _previous_excepthook
    if _previous_excepthook is None:
        _previous_excepthook, sys.excepthook = sys.excepthook, excepthook
