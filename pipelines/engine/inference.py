"""Writing predicted masks, after an optional per-subject 3D post-processing: for slice datasets one image per slice,
a CSV index and one NIfTI volume per subject beside its image volumes (:class:`PredictionWriter`); for 3D scans one
mask per case in the scan's own geometry and a CSV of volumes in millilitres (:class:`VolumeMaskWriter`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine, Events
from monai.data import ITKWriter
from PIL import Image

from pipelines.atomic import save_atomic
from pipelines.data.volumes import VolumeSliceDataset, mask_suffix, volume_suffix
from pipelines.engine.distributed import gather, is_rank_zero
from pipelines.engine.evaluation import slices_by_subject
from pipelines.portable.masks import postprocess_volume, write_mask

__all__ = ["SLICE_AFFINE", "PredictionWriter", "VolumeMaskWriter"]

# The slices carry no geometry: volumes stacked from them get 1 mm voxels in the axial convention of
# pipelines.data.volumes (axis 0 toward the patient's left, 1 toward posterior, slices inferior to superior).
SLICE_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


class PredictionWriter:
    """Ignite handler that saves an evaluator's predictions.

    Reads ``engine.state.output[i][pred_key]``: a ``(1, W, H)`` map of class indices in ``0..C-1``, or a
    one-hot ``(C, W, H)`` map (C > 1, reduced by argmax), in MONAI's PIL order as loaded, and each batch
    item's ``subject``, ``slice`` and ``image``. At the end of the run it stacks each subject's slices in slice
    order into a ``(1, W, H, S)`` volume of class indices, passes it through ``postprocessing`` when given
    (e.g. the recipe's ``KeepLargestConnectedComponent``; it must return the same shape;
    :func:`pipelines.portable.masks.postprocess_volume`, as exported bundles do), and writes

    - ``masks/<subject>/<image stem>_pred.png``: uint8, class ``k`` stored as ``label_values[k]``
      (``[0, 255]`` for a binary mask, ``[0, 85, 170, 255]`` for the OASIS tissue classes);
    - ``volumes/<subject>.nii.gz``: the subject's volume, uint8 class indices, shape ``(W, H, slices)``, affine
      :data:`SLICE_AFFINE`;
    - ``volumes/<subject>_<sequence>.nii.gz``: with ``sequence_channels``, the subject's image volume of each
      sequence the network reads (uint8 as in the slice files, same shape and affine), to open with the mask
      in a 3D viewer;
    - ``predictions.csv``: subject, slice, image, prediction, volume and the predicted pixel count
      of each non-background class.

    Masks, volumes and counts are those after ``postprocessing``. Every file is written atomically. Under
    ``torchrun`` the ranks' slices are gathered and rank 0 writes everything.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        label_values: Sequence[int] = (0, 255),
        class_names: Sequence[str] = ("background", "tumour"),
        pred_key: str = "pred",
        postprocessing: Callable | None = None,
        sequence_channels: Mapping[str, int] | None = None,
    ) -> None:
        if len(label_values) != len(class_names):
            raise ValueError(f"label_values {list(label_values)} and class_names {list(class_names)} differ in length")
        self.output_dir = Path(output_dir)
        self.lookup = np.asarray(label_values, dtype=np.uint8)
        self.class_names = list(class_names)
        self.pred_key = pred_key
        self.postprocessing = postprocessing
        self.sequence_channels = dict(sequence_channels or {})
        self._slices: list[tuple[str, int, str, np.ndarray]] = []  # (subject, slice, image path, (W, H) classes)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):
            pred = torch.as_tensor(output[self.pred_key]).detach().cpu()
            classes = (pred.argmax(0) if pred.shape[0] > 1 else pred[0]).numpy().astype(np.uint8)  # (W, H)
            image = item["image"].meta["filename_or_obj"] if hasattr(item["image"], "meta") else item["image"]
            self._slices.append((str(item["subject"]), int(item["slice"]), str(image), classes))

    index_name = "predictions.csv"

    def _write(self, engine: Engine) -> None:
        """Stack and post-process each subject's slices, write them (:meth:`_write_subject`) and the index CSV."""
        by_subject = slices_by_subject(gather(self._slices))
        self._slices = []
        if not is_rank_zero():
            return
        rows = []
        for subject, (numbers, images, masks) in by_subject.items():
            rows += self._write_subject(subject, numbers, images, postprocess_volume(list(masks), self.postprocessing))
        save_atomic(self.output_dir / self.index_name, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))

    def _write_subject(self, subject: str, numbers: Sequence[int], images: Sequence[str], volume: np.ndarray) -> list[dict]:
        """Write one subject's ``(W, H, S)`` class volume, its image volumes and slice masks; return its index rows."""
        target = self.output_dir / "volumes" / f"{subject}.nii.gz"
        _save_nifti(volume, target)
        self._write_image_volumes(subject, images)
        rows = []
        for k, (slice_number, image) in enumerate(zip(numbers, images)):
            classes = volume[..., k]
            mask = self.output_dir / "masks" / subject / f"{Path(image).stem}_pred.png"
            save_atomic(mask, lambda tmp, values=self.lookup[classes]: write_mask(values, tmp))
            row = {"subject": subject, "slice": slice_number, "image": image, "prediction": str(mask), "volume": str(target)}
            row.update({f"pixels_{name}": int((classes == c).sum()) for c, name in enumerate(self.class_names) if c > 0})
            rows.append(row)
        return rows

    def _write_image_volumes(self, subject: str, images: Sequence[str]) -> None:
        """``volumes/<subject>_<sequence>.nii.gz`` of each of ``sequence_channels``, from the slice files ``images``."""
        if not self.sequence_channels:
            return
        pixels = []
        for image in images:
            with Image.open(image) as file:
                pixels.append(np.atleast_3d(np.asarray(file)).transpose(1, 0, 2))  # (W, H, channels), MONAI's PIL order
        stacked = np.stack(pixels, axis=2)  # (W, H, S, channels)
        for sequence, channel in self.sequence_channels.items():
            _save_nifti(np.ascontiguousarray(stacked[..., channel]), self.output_dir / "volumes" / f"{subject}_{sequence}.nii.gz")


