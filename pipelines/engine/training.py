"""Trainer handlers: console progress, crash-safe checkpoints and resume, a stop on a non-finite loss, and the
facts of a finished run for reports."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar as IgniteProgressBar
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.data import set_track_meta
from monai.handlers import CheckpointSaver, from_engine
from monai.transforms import Randomizable
from monai.utils import set_determinism
from tqdm import tqdm

from pipelines.atomic import save_atomic, write_text_atomic
from pipelines.data.preflight import model_weights
from pipelines.errors import InputError
from pipelines.portable.errors import set_interrupt_hint

logger = logging.getLogger(__name__)

__all__ = [
    "AtomicCheckpointSaver", "EpochSeed", "NoMetadataInTraining", "ProgressBar", "RunState", "StopOnNonFiniteLoss", "TrainSummaryWriter",
    "check_resume", "keeps_best_epoch", "hint_resume_on_interrupt", "latest_checkpoint", "load_initial_weights", "log_step_at_debug",
]

MODEL_EPOCHS = ("best", "last")


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


class EpochSeed:
    """Ignite handler for a trainer: at the start of epoch ``e`` seeds everything random in training with
    ``seed + e`` (``set_determinism``, the random transforms of ``transforms`` and the generator of ``sampler``),
    so that each epoch's shuffling and augmentation depend only on the seed and the epoch number, and a run
    resumed at epoch ``e`` sees the same data as one that was never interrupted."""

    def __init__(self, seed: int, transforms: Randomizable | None = None, sampler: object | None = None) -> None:
        self.seed, self.transforms, self.sampler = seed, transforms, sampler

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reseed)

    def _reseed(self, engine: Engine) -> None:
        seed = self.seed + engine.state.epoch
        set_determinism(seed=seed)
        if self.transforms is not None:
            self.transforms.set_random_state(seed=seed)
        generator = getattr(self.sampler, "generator", None)
        if generator is not None:
            generator.manual_seed(seed)


class NoMetadataInTraining:
    """Ignite handler for a trainer: MONAI's metadata tracking (``monai.data.set_track_meta``) is off while the
    trainer draws and steps its batches, and on again at the end of each epoch and of the run (also when it is terminated).

    MONAI's fast-training advice: without it the random transforms of a training batch build plain tensors
    instead of ``MetaTensor`` objects, which halves the CPU cost of an augmented 2D batch; values are unchanged. The
    validation, evaluation and inference engines keep the metadata they need (``Invertd``, file names). List
    it before the trainer's ``ValidationHandler``, so that tracking is back on when validation starts.
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._off)
        for event in (Events.EPOCH_COMPLETED, Events.COMPLETED, Events.TERMINATE):
            engine.add_event_handler(event, self._on)

    @staticmethod
    def _off(engine: Engine) -> None:
        set_track_meta(False)

    @staticmethod
    def _on(engine: Engine) -> None:
        set_track_meta(True)


class RunState:
    """What a resumed training needs besides weights, optimiser and scheduler, as one checkpoint entry.

    List it among the trainer's handlers (it keeps the trainer it is attached to) and in the trainer's
    ``CheckpointSaver`` ``save_dict``; a ``CheckpointLoader`` given it restores, at the start of the run, the
    trainer's epoch and iteration, its AMP gradient scaler (CUDA), the validator's best metric and its epoch,
    and tells the validator's key-metric ``best_saver`` which score its ``model.pt`` holds, so the resumed run
    replaces ``model.pt`` only with a better one.
    """

    def __init__(self, validator: Engine | None = None, best_saver: object | None = None) -> None:
        self.validator, self.best_saver = validator, best_saver
        self.trainer: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self.trainer = engine

    def state_dict(self) -> dict:
        state = {"trainer": self.trainer.state_dict()}
        if getattr(self.trainer, "scaler", None) is not None:  # the AMP gradient scaler of a CUDA run
            state["scaler"] = self.trainer.scaler.state_dict()
        if self.validator is not None:
            state.update(best_metric=float(self.validator.state.best_metric), best_metric_epoch=int(self.validator.state.best_metric_epoch))
        return state

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state["trainer"])
        if "scaler" in state and getattr(self.trainer, "scaler", None) is not None:
            self.trainer.scaler.load_state_dict(state["scaler"])
        if self.validator is None or state["best_metric_epoch"] < 1:
            return
        self.validator.state.best_metric, self.validator.state.best_metric_epoch = state["best_metric"], state["best_metric_epoch"]
        if self.best_saver is not None:  # its record: (score, file); MONAI's saver writes the fixed model.pt whatever the name
            self.best_saver.load_state_dict({"_saved": [(state["best_metric"], "model.pt")]})


