"""Writing predicted masks: one image per slice, a CSV index, and one NIfTI volume per subject."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine, Events
from monai.data import PILWriter

from pipelines.atomic import save_atomic
from pipelines.distributed import gather, is_rank_zero

__all__ = ["PredictionWriter"]


class PredictionWriter:
    """Ignite handler that saves an evaluator's predictions.

    Reads ``engine.state.output[i][pred_key]``: a ``(1, W, H)`` map of class indices in ``0..C-1``, or a
    one-hot ``(C, W, H)`` map (C > 1, reduced by argmax), in MONAI's PIL order as loaded, and each batch
    item's ``subject``, ``slice`` and ``image``. Writes

    - ``masks/<subject>/<image stem>_pred.png``: uint8, class ``k`` stored as ``label_values[k]``
      (``[0, 255]`` for a binary mask, ``[0, 85, 170, 255]`` for the OASIS tissue classes);
    - ``volumes/<subject>.nii.gz``: the subject's slices stacked in slice order, uint8 class indices,
      shape ``(W, H, slices)``, identity affine (the slices carry no spacing);
    - ``predictions.csv``: subject, slice, image, prediction, volume and the predicted pixel count
      of each non-background class.

    Every file is written atomically. Under ``torchrun`` each rank writes the masks of its shard; the
    volumes and the CSV are gathered and written by rank 0.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        label_values: Sequence[int] = (0, 255),
        class_names: Sequence[str] = ("background", "tumour"),
        pred_key: str = "pred",
    ) -> None:
        if len(label_values) != len(class_names):
            raise ValueError(f"label_values {list(label_values)} and class_names {list(class_names)} differ in length")
        self.output_dir = Path(output_dir)
        self.lookup = np.asarray(label_values, dtype=np.uint8)
        self.class_names = list(class_names)
        self.pred_key = pred_key
        self._rows: list[dict] = []
        self._slices: dict[str, dict[int, np.ndarray]] = defaultdict(dict)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._save_slices)
        engine.add_event_handler(Events.COMPLETED, self._save_volumes)

    def _save_slices(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):
            pred = torch.as_tensor(output[self.pred_key]).detach().cpu()
            classes = (pred.argmax(0) if pred.shape[0] > 1 else pred[0]).numpy().astype(np.uint8)  # (W, H)
            image = Path(item["image"].meta["filename_or_obj"] if hasattr(item["image"], "meta") else item["image"])
            subject, slice_number = str(item["subject"]), int(item["slice"])
            target = self.output_dir / "masks" / subject / f"{image.stem}_pred.png"
            writer = PILWriter(output_dtype=np.uint8, scale=None)
            writer.set_data_array(self.lookup[classes][None], channel_dim=0)
            save_atomic(target, lambda tmp: writer.write(tmp, format="PNG"))
            self._slices[subject][slice_number] = classes
            row = {"subject": subject, "slice": slice_number, "image": str(image), "prediction": str(target)}
            row.update({f"pixels_{name}": int((classes == k).sum()) for k, name in enumerate(self.class_names) if k > 0})
            self._rows.append(row)

    def _save_volumes(self, engine: Engine) -> None:
        rows = gather(self._rows)
        by_subject: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
        for subject, slice_number, classes in gather([(s, k, c) for s, slices in self._slices.items() for k, c in slices.items()]):
            by_subject[subject][slice_number] = classes
        if not is_rank_zero():
            return
        volumes = {}
        for subject, slices in sorted(by_subject.items()):
            volume = np.stack([slices[k] for k in sorted(slices)], axis=-1)
            target = self.output_dir / "volumes" / f"{subject}.nii.gz"
            # nibabel itself: MONAI's NibabelWriter squeezes the (W, H, 1) volume of a one-slice subject to 2D and then fails
            image = nib.Nifti1Image(volume, np.eye(4))
            save_atomic(target, lambda tmp, image=image: nib.save(image, tmp), suffix=".nii.gz")
            volumes[subject] = str(target)
        table = pd.DataFrame(rows).sort_values(["subject", "slice"], kind="stable")
        table.insert(4, "volume", table["subject"].map(volumes))
        save_atomic(self.output_dir / "predictions.csv", lambda tmp: table.to_csv(tmp, index=False))
