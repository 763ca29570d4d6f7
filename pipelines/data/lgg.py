"""The LGG family: kaggle_3m FLAIR slices (256x256 .tif, 3 channels: pre-contrast, FLAIR, post-contrast) with
binary tumour masks (0/255), listed by a manifest. Everything the project knows of this dataset is here: the
manifest builders (:func:`build_kaggle_3m`, :func:`build_kaggle_3m_from_listing`), the slice checks
(:func:`check_slices`), the folder-of-slices datalist (:func:`load_folder`), the channel layout of 2.5D stacks
(:func:`stacked_channels`, :func:`channel_names`), and :class:`LggData`, the one object an LGG bundle builds
(``"data"`` in ``bundles/lgg.json``) and that every workflow asks for its datalists, checks, datasets and
transforms; the shared machinery (``bundles/common.json``) calls it the same way as :class:`pipelines.data.oasis.OasisData`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized, ScaleIntensityRanged
from PIL import Image, UnidentifiedImageError

import transforms
from pipelines.data.datalist import check_manifest, load_split, split_rows
from pipelines.data.datasets import StackedSliceDataset
from pipelines.data.manifest import (
    DEFAULT_RATIOS, SPLITS, dataset_root, file_pixels, parse_cell, read_table, records_as_dicts, validation_split, whole_number, with_splits,
)
from pipelines.data.slices import check_images, check_row_images, row_location
from pipelines.errors import InputError
from pipelines.portable.datalist import folder_datalist, with_neighbours

__all__ = ["KAGGLE_3M_SEQUENCES", "LggData", "build_kaggle_3m", "build_kaggle_3m_from_listing", "channel_names", "check_slices", "load_folder", "stacked_channels"]

KAGGLE_3M_SEQUENCES = ("pre-contrast", "FLAIR", "post-contrast")  # the channels of a kaggle_3m .tif slice
KAGGLE_3M_SLICE_SIZE = (256, 256)  # every kaggle_3m slice, whatever the scan's field of view
BINARY_MASK_VALUES = {0, 255}

_CASE_FOLDER = re.compile(r"(TCGA_[^_]+_[^_]+)_\d+")
_LISTING_COLUMNS = ("patient", "slice", "image", "mask", "mask_pixels")


def build_kaggle_3m(dataset_dir, seed: int = 0, ratios=DEFAULT_RATIOS) -> list[dict]:
    """Scan a ``kaggle_3m`` folder into manifest rows sorted by (subject, slice), split per subject.

    Each row: ``subject`` (str, e.g. TCGA_CS_4941), ``slice`` (int), ``image``/``label`` (paths relative
    to ``dataset_dir``), ``diagnosis`` (0 or 1), ``split`` (one of :data:`pipelines.data.manifest.SPLITS`).

    Reads ``TCGA_<inst>_<patient>_<date>/<folder>_<slice>.tif`` with its ``<folder>_<slice>_mask.tif``;
    every mask is decoded to set ``diagnosis``. Other files and folders (``data.csv``) are ignored.
    """
    root = dataset_root(dataset_dir)
    rows = []
    for case_dir in sorted(root.iterdir()):
        match = _CASE_FOLDER.fullmatch(case_dir.name)
        if match and case_dir.is_dir():
            rows += _scan_case(root, case_dir, subject=match[1])
    if not rows:
        raise InputError(f"{root}: no TCGA_<inst>_<patient>_<date> folders with .tif slices")
    return with_splits(rows, seed, ratios)


def build_kaggle_3m_from_listing(listing_csv, seed: int = 0, ratios=DEFAULT_RATIOS) -> list[dict]:
    """Manifest rows from a listing CSV (patient,case_dir,slice,image,mask,mask_pixels).

    Gives exactly what :func:`build_kaggle_3m` gives for the same data; ``diagnosis`` is ``mask_pixels > 0``.
    """
    path = Path(listing_csv)
    header, records = read_table(path)
    for column in _LISTING_COLUMNS:
        if column not in header:
            raise InputError(f"{path} header: missing column '{column}'")
    rows = []
    for record in records_as_dicts(path, header, records):
        location = f"{path} row {record['row']} column"
        rows.append({
            "subject": record["patient"],
            "slice": parse_cell(whole_number, record["slice"], f"{location} 'slice'"),
            "image": record["image"],
            "label": record["mask"],
            "diagnosis": int(parse_cell(whole_number, record["mask_pixels"], f"{location} 'mask_pixels'") > 0),
        })
    return with_splits(rows, seed, ratios)




def _scan_case(root: Path, case_dir: Path, subject: str) -> list[dict]:
    """Rows (no split) of one patient folder; an image without its mask, or the reverse, is an error."""
    slice_file = re.compile(rf"{re.escape(case_dir.name)}_(\d+)(_mask)?\.tif")
    images, masks = {}, {}
    for file in case_dir.iterdir():
        match = slice_file.fullmatch(file.name)
        if match:
            (masks if match[2] else images)[int(match[1])] = file
    for slice_number in sorted(images.keys() ^ masks.keys()):
        if slice_number in images:
            raise InputError(f"{images[slice_number]}: image has no mask {case_dir.name}_{slice_number}_mask.tif")
        raise InputError(f"{masks[slice_number]}: mask has no image {case_dir.name}_{slice_number}.tif")
    return [
        {
            "subject": subject,
            "slice": slice_number,
            "image": images[slice_number].relative_to(root).as_posix(),
            "label": masks[slice_number].relative_to(root).as_posix(),
            "diagnosis": _has_tumour(masks[slice_number]),
        }
        for slice_number in images
    ]


def _has_tumour(mask_file: Path) -> int:
    """1 if the mask has any non-zero pixel, else 0."""
    return int(file_pixels(mask_file).any())


def check_slices(
    manifest: str | os.PathLike, dataset_dir: str | os.PathLike, splits: Sequence[str], channels: Sequence[int], min_size: Sequence[int]
) -> None:
    """Check that the slices of ``splits`` fit the bundle before it trains or evaluates: every image passes
    :func:`pipelines.data.slices.check_image` (8-bit, the ``channels`` the bundle reads, none of them alpha, at least
    ``min_size``, the bundle's ``image_size``: smaller slices would be silently up-sampled), every label is a
    single-channel mask of 0 and 255 only. Reads each mask's pixels (about a second per thousand slices) and only
    the image headers. Raises an :class:`InputError` naming the file, its manifest row and the problem.
    """
    rows = split_rows(manifest, dataset_dir, splits)
    check_row_images(manifest, dataset_dir, rows, channels, min_size)
    for row in rows:
        where, label_path = row_location(manifest, row), Path(dataset_dir) / row["label"]
        try:
            with Image.open(label_path) as label:
                label_bands, values = len(label.getbands()), np.unique(np.asarray(label))
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(f"{label_path}: cannot read image: {err}{where}") from None
        if label_bands != 1:
            raise InputError(f"label {label_path}: has {label_bands} channels, expected a single-channel mask{where}")
        if not set(values.tolist()) <= BINARY_MASK_VALUES:
            raise InputError(f"label {label_path}: values {values.tolist()[:8]} found, expected a binary mask of 0 and 255{where}")


def load_folder(input_dir: str | os.PathLike, pattern: str = "*.tif", skip_suffixes: Sequence[str] = ("_mask.tif",), neighbours: int = 0) -> list[dict]:
    """Items for inference on a folder of slices without a manifest: the datalist an exported bundle makes
    (:func:`pipelines.portable.datalist.folder_datalist`), with absolute paths.

    Finds ``pattern`` files below ``input_dir`` (recursively), skipping names that end in one of
    ``skip_suffixes``. ``subject`` is the file's parent folder name and ``slice`` the number that ends
    the file stem (its rank among the files found when there is none). Returns dicts with ``image``
    (absolute path, or a 2.5D path list with ``neighbours`` > 0, as :func:`load_split`), ``subject`` and
    ``slice``, sorted by subject then slice.
    """
    items = folder_datalist(input_dir, pattern, skip_suffixes, option="input_dir")
    return with_neighbours([{**item, "image": str(Path(item["image"]).resolve())} for item in items], neighbours)


def stacked_channels(channels: Sequence[int], neighbours: int, bands: int = 3) -> list[int]:
    """Indices of ``channels`` of every slice in the channel-first image ``LoadImaged`` makes of a 2.5D item.

    ``LoadImaged`` concatenates the files of an item's ``image`` list along the channel axis, ``bands``
    channels per file (3 for the RGB kaggle_3m slices), in the order of :func:`with_neighbours`: the slice
    itself, then slice -1, +1, -2, +2, ... E.g. FLAIR (``[1]``) with 1 neighbour each side: ``[1, 4, 7]``.
    With ``neighbours`` 0: ``channels`` unchanged. Exported bundles load stacks that way; the bundles'
    ``StackedSliceDataset`` picks ``channels`` of each file and concatenates them, the same tensor.
    """
    return [bands * k + channel for k in range(2 * neighbours + 1) for channel in channels]


def channel_names(channels: Sequence[int], neighbours: int) -> list[str]:
    """Names of the network's input channels, in the order of :func:`stacked_channels`, e.g. ``["FLAIR"]`` for
    ``[1]`` without neighbours, ``["FLAIR", "FLAIR, previous slice", "FLAIR, next slice"]`` with 1."""
    def position(offset: int) -> str:
        named = {0: "slice", -1: "previous slice", 1: "next slice"}
        return named.get(offset, f"{abs(offset)} slices {'before' if offset < 0 else 'after'}")

    offsets = [0, *(sign * distance for distance in range(1, neighbours + 1) for sign in (-1, 1))]
    return [KAGGLE_3M_SEQUENCES[c] + (f", {position(offset)}" if neighbours else "") for offset in offsets for c in channels]


class LggData:
    """Datalists, checks, cached datasets and transforms of one LGG run.

    Args:
        manifest, dataset_dir: the manifest CSV and the root its paths are relative to.
        image_channels: channels of each .tif slice the network reads (0-based, e.g. ``[1]`` for FLAIR).
        neighbour_slices: n > 0 stacks slices s-n..s+n of the same patient (2.5D, ``(2n+1) * channels`` inputs).
        image_size: ``[H, W]`` the slices are resized to (the network's input; masks are written at 256x256).
        fold, folds, fold_seed, fold_validation: patient-level cross-validation instead of the manifest's split
            column (``fold`` None: the split column), see :func:`pipelines.data.manifest.fold_splits`.
        model_epoch: ``"best"`` or ``"last"``, which with ``fold_validation`` decides the validation split.
        cache_validation_input: cache the validation and evaluation input as the network's float32 input
            (nothing computed per draw) instead of the uint8 file (4x less memory).
        num_workers: threads that fill the caches.
        device: where the training cache's tensors live (the GPU when there is one).
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        dataset_dir: str | os.PathLike,
        image_channels: Sequence[int],
        neighbour_slices: int,
        image_size: Sequence[int],
        fold: int | None = None,
        folds: int = 5,
        fold_seed: int = 0,
        fold_validation: str = "next",
        model_epoch: str = "best",
        cache_validation_input: bool = False,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.manifest, self.dataset_dir = manifest, dataset_dir
        self.image_channels, self.neighbour_slices, self.image_size = list(image_channels), neighbour_slices, list(image_size)
        self.fold_args = {"fold": fold, "folds": folds, "seed": fold_seed, "validation": fold_validation}
        self.model_epoch, self.cache_validation_input = model_epoch, cache_validation_input
        self.num_workers, self.device = num_workers, device

    @property
    def validation_split(self) -> str:
        """``"val"``, or ``"test"`` in cross-validation with ``fold_validation="test"``."""
        return validation_split(self.fold_args["fold"], self.fold_args["validation"], self.model_epoch)

    @property
    def input_channels(self) -> list[int]:
        """The channels of a stacked item the network reads, in order (see :func:`stacked_channels`)."""
        return stacked_channels(self.image_channels, self.neighbour_slices)

    @property
    def sequences(self) -> dict[str, int]:
        """The sequences the network reads, in its channel order, each with its channel in a .tif slice, lower case
        (the names of volume files and of the image volumes written beside masks), e.g. ``{"flair": 1}``."""
        return {KAGGLE_3M_SEQUENCES[channel].lower(): channel for channel in self.image_channels}

    slice_size = KAGGLE_3M_SLICE_SIZE  # what volume inference cuts a scan's axial slices to

    @property
    def neighbours(self) -> int:
        """Slices stacked on each side of a slice (2.5D)."""
        return self.neighbour_slices

    @property
    def facts(self) -> dict:
        """What a run's summaries record about its data: the manifest and the fold options."""
        fold = self.fold_args
        return {"manifest": self.manifest, "fold": fold["fold"], "folds": fold["folds"], "fold_seed": fold["seed"], "fold_validation": fold["validation"]}

    def check(self, splits: Sequence[str]) -> None:
        """Raise an :class:`~pipelines.errors.InputError` unless the manifest and the slices of ``splits`` (every
        split in cross-validation, whose folds mix them) fit the run; reads masks and image headers only."""
        check_manifest(self.manifest, self.dataset_dir, list(splits), **self.fold_args)
        slices = SPLITS if self.fold_args["fold"] is not None else list(splits)
        check_slices(self.manifest, self.dataset_dir, slices, self.image_channels, self.image_size)

    def datalist(self, split: str) -> list[dict]:
        """Items of ``split`` (see :func:`pipelines.data.datalist.load_split`)."""
        return load_split(self.manifest, self.dataset_dir, split, self.neighbour_slices, **self.fold_args)

    def inference_datalist(self, input_dir: str, split: str) -> list[dict]:
        """The slices below ``input_dir`` (every ``*.tif`` but masks, each checked as training checks its images) when it
        is set, else the items of ``split``."""
        if not input_dir:
            return self.datalist(split)
        items = load_folder(input_dir, neighbours=self.neighbour_slices)
        check_images(items, self.image_channels, self.image_size)
        return items

    def dataset(self, split: str, transform: Compose) -> StackedSliceDataset:
        """The cached dataset of ``split`` (each slice once, its deterministic transforms done)."""
        return StackedSliceDataset(data=self.datalist(split), transform=transform, cache_rate=1.0, copy_cache=False, num_workers=self.num_workers)

    @staticmethod
    def uncached_dataset(data: list[dict], transform: Compose) -> StackedSliceDataset:
        """A dataset over the items ``data`` that loads each item when it is drawn (inference reads each slice once)."""
        return StackedSliceDataset(data=data, transform=transform, cache_rate=0.0)

    def load_transforms(self) -> list:
        """Read image and mask as uint8 ``(C, H, W)``; keep ``image_channels`` (a label may be absent)."""
        return [
            LoadImaged(keys=["image", "label"], reader="PILReader", image_only=True, dtype=torch.uint8, allow_missing_keys=True),
            EnsureChannelFirstd(keys=["image", "label"], allow_missing_keys=True),
            transforms.SelectChannelsd(keys="image", channels=self.image_channels),
        ]

    def training_transforms(self, intensity_normalisation: list, augmentation: list) -> Compose:
        """Load (cached as uint8 on ``device``), then at each draw: float, resize to ``image_size`` (image bilinear,
        mask nearest), the recipe's ``intensity_normalisation`` and ``augmentation``, and onto ``device``."""
        to_device = EnsureTyped(keys=["image", "label"], device=self.device, track_meta=False)
        to_float = transforms.Uint8ToFloatd(keys=["image", "label"], allow_missing_keys=True)
        resize = Resized(keys=["image", "label"], spatial_size=self.image_size, mode=["bilinear", "nearest"])
        return Compose(self.load_transforms() + [to_device, to_float, resize] + list(intensity_normalisation) + list(augmentation) + [to_device])

    def evaluation_transforms(self, intensity_normalisation: list) -> Compose:
        """The network's input for validation, evaluation and inference: the image scaled to [0, 1], resized to
        ``image_size`` and normalised, the label float. With ``cache_validation_input`` a cache holds that float32
        image; without it the cache holds the uint8 file and the same values are computed at each draw
        (``Uint8ToFloatd``, where ``CacheDataset`` stops)."""
        input_transforms = [Resized(keys="image", spatial_size=self.image_size, mode="bilinear")] + list(intensity_normalisation)
        if self.cache_validation_input:
            scale = ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=0.0, b_max=1.0)
            label_to_float = transforms.Uint8ToFloatd(keys="label", allow_missing_keys=True)
            return Compose(self.load_transforms() + [scale] + input_transforms + [label_to_float])
        return Compose(self.load_transforms() + [transforms.Uint8ToFloatd(keys=["image", "label"], allow_missing_keys=True)] + input_transforms)
