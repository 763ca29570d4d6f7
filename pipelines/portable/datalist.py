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


def numbered_slices(paths: Sequence[str], name_pattern: str | None = None) -> list[dict]:
    """Items ``{"image": path, "subject", "slice"}`` sorted by subject then slice. Without ``name_pattern``:
    ``subject`` is the file's folder name and ``slice`` the number that ends its stem (without one: its index in
    ``paths``). With it, a regular expression whose named groups ``subject`` and ``slice`` match the whole file
    name (e.g. OASIS ``case_(?P<subject>\\d+)_slice_(?P<slice>\\d+)\\.nii\\.png``); other files are left out. Two files
    of one subject and slice are an :class:`InputError`."""
    items, seen = [], {}
    for rank, path in enumerate(paths):
        name = Path(path).name
        if name_pattern is None:
            number = _TRAILING_NUMBER.search(Path(path).stem)
            subject, slice_number = Path(path).parent.name, int(number.group(1)) if number else rank
        elif match := re.fullmatch(name_pattern, name):
            subject, slice_number = match["subject"], int(match["slice"])
        else:
            continue
        earlier = seen.setdefault((subject, slice_number), path)
        if earlier != path:
            raise InputError(f"{path}: subject {subject} slice {slice_number} is also {earlier}")
        items.append({"image": path, "subject": subject, "slice": slice_number})
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


def folder_datalist(
    folder: str | os.PathLike, pattern: str, skip_suffixes: Sequence[str] = (), neighbours: int = 0, option: str = "dataset_dir",
    name_pattern: str | None = None, described_as: str | None = None,
) -> list[dict]:
    """Inference items of the slices below ``folder`` without a manifest: :func:`find_slices`, :func:`numbered_slices`
    (with ``name_pattern``), then :func:`with_neighbours`. A missing folder or one without slices is an
    :class:`InputError` that names ``option``, the setting ``folder`` came from, and the slices as ``described_as``
    (default: ``pattern`` quoted)."""
    if not os.path.isdir(folder):
        raise InputError(f"{option} {str(folder) or repr('')}: no such folder")
    items = numbered_slices(find_slices(folder, pattern, skip_suffixes), name_pattern)
    if not items:
        skipped = f" (names ending in {', '.join(repr(suffix) for suffix in skip_suffixes)} are skipped)" if skip_suffixes else ""
        raise InputError(f"{option} {folder}: no {described_as or repr(pattern)} slices found{skipped}")
    return with_neighbours(items, neighbours)
