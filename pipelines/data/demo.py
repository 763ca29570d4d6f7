"""Deterministic synthetic data in the real dataset layouts, for tests and the demo: LGG ``kaggle_3m`` and
OASIS ``keras_png_slices_data``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.atomic import folder_target
from pipelines.data.oasis import FOLDER_SPLITS, LABEL_VALUES
from pipelines.errors import InputError

DEMO_DATE = "20000101"
CHANNEL_LEVELS = np.array([95.0, 110.0, 100.0])  # brain intensity: pre-contrast, FLAIR, post-contrast
TUMOUR_BOOST = np.array([10.0, 90.0, 35.0])  # added inside the tumour, brightest in FLAIR
TISSUE_LEVELS = np.array([0.0, 60.0, 120.0, 175.0])  # OASIS grey level of background, CSF, grey and white matter (T1-like)


def make_lgg_demo(out_dir, n_subjects: int = 6, n_slices: int = 12, seed: int = 0, size: int = 256) -> Path:
    """Write a synthetic ``kaggle_3m`` dataset under ``out_dir`` and return its root ``out_dir/kaggle_3m``.

    Patient folders ``TCGA_DM_<0001..>_20000101`` hold ``<folder>_<k>.tif`` (k = 1..n_slices),
    size x size x 3 uint8 RGB (pre-contrast, FLAIR, post-contrast): a textured head ellipse,
    black outside, and in the middle slices a tumour-like blob brightest in FLAIR (channel 1).
    ``<folder>_<k>_mask.tif`` (size x size uint8, 0 or 255) marks exactly the blob's pixels;
    the first and last ``max(1, n_slices // 4)`` slices have none. A ``data.csv`` with a
    ``Patient`` column lists the patients. Same arguments, same bytes.
    """
    folder_target(out_dir)
    if n_subjects < 1 or n_slices < 3 or size < 32:
        raise InputError(f"demo data needs >= 1 subject, >= 3 slices and size >= 32, "
                         f"got {n_subjects}, {n_slices}, {size}")
    root = Path(out_dir) / "kaggle_3m"
    subjects = [f"TCGA_DM_{index:04d}" for index in range(1, n_subjects + 1)]
    for index, subject in enumerate(subjects, start=1):
        case = f"{subject}_{DEMO_DATE}"
        (root / case).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, index])
        for slice_number, (image, mask) in enumerate(_subject_slices(rng, n_slices, size), start=1):
            Image.fromarray(image).save(root / case / f"{case}_{slice_number}.tif")
            Image.fromarray(mask).save(root / case / f"{case}_{slice_number}_mask.tif")
    (root / "data.csv").write_text("Patient\n" + "".join(f"{subject}\n" for subject in subjects), encoding="utf-8")
    return root


def _subject_slices(rng: np.random.Generator, n_slices: int, size: int):
    """Yield (image HxWx3 uint8, mask HxW uint8 in {0, 255}) for each slice of one synthetic patient."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    head_semi_axes = size * rng.uniform([0.36, 0.30], [0.42, 0.36])  # (rows, cols)
    textures = [_smooth_noise(rng, size), _smooth_noise(rng, size)]
    levels = CHANNEL_LEVELS * rng.uniform(0.9, 1.1, 3)
    # Tumour: a main disc centred on a pixel plus two satellite discs, growing then shrinking across slices.
    centre = size // 2 + rng.integers(-size // 10, size // 10 + 1, 2)
    satellite_offsets = rng.uniform(-0.7, 0.7, (2, 2))
    max_radius = size * rng.uniform(0.06, 0.1)
    margin = max(1, n_slices // 4)
    n_tumour = n_slices - 2 * margin

    for k in range(n_slices):
        depth = 2 * (k + 0.5) / n_slices - 1  # -1 (bottom) .. 1 (top)
        scale = np.sqrt(1 - 0.6 * depth**2)  # head cross-section shrinks towards the ends
        semi_rows, semi_cols = head_semi_axes * scale
        head = ((rows - size / 2) / semi_rows) ** 2 + ((cols - size / 2) / semi_cols) ** 2 <= 1
        tumour = np.zeros((size, size), dtype=bool)
        if margin <= k < n_slices - margin:
            t = (k - margin + 0.5) / n_tumour
            radius = max_radius * (0.4 + 2.4 * t * (1 - t))  # 0.4..1 of max, peaking mid-tumour
            discs = [(centre, radius)] + [(centre + offset * radius, 0.6 * radius) for offset in satellite_offsets]
            for disc_centre, disc_radius in discs:
                tumour |= (rows - disc_centre[0]) ** 2 + (cols - disc_centre[1]) ** 2 <= disc_radius**2
            tumour &= head
        weight = k / (n_slices - 1)
        texture = (1 - weight) * textures[0] + weight * textures[1]
        intensity = levels * (1 + 0.15 * texture[..., None]) + rng.normal(0, 3, (size, size, 3))
        intensity += tumour[..., None] * TUMOUR_BOOST
        image = np.clip(intensity * head[..., None], 0, 255).round().astype(np.uint8)
        yield image, tumour.astype(np.uint8) * 255


def _smooth_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """size x size float32 low-frequency noise, roughly in [-2, 2]: an 8x8 normal grid upsampled bicubically."""
    coarse = Image.fromarray(rng.standard_normal((8, 8)).astype(np.float32))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC))


