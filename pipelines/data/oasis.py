"""The OASIS family, preprocessed PNG slices (``keras_png_slices_data``): manifest builder, mask-value check,
folder listing, and :class:`OasisData`, the one object the ``oasis_unet`` bundle builds (``"data"`` in
``bundles/oasis.json``) for its datalists, checks, datasets and transforms.

Layout (256x256 grayscale PNGs, 32 slices per case)::

    keras_png_slices_data/
      keras_png_slices_{train,validate,test}/case_NNN_slice_K.nii.png      image, uint8
      keras_png_slices_seg_{train,validate,test}/seg_NNN_slice_K.nii.png   mask, uint8 in {0, 85, 170, 255}

Mask values 0/85/170/255 are background/CSF/grey matter/white matter (:data:`LABEL_VALUES`,
:data:`CLASS_NAMES`); the ``oasis_unet`` bundle maps them to classes 0..3 with MONAI's
``MapLabelValued`` and writes its predictions back as 0/85/170/255.

Manifest rows have the LGG columns (:data:`pipelines.data.manifest.WRITE_COLUMNS`): ``subject`` is the case
number NNN as written in the file names (e.g. ``"001"``), ``slice`` is K, ``split`` comes from the folder
(:data:`FOLDER_SPLITS`: train/validate/test -> train/val/test) and ``diagnosis`` is 1 when the mask
has any non-background pixel (brain tissue on the slice), else 0.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, Dataset
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, MapLabelValued

import transforms
from pipelines.data.datalist import check_manifest, load_split, split_rows
from pipelines.data.manifest import SPLITS, dataset_root, file_pixels, validate_manifest
from pipelines.data.slices import check_images, check_row_images
from pipelines.errors import InputError
from pipelines.portable.datalist import folder_datalist

__all__ = ["LABEL_VALUES", "CLASS_NAMES", "FOLDER_SPLITS", "OasisData", "build_oasis", "check_mask_values", "load_folder"]

logger = logging.getLogger(__name__)

LABEL_VALUES = (0, 85, 170, 255)
CLASS_NAMES = ("background", "csf", "grey_matter", "white_matter")
FOLDER_SPLITS = {"train": "train", "validate": "val", "test": "test"}

SLICE_NAME = r"case_(?P<subject>\d+)_slice_(?P<slice>\d+)\.nii\.png"  # an image's file name: case number, slice number
_IMAGE = re.compile(SLICE_NAME)
_MASK = re.compile(r"seg_(\d+)_slice_(\d+)\.nii\.png")


def build_oasis(dataset_dir: str | os.PathLike) -> list[dict]:
    """Scan a ``keras_png_slices_data`` folder into manifest rows sorted by (subject, slice).

    Each row: ``subject`` (str, case number), ``slice`` (int), ``image``/``label`` (paths relative to
    ``dataset_dir``), ``diagnosis`` (0 or 1), ``split`` (train/val/test from the folder name). A split
    whose image and mask folders are both absent is skipped. Every mask is decoded, so a mask with values
    outside :data:`LABEL_VALUES`, an image without its mask (or the reverse) and a case in two splits are
    :class:`InputError` s naming the file and what was found.
    """
    root = dataset_root(dataset_dir)
    rows, folder_of_case = [], {}
    for folder_split, split in FOLDER_SPLITS.items():
        image_dir, mask_dir = root / f"keras_png_slices_{folder_split}", root / f"keras_png_slices_seg_{folder_split}"
        if not image_dir.is_dir() and not mask_dir.is_dir():
            continue
        for folder, counterpart in ((image_dir, mask_dir), (mask_dir, image_dir)):
            if not folder.is_dir():
                raise InputError(f"{folder}: folder not found, but {counterpart.name} is there")
        images, masks = _slices(image_dir.iterdir(), _IMAGE), _slices(mask_dir.iterdir(), _MASK)
        _check_pairs(images, masks, image_dir, mask_dir)
        for (case, slice_number), image in images.items():
            earlier = folder_of_case.setdefault(case, image_dir)
            if earlier != image_dir:
                raise InputError(f"{image}: case {case} is also in {earlier.name}; a case belongs to one split")
            mask = masks[case, slice_number]
            rows.append({
                "subject": case,
                "slice": slice_number,
                "image": image.relative_to(root).as_posix(),
                "label": mask.relative_to(root).as_posix(),
                "diagnosis": int(_mask_values(mask).max() > 0),
                "split": split,
            })
    if not rows:
        raise InputError(f"{root}: no keras_png_slices_{{train,validate,test}} folders with case_NNN_slice_K.nii.png slices")
    return sorted(rows, key=lambda row: (row["subject"], row["slice"]))


def check_mask_values(manifest: str | os.PathLike, dataset_dir: str | os.PathLike, splits: Sequence[str] = SPLITS) -> None:
    """Decode every label of ``splits`` and check it holds only :data:`LABEL_VALUES`.

    Meant for a bundle's ``initialize`` after :func:`pipelines.data.datalist.check_manifest` (which checks that
    the files exist and that image and mask sizes match): a mask with other values, which ``MapLabelValued``
    would pass through unmapped, is an :class:`InputError` naming the first such file and its unexpected
    values, before any training.
    """
    root = dataset_root(dataset_dir)
    rows = [row for row in validate_manifest(manifest, root, splits, check_files=False) if row["split"] in splits]
    for row in rows:
        _mask_values(root / row["label"])
    logger.info(f"mask values: {len(rows)} masks of {', '.join(splits)} hold only {'/'.join(map(str, LABEL_VALUES))}")


def load_folder(input_dir: str | os.PathLike) -> list[dict]:
    """Inference items for OASIS slices without a manifest: every ``case_NNN_slice_K.nii.png`` below ``input_dir``
    (:func:`pipelines.portable.datalist.folder_datalist` with :data:`SLICE_NAME`, as the exported bundle lists them).

    Returns dicts with ``image`` (absolute path), ``subject`` (NNN) and ``slice`` (K), sorted by subject
    then slice; masks (``seg_*``) are skipped.
    """
    items = folder_datalist(input_dir, "case_*.png", option="input_dir", name_pattern=SLICE_NAME, described_as="case_NNN_slice_K.nii.png")
    return [{**item, "image": str(Path(item["image"]).resolve())} for item in items]


def _slices(files: Iterable[Path], pattern: re.Pattern) -> dict[tuple[str, int], Path]:
    """``{(case, slice): file}`` of the files whose name matches ``pattern``; other files are ignored."""
    found: dict[tuple[str, int], Path] = {}
    for file in files:
        match = pattern.fullmatch(file.name)
        if match:
            key = (match[1], int(match[2]))
            if found.setdefault(key, file) != file:
                raise InputError(f"{file}: case {key[0]} slice {key[1]} is also {found[key]}")
    return found


def _check_pairs(images: dict, masks: dict, image_dir: Path, mask_dir: Path) -> None:
    """Each case has the same slice numbers in the image and the mask folder."""
    image_slices, mask_slices = _slices_by_case(images), _slices_by_case(masks)
    for case in sorted(image_slices.keys() | mask_slices.keys()):
        if image_slices[case] == mask_slices[case]:
            continue
        found = f"(case {case}: image slices {_ranges(image_slices[case])}, mask slices {_ranges(mask_slices[case])})"
        unpaired = min(set(image_slices[case]) ^ set(mask_slices[case]))
        if unpaired in image_slices[case]:
            raise InputError(f"{images[case, unpaired]}: image has no mask seg_{case}_slice_{unpaired}.nii.png "
                             f"in {mask_dir.name} {found}")
        raise InputError(f"{masks[case, unpaired]}: mask has no image case_{case}_slice_{unpaired}.nii.png "
                         f"in {image_dir.name} {found}")


def _slices_by_case(slices: dict[tuple[str, int], Path]) -> defaultdict[str, list[int]]:
    """``{case: sorted slice numbers}``."""
    by_case: defaultdict[str, list[int]] = defaultdict(list)
    for case, number in sorted(slices):
        by_case[case].append(number)
    return by_case


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``'0-2, 5, 7-8'``; ``'none'`` when empty."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs) or "none"


def _mask_values(mask_file: Path) -> np.ndarray:
    """Distinct pixel values of a mask; any value outside :data:`LABEL_VALUES` is an :class:`InputError`."""
    found = np.unique(file_pixels(mask_file))
    unexpected = np.setdiff1d(found, LABEL_VALUES).tolist()
    if unexpected:
        shown = ", ".join(map(str, unexpected[:10])) + (f", ... ({len(unexpected)} in all)" if len(unexpected) > 10 else "")
        raise InputError(f"{mask_file}: unexpected mask values {shown} (allowed: {', '.join(map(str, LABEL_VALUES))} "
                         "= background, CSF, grey matter, white matter)")
    return found


class OasisData:
    """Datalists, checks, cached datasets and transforms of one OASIS run (the interface of
    :class:`pipelines.data.lgg.LggData`, which the shared machinery ``bundles/common.json`` calls).

    Args:
        manifest, dataset_dir: the manifest CSV and the root its paths are relative to.
        label_values: the mask values of classes 0..C-1 (:data:`LABEL_VALUES`); masks become class indices, uint8.
        num_workers: threads that fill the caches.
        device: where the training cache's tensors live (the GPU when there is one).
    """

    validation_split = "val"
    sequences = {"t1": 0}  # the one channel of a slice, named for volume files and the image volumes written beside masks
    slice_size = (256, 256)  # what volume inference cuts a scan's axial slices to
    neighbours = 0

    def __init__(self, manifest: str | os.PathLike, dataset_dir: str | os.PathLike, label_values: Sequence[int] = LABEL_VALUES,
                 num_workers: int = 0, device: torch.device | str = "cpu") -> None:
        self.manifest, self.dataset_dir, self.label_values = manifest, dataset_dir, list(label_values)
        self.num_workers, self.device = num_workers, device

    @property
    def facts(self) -> dict:
        """What a run's summaries record about its data: the manifest."""
        return {"manifest": self.manifest}

    def check(self, splits: Sequence[str]) -> None:
        """Raise an :class:`~pipelines.errors.InputError` unless the manifest, the images (8-bit grey, ``slice_size``:
        :func:`pipelines.data.slices.check_image`) and the masks of ``splits`` fit."""
        check_manifest(self.manifest, self.dataset_dir, list(splits))
        rows = split_rows(self.manifest, self.dataset_dir, list(splits))
        check_row_images(self.manifest, self.dataset_dir, rows, [0], self.slice_size, resized=False, single_channel=True)
        check_mask_values(self.manifest, self.dataset_dir, list(splits))

    def datalist(self, split: str) -> list[dict]:
        """Items of ``split`` (see :func:`pipelines.data.datalist.load_split`)."""
        return load_split(self.manifest, self.dataset_dir, split)

    def inference_datalist(self, input_dir: str, split: str) -> list[dict]:
        """The ``case_*`` slices below ``input_dir`` when it is set (:func:`load_folder`, each checked as training checks
        its images), else the items of ``split``."""
        if not input_dir:
            return self.datalist(split)
        items = load_folder(input_dir)
        check_images(items, [0], self.slice_size, resized=False, single_channel=True)
        return items

    def dataset(self, split: str, transform: Compose) -> CacheDataset:
        """The cached dataset of ``split``."""
        return CacheDataset(data=self.datalist(split), transform=transform, cache_rate=1.0, copy_cache=False, num_workers=self.num_workers)

    @staticmethod
    def uncached_dataset(data: list[dict], transform: Compose) -> Dataset:
        """A dataset over the items ``data`` that loads each item when it is drawn."""
        return Dataset(data=data, transform=transform)

    def load_transforms(self) -> list:
        """Read image and mask as uint8 ``(1, H, W)``; the mask's values become class indices 0..C-1."""
        return [
            LoadImaged(keys=["image", "label"], reader="PILReader", image_only=True, dtype=np.uint8, allow_missing_keys=True),
            EnsureChannelFirstd(keys=["image", "label"], allow_missing_keys=True),
            MapLabelValued(keys="label", orig_labels=self.label_values, target_labels=list(range(len(self.label_values))), dtype=np.uint8,
                           allow_missing_keys=True),
        ]

    def training_transforms(self, intensity_normalisation: list, augmentation: list) -> Compose:
        """Load (cached as uint8 on ``device``), then at each draw the image as float in [0, 1], the recipe's
        ``intensity_normalisation`` and ``augmentation``, and onto ``device``."""
        to_device = EnsureTyped(keys=["image", "label"], device=self.device, track_meta=False)
        return Compose(self.load_transforms() + [to_device, transforms.Uint8ToFloatd(keys="image")] + list(intensity_normalisation)
                       + list(augmentation) + [to_device])

    def evaluation_transforms(self, intensity_normalisation: list) -> Compose:
        """The network's input: the image as float in [0, 1], then the recipe's ``intensity_normalisation``."""
        return Compose(self.load_transforms() + [transforms.Uint8ToFloatd(keys="image")] + list(intensity_normalisation))
