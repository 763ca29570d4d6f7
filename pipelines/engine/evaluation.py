"""Per-slice and per-subject segmentation metrics for a MONAI evaluator, written as CSV and JSON.

Conventions (stated again in every summary JSON):

- ``per_slice``: mean over all slices of the per-slice score. A slice whose ground truth and prediction
  are both empty scores Dice 1 and Jaccard 1 (the seed notebooks' convention).
- ``slices_with_<class>``: mean over the slices whose ground truth contains the class only
  (for LGG: tumour slices only), so empty slices cannot inflate the score.
- ``per_subject_3d``: each subject's slices stacked into one volume; one score per subject from the
  summed counts; mean (and spread) over subjects. This is the convention of Buda et al. 2019.
- ``mean_over_classes``: the unweighted mean over the scored classes of each class's ``per_slice`` and
  ``per_subject_3d`` score (for a single class, that class's score).
- ``postprocessed`` (only with a ``postprocessing`` transform): the same scores after that transform has
  been applied to each subject's stacked 3D prediction, e.g. MONAI's ``KeepLargestConnectedComponent``.

Precision is undefined where nothing is predicted and recall where the ground truth is empty; those
cells are left empty (NaN) and skipped by the means. Dice and Jaccard are always defined.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine, Events
from monai.metrics import get_confusion_matrix

from pipelines.atomic import save_atomic, write_text_atomic
from pipelines.engine.distributed import gather, is_rank_zero
from pipelines.errors import InputError
from pipelines.portable.masks import postprocess_volume

__all__ = ["SegmentationMetricsWriter", "scores_from_counts", "slices_by_subject", "CONVENTIONS"]

CONVENTIONS = {
    "per_slice": "mean over all slices; a slice with empty ground truth and empty prediction scores Dice 1 (seed convention)",
    "slices_with_class": "mean over the slices whose ground truth contains the class (for LGG: tumour slices only)",
    "per_subject_3d": "slices of each subject stacked into a volume, one score per subject, mean over subjects (Buda et al. 2019)",
    "undefined": "precision with no predicted pixels and recall with no ground-truth pixels are undefined and skipped by means",
    "mean_over_classes": "unweighted mean over the scored classes of each class's per_slice and per_subject_3d score",
}
METRICS = ("dice", "jaccard", "precision", "recall")
POSTPROCESSED = "postprocessed"


def scores_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """Dice, Jaccard, precision and recall from pixel counts (arrays of any matching shape).

    Dice and Jaccard are 1 where ground truth and prediction are both empty; precision is NaN where
    nothing is predicted, recall NaN where the ground truth is empty. Values in [0, 1].
    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "dice": np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0),
            "jaccard": np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 1.0),
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
        }


def slices_by_subject(entries: Sequence[tuple]) -> dict[str, tuple[tuple, ...]]:
    """``(subject, slice, *fields)`` entries grouped by subject (sorted by name), each group as the columns
    ``(slices, *fields)`` in slice order, ready to stack one field into a subject's volume."""
    groups: dict[str, list] = defaultdict(list)
    for subject, number, *fields in entries:
        groups[subject].append((number, *fields))
    return {subject: tuple(zip(*sorted(group, key=lambda entry: entry[0]))) for subject, group in sorted(groups.items())}


def _filename(data: object) -> str:
    """Source file of a loaded image (a MetaTensor's ``filename_or_obj``), or the path string itself."""
    if isinstance(data, torch.Tensor):
        return str(getattr(data, "meta", {}).get("filename_or_obj", ""))
    return str(data or "")


def _mean(values: pd.Series) -> float | None:
    value = values.mean(skipna=True)
    return None if math.isnan(value) else round(float(value), 6)


def _describe(transform: Callable) -> list[str]:
    """Class names of a transform, or of each transform of a MONAI ``Compose``, for the summary."""
    return [type(t).__name__ for t in getattr(transform, "transforms", [transform])]


