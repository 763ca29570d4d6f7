"""The model file's SHA-256, checked before the file is loaded (``torch.export.load`` unpickles)."""

from __future__ import annotations

import hashlib
import os

from .errors import InputError

__all__ = ["file_sha256", "verified_model_file"]


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at ``path``, 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_model_file(path: str, sha256: str) -> str:
    """``path`` when the file there has the SHA-256 ``sha256`` recorded at export; an :class:`InputError` naming
    ``path`` when it is missing or differs. It detects a damaged or swapped file, it is not a signature."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file (run from the bundle folder or pass --bundle_root DIR)")
    if file_sha256(path) != sha256:
        raise InputError(f"{path}: SHA-256 is not the one recorded at export (file damaged or replaced); extract the bundle again")
    return path
