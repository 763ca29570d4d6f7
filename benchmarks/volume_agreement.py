"""How closely volume inference reproduces slice inference on a real dataset: per patient, the Dice between the two
paths' masks, and each path's Dice against the ground-truth masks (kaggle_3m: ``<slice>_mask.tif`` beside each slice).

    # 1. slice inference writes each patient's mask volume and image volumes (here the validation split)
    python -m monai.bundle run --config_file "[... 'bundles/inference.json']" --dataset_dir DATA --infer#split val --output_dir OUT/slices
    # 2. the image volumes as cases, then volume inference (minmax, or unchanged for an exact round trip)
    python benchmarks/volume_agreement.py cases OUT/slices/predictions OUT/cases
    python -m monai.bundle run --config_file "[... 'bundles/volume_inference.json']" --volumes#input_dir OUT/cases --output_dir OUT/vol
    # 3. the comparison: a table on stdout, per patient and the means
    python benchmarks/volume_agreement.py compare OUT/slices/predictions OUT/vol/volumes

Masks compared are the written NIfTI volumes (after the recipe's post-processing), foreground = class > 0.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from PIL import Image


def make_cases(predictions: Path, cases: Path) -> None:
    """``<cases>/<subject>/<sequence>.nii.gz`` from the image volumes ``volumes/<subject>_<sequence>.nii.gz`` of a slice inference."""
    for subject in pd.read_csv(predictions / "predictions.csv", dtype={"subject": str})["subject"].unique():
        (cases / subject).mkdir(parents=True, exist_ok=True)
        for image in (predictions / "volumes").glob(f"{subject}_*.nii.gz"):
            shutil.copyfile(image, cases / subject / image.name.removeprefix(f"{subject}_"))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean volumes; 1.0 when both are empty."""
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2 * float((a & b).sum()) / float(total)


def compare(predictions: Path, volumes: Path) -> pd.DataFrame:
    """One row per patient: slices, Dice between the paths, and each path's per-patient 3D Dice against the truth."""
    rows = []
    index = pd.read_csv(predictions / "predictions.csv", dtype={"subject": str})
    for subject, slices in index.groupby("subject"):
        slices = slices.sort_values("slice")
        truth = np.stack([np.asarray(Image.open(re.sub(r"\.tif$", "_mask.tif", image))).T > 0 for image in slices["image"]], axis=-1)
        from_slices = nib.load(predictions / "volumes" / f"{subject}.nii.gz").get_fdata() > 0
        from_volume = nib.load(volumes / f"{subject}.nii.gz").get_fdata() > 0
        rows.append({"subject": subject, "slices": len(slices), "dice_between_paths": dice(from_slices, from_volume),
                     "identical": bool(np.array_equal(from_slices, from_volume)),
                     "dice_3d_slice_path": dice(from_slices, truth), "dice_3d_volume_path": dice(from_volume, truth)})
    return pd.DataFrame(rows)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["cases", "compare"])
    parser.add_argument("predictions", type=Path, help="the slice inference's predictions folder (predictions.csv, volumes/)")
    parser.add_argument("target", type=Path, help="cases: the folder of cases to write; compare: the volume inference's volumes folder")
    args = parser.parse_args(argv)
    if args.step == "cases":
        make_cases(args.predictions, args.target)
        return
    table = compare(args.predictions, args.target)
    print(table.round(4).to_string(index=False))
    means = table[["dice_between_paths", "dice_3d_slice_path", "dice_3d_volume_path"]].mean()
    print(f"\n{len(table)} patients, {int(table['identical'].sum())} identical; means: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
