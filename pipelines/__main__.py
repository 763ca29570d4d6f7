"""``python -m pipelines``: the project's commands around the bundles."""

from __future__ import annotations

import argparse
import sys

from pipelines import manifest_cli, report_cli
from pipelines.quickstart import run_demo


def _export(argv: list[str]) -> int:
    from pipelines import export  # imported here: it loads torch, which the other commands start without

    return export.main(argv)


def _crossval(argv: list[str]) -> int:
    from pipelines import crossval  # imported here: it loads torch through pipelines.evaluation

    return crossval.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("manifest", help="build, validate, restrict, summarise manifest CSVs or print their cross-validation folds", add_help=False)
    commands.add_parser("report", help="figures and report.md for an evaluated run; comparison tables of runs", add_help=False)
    commands.add_parser("export", help="zip a trained bundle that runs with MONAI and PyTorch alone; --import such a zip", add_help=False)
    commands.add_parser("crossval", help="patient-level k-fold cross-validation of an LGG bundle: train and evaluate every fold, pool the scores", add_help=False)
    demo = commands.add_parser("demo", help="make the demo data, then train, evaluate and run inference with a bundle")
    demo.add_argument("--bundle", default="lgg_unet_bce", help="bundle folder name under bundles/ (default: %(default)s)")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default: %(default)s)")
    demo.add_argument("--out", default="runs/demo", help="folder for checkpoints, logs and outputs (default: %(default)s)")
    demo.add_argument("--data_dir", default="demo_data", help="folder for the synthetic data (default: %(default)s)")
    subcommands = {"manifest": manifest_cli.main, "report": report_cli.main, "export": _export, "crossval": _crossval}
    if argv[:1] and argv[0] in subcommands:
        return subcommands[argv[0]](argv[1:])
    args = parser.parse_args(argv)
    run_demo(args.bundle, args.epochs, args.out, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
