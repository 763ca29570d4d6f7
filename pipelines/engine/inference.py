"""Writing predicted masks: one image per slice, a CSV index, and one NIfTI volume per subject, after an optional
per-subject 3D post-processing."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine, Events

from pipelines.atomic import save_atomic
from pipelines.engine.distributed import gather, is_rank_zero
from pipelines.engine.evaluation import slices_by_subject
from pipelines.portable.masks import postprocess_volume, write_mask

__all__ = ["PredictionWriter"]


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
    - ``volumes/<subject>.nii.gz``: the subject's volume, uint8 class indices, shape ``(W, H, slices)``,
      identity affine (the slices carry no spacing);
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
    ) -> None:
        if len(label_values) != len(class_names):
            raise ValueError(f"label_values {list(label_values)} and class_names {list(class_names)} differ in length")
        self.output_dir = Path(output_dir)
        self.lookup = np.asarray(label_values, dtype=np.uint8)
        self.class_names = list(class_names)
        self.pred_key = pred_key
        self.postprocessing = postprocessing
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

    def _write(self, engine: Engine) -> None:
        by_subject = slices_by_subject(gather(self._slices))
        self._slices = []
        if not is_rank_zero():
            return
        rows = []
        for subject, (numbers, images, masks) in by_subject.items():
            volume = postprocess_volume(list(masks), self.postprocessing)
            target = self.output_dir / "volumes" / f"{subject}.nii.gz"
            # nibabel itself: MONAI's NibabelWriter squeezes the (W, H, 1) volume of a one-slice subject to 2D and then fails
            nifti = nib.Nifti1Image(volume, np.eye(4))
            save_atomic(target, lambda tmp, nifti=nifti: nib.save(nifti, tmp), suffix=".nii.gz")
            for k, (slice_number, image) in enumerate(zip(numbers, images)):
                classes = volume[..., k]
                mask = self.output_dir / "masks" / subject / f"{Path(image).stem}_pred.png"
                save_atomic(mask, lambda tmp, values=self.lookup[classes]: write_mask(values, tmp))
                row = {"subject": subject, "slice": slice_number, "image": image, "prediction": str(mask), "volume": str(target)}
                row.update({f"pixels_{name}": int((classes == c).sum()) for c, name in enumerate(self.class_names) if c > 0})
                rows.append(row)
        save_atomic(self.output_dir / "predictions.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
