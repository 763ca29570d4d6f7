"""``python -m pipelines``: the project's commands around the bundles.

Each command is a module here with ``main(argv)``; it raises :class:`~pipelines.errors.InputError` on bad
input, and :func:`main` is the one place that turns it into one ``error:`` line on stderr and exit code 1, as for a bundle run;
command-line usage errors (an unknown option) exit with 2 (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipelines.cli.errors import print_error
from pipelines.errors import InputError

EXIT_INPUT_ERROR = 1  # as a bundle run ending in an InputError (Python exits with 1); argparse usage errors exit with 2

# command -> help; the module pipelines.cli.<command> (``-`` as ``_``) parses the rest of the command line
COMMANDS = {
    "manifest": "build, validate, restrict, summarise manifest CSVs or print their cross-validation folds",
    "report": "figures and report.md for an evaluated run; comparison tables of runs",
    "export": "zip a trained bundle that runs with MONAI and PyTorch alone; --import such a zip",
    "crossval": "patient-level k-fold cross-validation of an LGG bundle: train and evaluate every fold, pool the scores",
    "demo": "make the demo data, then train, evaluate and run inference with a bundle",
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 1 on an input error (one ``error:`` line on stderr)."""
    argv = sys.argv[1:] if argv is None else argv
    if not (argv[:1] and argv[0] in COMMANDS):
        parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
        commands = parser.add_subparsers(dest="command", required=True)
        for command, text in COMMANDS.items():
            commands.add_parser(command, help=text, add_help=False)
        parser.parse_args(argv)  # usage, --help or the error for an unknown command
    try:
        # imported here: export and crossval load torch, which the other commands start without
        importlib.import_module(f"pipelines.cli.{argv[0]}").main(argv[1:])
    except InputError as err:
        print_error(err)
        return EXIT_INPUT_ERROR
    return 0


def config_overrides(extra: list[str]) -> dict[str, str]:
    """``["--epochs", "20", ...]`` -> ``{"epochs": "20"}``: the ``--<config id> VALUE`` pairs after a command's options."""
    if len(extra) % 2 or not all(key.startswith("--") for key in extra[::2]):
        raise InputError(f"expected --<config id> VALUE pairs after the options, got {' '.join(extra)}")
    return {key[2:]: value for key, value in zip(extra[::2], extra[1::2])}