def _save_nifti(volume: np.ndarray, target: Path) -> None:
    """Write a ``(W, H, S)`` uint8 volume with :data:`SLICE_AFFINE` atomically (nibabel itself: MONAI's NibabelWriter
    squeezes the ``(W, H, 1)`` volume of a one-slice subject to 2D and then fails)."""
    nifti = nib.Nifti1Image(volume.astype(np.uint8), SLICE_AFFINE)
    save_atomic(target, lambda tmp: nib.save(nifti, tmp), suffix=".nii.gz")


class VolumeMaskWriter(PredictionWriter):
    """Ignite handler that writes each case of a :class:`~pipelines.data.volumes.VolumeSliceDataset` as one mask in
    the geometry of the case's reference scan.

    Collects the ``(1, X, Y)`` or one-hot ``(C, X, Y)`` slice predictions as :class:`PredictionWriter` does; at the end
    of the run stacks each case, applies ``postprocessing`` to the 3D volume, takes it back to the scan's own array
    (:meth:`~pipelines.data.volumes.VolumeSliceDataset.to_source`) and writes

    - ``<case><suffix>``: uint8 class indices 0..C-1 with the scan's shape, spacing, origin and direction; ``suffix``
      ``.nii.gz`` (default), ``.nrrd``, ``.mha``, or ``"input"``: the reference scan's own (``.nii.gz`` for DICOM);
    - ``volumes.csv``: per case the mask, the reference scan, its shape and spacing, and per class but background
      the voxel count and volume in millilitres.

    Every file is written atomically.
    """

    def __init__(self, dataset: VolumeSliceDataset, output_dir: str | os.PathLike, class_names: Sequence[str] = ("background", "tumour"),
                 suffix: str = ".nii.gz", pred_key: str = "pred", postprocessing: Callable | None = None) -> None:
        super().__init__(output_dir, label_values=range(len(class_names)), class_names=class_names, pred_key=pred_key, postprocessing=postprocessing)
        self.dataset, self.suffix = dataset, mask_suffix(suffix)

    index_name = "volumes.csv"

    def _write_subject(self, subject: str, numbers: Sequence[int], images: Sequence[str], volume: np.ndarray) -> list[dict]:
        """Write one case's mask in its scan's geometry; return its row of ``volumes.csv``."""
        mask = self.dataset.to_source(subject, volume)
        scan = self.dataset.reference_path(subject)
        suffix = (volume_suffix(scan) or ".nii.gz") if self.suffix == "input" else self.suffix
        target = self.output_dir / f"{subject}{suffix}"
        writer = ITKWriter(output_dtype=np.uint8)
        writer.set_data_array(mask, channel_dim=0)
        writer.set_metadata({"affine": mask.affine}, resample=False)
        save_atomic(target, writer.write, suffix=suffix)
        spacing = np.linalg.norm(mask.affine[:3, :3].numpy(), axis=0)
        voxel_ml = abs(float(np.linalg.det(mask.affine[:3, :3].numpy()))) / 1000
        row = {"case": subject, "mask": str(target), "scan": scan, "shape": "x".join(map(str, mask.shape[1:])),
               "spacing_mm": "x".join(f"{s:.4g}" for s in spacing)}
        classes = mask.as_tensor().numpy()[0]
        for c, name in enumerate(self.class_names[1:], start=1):
            voxels = int((classes == c).sum())
            row.update({f"voxels_{name}": voxels, f"ml_{name}": round(voxels * voxel_ml, 3)})
        return [row]