def make_oasis_demo(out_dir, n_cases=(3, 1, 1), n_slices: int = 8, seed: int = 0, size: int = 256) -> Path:
    """Write a synthetic OASIS dataset under ``out_dir`` and return its root ``out_dir/keras_png_slices_data``.

    ``n_cases`` gives the cases of train, validate and test; cases are numbered 001, 002, ... across the
    splits in that order, each with slices K = 0..n_slices-1:
    ``keras_png_slices_<split>/case_NNN_slice_K.nii.png`` (size x size uint8 grayscale) and
    ``keras_png_slices_seg_<split>/seg_NNN_slice_K.nii.png`` (size x size uint8, exactly 0/85/170/255).
    Each slice is a head-like phantom, black outside: a CSF rim, a grey-matter ribbon with a wavy inner
    border, a white-matter core and, in the middle slices, two CSF ventricles; grey levels about 60
    (CSF), 120 (grey) and 175 (white matter) with texture and noise. Same arguments, same bytes.
    """
    folder_target(out_dir)
    if len(n_cases) != len(FOLDER_SPLITS) or min(n_cases) < 1 or n_slices < 1 or size < 32:
        raise InputError(f"demo data needs >= 1 case in each of train, validate and test, >= 1 slice and size >= 32, "
                         f"got {list(n_cases)}, {n_slices}, {size}")
    root = Path(out_dir) / "keras_png_slices_data"
    case_number = 0
    for folder_split, count in zip(FOLDER_SPLITS, n_cases):
        image_dir, mask_dir = root / f"keras_png_slices_{folder_split}", root / f"keras_png_slices_seg_{folder_split}"
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for case_number in range(case_number + 1, case_number + count + 1):
            rng = np.random.default_rng([seed, case_number])
            for k, (image, classes) in enumerate(_tissue_slices(rng, n_slices, size)):
                Image.fromarray(image).save(image_dir / f"case_{case_number:03d}_slice_{k}.nii.png")
                Image.fromarray(np.asarray(LABEL_VALUES, dtype=np.uint8)[classes]).save(mask_dir / f"seg_{case_number:03d}_slice_{k}.nii.png")
    return root


def _tissue_slices(rng: np.random.Generator, n_slices: int, size: int):
    """Yield (image HxW uint8, classes HxW uint8 in 0..3) for each slice of one synthetic OASIS case."""
    rows, cols = np.mgrid[0:size, 0:size] / size - 0.5  # image centre at 0, edges at -0.5 and 0.5
    head_semi_axes = rng.uniform([0.38, 0.32], [0.44, 0.38])  # (rows, cols), as fractions of size
    borders = [_smooth_noise(rng, size), _smooth_noise(rng, size)]
    textures = [_smooth_noise(rng, size), _smooth_noise(rng, size)]
    levels = TISSUE_LEVELS * np.r_[1.0, rng.uniform(0.92, 1.08, 3)]
    ventricle_semi_axes = rng.uniform([0.07, 0.025], [0.1, 0.04])
    for k in range(n_slices):
        depth = 2 * (k + 0.5) / n_slices - 1  # -1 (bottom) .. 1 (top)
        scale = np.sqrt(1 - 0.6 * depth**2)  # the head's cross-section shrinks towards the ends
        weight = k / max(n_slices - 1, 1)
        border = (1 - weight) * borders[0] + weight * borders[1]
        texture = (1 - weight) * textures[0] + weight * textures[1]
        radius = np.hypot(rows / head_semi_axes[0], cols / head_semi_axes[1]) / scale  # 1 on the head's edge
        classes = np.zeros((size, size), dtype=np.uint8)
        classes[radius <= 1] = 1  # CSF rim
        classes[radius <= 0.9] = 2  # grey-matter ribbon
        classes[(radius + 0.04 * border <= 0.72) & (radius <= 0.86)] = 3  # white-matter core, wavy border
        if abs(depth) < 0.5:
            for side in (-1, 1):
                ventricle = np.hypot(rows / ventricle_semi_axes[0], (cols - side * 0.05) / ventricle_semi_axes[1]) / scale
                classes[ventricle <= 1] = 1
        intensity = levels[classes] * (1 + 0.08 * texture) + rng.normal(0, 4, (size, size))
        yield np.clip(intensity * (classes > 0), 0, 255).round().astype(np.uint8), classes
