"""Minutes of training a run needed to reach given validation scores, read from its TensorBoard log.

    python benchmarks/time_to_quality.py RUN_OUTPUT_DIR [--metric val_dice_3d_postprocessed] [--targets 0.80 0.85]

``RUN_OUTPUT_DIR`` is a training run's ``output_dir`` (where ``TensorBoardStatsHandler`` wrote its
``events.out.tfevents.*`` files). Each validation writes the metric with its wall-clock time; a run's clock
starts when its first event file was created, which is when the trainer starts: the interpreter's start and
the cache filling before it (about 20 s for lgg_best on the full LGG data on 2 cores) are not counted. Prints one JSON object: per epoch the minutes and
the score, and per target the first epoch and minute at which the score reached it (``null`` when it never
did). A benchmark, not a test: the minutes are those of the machine the run had.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def validation_curve(output_dir: str | Path, metric: str) -> list[dict]:
    """``[{"epoch", "minutes", "score"}, ...]`` of ``metric`` in the event files under ``output_dir`` (each
    TensorBoard handler of a run writes its own file); minutes count from the earliest file's creation."""
    files = sorted(Path(output_dir).glob("events.out.tfevents.*"))
    if not files:
        raise ValueError(f"{output_dir}: no TensorBoard event file (events.out.tfevents.*)")
    logs = [EventAccumulator(str(path), size_guidance={"scalars": 0}).Reload() for path in files]
    tags = sorted({tag for log in logs for tag in log.Tags()["scalars"]})
    if metric not in tags:
        raise ValueError(f"{output_dir}: no scalar {metric!r} in its event files; they have {', '.join(tags)}")
    start = min(log.FirstEventTimestamp() for log in logs)
    events = sorted((event for log in logs if metric in log.Tags()["scalars"] for event in log.Scalars(metric)), key=lambda event: event.wall_time)
    return [{"epoch": event.step, "minutes": round((event.wall_time - start) / 60, 2), "score": round(event.value, 4)} for event in events]


def time_to_targets(curve: list[dict], targets: list[float]) -> dict[str, dict | None]:
    """Per target, the first point of ``curve`` whose score is at least the target, or None."""
    return {f"{target:.2f}": next((point for point in curve if point["score"] >= target), None) for target in targets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", help="a training run's output_dir (its TensorBoard log)")
    parser.add_argument("--metric", default="val_dice_3d_postprocessed", help="validation scalar (default val_dice_3d_postprocessed)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.80, 0.85], help="scores to reach (default 0.80 0.85)")
    args = parser.parse_args(argv)
    try:
        curve = validation_curve(args.output_dir, args.metric)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps({"output_dir": args.output_dir, "metric": args.metric, "reached": time_to_targets(curve, args.targets), "curve": curve}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
