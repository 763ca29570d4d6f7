"""Full-size synthetic datasets for the benchmarks, outside the repository, with their manifests.

    python benchmarks/make_data.py lgg --out /path/to/bench_data     # kaggle_3m/ + lgg.csv: 110 patients, 3929 slices
    python benchmarks/make_data.py oasis --out /path/to/bench_data   # keras_png_slices_data/ + oasis.csv: 11,328 slices

``lgg`` writes every slice the checked-in ``data_manifests/lgg_kaggle_3m.csv`` lists, at its path (256x256x3
uint8 .tif and a 0/255 mask), with the demo generator's synthetic patients; ``lgg.csv`` is that folder's
manifest as ``python -m pipelines manifest build`` makes it (77/16/17 patients). ``oasis`` writes the demo's
OASIS replica at the real size: 302/35/17 cases of 32 slices = 9664/1120/544 slices of 256x256.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.data.demo import _subject_slices, make_oasis_demo
from pipelines.data.lgg import build_kaggle_3m
from pipelines.data.manifest import write_manifest
from pipelines.data.oasis import build_oasis

REPO = Path(__file__).resolve().parents[1]
LGG_MANIFEST = REPO / "data_manifests" / "lgg_kaggle_3m.csv"
OASIS_CASES = (302, 35, 17)  # train, validate, test cases of 32 slices: 9664/1120/544 slices


def make_lgg(out: Path, size: int = 256) -> Path:
    """Synthetic slices at every path of :data:`LGG_MANIFEST` under ``out/kaggle_3m``; returns the manifest written."""
    with open(LGG_MANIFEST, newline="") as f:
        slices_per_folder = Counter(Path(row["image"]).parent.name for row in csv.DictReader(f))
    root = out / "kaggle_3m"
    for index, (folder, count) in enumerate(sorted(slices_per_folder.items()), start=1):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for number, (image, mask) in enumerate(_subject_slices(np.random.default_rng([0, index]), count, size), start=1):
            Image.fromarray(image).save(root / folder / f"{folder}_{number}.tif")
            Image.fromarray(mask).save(root / folder / f"{folder}_{number}_mask.tif")
    return write_manifest(build_kaggle_3m(root), out / "lgg.csv")


def make_oasis(out: Path) -> Path:
    """The OASIS replica at the real size under ``out/keras_png_slices_data``; returns the manifest written."""
    root = make_oasis_demo(out, n_cases=OASIS_CASES, n_slices=32)
    return write_manifest(build_oasis(root), out / "oasis.csv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=("lgg", "oasis"))
    parser.add_argument("--out", required=True, type=Path, help="folder to write into (not inside the repository)")
    args = parser.parse_args(argv)
    if args.out.resolve().is_relative_to(REPO):
        parser.error(f"--out {args.out}: inside the repository; write the data elsewhere")
    manifest = (make_lgg if args.dataset == "lgg" else make_oasis)(args.out)
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
