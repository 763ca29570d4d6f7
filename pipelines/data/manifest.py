"""Slice manifests of every family: split and fold assignment, write, validate, restrict, summarise (each family
builds its own rows: :mod:`pipelines.data.lgg` scans ``kaggle_3m``, :mod:`pipelines.data.oasis` the OASIS PNG slices).

A manifest is a UTF-8 CSV with one row per 2D slice::

    subject,slice,image,label,diagnosis,split[,fold][,your own columns]

Columns with other names (notes, scanner, rater, ...) are the researcher's: kept when the project rewrites the
manifest, never read; a name one edit from a known column (``spilt``, ``Lable``) is an error that says so.

``image`` and ``label`` are paths relative to the dataset root (the ``kaggle_3m`` or
``keras_png_slices_data`` folder) with ``/`` separators; ``diagnosis`` is 1 when the label has any
non-zero pixel (LGG: tumour; OASIS: brain tissue), else 0;
``split`` is one of :data:`SPLITS` and is assigned per subject (patient), never per slice,
because neighbouring slices of one patient are nearly identical.
"""

from __future__ import annotations

import csv
import io
import logging
import posixpath
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.atomic import atomic_path
from pipelines.errors import InputError, existing_dir

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FOLD_VALIDATIONS = ("next", "test")  # which fold validates in cross-validation: the next one, or the held-out test fold itself
REQUIRED_COLUMNS = ("subject", "slice", "image", "label", "split", "diagnosis")
OPTIONAL_COLUMNS = ("fold",)
WRITE_COLUMNS = ("subject", "slice", "image", "label", "diagnosis", "split")
DEFAULT_RATIOS = (0.7, 0.15, 0.15)



def assign_splits(subjects: Iterable[str], seed: int = 0, ratios=DEFAULT_RATIOS) -> dict[str, str]:
    """Map each unique subject to a split of :data:`SPLITS`.

    Sorted unique subjects are permuted with ``numpy.random.default_rng(seed)``; the first
    ``round(ratios[0] * n)`` go to train, the next ``round(ratios[1] * n)`` to val, the rest to test.
    ``ratios`` are three non-negative fractions summing to 1.
    """
    if len(ratios) != len(SPLITS) or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
        raise InputError(f"split ratios must be three non-negative fractions (train val test) summing to 1, "
                         f"got {list(ratios)}")
    unique = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = round(ratios[0] * len(unique))
    n_val = min(round(ratios[1] * len(unique)), len(unique) - n_train)
    split_of_position = [SPLITS[0]] * n_train + [SPLITS[1]] * n_val
    split_of_position += [SPLITS[2]] * (len(unique) - len(split_of_position))
    return {unique[index]: split for index, split in zip(order, split_of_position)}


