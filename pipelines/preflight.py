"""Checks a bundle's ``initialize`` step runs before anything is read for training or written."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.datalist import split_rows
from pipelines.errors import InputError, exit_on_input_error

__all__ = ["check_lgg_slices", "require_file"]

BINARY_MASK_VALUES = {0, 255}


@exit_on_input_error
def require_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """Return ``path`` if it is an existing file, else end the run with one line naming it and ``hint``."""
    if not Path(path).is_file():
        raise InputError(f"{what} {path}: no such file" + (f" ({hint})" if hint else ""))
    return Path(path)


@exit_on_input_error
def check_lgg_slices(
    manifest: str | os.PathLike, dataset_dir: str | os.PathLike, splits: Sequence[str], channels: Sequence[int], min_size: Sequence[int]
) -> None:
    """Check that the slices of ``splits`` fit the bundle before it trains or evaluates.

    Every image must have the channels the bundle reads (``channels``, 0-based) and be at least
    ``min_size`` pixels (the bundle's ``image_size``: smaller slices would be silently up-sampled
    before any patch or sliding window is taken); every label must be a single-channel mask of 0 and
    255 only. Reads each mask's pixels (about a second per thousand
    slices) and only the image headers. Ends the run with one line naming the file, its manifest row
    and the problem.
    """
    root = Path(dataset_dir)
    need_channels, (need_w, need_h) = max(channels) + 1, min_size
    for row in split_rows(manifest, dataset_dir, splits):
        where = f"(manifest {manifest} row {row['row']})"
        image_path, label_path = root / row["image"], root / row["label"]
        try:
            with Image.open(image_path) as image:
                bands, (width, height) = len(image.getbands()), image.size
            with Image.open(label_path) as label:
                label_bands, values = len(label.getbands()), np.unique(np.asarray(label))
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(f"{err.filename or image_path}: cannot read image: {err} {where}") from None
        if bands < need_channels:
            raise InputError(f"image {image_path}: has {bands} channel(s) but this bundle reads channels {list(channels)} {where}")
        if width < need_w or height < need_h:
            raise InputError(f"image {image_path}: {width}x{height} is smaller than the {need_w}x{need_h} this bundle works at {where}")
        if label_bands != 1:
            raise InputError(f"label {label_path}: has {label_bands} channels, expected a single-channel mask {where}")
        if not set(values.tolist()) <= BINARY_MASK_VALUES:
            raise InputError(f"label {label_path}: values {values.tolist()[:8]} found, expected a binary mask of 0 and 255 {where}")
