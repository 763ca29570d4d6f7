"""Atomic file writes: a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from pipelines.errors import InputError

__all__ = ["atomic_path", "file_target", "folder_target", "save_atomic", "write_text_atomic"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def file_target(path: str | os.PathLike) -> Path:
    """``path`` as a Path to write a file to; an existing folder there is an :class:`InputError` (nothing is written)."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: is a folder; give the path of the file to write")
    return target


def folder_target(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as a Path to write files into; a file at it or above it is an :class:`InputError` naming ``option``
    (nothing is written)."""
    target = Path(path)
    blocker = next((folder for folder in (target, *target.parents) if folder.exists() and not folder.is_dir()), None)
    if blocker is not None:
        raise InputError(f"{option} {target}: {blocker} is a file; give a folder to write into")
    return target


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed; a folder at
    ``path`` is an :class:`InputError` before anything is written, and so is a full disk (ENOSPC, or a quota) while
    writing, named with the file."""
    target = file_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix or target.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            free_mb = shutil.disk_usage(target.parent).free / 2**20
            raise InputError(f"{target}: the disk is full ({free_mb:.0f} MB free, {os.strerror(err.errno).lower()}); not written, "
                             "an earlier file of that name is unchanged; free some space and run again") from None
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, LF newlines) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return Path(path)


def save_atomic(path: str | os.PathLike, save: Callable[[Path], object], suffix: str = "") -> Path:
    """Call ``save(tmp_path)`` and move the result onto ``path`` atomically.

    ``suffix`` is the temporary file's ending (default: ``path``'s last suffix); writers that pick the
    format from the name need the whole of it, e.g. ``".nii.gz"``.
    """
    with atomic_path(path, suffix) as tmp:
        save(tmp)
    return Path(path)
