"""Volume inference: cases of 3D scans (NIfTI, NRRD, MHA or a DICOM series, read with MONAI's ITK reader) cut into the
slices the 2D networks were trained on, and the predicted masks taken back to each scan's own geometry.

The conventions (``docs/volumes.md`` says why):

- a case is a folder ``<case>/`` holding one entry per sequence the recipe reads, named by the sequence
  (``flair.nii.gz``, ``pre-contrast.nrrd``, ``t1.mha``, or ``flair/``, a folder of one DICOM series); a recipe that
  reads one sequence also takes ``<case>.nii.gz`` (any suffix of :data:`VOLUME_SUFFIXES`) or a DICOM series folder
  ``<case>/`` directly;
- every sequence is resampled onto the grid of the first one the recipe names for the case's reference
  (:func:`reference_sequence`: FLAIR when read), which is also the grid of the written mask;
- slices are axial: the volume is reoriented to :data:`SLICE_AXCODES` (array axis 0 toward the patient's left,
  axis 1 toward posterior, slice 1 the most inferior), the array order in which MONAI reads a kaggle_3m slice of
  a radiological axial image (anterior at the top);
- the in-plane grid is padded to a square and resized by pixels (not millimetres) to the slice size of the
  training data, as the kaggle_3m slices were made (every slice 256x256 whatever its field of view);
- intensities (:data:`INTENSITY_MODES`): ``"minmax"`` maps each sequence's minimum and maximum to 0 and 255 (what the
  kaggle_3m slices measure: 0 is each volume's minimum, its maximum is at or near 255), ``"unchanged"`` takes
  values already on the slices' 0..255 scale (e.g. a volume stacked from the dataset's own slices).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    AsDiscreted, CastToTyped, Compose, LoadImage, Orientationd, ResampleToMatch, Resized, ScaleIntensity, convert_applied_interp_mode,
)

from pipelines.errors import InputError, existing_dir, first_line
from pipelines.portable.datalist import with_neighbours
from transforms.volumes import SquareInPlanePadd

__all__ = ["INTENSITY_MODES", "MASK_SUFFIXES", "SLICE_AXCODES", "VOLUME_SUFFIXES", "VolumeSliceDataset", "find_cases", "mask_suffix",
           "reference_sequence", "volume_suffix"]

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
SLICE_AXCODES = "LPS"
INTENSITY_MODES = ("minmax", "unchanged")
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", "input")  # "input": the reference scan's own (.nii.gz for DICOM)
HOT_VOXEL_PERCENTILE, HOT_VOXEL_LIMIT = 99.5, 40  # kaggle_3m volumes: 99.5th percentile 82..219 of 0..255 (12 patients measured)

logger = logging.getLogger(__name__)


def reference_sequence(sequences: Sequence[str]) -> str:
    """The sequence whose grid every other one is resampled onto: ``flair`` when the recipe reads it, else the first."""
    return "flair" if "flair" in sequences else sequences[0]


def volume_suffix(path: str | os.PathLike) -> str | None:
    """The suffix of :data:`VOLUME_SUFFIXES` that the file ``path`` ends in (``.nii.gz``), or None (a folder, another file)."""
    path = Path(path)
    return next((s for s in VOLUME_SUFFIXES if path.name.lower().endswith(s)), None) if path.is_file() else None


def _volume_name(path: Path) -> str | None:
    """The name of a volume file without its suffix, or None when ``path`` is not one."""
    suffix = volume_suffix(path)
    return path.name[: -len(suffix)] if suffix else None


def mask_suffix(suffix: str) -> str:
    """``suffix`` when it is one of :data:`MASK_SUFFIXES`, else an :class:`InputError`."""
    if suffix not in MASK_SUFFIXES:
        raise InputError(f"--volumes#suffix {suffix!r}: expected one of {', '.join(MASK_SUFFIXES)}")
    return suffix


def _case_folder(folder: Path, sequences: Sequence[str]) -> dict | None:
    """The case of a folder of named sequences, None when no entry of it names one; a missing or doubled sequence is an error."""
    found: dict[str, list[Path]] = {sequence: [] for sequence in sequences}
    for entry in sorted(folder.iterdir()):
        name = (entry.name if entry.is_dir() else _volume_name(entry) or "").lower()
        if name in found:
            found[name].append(entry)
    if not any(found.values()):
        return None
    for sequence, entries in found.items():
        if not entries:
            raise InputError(f"case {folder}: no {sequence} volume ({sequence}.nii.gz, .nrrd, .mha or a {sequence}/ DICOM folder); "
                             f"this bundle reads {', '.join(sequences)}")
        if len(entries) > 1:
            raise InputError(f"case {folder}: {len(entries)} {sequence} volumes ({', '.join(e.name for e in entries)}); keep one")
    return {"case": folder.name, **{sequence: str(entries[0]) for sequence, entries in found.items()}}


def find_cases(input_dir: str | os.PathLike, sequences: Sequence[str]) -> list[dict]:
    """The cases below ``input_dir``, sorted by name: dicts with ``case`` (its name) and each of ``sequences`` (lower
    case, e.g. ``["flair"]``) mapped to a volume file or DICOM folder. Layout: see the module docstring. Other files
    are ignored; no case at all, a missing sequence or two volumes for one are an :class:`InputError`."""
    if not str(input_dir):
        raise InputError("--volumes#input_dir: give the folder of cases to segment")
    root = existing_dir(input_dir, "--volumes#input_dir (folder of cases)")
    cases = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            case = _case_folder(entry, sequences)
            if case is None and len(sequences) == 1 and any(child.is_file() for child in entry.iterdir()):
                case = {"case": entry.name, sequences[0]: str(entry)}  # a DICOM series folder
            if case is None:
                raise InputError(f"case {entry}: holds none of the sequences this bundle reads ({', '.join(sequences)}); "
                                 f"name each volume by its sequence, e.g. {sequences[0]}.nii.gz")
            cases.append(case)
        elif _volume_name(entry) is not None:
            if len(sequences) > 1:
                raise InputError(f"{entry}: a single volume, but this bundle reads {len(sequences)} sequences ({', '.join(sequences)}); "
                                 f"put each case in a folder <case>/ with one volume per sequence")
            cases.append({"case": _volume_name(entry), sequences[0]: str(entry)})
    if not cases:
        raise InputError(f"{root}: no cases (volumes {', '.join(VOLUME_SUFFIXES)}, DICOM series folders or case folders)")
    names = [case["case"] for case in cases]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise InputError(f"{root}: case {doubled[0]} is there twice (a file and a folder, or two suffixes); keep one")
    return cases


class VolumeSliceDataset(torch.utils.data.Dataset):
    """One item per slice of every case: the network's input as the slice path makes it, from 3D volumes.

    Each case's sequences are read (``LoadImage`` with the ITK reader, channel first), checked, resampled onto the
    reference grid, mapped to 0..255 (``intensity``), stacked in ``sequences`` order into ``(C, X, Y, Z)``, reoriented,
    padded to a square and resized in-plane to ``slice_size`` (the "grid", uint8 values). Item ``k`` of a case holds
    ``image``: slice ``k`` through ``transform`` (the recipe's slice transforms after loading, e.g. scaling, resizing,
    normalisation), with ``neighbours`` slices on each side stacked after it in the order of
    :func:`pipelines.portable.datalist.with_neighbours` (edges repeat the edge slice), ``(C * (2n + 1), H', W')``;
    ``subject`` (the case name) and ``slice`` (1-based, inferior to superior). One case is held in memory at a time.

    Args:
        cases: what :func:`find_cases` gives.
        sequences: the sequences the recipe reads, in its channel order (lower case names, keys of ``cases``).
        slice_size: ``[X, Y]`` of the training slices (kaggle_3m and OASIS: 256x256).
        transform: per-slice transforms of a channel-first uint8 slice ``(C, X, Y)``.
        neighbours: slices stacked on each side (2.5D recipes), 0 or more.
        intensity: one of :data:`INTENSITY_MODES`.
    """

    def __init__(self, cases: Sequence[dict], sequences: Sequence[str], slice_size: Sequence[int], transform=None,
                 neighbours: int = 0, intensity: str = "minmax") -> None:
        if intensity not in INTENSITY_MODES:
            raise InputError(f"--volumes#intensity {intensity!r}: expected one of {', '.join(INTENSITY_MODES)}")
        self.cases, self.sequences, self.reference = list(cases), list(sequences), reference_sequence(sequences)
        self.transform, self.neighbours, self.intensity = transform, neighbours, intensity
        self.to_grid = Compose([
            Orientationd(keys="image", axcodes=SLICE_AXCODES, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            SquareInPlanePadd(keys="image"),
            Resized(keys="image", spatial_size=(*slice_size, -1), mode="trilinear", anti_aliasing=True),
            AsDiscreted(keys="image", rounding="torchrounding"),
            CastToTyped(keys="image", dtype=torch.uint8),
        ])
        self._grids: dict[str, MetaTensor] = {}  # case name -> its grid without pixels (metadata and recorded steps)
        self._index: list[tuple[int, int, list[int]]] | None = None  # (case number, slice index, slice indices of its stack)
        self._held: tuple[int, torch.Tensor] | None = None  # the case in memory: (case number, grid pixels)

    def check(self) -> int:
        """Read every case once (raising an :class:`InputError` for a bad one) and return the number of slices."""
        return len(self.index)

    @property
    def index(self) -> list[tuple[int, int, list[int]]]:
        if self._index is None:  # the stacks by the slice path's own rule (with_neighbours), over slice indices
            self._index = []
            for number in range(len(self.cases)):
                slices = [{"subject": number, "slice": k, "image": k} for k in range(self._grid(number).shape[-1])]
                stacks = with_neighbours(slices, self.neighbours)
                self._index += [(number, item["slice"], item["image"] if self.neighbours else [item["image"]]) for item in stacks]
        return self._index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        number, k, stack = self.index[i]
        grid = self._grid(number)
        case = self.cases[number]["case"]
        parts = [self._slice(grid, j, case) for j in stack]
        image = parts[0] if len(parts) == 1 else torch.cat(parts)
        return {"image": image, "subject": case, "slice": k + 1}

    def _slice(self, grid: torch.Tensor, k: int, case: str) -> torch.Tensor:
        """Slice ``k`` of a grid as a fresh MetaTensor ``(C, X, Y)`` through ``transform``."""
        item = {"image": MetaTensor(grid[..., k].clone(), meta={"filename_or_obj": f"{case}/slice_{k + 1}"})}
        return (self.transform(item) if self.transform else item)["image"]

    def _grid(self, number: int) -> torch.Tensor:
        """The grid of case ``number``: read on first use, kept until another case is asked for."""
        if self._held is None or self._held[0] != number:
            grid = self.to_grid({"image": self._stacked(self.cases[number])})["image"]
            self._grids[self.cases[number]["case"]] = MetaTensor(torch.zeros(0), meta=grid.meta, applied_operations=grid.applied_operations)
            self._held = (number, grid.as_tensor())
        return self._held[1]

    def _stacked(self, case: dict) -> MetaTensor:
        """The case's sequences on the reference grid, 0..255, ``(C, X, Y, Z)`` float with the reference's metadata."""
        volumes = {sequence: self._read(case, sequence) for sequence in self.sequences}
        reference = volumes[self.reference]
        channels = []
        for sequence, volume in volumes.items():
            if volume.shape != reference.shape or not torch.allclose(volume.affine, reference.affine, atol=1e-4):
                logger.info("case %s: %s resampled onto the %s grid", case["case"], sequence, self.reference)
                volume = ResampleToMatch(mode="bilinear", padding_mode="zeros")(volume, img_dst=reference)
            channels.append(self._scaled(volume.as_tensor().float(), case[sequence]))
        return MetaTensor(torch.cat(channels), affine=reference.affine, meta={k: v for k, v in reference.meta.items() if k != "affine"})

    def _read(self, case: dict, sequence: str) -> MetaTensor:
        """One sequence, ``(1, X, Y, Z)``, checked: readable, 3D, one component, finite."""
        path = case[sequence]
        try:
            volume = LoadImage(reader="ITKReader", image_only=True, ensure_channel_first=True)(path)
        except Exception as err:  # ITK's messages name the file; its first line says what is wrong
            what = "DICOM series folder" if Path(path).is_dir() else "volume"
            raise InputError(f"{path}: cannot read the {what}: {first_line(err)}") from None
        if volume.ndim != 4 or volume.shape[0] != 1:
            shape = "x".join(map(str, volume.shape[1:] if volume.shape[0] == 1 else volume.shape))
            kind = "2D" if volume.ndim < 4 and volume.shape[0] == 1 else "not a single 3D volume (4D, or several components per voxel)"
            raise InputError(f"{path}: {shape} is {kind}; expected one 3D {sequence} volume")
        if not torch.isfinite(volume).all():
            raise InputError(f"{path}: has NaN or infinite voxels")
        return volume

    def _scaled(self, volume: torch.Tensor, path: str) -> torch.Tensor:
        """``volume`` mapped to 0..255 by ``intensity``; a volume without contrast is an error, one far outside the
        training data's range a warning."""
        low, high = float(volume.min()), float(volume.max())
        if self.intensity == "unchanged":
            if low < 0 or high > 255:
                logger.warning("%s: values %g..%g outside the 0..255 this bundle was trained on, clipped (--volumes#intensity minmax maps them)", path, low, high)
            return volume.clamp(0, 255)
        if high == low:
            raise InputError(f"{path}: every voxel is {low:g}; nothing to segment")
        scaled = ScaleIntensity(minv=0.0, maxv=255.0)(volume)
        upper = float(np.percentile(scaled.numpy(), HOT_VOXEL_PERCENTILE))
        if upper < HOT_VOXEL_LIMIT:
            logger.warning("%s: after mapping %g..%g to 0..255, 99.5%% of voxels are below %.0f (the training volumes: 80..220); "
                           "a few very bright voxels darken the rest, expect a poor mask", path, low, high, upper)
        return torch.as_tensor(scaled)

    def reference_path(self, case: str) -> str:
        """The reference scan of ``case`` (file or DICOM folder), whose geometry the mask takes."""
        return next(c[self.reference] for c in self.cases if c["case"] == case)

    def to_source(self, case: str, classes: np.ndarray) -> MetaTensor:
        """A ``(1, X, Y, Z)`` class-index volume on the grid of ``case`` taken back to the reference scan's own array
        (nearest neighbour), as a MetaTensor whose ``affine`` is the scan's (RAS, as MONAI reads it)."""
        grid = self._grids[case]
        mask = MetaTensor(torch.as_tensor(classes[None]), meta=dict(grid.meta))
        mask.applied_operations = convert_applied_interp_mode(trans_info=grid.applied_operations, mode="nearest", align_corners=None)
        return self.to_grid.inverse({"image": mask})["image"]
