"""Reports of evaluated runs: run (figures and report.md of one run), compare (one table of several runs).

Every input problem ends with one ``error: ...`` line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines import report


def _run(args) -> None:
    path = report.write_report(args.eval_dir, args.train_log_dir, args.out, args.split)
    print(f"wrote {path}")


def _compare(args) -> None:
    paths = args.paths
    if args.skip_unevaluated:
        paths, skipped = report.evaluated(paths)
        if skipped:
            print(f"skipped (no evaluation summary): {' '.join(map(str, skipped))}")
    table = report.compare(paths, args.out)
    csv_path = Path(args.out).with_suffix(".csv")
    print(f"wrote {csv_path} and {csv_path.with_suffix('.md')}: {len(table)} runs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines report", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="figures and report.md of one evaluated run",
                              description="Write curves.png, overlays.png, per_subject.png and report.md.")
    run.add_argument("--eval_dir", "--eval-dir", required=True,
                     help="evaluation folder: <split>_per_slice.csv, <split>_per_subject.csv, <split>_summary.json, masks/")
    run.add_argument("--train_log_dir", "--train-log-dir",
                     help="folder of the training TensorBoard event files (without it, no training curves)")
    run.add_argument("--out", help="output folder (default: <eval_dir>/report)")
    run.add_argument("--split", default="test", help="prefix of the evaluation files (default: %(default)s)")
    run.set_defaults(run=_run)

    compare = commands.add_parser("compare", help="one table of several evaluated runs or bundles",
                                  description="Find each folder's evaluation summary (eval/test_summary.json first) and "
                                              "write one row per folder to OUT (.csv) and the same stem (.md).")
    compare.add_argument("paths", nargs="+", metavar="PATH", help="run or bundle folders, e.g. bundles/lgg_unet_bce")
    compare.add_argument("--out", required=True, help="CSV to write; the markdown goes beside it with .md")
    compare.add_argument("--skip-unevaluated", "--skip_unevaluated", action="store_true",
                         help="leave out paths that are not folders with an evaluation summary (e.g. with bundles/*)")
    compare.set_defaults(run=_compare)
    return parser


def main(argv: list[str]) -> None:
    """Run the subcommand of ``argv``."""
    args = build_parser().parse_args(argv)
    args.run(args)
