"""One run per folder: each folder a bundle run writes (``--ckpt_dir``, ``--output_dir``, ...) holds a lock file
naming the run while it writes there, and a new training never replaces a finished or interrupted one unasked.

The lock (:data:`LOCK_NAME`, JSON: ``pid``, ``host``, ``started``, ``command``) is created atomically (a hard link of
a complete temporary file), by the writing process only (rank 0 under torchrun), and removed when the run finishes
(the bundle's ``finalize``) or its process exits. A lock whose process is gone (same host) is taken over with a
warning; a live one, or one from another host (whose process cannot be checked from here), stops the run.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from pipelines.data.preflight import check_writable
from pipelines.engine.distributed import is_rank_zero
from pipelines.errors import InputError

__all__ = ["LOCK_NAME", "check_new_training", "claim_run_folders", "release_run_folders"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".run.lock"
_held: dict[Path, dict] = {}  # lock path -> the record this process wrote there


def _read_lock(lock: Path) -> dict | None:
    """The record in ``lock``; None when it is gone, unreadable or not a lock record."""
    try:
        record = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def _process_alive(pid: int) -> bool:
    """True while process ``pid`` exists on this host (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create(lock: Path, record: dict) -> bool:
    """Create ``lock`` holding ``record``, complete or not at all; False when it exists already."""
    with tempfile.NamedTemporaryFile("w", dir=lock.parent, prefix=f"{LOCK_NAME}.", delete=False) as tmp:
        json.dump(record, tmp)
    try:
        os.link(tmp.name, lock)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp.name)


def _claim(option: str, folder: Path, record: dict) -> None:
    """Hold the lock of ``folder`` for this process, taking over a stale one; else an :class:`InputError`."""
    lock = folder / LOCK_NAME
    while not _create(lock, record):
        holder = _read_lock(lock)
        if holder is None:
            if lock.exists():  # half-written by a crashed run or not ours: the same as stale
                logger.warning("%s: not a lock record; taking the folder over", lock)
                lock.unlink(missing_ok=True)
            continue
        if holder["pid"] == record["pid"] and holder.get("host") == record["host"]:
            return  # this process holds it already (a second run in one Python session)
        since = f"PID {holder['pid']} on {holder.get('host')}, since {holder.get('started')}: {holder.get('command', '')}"
        if holder.get("host") != record["host"]:
            raise InputError(f"{option} {folder}: another run may be writing there ({since}); "
                             f"if it has ended, delete {lock} and run again")
        if _process_alive(holder["pid"]):
            raise InputError(f"{option} {folder}: another run is writing there ({since}); wait for it to end or choose another {option}")
        logger.warning("%s: taking over the lock of a run that is no longer running (%s)", folder, since)
        lock.unlink(missing_ok=True)
    _held[lock] = record


def claim_run_folders(folders: dict[str, str | os.PathLike]) -> None:
    """Before a run writes: each folder (by the option that sets it, e.g. ``{"--output_dir": path}``) can be written
    (:func:`pipelines.data.preflight.check_writable`) and no other live run holds it; then this process holds each
    folder's lock until :func:`release_run_folders` or its exit. Only the writing process (rank 0) takes locks."""
    folders = {option.replace("::", "#"): folder for option, folder in folders.items()}  # MONAI's parser writes a config's "#" as "::"
    check_writable(folders)
    if not is_rank_zero():
        return
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
    for option, folder in folders.items():
        _claim(option, Path(folder), record)


@atexit.register
def release_run_folders() -> None:
    """Remove every lock this process holds (a lock taken over by another run meanwhile is left to it)."""
    for lock, record in list(_held.items()):
        if _read_lock(lock) == record:
            lock.unlink(missing_ok=True)
        del _held[lock]


def check_new_training(ckpt_dir: str | os.PathLike, resume: bool, overwrite: bool) -> None:
    """A training without ``--resume True`` starts in a ``ckpt_dir`` without checkpoints, or with ``--overwrite True``
    (its first checkpoint then replaces the earlier run's); else an :class:`InputError` naming the folder and both flags."""
    folder = Path(ckpt_dir)
    if resume or overwrite or not folder.is_dir():
        return
    earlier = sorted(path.name for pattern in ("checkpoint_epoch=*.pt", "model.pt") for path in folder.glob(pattern))
    if earlier:
        raise InputError(f"--ckpt_dir {folder}: holds an earlier training ({', '.join(earlier)}); pass --resume True to continue it, "
                         "--overwrite True to start over (its checkpoints are replaced), or choose another --ckpt_dir")