def _suffixed(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``frame``'s ``keys`` and its count and score columns, the latter renamed ``<column>_postprocessed``."""
    scores = [c for c in frame.columns if c.split("_", 1)[0] in ("tp", "fp", "fn", *METRICS)]
    return frame[[*keys, *scores]].rename(columns={c: f"{c}_{POSTPROCESSED}" for c in scores})


def _last_of_epoch(engine: Engine, iteration: int) -> bool:
    """Event filter: the engine's iteration ``iteration`` is the last of its epoch."""
    return engine.state.epoch_length is not None and iteration % engine.state.epoch_length == 0


class SegmentationMetricsWriter:
    """Ignite handler that scores every slice an evaluator sees and aggregates per subject.

    Reads, after the evaluator's post-transforms, ``engine.state.output[i][pred_key]`` and
    ``[label_key]``: binarised one-hot ``(C, H, W)`` tensors (C=1 for a binary mask), and the batch
    items' ``subject``, ``slice``, ``image`` and ``label`` (their file names). At the end of each run (in
    its last iteration, so before any ``EPOCH_COMPLETED`` handler) it

    - puts ``<prefix>_dice_3d`` (mean per-subject 3D Dice over ``class_names``) and, per class when there
      are several, ``<prefix>_dice_3d_<class>`` into ``engine.state.metrics`` (so StatsHandler and
      TensorBoardStatsHandler log them, and ``key_metric`` can make one of them the engine's key metric);
    - when ``output_dir`` is given, writes atomically ``<prefix>_per_slice.csv`` and
      ``<prefix>_per_subject.csv`` (counts and ``dice_<class>``, ``jaccard_<class>``, ... columns per
      class) and ``<prefix>_summary.json`` (per class under ``classes``, and ``mean_over_classes``).

    With ``postprocessing``, every subject's binarised predictions are also stacked into one
    ``(C, H, W, S)`` volume (its S slices in slice order along the last axis, values 0/1) and passed
    through that transform (e.g. MONAI's ``KeepLargestConnectedComponent``, which must return the same
    shape, 0/1 or boolean); the tables gain the same columns suffixed ``_postprocessed``, the summary a
    ``postprocessed`` block shaped like its top level (``classes``, ``mean_over_classes``), and the
    metrics ``<prefix>_dice_3d_postprocessed``. Slices with gaps in their numbers are stacked adjacently.

    Under ``torchrun`` each rank scores its shard and the records are gathered at the end of the run, so
    the metrics equal a single process's; only rank 0 writes the files.

    Args:
        class_names: one name per channel of pred/label, e.g. ``["tumour"]``.
        output_dir: folder for the files; ``None`` only sets the metrics.
        prefix: file and metric name prefix, e.g. ``"test"`` or ``"val"``.
        include_background: score channel 0 too (False drops it, for one-hot multi-class outputs).
        extra: JSON-serialisable facts copied into the summary (checkpoint, split, manifest, ...).
        postprocessing: optional transform of a subject's ``(C, H, W, S)`` prediction volume (see above).
        key_metric: the metric that picks the engine's best epoch (MONAI's ``engine.state.key_metric_name``,
            which a key-metric ``CheckpointSaver`` follows), e.g. ``"val_dice_3d_postprocessed"``; one of this
            writer's metrics, or the engine's own key metric, which is then left as it is. ``None``: left as it is.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        output_dir: str | os.PathLike | None = None,
        prefix: str = "test",
        include_background: bool = True,
        pred_key: str = "pred",
        label_key: str = "label",
        extra: dict | None = None,
        postprocessing: Callable | None = None,
        key_metric: str | None = None,
    ) -> None:
        self.class_names = list(class_names)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.prefix = prefix
        self.include_background = include_background
        self.pred_key, self.label_key = pred_key, label_key
        self.extra = dict(extra or {})
        self.postprocessing = postprocessing
        self.key_metric = key_metric
        self._records: list[dict] = []
        self._masks: list[tuple[str, int, np.ndarray, np.ndarray]] = []  # (subject, slice, pred, label) when post-processing

    def metric_names(self) -> list[str]:
        """The ``engine.state.metrics`` this writer sets at the end of each epoch."""
        names = [f"{self.prefix}_dice_3d", *([f"{self.prefix}_dice_3d_{name}" for name in self.class_names] if len(self.class_names) > 1 else [])]
        return names + ([f"{name}_{POSTPROCESSED}" for name in names] if self.postprocessing is not None else [])

    def attach(self, engine: Engine) -> None:
        """Score at the end of each epoch, in its last iteration: before every ``EPOCH_COMPLETED`` handler, MONAI's
        key-metric comparison among them. An unknown ``key_metric`` is an :class:`InputError`."""
        own = getattr(engine.state, "key_metric_name", None)
        if self.key_metric is not None and self.key_metric != own:
            if self.key_metric not in self.metric_names():
                raise InputError(f"key metric {self.key_metric!r}: not one of {', '.join([*([own] if own else []), *self.metric_names()])}")
            engine.state.key_metric_name = self.key_metric
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.ITERATION_COMPLETED(event_filter=_last_of_epoch), self._complete)

    def _reset(self, engine: Engine) -> None:
        self._records, self._masks = [], []

    def _counts(self, pred: torch.Tensor, label: torch.Tensor) -> list[dict[str, int]]:
        """``tp_<class>``, ``fp_<class>``, ``fn_<class>`` pixel counts of each item of batch-first (B, C, H, W) masks."""
        counts = get_confusion_matrix(pred, label, include_background=self.include_background)  # (B, classes, 4)
        if counts.shape[1] != len(self.class_names):
            raise ValueError(f"{counts.shape[1]} scored channel(s) but class_names has {len(self.class_names)}: {self.class_names}")
        return [
            {f"{kind}_{name}": value for name, (tp, fp, _tn, fn) in zip(self.class_names, item) for kind, value in (("tp", tp), ("fp", fp), ("fn", fn))}
            for item in counts.long().tolist()
        ]

    def _collect(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):
            pred, label = output[self.pred_key], output[self.label_key]
            record = {"subject": str(item["subject"]), "slice": int(item["slice"]), "image": _filename(item.get("image")), "label": _filename(item.get("label"))}
            self._records.append({**record, **self._counts(pred[None], label[None])[0]})
            if self.postprocessing is not None:
                self._masks.append((record["subject"], record["slice"], *(np.asarray(t.detach().cpu(), dtype=np.uint8) for t in (pred, label))))

    def _postprocessed_records(self) -> list[dict]:
        """Per-slice counts after ``postprocessing`` of each subject's stacked (C, H, W, S) prediction volume."""
        records = []
        for subject, (numbers, preds, labels) in slices_by_subject(self._masks).items():
            post = torch.from_numpy(postprocess_volume(preds, self.postprocessing)).float().movedim(-1, 0)  # (S, C, H, W)
            counts = self._counts(post, torch.from_numpy(np.stack(labels)).float())
            records += [{"subject": subject, "slice": number, **item} for number, item in zip(numbers, counts)]
        return records

    def _tables(self, records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        """Per-slice table, per-subject table and ``{"classes": ..., "mean_over_classes": ...}`` of count records."""
        slices = self._scored(pd.DataFrame(records).sort_values(["subject", "slice"], kind="stable"))
        count_cols = [c for c in slices.columns if c.split("_", 1)[0] in ("tp", "fp", "fn")]
        subjects = self._scored(slices.groupby("subject", sort=True)[count_cols].sum().reset_index())
        subjects.insert(1, "slices", slices.groupby("subject", sort=True).size().to_numpy())
        classes = {}
        for name in self.class_names:
            present = slices[slices[f"tp_{name}"] + slices[f"fn_{name}"] > 0]
            groups = {"per_slice": slices, f"slices_with_{name}": present, "per_subject_3d": subjects}
            classes[name] = {
                group: {"n": int(len(frame)), **{metric: _mean(frame[f"{metric}_{name}"]) for metric in METRICS}}
                for group, frame in groups.items()
            }
            dice_3d = subjects[f"dice_{name}"]
            classes[name]["per_subject_3d"].update(
                dice_std=round(float(dice_3d.std(ddof=0)), 6), dice_median=round(float(dice_3d.median()), 6),
                dice_min=round(float(dice_3d.min()), 6), dice_max=round(float(dice_3d.max()), 6)
            )
        mean_over_classes = {
            group: {metric: _mean(pd.Series([scores[group][metric] for scores in classes.values()], dtype=float)) for metric in METRICS}
            for group in ("per_slice", "per_subject_3d")
        }
        return slices, subjects, {"classes": classes, "mean_over_classes": mean_over_classes}

    def _scored(self, counts: pd.DataFrame) -> pd.DataFrame:
        scored = counts.copy()
        for name in self.class_names:
            scores = scores_from_counts(counts[f"tp_{name}"], counts[f"fp_{name}"], counts[f"fn_{name}"])
            for metric in METRICS:
                scored[f"{metric}_{name}"] = scores[metric]
        return scored

    def summarise(self) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        """Per-slice table, per-subject table and summary dict of everything collected so far."""
        slices, subjects, scores = self._tables(self._records)
        summary: dict = {**self.extra, "n_subjects": int(len(subjects)), "n_slices": int(len(slices)), "conventions": CONVENTIONS, **scores}
        if self.postprocessing is not None:
            post_slices, post_subjects, post_scores = self._tables(self._postprocessed_records())
            summary[POSTPROCESSED] = {"transforms": _describe(self.postprocessing), **post_scores}
            slices = slices.merge(_suffixed(post_slices, ["subject", "slice"]), on=["subject", "slice"], validate="one_to_one")
            subjects = subjects.merge(_suffixed(post_subjects, ["subject"]), on="subject", validate="one_to_one")
        return slices, subjects, summary

    def _set_metrics(self, engine: Engine, scores: dict, suffix: str = "") -> None:
        """``<prefix>_dice_3d<suffix>`` (mean over classes) and, with several classes, one per class."""
        dice_3d = {name: scores["classes"][name]["per_subject_3d"]["dice"] for name in self.class_names}
        engine.state.metrics[f"{self.prefix}_dice_3d{suffix}"] = float(np.mean(list(dice_3d.values())))
        if len(self.class_names) > 1:
            engine.state.metrics.update({f"{self.prefix}_dice_3d_{name}{suffix}": value for name, value in dice_3d.items()})

    def _complete(self, engine: Engine) -> None:
        self._records = gather(self._records)  # under torchrun: every rank's slices, so every rank gets the same scores
        self._masks = gather(self._masks)
        if not self._records:
            return
        slices, subjects, summary = self.summarise()
        self._set_metrics(engine, summary)
        if self.postprocessing is not None:
            self._set_metrics(engine, summary[POSTPROCESSED], f"_{POSTPROCESSED}")
        if self.output_dir is None or not is_rank_zero():
            return
        for frame, name in ((slices, "per_slice"), (subjects, "per_subject")):
            save_atomic(self.output_dir / f"{self.prefix}_{name}.csv", lambda tmp, frame=frame: frame.to_csv(tmp, index=False, float_format="%.6f"))
        write_text_atomic(self.output_dir / f"{self.prefix}_summary.json", json.dumps(summary, indent=2) + "\n")
