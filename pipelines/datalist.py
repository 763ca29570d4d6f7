"""Datalists for MONAI datasets, read from validated manifests or from a folder of slices.

Bundle configs call these by name, e.g. ``"$pipelines.datalist.load_split(@manifest, @dataset_dir, 'train')"``.
A bad manifest or dataset folder ends the run with one ``error: ...`` line and exit code 1 before
any image is read or any output is written (see :func:`pipelines.errors.exit_on_input_error`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import WeightedRandomSampler

from pipelines.errors import InputError, exit_on_input_error
from pipelines.manifest import SPLITS, validate_manifest

__all__ = ["balanced_sampler", "check_manifest", "load_folder", "load_split", "split_rows"]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _validated_rows(manifest: str, dataset_dir: str, mtime_ns: int) -> tuple[dict, ...]:
    return tuple(validate_manifest(manifest, dataset_dir))


def _rows(manifest: str | os.PathLike, dataset_dir: str | os.PathLike, required: Sequence[str]) -> tuple[dict, ...]:
    """Rows of the manifest, every file checked once per process; raises InputError if a required split is empty."""
    manifest_path, root = Path(manifest).resolve(), Path(dataset_dir).resolve()
    if not root.is_dir():
        raise InputError(f"dataset_dir {dataset_dir}: no such folder (pass --dataset_dir <root of the data>)")
    if not manifest_path.is_file():
        raise InputError(f"manifest {manifest}: no such file (pass --manifest <csv>)")
    rows = _validated_rows(str(manifest_path), str(root), manifest_path.stat().st_mtime_ns)
    present = {row["split"] for row in rows}
    if not set(required) <= present:
        validate_manifest(manifest_path, root, required_splits=tuple(required), check_files=False)  # raises the one-line error
    return rows


@exit_on_input_error
def check_manifest(manifest: str | os.PathLike, dataset_dir: str | os.PathLike, required_splits: Sequence[str]) -> None:
    """Validate the whole manifest against ``dataset_dir`` and log one line of counts per split.

    Meant for a bundle's ``initialize`` step, so that every mistake surfaces before training starts.
    """
    rows = _rows(manifest, dataset_dir, required_splits)
    counts = {split: sum(r["split"] == split for r in rows) for split in SPLITS}
    logger.info(f"manifest {manifest}: {len(rows)} slices under {dataset_dir} ({', '.join(f'{k} {v}' for k, v in counts.items())})")


def split_rows(manifest: str | os.PathLike, dataset_dir: str | os.PathLike, split: str | Sequence[str]) -> list[dict]:
    """Validated manifest rows of one split (or several), in manifest order; raises :class:`InputError`.

    Each row has the manifest's columns (paths relative to ``dataset_dir``) and ``row``, its line number.
    """
    splits = [split] if isinstance(split, str) else list(split)
    return [row for row in _rows(manifest, dataset_dir, splits) if row["split"] in splits]


@exit_on_input_error
def load_split(manifest: str | os.PathLike, dataset_dir: str | os.PathLike, split: str | Sequence[str]) -> list[dict]:
    """Items of one split (or several) for a MONAI dataset.

    Returns a list of dicts, one per slice, in manifest order: ``image`` and ``label`` as absolute paths,
    ``subject`` (str), ``slice`` (int), ``diagnosis`` (0/1).
    """
    root = Path(dataset_dir).resolve()
    return [
        {
            "image": str(root / row["image"]),
            "label": str(root / row["label"]),
            "subject": row["subject"],
            "slice": row["slice"],
            "diagnosis": row["diagnosis"],
        }
        for row in split_rows(manifest, dataset_dir, split)
    ]


def balanced_sampler(items: Sequence[dict], key: str = "diagnosis", seed: int = 0) -> WeightedRandomSampler:
    """Sampler that draws items of every value of ``key`` equally often (with replacement).

    E.g. with ``key="diagnosis"`` an epoch of ``len(items)`` draws holds about as many tumour slices
    as slices without tumour, whatever their ratio in the manifest.
    """
    counts = Counter(item[key] for item in items)
    weights = torch.tensor([1.0 / counts[item[key]] for item in items], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples=len(items), replacement=True, generator=torch.Generator().manual_seed(seed))


_TRAILING_NUMBER = re.compile(r"(\d+)$")


@exit_on_input_error
def load_folder(input_dir: str | os.PathLike, pattern: str = "*.tif", exclude_suffix: str = "_mask") -> list[dict]:
    """Items for inference on a folder of slices without a manifest.

    Finds ``pattern`` files below ``input_dir`` (recursively), skipping stems that end with
    ``exclude_suffix``. ``subject`` is the file's parent folder name and ``slice`` the number that ends
    the file stem (its rank within the folder when there is none). Returns dicts with ``image``
    (absolute path), ``subject`` and ``slice``, sorted by subject then slice.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise InputError(f"input_dir {input_dir}: no such folder")
    files = sorted(p for p in root.rglob(pattern) if p.is_file() and not p.stem.endswith(exclude_suffix))
    if not files:
        raise InputError(f"input_dir {input_dir}: no '{pattern}' slices found (masks ending in '{exclude_suffix}' are skipped)")
    items = []
    for rank, path in enumerate(files):
        number = _TRAILING_NUMBER.search(path.stem)
        items.append({"image": str(path.resolve()), "subject": path.parent.name, "slice": int(number.group(1)) if number else rank})
    return sorted(items, key=lambda item: (item["subject"], item["slice"]))
