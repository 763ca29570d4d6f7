"""Checks a bundle's ``initialize`` step runs before anything is read for training or written."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pipelines.data.datalist import split_rows
from pipelines.errors import InputError, first_line

__all__ = ["check_checkpoint", "check_lgg_slices", "check_writable", "model_weights", "patch_within"]

BINARY_MASK_VALUES = {0, 255}
EIGHT_BIT_MODES = {"L", "LA", "RGB", "RGBA"}
PIXEL_FORMATS = {"F": "32-bit float", "I": "32-bit integer", "I;16": "16-bit", "1": "1-bit", "P": "palette"}


def model_weights(path: str | os.PathLike, network: torch.nn.Module, hint: str = "") -> dict[str, torch.Tensor]:
    """The network weights in checkpoint ``path``, loaded on the CPU with ``weights_only=True``.

    ``path`` holds a bare state dict (``model.pt``) or ``{"model": state dict, "optimizer": ...}`` (a
    ``checkpoint_epoch=N.pt``). Raises :class:`InputError` when the file is missing, damaged, would run code
    to load (a pickled class or function), or does not fit ``network`` (missing or extra keys, other shapes).
    """
    if not Path(path).is_file():
        raise InputError(f"checkpoint {path}: no such file" + (f" ({hint})" if hint else ""))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holding objects other than tensors and containers
        needs_code = re.search(r"GLOBAL ([\w.]+)", str(err))
        if needs_code:
            raise InputError(f"checkpoint {path}: refused, loading it would run code ({needs_code.group(1)}); only weights-only "
                             "checkpoints (tensors in plain containers) are loaded; re-save its state_dict() if you trust it") from None
        reason = "file ends early" if isinstance(err, EOFError) else "no pickled tensors" if isinstance(err, pickle.UnpicklingError) else first_line(err).split(". ")[0]
        raise InputError(f"checkpoint {path}: damaged or not a PyTorch checkpoint ({reason})") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    expected = getattr(network, "module", network).state_dict()  # a DDP-wrapped network saves its module's keys
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise InputError(f"checkpoint {path}: holds no state dict of network weights")
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    reshaped = [f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}" for key in expected.keys() & state.keys()
                if state[key].shape != expected[key].shape]
    if missing or unexpected or reshaped:
        problems = [f"{len(missing)} missing keys (e.g. {missing[0]})"] if missing else []
        problems += [f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})"] if unexpected else []
        problems += [f"{len(reshaped)} other shapes (e.g. {sorted(reshaped)[0]})"] if reshaped else []
        raise InputError(f"checkpoint {path}: does not fit this bundle's network ({'; '.join(problems)}); was it trained with another bundle or network_def?")
    return state


def check_checkpoint(path: str | os.PathLike, network: torch.nn.Module) -> Path:
    """Before evaluation or inference: ``path`` loads weights-only and fits ``network``; else an :class:`InputError`."""
    model_weights(path, network, hint="train the bundle first or pass --ckpt_path")
    return Path(path)


def check_writable(folders: dict[str, str | os.PathLike]) -> None:
    """Before a run writes anything: each folder (by the option that sets it, e.g. ``{"--output_dir": path}``)
    exists or can be made, and takes a file; else an :class:`InputError` naming it."""
    for option, folder in folders.items():
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise InputError(f"{option} {folder}: cannot write there ({err.strerror or err})") from None


def patch_within(patch_size: Sequence[int], image_size: Sequence[int]) -> list[int]:
    """``patch_size`` (the training crop, pixels) if it fits in ``image_size`` in every dimension; else an
    :class:`InputError` naming both settings."""
    if any(patch > image for patch, image in zip(patch_size, image_size)):
        raise InputError(f"--patch_size {list(patch_size)}: larger than --image_size {list(image_size)}; a training patch is cut from a resized slice")
    return list(patch_size)


def check_lgg_slices(
    manifest: str | os.PathLike, dataset_dir: str | os.PathLike, splits: Sequence[str], channels: Sequence[int], min_size: Sequence[int]
) -> None:
    """Check that the slices of ``splits`` fit the bundle before it trains or evaluates.

    Every image must be 8-bit grey or colour (the bundles scale 0..255 to 0..1; a float slice could hold
    NaN), have the channels the bundle reads (``channels``, 0-based) and be at least ``min_size`` pixels
    (the bundle's ``image_size``: smaller slices would be silently up-sampled before any patch or sliding
    window is taken); every label must be a single-channel mask of 0 and 255 only. Reads each mask's
    pixels (about a second per thousand slices) and only the image headers. Raises an :class:`InputError`
    naming the file, its manifest row and the problem.
    """
    root = Path(dataset_dir)
    need_channels, (need_w, need_h) = max(channels) + 1, min_size
    for row in split_rows(manifest, dataset_dir, splits):
        where = f"(manifest {manifest} row {row['row']})"
        image_path, label_path = root / row["image"], root / row["label"]
        try:
            with Image.open(image_path) as image:
                mode, bands, (width, height) = image.mode, len(image.getbands()), image.size
            with Image.open(label_path) as label:
                label_bands, values = len(label.getbands()), np.unique(np.asarray(label))
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(f"{err.filename or image_path}: cannot read image: {err} {where}") from None
        if mode not in EIGHT_BIT_MODES:
            raise InputError(f"image {image_path}: pixel format {mode} ({PIXEL_FORMATS.get(mode, 'not 8-bit')}), expected 8-bit slices of values 0..255 {where}")
        if bands < need_channels:
            raise InputError(f"image {image_path}: has {bands} channel(s) but this bundle reads channels {list(channels)} {where}")
        if width < need_w or height < need_h:
            raise InputError(f"image {image_path}: {width}x{height} is smaller than the {need_w}x{need_h} this bundle works at {where}")
        if label_bands != 1:
            raise InputError(f"label {label_path}: has {label_bands} channels, expected a single-channel mask {where}")
        if not set(values.tolist()) <= BINARY_MASK_VALUES:
            raise InputError(f"label {label_path}: values {values.tolist()[:8]} found, expected a binary mask of 0 and 255 {where}")
