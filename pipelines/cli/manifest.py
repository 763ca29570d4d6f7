"""Command line for slice manifests: build (LGG kaggle_3m or OASIS), validate, restrict, summary, folds, demo-data.

Every input problem ends with one ``error: ...`` line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import csv

from pipelines.atomic import atomic_path
from pipelines.data import manifest
from pipelines.data.demo import make_lgg_demo
from pipelines.data.lgg import build_kaggle_3m, build_kaggle_3m_from_listing
from pipelines.data.oasis import build_oasis
from pipelines.errors import InputError, existing_dir


def _split_counts(rows) -> str:
    """``train 4 subjects / 48 slices, val ..., test ...``"""
    summary = manifest.split_summary(rows)
    return ", ".join(f"{split['split']} {split['subjects']} subjects / {split['slices']} slices" for split in summary)


def _build(args) -> None:
    if args.layout == "oasis":
        if args.listing:
            raise InputError("build --layout oasis: give --dataset_dir <keras_png_slices_data>; --listing is for kaggle_3m")
        rows = build_oasis(args.dataset_dir)
    elif args.listing:
        rows = build_kaggle_3m_from_listing(args.listing, args.seed, args.ratios)
    else:
        rows = build_kaggle_3m(args.dataset_dir, args.seed, args.ratios)
    manifest.write_manifest(rows, args.out)
    print(f"wrote {args.out}: {len(rows)} rows; {_split_counts(rows)}")


def _bundle_data(bundle_dir: str, manifest_path: str, dataset_dir: str):
    """The ``data`` component of the bundle at ``bundle_dir`` (its train configs, the recipe's settings) for a manifest."""
    from monai.bundle import ConfigParser

    from pipelines.bundles import config_files

    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(existing_dir(bundle_dir, "bundle folder"), "train")])
    parser.update({"bundle_root": bundle_dir, "manifest": manifest_path, "dataset_dir": dataset_dir})
    return parser.get_parsed_content("data")


def _validate(args) -> None:
    if (args.check_files or args.bundle) and args.dataset_dir is None:
        raise InputError("validate: --dataset_dir is needed to check the files (or pass --no-check-files)")
    rows = manifest.validate_manifest(args.manifest, args.dataset_dir, args.require, args.check_files or bool(args.bundle))
    checked = "rows and files" if args.check_files else "rows (files not checked)"
    if args.bundle:
        _bundle_data(args.bundle, args.manifest, args.dataset_dir).check(sorted({row["split"] for row in rows}))
        checked = f"rows and files, with the checks {args.bundle} runs before training, evaluation and inference"
    print(f"OK {args.manifest}: {len(rows)} {checked}; {_split_counts(rows)}")


def _restrict(args) -> None:
    rows = manifest.restrict_to_available(args.manifest, args.dataset_dir)
    manifest.write_manifest(rows, args.out)
    print(f"wrote {args.out}: {len(rows)} rows with files under {args.dataset_dir}; {_split_counts(rows)}")


def _print_table(table: list[dict]) -> None:
    """Columns padded to their widest cell: the first left-aligned, the others right-aligned."""
    columns = list(table[0])
    widths = [max(len(column), *(len(str(entry[column])) for entry in table)) for column in columns]
    for line in [dict(zip(columns, columns)), *table]:
        cells = [str(line[column]).rjust(width) for column, width in zip(columns, widths)]
        print("  ".join([str(line[columns[0]]).ljust(widths[0]), *cells[1:]]))


def _summary(args) -> None:
    _print_table(manifest.split_summary(manifest.validate_manifest(args.manifest, None, check_files=False)))


def _folds(args) -> None:
    every_row = manifest.validate_manifest(args.manifest, None, check_files=False)
    rows = manifest.fold_pool(every_row)
    try:
        fold_of = manifest.assign_folds((row["subject"] for row in rows), args.folds, args.seed)
        roles = manifest.fold_splits(list(fold_of), args.fold, args.folds, args.seed, args.fold_validation) if args.fold is not None else {}
    except InputError as err:
        raise InputError(f"{args.manifest}: {err}") from None
    table = []
    for fold in range(args.folds):
        members = [row for row in rows if fold_of[row["subject"]] == fold]
        subjects = sorted({row["subject"] for row in members})
        table.append({"fold": fold, **({"split": roles[subjects[0]]} if roles else {}), "subjects": len(subjects), "slices": len(members),
                      "tumour_slices": sum(row["diagnosis"] for row in members)})
    _print_table(table)
    held_out = {row["subject"] for row in every_row} - set(fold_of)
    if held_out:
        print(f"in no fold, the manifest's test split: subjects {len(held_out)}, slices {len(every_row) - len(rows)}")
    if args.out:
        with atomic_path(args.out) as partial, partial.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(["subject", "fold", *(["split"] if roles else [])])
            writer.writerows([subject, fold, *([roles[subject]] if roles else [])] for subject, fold in sorted(fold_of.items()))
        print(f"wrote {args.out}: {len(fold_of)} subjects")


