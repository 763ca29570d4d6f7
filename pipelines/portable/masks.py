"""Mask PNGs written, and the per-subject 3D post-processing of a subject's slice masks (e.g. its largest 3D component).

A mask is a ``(W, H)`` uint8 array in MONAI's PIL order (as ``LoadImage`` with ``PILReader`` gives it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.data import PILWriter
from monai.utils import convert_to_numpy

__all__ = ["write_mask", "postprocess_volume"]


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