def _checkpoint_epoch(path: str | os.PathLike) -> int | None:
    """N of a ``checkpoint_epoch=N.pt`` path; None for another name."""
    number = Path(path).stem.partition("checkpoint_epoch=")[2]
    return int(number) if Path(path).stem.startswith("checkpoint_epoch=") and number.isdigit() else None


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> str:
    """Path of the highest ``checkpoint_epoch=N.pt`` in ``ckpt_dir``, or ``""`` when there is none."""
    found = [(epoch, path) for path in Path(ckpt_dir).glob("checkpoint_epoch=*.pt") if (epoch := _checkpoint_epoch(path)) is not None]
    return str(max(found)[1]) if found else ""


def load_initial_weights(network: torch.nn.Module, path: str | os.PathLike) -> None:
    """Fine-tuning: load the weights of ``path`` (a ``model.pt`` or ``checkpoint_epoch=N.pt``, checked to fit, read
    weights-only) into ``network`` before training; ``""`` (the default ``init_weights``) leaves it as initialised."""
    if str(path):
        getattr(network, "module", network).load_state_dict(model_weights(path, network, hint="--init_weights"))


def check_resume(ckpt_dir: str | os.PathLike, network: torch.nn.Module, epochs: int) -> str:
    """The checkpoint a ``--resume True`` run continues from; none in ``ckpt_dir``, one that does not load
    weights-only into ``network``, or one that already has ``epochs`` epochs or more is an :class:`InputError`."""
    latest = latest_checkpoint(ckpt_dir)
    if not latest:
        raise InputError(f"--resume: no checkpoint_epoch=N.pt in {ckpt_dir} to continue from (train without --resume, or pass --ckpt_dir)")
    model_weights(latest, network)
    done = _checkpoint_epoch(latest)
    if epochs <= done:
        raise InputError(f"--resume True --epochs {epochs}: {latest} has already trained {done} epochs; "
                         f"pass --epochs above {done} to continue, or train without --resume into another --ckpt_dir")
    return latest


def hint_resume_on_interrupt(ckpt_dir: str | os.PathLike) -> None:
    """Make the one line printed after Ctrl-C say where the finished epochs are and how to continue them."""
    set_interrupt_hint(f"the checkpoints of the finished epochs are in {ckpt_dir}; "
                       "run the same command with --resume True (without --overwrite) to continue")


class _ReplaceAfterSave(BaseSaveHandler):
    """Ignite save handler: each checkpoint goes to a temporary file renamed into place, and the file it
    supersedes is deleted only after that, so a crash leaves the previous checkpoint whole."""

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None) -> None:
        self.dirname, self.filename = Path(dirname), filename  # filename: a fixed name (MONAI's ``model.pt``)
        self.superseded: set[str] = set()

    def __call__(self, checkpoint: dict, filename: str, metadata: dict | None = None) -> None:
        written = self.filename or filename
        save_atomic(self.dirname / written, lambda tmp: torch.save(checkpoint, tmp))
        for name in self.superseded - {written}:
            (self.dirname / name).unlink(missing_ok=True)
        self.superseded.clear()

    def remove(self, filename: str) -> None:
        self.superseded.add(self.filename or filename)


