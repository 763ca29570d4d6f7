"""Datalists for MONAI datasets, read from validated manifests (a folder of slices is each family's own:
:func:`pipelines.data.lgg.load_folder`, :func:`pipelines.data.oasis.load_folder`).

Bundle configs call these by name, e.g. ``"$pipelines.data.datalist.load_split(@manifest, @dataset_dir, 'train')"``.
Two options change what a split holds: ``fold`` replaces the manifest's split column by patient-level k-fold
cross-validation roles over its train and val rows (:func:`pipelines.data.manifest.fold_splits`; the test rows are
left out), and ``neighbours`` turns each item into a
2.5D stack of neighbouring slices of the same patient (the bundles' :class:`pipelines.data.datasets.StackedSliceDataset`
caches each slice once and concatenates a stack's channels when it is drawn). The stacks are
:mod:`pipelines.portable.datalist`'s, which exported bundles run too.
A bad manifest or dataset folder raises :class:`~pipelines.errors.InputError` before any image is read or any
output is written (a bundle run shows it as one ``error:`` line, :mod:`pipelines.cli.errors`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import WeightedRandomSampler

from pipelines.data.manifest import SPLITS, fold_pool, fold_splits, validate_manifest
from pipelines.errors import InputError
from pipelines.portable.datalist import with_neighbours

__all__ = ["balanced_sampler", "check_manifest", "load_split", "split_rows"]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _validated_rows(manifest: str, dataset_dir: str, mtime_ns: int) -> tuple[dict, ...]:
    return tuple(validate_manifest(manifest, dataset_dir))


def _rows(
    manifest: str | os.PathLike, dataset_dir: str | os.PathLike, required: Sequence[str], fold: int | None = None, folds: int = 5, seed: int = 0,
    validation: str = "next",
) -> tuple[dict, ...]:
    """Rows of the manifest, every file checked once per process; raises InputError if a required split is empty.

    With ``fold`` (0..folds-1), the rows are those of :func:`pipelines.data.manifest.fold_pool` (the manifest's
    test rows are left out) and each row's ``split`` is its subject's role in that cross-validation fold: the
    pooled train and val subjects go to ``folds`` folds (seeded with ``seed``), and ``validation`` says which
    fold is ``val`` (:func:`pipelines.data.manifest.fold_splits`).
    """
    manifest_path, root = Path(manifest).resolve(), Path(dataset_dir).resolve()
    if not root.is_dir():
        raise InputError(f"dataset_dir {dataset_dir}: no such folder (pass --dataset_dir <root of the data>)")
    if not manifest_path.is_file():
        raise InputError(f"manifest {manifest}: no such file (pass --manifest <csv>)")
    rows = _validated_rows(str(manifest_path), str(root), manifest_path.stat().st_mtime_ns)
    if fold is not None:  # every role has subjects: 3 <= folds <= pooled subjects
        pool = fold_pool(rows)
        try:
            split_of = fold_splits((row["subject"] for row in pool), fold, folds, seed, validation)
        except InputError as err:
            raise InputError(f"manifest {manifest}: {err}") from None
        return tuple({**row, "split": split_of[row["subject"]]} for row in pool)
    present = {row["split"] for row in rows}
    if not set(required) <= present:
        validate_manifest(manifest_path, root, required_splits=tuple(required), check_files=False)  # raises the InputError
    return rows


def check_manifest(
    manifest: str | os.PathLike, dataset_dir: str | os.PathLike, required_splits: Sequence[str], fold: int | None = None, folds: int = 5, seed: int = 0,
    validation: str = "next",
) -> None:
    """Validate the whole manifest against ``dataset_dir`` (and the fold settings) and log one line of counts per split.

    Meant for a bundle's ``initialize`` step, so that every mistake surfaces before training starts.
    """
    rows = _rows(manifest, dataset_dir, required_splits, fold, folds, seed, validation)
    counts = {split: f"{sum(r['split'] == split for r in rows)} slices / {len({r['subject'] for r in rows if r['split'] == split})} subjects" for split in SPLITS}
    if fold is not None and validation == "test":
        counts["val"] = "the test fold"
    source = "split column" if fold is None else f"cross-validation fold {fold} of {folds} over the train and val rows (seed {seed}, validation: {validation} fold)"
    logger.info(f"manifest {manifest}: {len(rows)} slices under {dataset_dir}; {source}: {', '.join(f'{k} {v}' for k, v in counts.items())}")


def split_rows(
    manifest: str | os.PathLike, dataset_dir: str | os.PathLike, split: str | Sequence[str], fold: int | None = None, folds: int = 5, seed: int = 0,
    validation: str = "next",
) -> list[dict]:
    """Validated manifest rows of one split (or several), in manifest order; raises :class:`InputError`.

    Each row has the manifest's columns (paths relative to ``dataset_dir``) and ``row``, its line number;
    with ``fold``, ``split`` is the subject's role in that cross-validation fold (see :func:`_rows`).
    """
    splits = [split] if isinstance(split, str) else list(split)
    return [row for row in _rows(manifest, dataset_dir, splits, fold, folds, seed, validation) if row["split"] in splits]


def load_split(
    manifest: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    split: str | Sequence[str],
    neighbours: int = 0,
    fold: int | None = None,
    folds: int = 5,
    seed: int = 0,
    validation: str = "next",
) -> list[dict]:
    """Items of one split (or several) for a MONAI dataset.

    Returns a list of dicts, one per slice, in manifest order: ``image`` and ``label`` as absolute paths,
    ``subject`` (str), ``slice`` (int), ``diagnosis`` (0/1). With ``neighbours`` > 0, ``image`` is the list
    of paths of a 2.5D stack (see :func:`with_neighbours`). ``fold``, ``folds``, ``seed``, ``validation``:
    cross-validation fold instead of the split column (see :func:`_rows`).
    """
    root = Path(dataset_dir).resolve()
    items = [
        {
            "image": str(root / row["image"]),
            "label": str(root / row["label"]),
            "subject": row["subject"],
            "slice": row["slice"],
            "diagnosis": row["diagnosis"],
        }
        for row in split_rows(manifest, dataset_dir, split, fold, folds, seed, validation)
    ]
    return with_neighbours(items, neighbours)


def balanced_sampler(items: Sequence[dict], key: str = "diagnosis", seed: int = 0) -> WeightedRandomSampler:
    """Sampler that draws items of every value of ``key`` equally often (with replacement).

    E.g. with ``key="diagnosis"`` an epoch of ``len(items)`` draws holds about as many tumour slices
    as slices without tumour, whatever their ratio in the manifest.
    """
    counts = Counter(item[key] for item in items)
    weights = torch.tensor([1.0 / counts[item[key]] for item in items], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples=len(items), replacement=True, generator=torch.Generator().manual_seed(seed))
