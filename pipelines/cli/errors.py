"""How bad input reaches the user: one ``error: <message>`` line on stderr, no traceback, a non-zero exit code.

Code anywhere raises :class:`pipelines.errors.InputError`. The ``python -m pipelines`` commands print it and
return 1 (:func:`pipelines.cli.main`). A bundle run, ``python -m monai.bundle run``, ends in the same line
and exit code 1 through :func:`excepthook`, which importing this module installs: every bundle config imports
it (``"$import pipelines.cli.errors"``). The hook lives in :mod:`pipelines.portable.errors`, which an exported
bundle ships and installs the same way. MONAI wraps what a config expression or component raises in a
``RuntimeError``; the hook finds the InputError in the exception's chain. Callers of MONAI's Python API
(``create_workflow``) get the exception itself.
"""

from __future__ import annotations

from pipelines.portable.errors import error_line, excepthook, input_error_in, install_excepthook, print_error

__all__ = ["input_error_in", "error_line", "print_error", "excepthook"]

install_excepthook()
