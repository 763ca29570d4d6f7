"""The one check of a slice image that every path runs before the image reaches a network: training and evaluation
(the manifest's rows), inference on a folder (``--infer#input_dir``) and ``manifest validate --bundle``, for both
families. It reads the image header only (the manifest checks decode the pixels)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipelines.errors import InputError

__all__ = ["EIGHT_BIT_MODES", "PIXEL_FORMATS", "check_image", "check_images", "check_row_images", "row_location"]

EIGHT_BIT_MODES = {"L", "LA", "RGB", "RGBA"}
PIXEL_FORMATS = {"F": "32-bit float", "I": "32-bit integer", "I;16": "16-bit", "I;16B": "16-bit", "1": "1-bit", "P": "palette"}
BAND_NAMES = {"L": "grey", "LA": "grey + alpha", "RGB": "RGB", "RGBA": "RGB + alpha"}


def check_image(path: str | os.PathLike, channels: Sequence[int], size: Sequence[int], where: str = "", resized: bool = True,
                single_channel: bool = False) -> None:
    """Raise an :class:`InputError` naming ``path`` (and ``where``, e.g. its manifest row) unless the image is a
    slice the bundle can read: 8-bit grey or colour (values 0..255; a float slice could hold NaN), holding every
    channel of ``channels`` (0-based) with none of them its alpha (transparency) band, exactly one channel when
    ``single_channel``, and at least ``size`` pixels (the recipe's ``image_size``: width, height, the axis order of
    MONAI's ``PILReader``), or exactly that size when the bundle does not
    resize (``resized=False``: slices of other sizes would not batch together)."""
    try:
        with Image.open(path) as image:
            mode, bands, (width, height) = image.mode, image.getbands(), image.size
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"image {path}: cannot read image: {err}{where}") from None
    need_w, need_h = size
    if mode not in EIGHT_BIT_MODES:
        problem = f"pixel format {mode} ({PIXEL_FORMATS.get(mode, 'not 8-bit')}), expected 8-bit slices of values 0..255"
    elif single_channel and len(bands) != 1:
        problem = f"has {len(bands)} channels ({BAND_NAMES[mode]}), this bundle reads single-channel grey slices"
    elif len(bands) <= max(channels):
        problem = f"has {len(bands)} channel(s) ({BAND_NAMES[mode]}) but this bundle reads channels {list(channels)}"
    elif "A" in bands and bands.index("A") in channels:
        problem = (f"channel {bands.index('A')} of this {BAND_NAMES[mode]} image is its alpha (transparency) band, not an MRI "
                   f"sequence; this bundle reads channels {list(channels)}")
    elif resized and (width < need_w or height < need_h):
        problem = f"{width}x{height} is smaller than the {need_w}x{need_h} this bundle works at"
    elif not resized and (width, height) != (need_w, need_h):
        problem = f"{width}x{height}, but this bundle reads {need_w}x{need_h} slices as they are (it does not resize them)"
    else:
        return
    raise InputError(f"image {path}: {problem}{where}")


def check_images(items: Iterable[dict], channels: Sequence[int], size: Sequence[int], resized: bool = True, single_channel: bool = False) -> None:
    """:func:`check_image` of every ``image`` of ``items`` (a path, or the path list of a 2.5D stack), e.g. the
    slices of a folder to predict."""
    paths = (path for item in items for path in ([item["image"]] if isinstance(item["image"], (str, Path)) else item["image"]))
    for path in dict.fromkeys(paths):  # each file once: 2.5D stacks share their neighbours
        check_image(path, channels, size, resized=resized, single_channel=single_channel)


def row_location(manifest: str | os.PathLike, row: dict) -> str:
    """The suffix of an error about a manifest row (a dict with its line number ``row``): `` (manifest <csv> row <n>)``."""
    return f" (manifest {manifest} row {row['row']})"


def check_row_images(manifest: str | os.PathLike, dataset_dir: str | os.PathLike, rows: Iterable[dict], channels: Sequence[int],
                     size: Sequence[int], resized: bool = True, single_channel: bool = False) -> None:
    """:func:`check_image` of the ``image`` (relative to ``dataset_dir``) of every manifest row of ``rows`` (validated rows of
    ``manifest``), an error naming the row."""
    for row in rows:
        check_image(Path(dataset_dir) / row["image"], channels, size, row_location(manifest, row), resized, single_channel)
