"""TensorBoard images and the learning rate for a MONAI training run.

- :class:`TensorBoardOverlayHandler`: on an evaluator, writes overlays (image grey, ground truth green,
  prediction red, overlap yellow) of the first few validation slices after every validation run.
- :func:`learning_rate_writer`: an ``epoch_event_writer`` for MONAI's ``TensorBoardStatsHandler`` that
  logs the optimizer's learning rate as ``lr`` (MONAI's ``LrScheduleHandler`` only prints it to the log)::

      {"_target_": "TensorBoardStatsHandler", "log_dir": "@output_dir", "iteration_log": false,
       "epoch_event_writer": "$pipelines.engine.visualize.learning_rate_writer(@optimizer)"}

  Put it before the ``LrScheduleHandler`` in the trainer's handlers to log the rate each epoch used.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.transforms import Resize
from torch.utils.tensorboard import SummaryWriter

__all__ = ["TensorBoardOverlayHandler", "learning_rate_writer", "overlay_rgb"]

ALPHA = 0.5  # weight of the mask colour over the grey image
GREEN, RED, YELLOW = np.eye(3, dtype=np.float32)[1], np.eye(3, dtype=np.float32)[0], np.array([1, 1, 0], dtype=np.float32)


def _foreground(mask: torch.Tensor) -> np.ndarray:
    """``(C, W, H)`` mask -> ``(W, H)`` bool: channel 0 > 0.5 for C=1, else argmax over channels > 0 (one-hot)."""
    mask = torch.as_tensor(mask).detach().cpu().float()
    return (mask[0] > 0.5 if mask.shape[0] == 1 else mask.argmax(0) > 0).numpy()


def overlay_rgb(image: torch.Tensor, label: torch.Tensor, pred: torch.Tensor) -> np.ndarray:
    """Colour overlay of one slice, as a person sees it.

    Args:
        image: ``(W, H)`` float, any range (min-max scaled to grey), in MONAI's PIL order; resized
            bilinearly to the masks' size when it differs.
        label, pred: ``(C, W, H)`` binarised masks: C=1 binary, or one-hot (foreground = argmax > 0).

    Returns ``(H, W, 3)`` float32 in [0, 1]: grey image, blended with green where only the ground truth is,
    red where only the prediction is, yellow where both are.
    """
    truth, predicted = _foreground(label), _foreground(pred)
    image = torch.as_tensor(image).detach().cpu().float()
    if image.shape != truth.shape:
        image = Resize(truth.shape, mode="bilinear")(image[None])[0]
    grey = image.numpy()
    grey = (grey - grey.min()) / max(float(grey.max() - grey.min()), 1e-8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for where, colour in ((truth & ~predicted, GREEN), (predicted & ~truth, RED), (truth & predicted, YELLOW)):
        rgb[where] = (1 - ALPHA) * rgb[where] + ALPHA * colour
    return rgb.transpose(1, 0, 2).astype(np.float32)  # (W, H, 3) -> (H, W, 3)


class TensorBoardOverlayHandler:
    """Ignite handler for a MONAI ``SupervisedEvaluator``: after each run, writes up to ``max_images``
    overlays (see :func:`overlay_rgb`) of the run's first slices as TensorBoard images ``<tag>/<index>``.

    Reads the decollated ``engine.state.output``: a list of dicts with ``image_key`` ``(C, W, H)`` float
    (channel ``channel`` is shown) and ``label_key``/``pred_key`` ``(C, W, H)`` binarised masks. The step
    is ``engine.state.epoch``: under MONAI's ``ValidationHandler`` the evaluator runs at the trainer's epoch,
    so the images line up with the training curves.
    """

    def __init__(self, log_dir: str | os.PathLike, max_images: int = 4, image_key: str = "image", label_key: str = "label",
                 pred_key: str = "pred", channel: int = 0, tag: str = "val_overlay") -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.max_images = max_images
        self.image_key, self.label_key, self.pred_key = image_key, label_key, pred_key
        self.channel = channel
        self.tag = tag
        self._overlays: list[np.ndarray] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._overlays = []

    def _collect(self, engine: Engine) -> None:
        for output in engine.state.output[: self.max_images - len(self._overlays)]:
            image = output[self.image_key][self.channel]
            self._overlays.append(overlay_rgb(image, output[self.label_key], output[self.pred_key]))

    def _write(self, engine: Engine) -> None:
        for index, rgb in enumerate(self._overlays):
            self.writer.add_image(f"{self.tag}/{index}", rgb, engine.state.epoch, dataformats="HWC")
        self.writer.flush()


def learning_rate_writer(optimizer: torch.optim.Optimizer, tag: str = "lr") -> Callable[[Engine, SummaryWriter], None]:
    """Epoch event writer for ``TensorBoardStatsHandler``: the first parameter group's learning rate at step
    ``engine.state.epoch``."""

    def write(engine: Engine, writer: SummaryWriter) -> None:
        writer.add_scalar(tag, optimizer.param_groups[0]["lr"], engine.state.epoch)
        writer.flush()

    return write
