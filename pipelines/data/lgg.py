"""The LGG family: kaggle_3m FLAIR slices (256x256 .tif, 3 channels: pre-contrast, FLAIR, post-contrast) with
binary tumour masks (0/255), listed by a manifest. :class:`LggData` is the one object an LGG bundle builds
(``"data"`` in ``bundles/lgg.json``) and that every workflow asks for its datalists, checks, datasets and
transforms; the shared machinery (``bundles/common.json``) calls it the same way as :class:`pipelines.data.oasis.OasisData`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized, ScaleIntensityRanged

import transforms
from pipelines.data.datalist import check_manifest, load_folder, load_split, stacked_channels
from pipelines.data.datasets import StackedSliceDataset
from pipelines.data.manifest import SPLITS
from pipelines.data.preflight import check_lgg_slices
from pipelines.engine.training import validation_split

__all__ = ["LggData"]


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
    def facts(self) -> dict:
        """What a run's summaries record about its data: the manifest and the fold options."""
        fold = self.fold_args
        return {"manifest": self.manifest, "fold": fold["fold"], "folds": fold["folds"], "fold_seed": fold["seed"], "fold_validation": fold["validation"]}

    def check(self, splits: Sequence[str]) -> None:
        """Raise an :class:`~pipelines.errors.InputError` unless the manifest and the slices of ``splits`` (every
        split in cross-validation, whose folds mix them) fit the run; reads masks and image headers only."""
        check_manifest(self.manifest, self.dataset_dir, list(splits), **self.fold_args)
        slices = SPLITS if self.fold_args["fold"] is not None else list(splits)
        check_lgg_slices(self.manifest, self.dataset_dir, slices, self.image_channels, self.image_size)

    def datalist(self, split: str) -> list[dict]:
        """Items of ``split`` (see :func:`pipelines.data.datalist.load_split`)."""
        return load_split(self.manifest, self.dataset_dir, split, self.neighbour_slices, **self.fold_args)

    def inference_datalist(self, input_dir: str, split: str) -> list[dict]:
        """The slices below ``input_dir`` (every ``*.tif`` but masks) when it is set, else the items of ``split``."""
        return load_folder(input_dir, neighbours=self.neighbour_slices) if input_dir else self.datalist(split)

    def dataset(self, split: str, transform: Compose) -> StackedSliceDataset:
        """The cached dataset of ``split`` (each slice once, its deterministic transforms done)."""
        return StackedSliceDataset(data=self.datalist(split), transform=transform, cache_rate=1.0, copy_cache=False, num_workers=self.num_workers)

    @staticmethod
    def uncached_dataset(datalist: list[dict], transform: Compose) -> StackedSliceDataset:
        """A dataset over ``datalist`` that loads each item when it is drawn (inference reads each slice once)."""
        return StackedSliceDataset(data=datalist, transform=transform, cache_rate=0.0)

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
