"""Wall time of cross-validating the same folds one at a time and several at once (``crossval --jobs``), side by side.

    python benchmarks/parallel_folds.py --bundle bundles/lgg_best --dataset_dir <kaggle_3m> [--manifest <csv>]
        [--folds 5] [--only 0 1] [--jobs 2] [--rounds 2] [--set KEY=VALUE ...] [--out runs/benchmarks/parallel_folds.json]

Each round runs ``python -m pipelines crossval`` on the folds of ``--only`` twice, in turn: with ``--jobs 1`` (each
fold alone, PyTorch's own thread count) and with ``--jobs N`` (N folds at once, the cores shared out), each into a
fresh folder under a temporary directory, with the ``--set`` overrides (e.g. ``epochs=1``). The wall time counts
everything a user waits for: interpreter start, cache filling, training, validation and the test-fold evaluation.
The order of the two alternates from round to round, and ``speedup`` is the median over rounds of the
one-at-a-time time over the at-once time of the same round, so that a machine that drifts between rounds (a
shared one does) moves both. Writes the JSON (setup, machine, each round's seconds, the speedup) to ``--out`` and
prints it. A benchmark, never a test: the seconds are those of the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="LGG bundle folder, e.g. bundles/lgg_best")
    parser.add_argument("--dataset_dir", required=True, help="root of the data the manifest's paths are relative to")
    parser.add_argument("--manifest", help="manifest CSV (default: the bundle's)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default: %(default)s)")
    parser.add_argument("--only", type=int, nargs="+", default=[0, 1], metavar="K", help="the folds each run trains (default: 0 1)")
    parser.add_argument("--jobs", type=int, default=2, help="folds at once in the parallel run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the two runs (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="a setting for every fold, e.g. epochs=1")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "parallel_folds.json", help="result JSON")
    args = parser.parse_args(argv)
    if args.jobs < 2 or args.rounds < 1:
        parser.error(f"--jobs must be at least 2 and --rounds at least 1, got {args.jobs} and {args.rounds}")
    if any("=" not in item for item in args.overrides):
        parser.error(f"--set expects KEY=VALUE, got {next(item for item in args.overrides if '=' not in item)!r}")
    return args


def crossval_command(args: argparse.Namespace, out: Path, jobs: int) -> list[str]:
    """The ``python -m pipelines crossval`` command of one run: the benchmark's folds and settings, ``--jobs jobs``."""
    settings = [item for pair in (entry.split("=", 1) for entry in args.overrides) for item in (f"--{pair[0]}", pair[1])]
    return [sys.executable, "-m", "pipelines", "crossval", str(Path(args.bundle).resolve()), "--out", str(out), "--folds", str(args.folds),
            "--only", *map(str, args.only), "--jobs", str(jobs), "--dataset_dir", str(Path(args.dataset_dir).resolve()),
            *(["--manifest", str(Path(args.manifest).resolve())] if args.manifest else []), *settings]


def timed_run(command: list[str], jobs: int, log: Path) -> float:
    """Seconds the crossval ``command`` (run with ``--jobs jobs``) took from the repository root, its output appended
    to ``log``; exits naming the run and the log on a failure."""
    with open(log, "a") as stream:
        start = time.perf_counter()
        code = subprocess.run(command, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"error: crossval --jobs {jobs} failed (exit {code}); see {log}")
    return round(time.perf_counter() - start, 1)


def speedup(rounds: list[dict]) -> float:
    """Median over rounds of ``one_at_a_time_s / at_once_s``."""
    return round(statistics.median(entry["one_at_a_time_s"] / entry["at_once_s"] for entry in rounds), 3)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".log")
    log.write_text("")
    rounds = []
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(args.rounds):
            order = (1, args.jobs) if number % 2 == 0 else (args.jobs, 1)
            seconds = {jobs: timed_run(crossval_command(args, Path(scratch) / f"round{number}_jobs{jobs}", jobs), jobs, log) for jobs in order}
            rounds.append({"first": "one_at_a_time" if order[0] == 1 else "at_once", "one_at_a_time_s": seconds[1], "at_once_s": seconds[args.jobs]})
            print(f"round {number}: one at a time {seconds[1]} s, {args.jobs} at once {seconds[args.jobs]} s", file=sys.stderr, flush=True)
    report = {
        "setup": {"bundle": args.bundle, "folds": args.folds, "only": args.only, "jobs": args.jobs, "settings": args.overrides,
                  "manifest": args.manifest},
        "machine": {"cpu_cores": len(os.sched_getaffinity(0)), "platform": platform.platform(), "python": platform.python_version()},
        "rounds": rounds,
        "speedup": speedup(rounds),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