def keeps_best_epoch(model_epoch: str) -> bool:
    """A recipe's ``model_epoch``: ``"best"`` (``model.pt`` is the epoch with the best ``selection_metric``) gives
    True, ``"last"`` (``model.pt`` is the latest epoch's weights, rewritten after each validation) False; any
    other value is an :class:`InputError`."""
    if model_epoch not in MODEL_EPOCHS:
        raise InputError(f"--model_epoch {model_epoch!r}: expected one of {', '.join(MODEL_EPOCHS)}")
    return model_epoch == "best"


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` (same arguments and file names) with crash-safe files.

    MONAI writes in place and, with ``n_saved``, deletes the old checkpoint before writing the new one;
    here a checkpoint is written to a temporary file and renamed, and the one it replaces is deleted after.
    The epoch checkpoints (``checkpoint_epoch=N.pt``) already in ``save_dir`` when training starts (those of the run being
    resumed, or of an earlier run) count as superseded: they go once this run's first one is on disk.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = _ReplaceAfterSave(self.save_dir, checkpoint.save_handler.filename)

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        if self._interval_checkpoint is not None:
            engine.add_event_handler(Events.STARTED, self._supersede_earlier_epochs)

    def _supersede_earlier_epochs(self, engine: Engine) -> None:
        prefix = self._interval_checkpoint.filename_prefix
        name = next(iter(self.save_dict)) if len(self.save_dict) == 1 else "checkpoint"  # ignite's naming
        earlier = Path(self.save_dir).glob(f"{prefix + '_' if prefix else ''}{name}_epoch=*.pt")
        self._interval_checkpoint.save_handler.superseded.update(path.name for path in earlier)


class StopOnNonFiniteLoss:
    """Ignite handler for a trainer: stops the run with an :class:`InputError` (one ``error:`` line at the command
    line) when the loss is NaN or infinite.

    With ``every_iteration`` it reads each step's loss (``engine.state.output``) and names the epoch and
    iteration; otherwise (on CUDA, to avoid a host-device sync per step) it reads the epoch's mean loss,
    the trainer metric ``metric_name``, once per epoch. List it first among the trainer's handlers: it then
    fires before the checkpoint savers of that epoch, so the checkpoints already on disk stay the last good ones,
    and before MONAI's ``StatsHandler``, whose exception log would put a traceback above the line.
    """

    def __init__(self, ckpt_dir: str | os.PathLike, every_iteration: bool = True, metric_name: str = "train_loss_epoch") -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.every_iteration = every_iteration
        self.metric_name = metric_name

    def attach(self, engine: Engine) -> None:
        if self.every_iteration:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._check_step)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._check_epoch)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._pass_on)

    @staticmethod
    def _pass_on(engine: Engine, err: BaseException) -> None:
        """Re-raise ``err`` before MONAI's ``StatsHandler`` logs it with a traceback: the stop stays one line,
        and Python still prints the traceback of any other exception."""
        raise err

    def _check_step(self, engine: Engine) -> None:
        loss = from_engine(["loss"], first=True)(engine.state.output)
        if not torch.isfinite(torch.as_tensor(loss)).all():
            step = (engine.state.iteration - 1) % engine.state.epoch_length + 1
            self._stop(f"training loss is {float(loss)} at epoch {engine.state.epoch}, iteration {step} of {engine.state.epoch_length}")

    def _check_epoch(self, engine: Engine) -> None:
        loss = engine.state.metrics.get(self.metric_name)
        if loss is not None and not math.isfinite(loss):
            self._stop(f"mean training loss of epoch {engine.state.epoch} is {loss}")

    def _stop(self, what: str) -> None:
        saved = sorted(path.name for path in self.ckpt_dir.glob("*.pt")) if self.ckpt_dir.is_dir() else []
        kept = f"the checkpoints in {self.ckpt_dir} ({', '.join(saved)}) are from before it" if saved else "no checkpoint was written"
        for bar in list(tqdm._instances):  # finish open progress bars now, not after the line at exit
            bar.close()
        raise InputError(f"{what}; stopped before saving anything of this epoch: {kept} (lower the learning rate or check the data)")


def log_step_at_debug(engine: Engine) -> None:
    """MONAI ``StatsHandler``'s ``iteration_print_logger``: each step's training loss at DEBUG level (logger
    ``pipelines.engine.training``), so that it stays off the console between the progress bar's updates unless
    ``configs/logging.conf`` asks for DEBUG; TensorBoard has it per step anyway."""
    loss = from_engine(["loss"], first=True)(engine.state.output)
    step = (engine.state.iteration - 1) % engine.state.epoch_length + 1
    logger.debug(f"epoch {engine.state.epoch}/{engine.state.max_epochs}, step {step}/{engine.state.epoch_length}: train_loss {float(loss):.4f}")


class TrainSummaryWriter:
    """Ignite handler for a trainer: writes ``<output_dir>/training_run.json`` after every epoch, and logs one
    summary line when training ends.

    Keys: ``epochs`` (completed), ``max_epochs``, ``train_seconds`` (wall time of this run, since it started or
    resumed), ``seconds_per_epoch`` (of the epochs this run trained), ``epoch_seconds`` (each epoch's own time,
    validation included, by epoch; a resumed run keeps the earlier epochs' entries of the file), ``best_metric``
    and ``best_metric_epoch`` of ``validator`` (when given), and everything in ``facts`` (e.g. image size, batch
    size, device, ``selection_metric`` and ``model_epoch``). Written atomically, so the file always describes the
    last completed epoch. The last line names the epochs run, the epoch and score of ``ckpt_path`` (``model.pt``)
    and where the checkpoints and logs are.
    """

    def __init__(self, output_dir: str | os.PathLike, validator: Engine | None = None, facts: dict | None = None, ckpt_path: str | os.PathLike | None = None) -> None:
        self.path = Path(output_dir) / "training_run.json"
        self.validator = validator
        self.facts = dict(facts or {})
        self.ckpt_path = ckpt_path
        self._started = self._epoch_started = 0.0
        self._first_epoch = 0
        self._epoch_seconds: dict[str, float] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)
        engine.add_event_handler(Events.COMPLETED, self._finish)

    def _start(self, engine: Engine) -> None:
        """At the start or resume (attached after the checkpoint loader, so ``engine.state.epoch`` is restored)."""
        self._started, self._first_epoch = time.perf_counter(), engine.state.epoch
        earlier = json.loads(self.path.read_text()).get("epoch_seconds", {}) if self._first_epoch and self.path.is_file() else {}
        self._epoch_seconds = {epoch: seconds for epoch, seconds in earlier.items() if int(epoch) <= self._first_epoch}

    def _start_epoch(self, engine: Engine) -> None:
        self._epoch_started = time.perf_counter()

    def _write(self, engine: Engine) -> None:
        now = time.perf_counter()
        self._epoch_seconds[str(engine.state.epoch)] = round(now - self._epoch_started, 1)
        trained = max(engine.state.epoch - self._first_epoch, 1)
        summary = {"epochs": engine.state.epoch, "max_epochs": engine.state.max_epochs, "train_seconds": round(now - self._started, 1),
                   "seconds_per_epoch": round((now - self._started) / trained, 2), "epoch_seconds": self._epoch_seconds, **self.facts}
        if self.validator is not None:
            summary.update(best_metric=getattr(self.validator.state, "best_metric", None), best_metric_epoch=getattr(self.validator.state, "best_metric_epoch", None))
        write_text_atomic(self.path, json.dumps(summary, indent=2, default=str) + "\n")

    def _finish(self, engine: Engine) -> None:
        state, metric = engine.state, self.facts.get("selection_metric", "the key metric")
        if self.validator is not None and self.facts.get("model_epoch") != "last" and getattr(self.validator.state, "best_metric_epoch", -1) > 0:
            kept = f"best {metric} {self.validator.state.best_metric:.4f} at epoch {self.validator.state.best_metric_epoch}"
        else:
            kept = f"the last epoch's weights ({metric} {self.validator.state.metrics.get(metric, float('nan')):.4f})" if self.validator is not None else "the last epoch's weights"
        logger.info(f"training done: {state.epoch} of {state.max_epochs} epochs in {(time.perf_counter() - self._started) / 60:.1f} min; "
                    f"model.pt: {kept}" + (f" ({self.ckpt_path})" if self.ckpt_path else "") + f"; logs, TensorBoard and training_run.json in {self.path.parent}")
