"""The folder-of-slices datalist and its 2.5D neighbour stacks (standard library only)."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError

__all__ = ["find_slices", "numbered_slices", "with_neighbours", "folder_datalist"]

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def find_slices(folder: str | os.PathLike, pattern: str, skip_suffixes: Sequence[str] = ()) -> list[str]:
    """Paths of the ``pattern`` files below ``folder`` (any depth), sorted, without the names that end in one of
    ``skip_suffixes`` (e.g. ``"_mask.tif"``); each path is ``folder`` joined with the file's relative path."""
    return [str(path) for path in sorted(Path(folder).rglob(pattern)) if path.is_file() and not path.name.endswith(tuple(skip_suffixes))]


def numbered_slices(paths: Sequence[str]) -> list[dict]:
    """Items ``{"image": path, "subject": its folder's name, "slice": the number that ends its stem}`` (without
    one: its index in ``paths``), sorted by subject then slice."""
    items = []
    for rank, path in enumerate(paths):
        number = _TRAILING_NUMBER.search(Path(path).stem)
        items.append({"image": path, "subject": Path(path).parent.name, "slice": int(number.group(1)) if number else rank})
    return sorted(items, key=lambda item: (item["subject"], item["slice"]))


def with_neighbours(items: list[dict], neighbours: int) -> list[dict]:
    """Items whose ``image`` is the path list [slice s, s-1, s+1, ..., s-n, s+n] of the same subject (n = ``neighbours``).

    A neighbour the subject lacks (before its first or after its last slice, or in a gap of the slice
    numbers) is replaced by the nearest slice between it and slice s: edges repeat the edge slice, a lone
    slice repeats itself. Items of other subjects are never mixed in. ``neighbours`` 0 returns ``items``.
    """
    if not isinstance(neighbours, int) or neighbours < 0:
        raise InputError(f"neighbour_slices {neighbours!r}: expected a whole number of slices on each side, 0 or more")
    if neighbours == 0:
        return items
    images: dict[str, dict[int, str]] = defaultdict(dict)
    for item in items:
        images[item["subject"]][item["slice"]] = item["image"]

    def nearest(subject: str, current: int, offset: int) -> str:
        toward_current = range(offset, 0, -1 if offset > 0 else 1)
        return next((images[subject][current + d] for d in toward_current if current + d in images[subject]), images[subject][current])

    offsets = [sign * distance for distance in range(1, neighbours + 1) for sign in (-1, 1)]
    return [{**item, "image": [item["image"], *(nearest(item["subject"], item["slice"], o) for o in offsets)]} for item in items]


def folder_datalist(folder: str | os.PathLike, pattern: str, skip_suffixes: Sequence[str] = (), neighbours: int = 0, option: str = "dataset_dir") -> list[dict]:
    """Inference items of the slices below ``folder`` without a manifest: :func:`find_slices`, :func:`numbered_slices`,
    then :func:`with_neighbours`. A missing folder or one without slices is an :class:`InputError` that names
    ``option``, the setting ``folder`` came from."""
    if not os.path.isdir(folder):
        raise InputError(f"{option} {str(folder)!r}: no such folder")
    paths = find_slices(folder, pattern, skip_suffixes)
    if not paths:
        skipped = f" (names ending in {', '.join(repr(suffix) for suffix in skip_suffixes)} are skipped)" if skip_suffixes else ""
        raise InputError(f"{option} {folder}: no '{pattern}' slices found{skipped}")
    return with_neighbours(numbered_slices(paths), neighbours)
