"""Console progress and the facts of a finished training run, for reports and comparisons."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from collections.abc import Callable

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar as IgniteProgressBar

from pipelines.atomic import write_text_atomic

__all__ = ["ProgressBar", "TrainSummaryWriter"]


class ProgressBar(IgniteProgressBar):
    """ignite's tqdm progress bar (iterations done, elapsed and remaining time) set up in the constructor,
    so that a MONAI config can list it among an engine's handlers (MONAI calls ``attach(engine)`` only).

    ``output_transform`` maps ``engine.state.output`` to the value shown beside the bar (e.g. the training
    loss); ``persist`` leaves each epoch's finished bar on screen.
    """

    def __init__(self, description: str, output_transform: Callable | None = None, persist: bool = True) -> None:
        super().__init__(persist=persist, desc=description)
        self.output_transform = output_transform

    def attach(self, engine: Engine) -> None:  # type: ignore[override]
        super().attach(engine, output_transform=self.output_transform)


class TrainSummaryWriter:
    """Ignite handler for a trainer: writes ``<output_dir>/training_run.json`` after every epoch.

    Keys: ``epochs`` (completed), ``max_epochs``, ``train_seconds`` (wall time of this run),
    ``seconds_per_epoch``, ``best_metric`` and ``best_metric_epoch`` of ``validator`` (when given), and
    everything in ``facts`` (e.g. image size, batch size, device). Written atomically, so the file
    always describes the last completed epoch.
    """

    def __init__(self, output_dir: str | os.PathLike, validator: Engine | None = None, facts: dict | None = None) -> None:
        self.path = Path(output_dir) / "training_run.json"
        self.validator = validator
        self.facts = dict(facts or {})
        self._started = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _start(self, engine: Engine) -> None:
        self._started = time.perf_counter()

    def _write(self, engine: Engine) -> None:
        seconds = time.perf_counter() - self._started
        summary = {"epochs": engine.state.epoch, "max_epochs": engine.state.max_epochs, "train_seconds": round(seconds, 1),
                   "seconds_per_epoch": round(seconds / max(engine.state.epoch, 1), 2), **self.facts}
        if self.validator is not None:
            summary.update(best_metric=getattr(self.validator.state, "best_metric", None), best_metric_epoch=getattr(self.validator.state, "best_metric_epoch", None))
        write_text_atomic(self.path, json.dumps(summary, indent=2, default=str) + "\n")
