"""Mask PNGs, and the per-subject 3D post-processing of a subject's slice masks (e.g. its largest 3D component).

A mask is a ``(W, H)`` uint8 array in MONAI's PIL order (as ``LoadImage`` with ``PILReader`` gives it).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.data import PILWriter
from monai.transforms import LoadImage
from monai.utils import convert_to_numpy

__all__ = ["read_mask", "write_mask", "postprocess_volume", "postprocess_written_masks"]


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """The ``(W, H)`` uint8 mask in the PNG at ``path``."""
    return convert_to_numpy(LoadImage(reader="PILReader", image_only=True, dtype=np.uint8)(path))


def write_mask(mask: np.ndarray, path: str | os.PathLike) -> None:
    """Write the ``(W, H)`` uint8 ``mask`` as a PNG to ``path``, whatever its suffix; values as given (no scaling)."""
    writer = PILWriter(output_dtype=np.uint8, scale=None)
    writer.set_data_array(mask[None], channel_dim=0)
    writer.write(path, format="PNG")


def postprocess_volume(slices: Sequence[np.ndarray], postprocessing: Callable | None) -> np.ndarray:
    """One subject's slices in slice order, each a ``(W, H)`` mask or channel-first ``(C, W, H)`` masks, as one
    ``(W, H, S)`` or ``(C, W, H, S)`` volume of their dtype, after ``postprocessing`` (None: none) of its
    channel-first tensor (``(1, W, H, S)`` for plain masks), e.g. ``KeepLargestConnectedComponent``, which must
    keep the shape."""
    volume = np.stack(slices, axis=-1)
    if postprocessing is None:
        return volume
    channel_first = volume if volume.ndim == 4 else volume[None]
    done = convert_to_numpy(postprocessing(torch.from_numpy(channel_first))).astype(volume.dtype)
    return done if volume.ndim == 4 else done[0]


def postprocess_written_masks(datalist: Sequence[dict], mask_path: Callable[[str], str], postprocessing: Callable | None) -> None:
    """After inference: each subject's masks, ``mask_path(<slice image>)`` for the items of ``datalist`` (``image``
    a path or a 2.5D stack, whose first path is the slice's own; ``subject``, ``slice``), are read back in slice
    order, post-processed as one volume (:func:`postprocess_volume`) and written again. None: nothing to do."""
    if postprocessing is None:
        return
    masks_of: dict[str, list[str]] = defaultdict(list)
    for item in sorted(datalist, key=lambda item: (item["subject"], item["slice"])):
        masks_of[item["subject"]].append(mask_path(item["image"] if isinstance(item["image"], str) else item["image"][0]))
    for masks in masks_of.values():
        volume = postprocess_volume([read_mask(path) for path in masks], postprocessing)
        for k, path in enumerate(masks):
            write_mask(volume[..., k], path)
