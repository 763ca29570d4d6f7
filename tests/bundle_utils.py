"""Running bundles the way a user does: the command line of ``python -m monai.bundle run``, from the repo root.

A fresh interpreter spends about 12 s of a 2-core CPU importing torch and MONAI before it reads a config, most
of an end-to-end test on demo data. :func:`run_bundle` therefore runs the command's module, ``monai.bundle``'s
``__main__``, with the same arguments in a child forked from a server process that has imported torch and
MONAI once (``multiprocessing``'s forkserver), what ``python -m monai.bundle`` imports first, and started no
thread; the child adds this module and ``pipelines.bundles``, where :func:`preloaded_main` lives.
``fresh_interpreter=True``, the multi-GPU modes (``torchrun``), the README demo (tests/test_quickstart.py) and
the exported bundle's inference (tests/test_export.py) run the command itself.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

from pipelines.bundles import bundle_command
from pipelines.cli.errors import error_line, input_error_in

REPO = Path(__file__).resolve().parents[1]
# narrow networks keep CPU tests quick; the recipes are otherwise unchanged
MONAI_UNET_FAST = {"network_def#channels": "[4,8,16,32,64]", "network_def#num_res_units": 0}
FAST_OVERRIDES = {"lgg_unet_dicece_rgb": MONAI_UNET_FAST, "lgg_best": MONAI_UNET_FAST}


def fast(bundle: str) -> dict:
    """Overrides that shrink ``bundle``'s network and batch for tests."""
    return {"batch_size": 8, **FAST_OVERRIDES.get(bundle, {"network_def#features": 4})}


TIMEOUT_S = 600
PRELOADED = multiprocessing.get_context("forkserver")
PRELOADED.set_forkserver_preload(["torch", "monai"])


def run_bundle(bundle: str, mode: str, processes: int = 1, fresh_interpreter: bool = False, **overrides) -> subprocess.CompletedProcess:
    """Run workflow ``mode`` of ``bundles/<bundle>`` with ``overrides`` (under torchrun with ``processes`` for the
    multi-GPU modes, one thread each); returns the finished process (exit code, text output)."""
    command = bundle_command(REPO / "bundles" / bundle, mode, {"bundle_root": REPO / "bundles" / bundle, **overrides}, processes)
    if fresh_interpreter or processes > 1:
        env = {**os.environ, "OMP_NUM_THREADS": "1"} if processes > 1 else None
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    return run_preloaded(command)


def run_preloaded(command: list[str]) -> subprocess.CompletedProcess:
    """``command`` (``python -m monai.bundle ...``) from the repo root, in a child of the preloaded server (see the
    module docstring); the finished process with its exit code and text output."""
    with tempfile.TemporaryDirectory() as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        child = PRELOADED.Process(target=preloaded_main, args=(command[3:], out, err), name="monai.bundle")
        child.start()
        child.join(TIMEOUT_S)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(command, TIMEOUT_S)
        return subprocess.CompletedProcess(command, child.exitcode, out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8"))


def preloaded_main(arguments: list[str], out: Path, err: Path) -> None:
    """In the forked child: ``python -m monai.bundle <arguments>`` from the repo root, stdout and stderr to the
    files ``out`` and ``err``, ended as the interpreter would: ``SystemExit``'s code or message (through
    ``multiprocessing``), 1 and ``sys.excepthook``'s report for another exception (the project's one ``error:``
    line for an :class:`~pipelines.errors.InputError`, :mod:`pipelines.cli.errors`)."""
    for fd, path in ((1, out), (2, err)):
        with open(path, "w") as file:
            os.dup2(file.fileno(), fd)
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))  # as ``python -m`` puts the working directory first
    try:
        monai_bundle_main(arguments)
    except Exception:  # as the interpreter's top level does: sys.excepthook reports it, exit code 1
        sys.excepthook(*sys.exc_info())
        raise SystemExit(1) from None
    finally:
        atexit._run_exitfuncs()


def monai_bundle_main(arguments: list[str]) -> None:
    """``monai.bundle``'s ``__main__`` with the command line ``arguments``, in this process and folder."""
    with mock.patch.object(sys, "argv", ["monai.bundle", *arguments]):
        runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)


def bundle_error_in_process(bundle: str, mode: str, **overrides) -> str:
    """Run workflow ``mode`` of ``bundles/<bundle>`` through ``monai.bundle``'s own ``__main__`` inside this
    process (the command line of :func:`run_bundle`) and return the ``error:`` line it ends with; fails unless
    it raises an :class:`~pipelines.errors.InputError` (MONAI wraps it in a ``RuntimeError``), which the
    process's top level prints as that one line. Only for runs that stop during their checks (no training)."""
    command = bundle_command(REPO / "bundles" / bundle, mode, {"bundle_root": REPO / "bundles" / bundle, **overrides})
    cwd = Path.cwd()
    try:
        os.chdir(REPO)
        monai_bundle_main(command[3:])
    except Exception as err:
        found = input_error_in(err)
        if found is None:
            raise
        return error_line(found)
    finally:
        os.chdir(cwd)
    raise AssertionError(f"{bundle} {mode} finished without an error")


def assert_error_line(message: str, *fragments: str) -> None:
    """``message`` is one ``error: ...`` line naming every fragment."""
    assert message.startswith("error: ") and "\n" not in message, message
    assert all(fragment in message for fragment in fragments), message


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with a single ``error: ...`` line naming every fragment, and no traceback."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert_error_line(last, *fragments)
    return last


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder``, by relative path: equal digests mean nothing was touched."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def cases_from_image_volumes(predictions: Path, cases: Path) -> Path:
    """A volume-inference case folder ``<cases>/<subject>/<sequence>.nii.gz`` of every subject of ``predictions.csv``,
    from the image volumes that inference writes beside each mask volume (``benchmarks/volume_agreement.py cases``)."""
    spec = importlib.util.spec_from_file_location("volume_agreement", REPO / "benchmarks" / "volume_agreement.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_cases(predictions, cases)
    return cases
