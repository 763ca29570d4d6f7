"""Running bundles the way a user does: ``python -m monai.bundle run`` in a subprocess from the repo root."""

from __future__ import annotations

import hashlib
import os
import runpy
import subprocess
import sys
from pathlib import Path
from unittest import mock

from pipelines.bundles import bundle_command

REPO = Path(__file__).resolve().parents[1]
# narrow networks keep CPU tests quick; the recipes are otherwise unchanged
MONAI_UNET_FAST = {"network_def#channels": "[4,8,16,32,64]", "network_def#num_res_units": 0}
FAST_OVERRIDES = {"lgg_unet_dicece_rgb": MONAI_UNET_FAST, "lgg_best": MONAI_UNET_FAST}


def fast(bundle: str) -> dict:
    """Overrides that shrink ``bundle``'s network and batch for tests."""
    return {"batch_size": 8, **FAST_OVERRIDES.get(bundle, {"network_def#features": 4})}


def run_bundle(bundle: str, mode: str, processes: int = 1, **overrides) -> subprocess.CompletedProcess:
    """Run workflow ``mode`` of ``bundles/<bundle>`` (under torchrun with ``processes`` for the multi-GPU
    modes, one thread each); returns the finished process (text output)."""
    command = bundle_command(REPO / "bundles" / bundle, mode, {"bundle_root": REPO / "bundles" / bundle, **overrides}, processes)
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if processes > 1 else None
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def bundle_error_in_process(bundle: str, mode: str, **overrides) -> str:
    """Run workflow ``mode`` of ``bundles/<bundle>`` through ``monai.bundle``'s own ``__main__`` inside this
    process (the command line of :func:`run_bundle`, without the seconds of a fresh interpreter importing torch
    and MONAI) and return the message it exits with; fails unless it ends in ``SystemExit``, which Python
    prints as that one line. Only for runs that stop during their checks (no training)."""
    command = bundle_command(REPO / "bundles" / bundle, mode, {"bundle_root": REPO / "bundles" / bundle, **overrides})
    cwd = Path.cwd()
    try:
        os.chdir(REPO)
        with mock.patch.object(sys, "argv", ["monai.bundle", *command[3:]]):
            runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        return str(stop.code)
    finally:
        os.chdir(cwd)
    raise AssertionError(f"{bundle} {mode} finished without an error")


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with a single ``error: ...`` line naming every fragment, and no traceback."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in last, last
    return last


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder``, by relative path: equal digests mean nothing was touched."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}