def _demo_data(args) -> None:
    print(make_lgg_demo(args.out, n_subjects=args.subjects, n_slices=args.slices, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines manifest",
        description="Build, check and summarise slice manifests (CSV: subject,slice,image,label,diagnosis,split).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build a manifest from a dataset folder or a kaggle_3m listing CSV",
                                description="Build a manifest. kaggle_3m (LGG): seeded per-patient train/val/test split. "
                                            "oasis: split from the folder names (train/validate/test -> train/val/test).")
    build.add_argument("--layout", choices=("kaggle_3m", "oasis"), default="kaggle_3m",
                       help="kaggle_3m: LGG TCGA_* folders of .tif slices; oasis: keras_png_slices_data of .nii.png "
                            "slices (default: %(default)s)")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset_dir", "--dataset-dir",
                        help="kaggle_3m or keras_png_slices_data folder to scan (masks are read to set diagnosis)")
    source.add_argument("--listing", help="listing CSV with columns patient,case_dir,slice,image,mask,mask_pixels")
    build.add_argument("--out", required=True, help="manifest CSV to write (replaced atomically)")
    build.add_argument("--seed", type=int, default=0, help="kaggle_3m: seed of the patient permutation (default: 0)")
    build.add_argument("--ratios", type=float, nargs=3, default=manifest.DEFAULT_RATIOS,
                       metavar=("TRAIN", "VAL", "TEST"),
                       help="kaggle_3m: fractions of patients per split, summing to 1 (default: 0.7 0.15 0.15)")
    build.set_defaults(run=_build)

    validate = commands.add_parser("validate", help="check a manifest and its files",
                                   description="Check a manifest; print OK with per-split counts, "
                                               "or one error line naming file, row and column (exit code 1).")
    validate.add_argument("--manifest", required=True, help="manifest CSV to check")
    validate.add_argument("--dataset_dir", "--dataset-dir", help="dataset root the image/label paths are relative to")
    validate.add_argument("--require", nargs="+", default=(), choices=manifest.SPLITS, metavar="SPLIT",
                          help="splits that must have rows, e.g. --require train val")
    validate.add_argument("--bundle", help="also run the image and mask checks of this bundle (pixel format, channels, size, "
                                           "mask values), the very checks its training runs, e.g. bundles/lgg_best")
    validate.add_argument("--no-check-files", dest="check_files", action="store_false",
                          help="check only the CSV text, not that the images and labels exist and match in size")
    validate.set_defaults(run=_validate)

    restrict = commands.add_parser("restrict", help="keep the rows whose files exist under a dataset folder",
                                   description="Write the rows whose image and label exist under --dataset_dir, "
                                               "keeping each patient's split (e.g. the 19-patient LGG subset).")
    restrict.add_argument("--manifest", required=True, help="full manifest CSV")
    restrict.add_argument("--dataset_dir", "--dataset-dir", required=True,
                          help="dataset root holding part of the files")
    restrict.add_argument("--out", required=True, help="manifest CSV to write")
    restrict.set_defaults(run=_restrict)

    summary = commands.add_parser("summary", help="print per-split counts of a manifest",
                                  description="Print subjects, slices, tumour and non-tumour slices, "
                                              "and subjects with tumour, per split.")
    summary.add_argument("--manifest", required=True, help="manifest CSV")
    summary.set_defaults(run=_summary)

    folds = commands.add_parser("folds", help="print (or write) the patient-level cross-validation folds of a manifest",
                                description="Assign the subjects of the train and val rows (pooled; the test split is in no fold) to FOLDS folds as the bundles' "
                                            "--fold/--folds/--fold_seed do: a seeded shuffle of the sorted subject IDs, fold sizes "
                                            "differing by at most one. With --fold K: fold K is test, fold K+1 (mod FOLDS) val, the rest train "
                                            "(with --fold_validation test: no val fold, every other fold trains).")
    folds.add_argument("--manifest", required=True, help="manifest CSV")
    folds.add_argument("--folds", type=int, default=5, help="number of folds, 3 to the number of train and val subjects (default: %(default)s)")
    folds.add_argument("--seed", type=int, default=0, help="seed of the subject shuffle, the bundles' fold_seed (default: %(default)s)")
    folds.add_argument("--fold", type=int, help="show the split each fold plays when fold K is the test fold")
    folds.add_argument("--fold_validation", "--fold-validation", choices=manifest.FOLD_VALIDATIONS, default="next",
                       help="the bundles' fold_validation: 'next' (fold K+1 validates) or 'test' (the test fold validates; default: %(default)s)")
    folds.add_argument("--out", help="also write subject,fold[,split] CSV here")
    folds.set_defaults(run=_folds)

    demo = commands.add_parser("demo-data", help="write the synthetic LGG demo dataset",
                               description="Write deterministic synthetic data in the kaggle_3m layout under "
                                           "OUT/kaggle_3m and print that root.")
    demo.add_argument("--out", required=True, help="folder to write kaggle_3m/ into")
    demo.add_argument("--subjects", type=int, default=6, help="number of patients (default: 6)")
    demo.add_argument("--slices", type=int, default=12, help="slices per patient (default: 12)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(run=_demo_data)
    return parser


def main(argv: list[str]) -> None:
    """Run the subcommand of ``argv``."""
    args = build_parser().parse_args(argv)
    args.run(args)