def assign_folds(subjects: Iterable[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Map each unique subject to a cross-validation fold in ``0..folds-1``; fold sizes differ by at most one.

    Sorted unique subjects are permuted with ``numpy.random.default_rng(seed)``; the subject at position
    ``i`` of the permutation goes to fold ``i % folds``. Needs 3 <= ``folds`` <= number of subjects
    (a test, a validation and at least one training fold), else raises :class:`InputError`.
    """
    unique = sorted(set(subjects))
    if not (isinstance(folds, int) and 3 <= folds <= len(unique)):
        raise InputError(f"folds {folds}: need at least 3 folds (test, validation, training) and at most one per subject "
                         f"({len(unique)} subjects)")
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[index]: position % folds for position, index in enumerate(order)}


def fold_pool(rows: Iterable[dict]) -> list[dict]:
    """The rows cross-validation deals into folds: all but the manifest's ``test`` split, whose patients are
    held out of every fold (they choose nothing; evaluate them without ``fold``). A manifest without test
    rows is pooled whole."""
    return [row for row in rows if row["split"] != "test"]


def fold_splits(subjects: Iterable[str], fold: int, folds: int, seed: int = 0, validation: str = "next") -> dict[str, str]:
    """Map each unique subject to a split of :data:`SPLITS` for cross-validation fold ``fold``.

    Folds come from :func:`assign_folds`: fold ``fold`` is ``test`` and the other folds are ``train``, except,
    with ``validation="next"``, fold ``(fold + 1) % folds``, which is ``val``. With ``validation="test"`` no
    subject is ``val`` (the bundles then validate on the test fold, as nnU-Net's cross-validation does, so
    the held-out fold must pick nothing). ``fold`` outside ``0..folds-1`` or another ``validation`` is an
    :class:`InputError`.
    """
    fold_of = assign_folds(subjects, folds, seed)
    if not (isinstance(fold, int) and 0 <= fold < folds):
        raise InputError(f"fold {fold}: must be one of 0..{folds - 1} with folds {folds}")
    if validation not in FOLD_VALIDATIONS:
        raise InputError(f"fold_validation {validation!r}: expected one of {', '.join(FOLD_VALIDATIONS)}")
    roles = {fold: "test", **({(fold + 1) % folds: "val"} if validation == "next" else {})}
    return {subject: roles.get(k, "train") for subject, k in fold_of.items()}


def validation_split(fold: int | None, fold_validation: str, model_epoch: str) -> str:
    """The split that validates a training run: ``"val"``, or ``"test"`` in cross-validation with
    ``fold_validation="test"`` (no validation fold; every other fold trains, as in nnU-Net). The held-out fold
    may then pick nothing, so that needs ``model_epoch="last"``; ``"test"`` without ``fold`` or with another
    ``model_epoch``, or another ``fold_validation``, is an :class:`InputError`."""
    if fold_validation not in FOLD_VALIDATIONS:
        raise InputError(f"--fold_validation {fold_validation!r}: expected one of {', '.join(FOLD_VALIDATIONS)}")
    if fold_validation == "next":
        return "val"
    if fold is None:
        raise InputError("--fold_validation test: only for cross-validation (pass --fold k); without it the manifest's val split validates")
    if model_epoch != "last":
        raise InputError(f"--fold_validation test with --model_epoch {model_epoch}: the held-out test fold would pick model.pt; use --model_epoch last")
    return "test"


def training_splits(train_splits: object, validation: str, model_epoch: str, cross_validation: bool) -> list[str]:
    """The manifest splits a training run trains on, checked: ``["train"]`` (the default), or ``["train", "val"]`` to
    train the release on every non-test patient once cross-validation has chosen the recipe (nnU-Net's ``all`` fold).

    The test split never trains. In cross-validation the fold roles decide (``train`` only; ``--fold_validation test``
    trains on every fold but the held-out one). When the ``validation`` split also trains, it may pick nothing, so
    that needs ``model_epoch="last"``, and a warning says that its curve is not a held-out measure. Anything else is
    an :class:`InputError` naming ``--train_splits``.
    """
    shown = f"--train_splits {train_splits!r}"
    if not isinstance(train_splits, (list, tuple)) or not train_splits or any(split not in SPLITS for split in train_splits) or len(set(train_splits)) != len(train_splits):
        raise InputError(f"{shown}: must be a list of distinct splits of the manifest, e.g. ['train'] or ['train','val']")
    if "test" in train_splits:
        raise InputError(f"{shown}: the test split is held out and never trains")
    if cross_validation and list(train_splits) != ["train"]:
        raise InputError(f"{shown} with --fold: cross-validation gives each patient its role; --fold_validation test trains on every fold but the held-out one")
    if validation in train_splits:
        if model_epoch != "last":
            raise InputError(f"{shown} with --model_epoch {model_epoch}: the {validation} patients also train, so they cannot pick model.pt; use --model_epoch last")
        logger.warning("%s: the %s patients also train, so the validation curve (val_*) is not a held-out measure", shown, validation)
    return list(train_splits)


def write_manifest(rows: Iterable[dict], path) -> Path:
    """Write rows as a manifest CSV atomically (:func:`pipelines.atomic.atomic_path`), UTF-8, LF line endings.

    Columns: :data:`WRITE_COLUMNS`, then ``fold`` when any row has one, then the researcher's own columns of a read
    manifest (notes, scanner, ...) in their order; ``row`` (the line number :func:`validate_manifest` adds) is left out.
    """
    rows, path = list(rows), Path(path)
    columns = WRITE_COLUMNS + tuple(column for column in OPTIONAL_COLUMNS if any(column in row for row in rows))
    columns += tuple(dict.fromkeys(key for row in rows for key in row if key not in columns + REQUIRED_COLUMNS + ("row",)))
    with atomic_path(path) as partial, partial.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def validate_manifest(manifest_path, dataset_dir, required_splits: Iterable[str] = (),
                      check_files: bool = True) -> list[dict]:
    """Read and check a manifest; return its rows or raise :class:`InputError` at the first problem.

    Each row is a dict of its columns (``slice`` and ``diagnosis`` as int, the rest str) plus
    ``row``, its 1-based line number in the file (header = 1). The text of every row is checked
    first, then that each split of ``required_splits`` has rows, then (``check_files``) that every
    image and label under ``dataset_dir`` exists, opens with PIL and that their sizes match.
    ``dataset_dir`` may be None when ``check_files`` is False.
    """
    path = Path(manifest_path)
    rows = _read_manifest(path)
    for split in required_splits:
        if not any(row["split"] == split for row in rows):
            raise InputError(f"{path} column 'split': no rows with split '{split}', which this run needs")
    if check_files:
        _check_files(path, rows, dataset_root(dataset_dir))
    return rows


def restrict_to_available(manifest_path, dataset_dir) -> list[dict]:
    """Rows of a manifest whose image exists under ``dataset_dir``, split unchanged, their files checked.

    For training on part of a dataset (e.g. 19 of the 110 LGG patients) with the full
    manifest's patient split. A kept row whose label is missing or unreadable is an error,
    and so is keeping no row at all.
    """
    path, root = Path(manifest_path), dataset_root(dataset_dir)
    rows = _read_manifest(path)
    kept = [row for row in rows if (root / row["image"]).is_file()]
    if not kept:
        raise InputError(f"{path}: none of its {len(rows)} images is under {root}")
    _check_files(path, kept, root)
    return kept


def split_summary(rows: Iterable[dict]) -> list[dict]:
    """One dict per split of :data:`SPLITS` (zeros when empty) with counts of
    ``subjects``, ``slices``, ``tumour_slices``, ``non_tumour_slices`` and ``tumour_subjects``."""
    rows = list(rows)
    summary = []
    for split in SPLITS:
        members = [row for row in rows if row["split"] == split]
        tumour = [row for row in members if int(row["diagnosis"])]
        summary.append({
            "split": split,
            "subjects": len({row["subject"] for row in members}),
            "slices": len(members),
            "tumour_slices": len(tumour),
            "non_tumour_slices": len(members) - len(tumour),
            "tumour_subjects": len({row["subject"] for row in tumour}),
        })
    return summary


def dataset_root(dataset_dir) -> Path:
    """``dataset_dir`` as a Path; a missing folder is an :class:`InputError`."""
    return existing_dir(dataset_dir, "dataset folder")


def file_pixels(path: Path) -> np.ndarray:
    """The pixel values a mask (or image) file holds, as PIL decodes them (e.g. (H, W) uint8, or uint16 for a 16-bit
    PNG): what the manifest checks read; an unreadable file is an :class:`InputError`."""
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except OSError as err:
        raise InputError(f"{path}: cannot read mask: {err}") from None


def with_splits(rows: list[dict], seed: int, ratios) -> list[dict]:
    """``rows`` (dicts with ``subject``) sorted by (subject, slice), each given its subject's ``split`` (:func:`assign_splits`)."""
    split_of = assign_splits((row["subject"] for row in rows), seed, ratios)
    for row in rows:
        row["split"] = split_of[row["subject"]]
    return sorted(rows, key=lambda row: (row["subject"], row["slice"]))


def read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and data records ``(line number, cells)`` of a UTF-8 CSV; cells stripped, blank records skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read file: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(f"{path} row {line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                         "save it as 'CSV UTF-8'") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    records, last_line = [], 0
    try:
        for cells in reader:
            first_line, last_line = last_line + 1, reader.line_num
            cells = [cell.strip() for cell in cells]
            if any(cells):
                records.append((first_line, cells))
    except csv.Error as err:
        raise InputError(f"{path} row {reader.line_num}: {err}") from None
    if not records:
        raise InputError(f"{path}: file is empty, expected a header line and rows")
    if len(records) == 1:
        raise InputError(f"{path}: no rows under the header")
    return records[0][1], records[1:]


def records_as_dicts(path: Path, header: list[str], records) -> list[dict]:
    """``{column: cell, 'row': line number}`` per record; a record with the wrong number of cells is an error."""
    dicts = []
    for line, cells in records:
        if len(cells) < len(header):
            raise InputError(f"{path} row {line} column '{header[len(cells)]}': missing cell "
                             f"(the row has {len(cells)} cells, the header {len(header)} columns)")
        if len(cells) > len(header):
            extra = ", ".join(repr(cell) for cell in cells[len(header):])
            raise InputError(f"{path} row {line}: {len(cells)} cells but the header has {len(header)} columns "
                             f"(extra: {extra})")
        dicts.append({**dict(zip(header, cells)), "row": line})
    return dicts


def _check_header(path: Path, header: list[str]) -> None:
    """Required columns present, none twice; a column one edit from a known name (``spilt``, ``Lable``) is an error
    that says which; any other column is the researcher's own (notes, scanner, rater): kept, never read."""
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    separator = next((sep for sep in ";\t|" if len(header) == 1 and sep in header[0]), None)
    if separator:
        raise InputError(f"{path} header: columns are separated by {separator!r}; "
                         "save the file as comma-separated CSV")
    for position, name in enumerate(header):
        if name in header[:position]:
            raise InputError(f"{path} header: column '{name}' appears twice")
        meant = next((column for column in known if name != column and _one_edit_apart(name.lower(), column)), None)
        if meant:
            raise InputError(f"{path} header: column '{name}' is one edit from '{meant}'; rename it (columns with other names are kept as notes)")
    for name in REQUIRED_COLUMNS:
        if name not in header:
            raise InputError(f"{path} header: missing required column '{name}'")


def _one_edit_apart(a: str, b: str) -> bool:
    """``a`` becomes ``b`` by at most one insertion, deletion, substitution or swap of neighbours (or is ``b``)."""
    if len(a) == len(b):
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        return len(differ) <= 1 or (len(differ) == 2 and differ[1] == differ[0] + 1 and a[differ[0]] == b[differ[1]] and a[differ[1]] == b[differ[0]])
    shorter, longer = sorted((a, b), key=len)
    return len(longer) - len(shorter) == 1 and any(longer[:i] + longer[i + 1:] == shorter for i in range(len(longer)))


def whole_number(cell: str) -> int:
    if not re.fullmatch(r"[0-9]+", cell):
        raise ValueError(f"expected a whole number, got '{cell}'")
    return int(cell)


def _diagnosis(cell: str) -> int:
    if cell not in ("0", "1"):
        raise ValueError(f"expected 0 (no tumour) or 1 (tumour), got '{cell}'")
    return int(cell)


def _fold(cell: str) -> str:
    whole_number(cell)
    return cell


def _split(cell: str) -> str:
    if cell not in SPLITS:
        raise ValueError(f"unknown split '{cell}'; use one of: {', '.join(SPLITS)}")
    return cell


def _relative_path(cell: str) -> str:
    if cell.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", cell):
        raise ValueError(f"'{cell}' is an absolute path; give it relative to the dataset folder")
    if "\\" in cell:
        raise ValueError(f"'{cell}' contains '\\'; separate folders with '/'")
    if posixpath.normpath(cell).split("/")[0] == "..":
        raise ValueError(f"'{cell}' points outside the dataset folder")
    return cell


_CELL_PARSERS = {
    "slice": whole_number, "diagnosis": _diagnosis, "fold": _fold,
    "split": _split, "image": _relative_path, "label": _relative_path,
}


def parse_cell(parser, cell: str, location: str):
    """``parser(cell)``, with a ValueError turned into an InputError at ``location``."""
    try:
        return parser(cell)
    except ValueError as err:
        raise InputError(f"{location}: {err}") from None


def _read_manifest(path: Path) -> list[dict]:
    """Parsed rows of a manifest whose text is valid (header, cells, uniqueness, one split per subject)."""
    header, records = read_table(path)
    _check_header(path, header)
    rows = records_as_dicts(path, header, records)
    for row in rows:
        for column in (column for column in header if column in REQUIRED_COLUMNS + OPTIONAL_COLUMNS):
            location = f"{path} row {row['row']} column '{column}'"
            if not row[column]:
                raise InputError(f"{location}: empty cell")
            row[column] = parse_cell(_CELL_PARSERS.get(column, str), row[column], location)
    _check_unique(path, rows)
    return rows


def _check_unique(path: Path, rows: list[dict]) -> None:
    """Each file is used once (as one row's image or label), each (subject, slice) once, each subject in one split."""
    first_use: dict[str, tuple[int, str]] = {}
    first_slice: dict[tuple[str, int], int] = {}
    first_of_subject: dict[str, dict] = {}
    for row in rows:
        location = f"{path} row {row['row']} column"
        for column in ("image", "label"):
            use = (row["row"], column)
            earlier_row, earlier_column = first_use.setdefault(posixpath.normpath(row[column]), use)
            if (earlier_row, earlier_column) != use:
                raise InputError(f"{location} '{column}': '{row[column]}' is already the {earlier_column} "
                                 f"of row {earlier_row}")
        earlier_row = first_slice.setdefault((row["subject"], row["slice"]), row["row"])
        if earlier_row != row["row"]:
            raise InputError(f"{location} 'slice': subject '{row['subject']}' slice {row['slice']} "
                             f"is already in row {earlier_row}")
        earlier = first_of_subject.setdefault(row["subject"], row)
        if earlier["split"] != row["split"]:
            raise InputError(f"{location} 'split': subject '{row['subject']}' is in '{row['split']}' here but in "
                             f"'{earlier['split']}' in row {earlier['row']}; a subject belongs to one split")


def _check_files(path: Path, rows: list[dict], root: Path) -> None:
    """Every image and label exists under ``root``, PIL decodes it, and the two sizes match."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about a damaged TIFF header before failing on it
        for row in rows:
            image_size, label_size = (_decoded_size(f"{path} row {row['row']} column '{column}'", root / row[column])
                                      for column in ("image", "label"))
            if label_size != image_size:
                raise InputError(f"{path} row {row['row']} column 'label': size {label_size[0]}x{label_size[1]} "
                                 f"differs from the image's {image_size[0]}x{image_size[1]} ({(root / row['label']).resolve()})")


def _decoded_size(location: str, file: Path) -> tuple[int, int]:
    """(width, height) of an image whose pixels PIL decodes: a truncated file fails here, not mid-training
    (about 1 s per 1000 LGG slices)."""
    if not file.is_file():
        raise InputError(f"{location}: file not found: {file.resolve()}")
    try:
        with Image.open(file) as image:
            image.load()
            return image.size
    except OSError as err:
        if file.stat().st_size == 0:
            reason = "file is empty (0 bytes)"
        elif isinstance(err, UnidentifiedImageError):
            reason = "unknown format or damaged header"
        else:
            reason = str(err)
        raise InputError(f"{location}: cannot read image: {reason}") from None
