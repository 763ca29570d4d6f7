"""``python -m pipelines export``: zip a trained bundle (:mod:`pipelines.export.bundle`), or ``--import`` such a zip."""

from __future__ import annotations

import argparse
import ast

from pipelines.cli import config_overrides
from pipelines.errors import InputError
from pipelines.export.bundle import export_bundle, import_bundle


def _literal(value: str) -> object:
    """``value`` as a Python literal where it parses as one (as ``monai.bundle run`` reads overrides), else the string."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines export",
        description="Export a trained bundle as a MONAI model-zoo bundle zip that runs on its own, or import such a zip.",
        epilog="Further --<config id> VALUE pairs are the overrides the checkpoint was trained with (e.g. --network_def#features 4); "
        "they go into the exported configs.",
    )
    parser.add_argument("bundle", nargs="?", help="bundle folder to export, e.g. bundles/lgg_unet_small")
    parser.add_argument("--out", help="zip to write, e.g. lgg_unet_small.zip")
    parser.add_argument("--ckpt_path", help="checkpoint to export (default: the bundle's models/model.pt)")
    parser.add_argument("--eval_dir", help="folder whose test_summary.json fills eval_metrics (default: the bundle's eval/)")
    parser.add_argument("--import", dest="archive", help="exported zip to check and extract instead")
    parser.add_argument("--into", help="with --import: folder to extract <name>/ into, e.g. bundles/")
    args, extra = parser.parse_known_args(argv)
    if args.archive:
        if args.bundle or extra or not args.into:
            raise InputError("--import ZIP takes --into FOLDER and nothing else")
        target = import_bundle(args.archive, args.into)
        print(f"imported {target}; evaluate it from that folder with\n"
              f"  python -m monai.bundle run --config_file configs/evaluate.json --dataset_dir DATA [--manifest CSV]")
    else:
        if not (args.bundle and args.out):
            raise InputError("give a bundle folder and --out ZIP (or --import ZIP --into FOLDER)")
        overrides = {key: _literal(value) for key, value in config_overrides(extra).items()}
        print(f"wrote {export_bundle(args.bundle, args.out, args.ckpt_path, args.eval_dir, overrides)}")
