"""TensorBoard overlays and learning rate, written through real ignite engines and read back with EventAccumulator."""

import io

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import LrScheduleHandler, TensorBoardStatsHandler
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipelines.engine.visualize import TensorBoardOverlayHandler, learning_rate_writer, overlay_rgb

W, H = 24, 16  # MONAI's PIL order: (C, W, H) tensors show as H rows x W columns


def slice_output(offset=0.0):
    """One decollated evaluator output: 3-channel image, label in the top-left 4x4 corner, prediction shifted 2 right."""
    label, pred = torch.zeros(1, W, H), torch.zeros(1, W, H)
    label[0, 0:4, 0:4] = 1
    pred[0, 2:6, 0:4] = 1
    image = torch.linspace(0, 1, W * H).reshape(1, W, H).repeat(3, 1, 1) + offset
    return {"image": image, "label": label, "pred": pred}


def test_overlay_colours_and_orientation():
    rgb = overlay_rgb(slice_output()["image"][0], slice_output()["label"], slice_output()["pred"])
    assert rgb.shape == (H, W, 3) and rgb.min() >= 0 and rgb.max() <= 1
    green, yellow, red, grey = rgb[1, 0], rgb[1, 3], rgb[1, 5], rgb[10, 10]  # (row, column): x runs along W
    assert green[1] > green[0] and green[1] > green[2]
    assert yellow[0] == pytest.approx(yellow[1]) and yellow[0] > yellow[2]
    assert red[0] > red[1] and red[0] > red[2]
    assert grey[0] == grey[1] == grey[2]


def test_overlay_of_one_hot_masks_uses_the_foreground_classes():
    classes = torch.zeros(W, H, dtype=torch.long)
    classes[:4, :4] = 2
    one_hot = torch.stack([classes == c for c in range(3)]).float()
    rgb = overlay_rgb(torch.zeros(W // 2, H // 2), one_hot, torch.zeros_like(one_hot))  # image resized to the masks
    assert rgb.shape == (H, W, 3)
    assert rgb[0, 0, 1] > 0 and rgb[0, 0, 0] == 0 and (rgb[10:, 10:] == 0).all()


def test_overlay_handler_writes_images_per_validation_epoch(tmp_path):
    handler = TensorBoardOverlayHandler(tmp_path, max_images=3)
    evaluator = Engine(lambda engine, batch: [slice_output(offset) for offset in batch])
    handler.attach(evaluator)
    evaluator.run([[0.0, 0.1], [0.2, 0.3]], max_epochs=2)

    events = EventAccumulator(str(tmp_path)).Reload()
    assert sorted(events.Tags()["images"]) == ["val_overlay/0", "val_overlay/1", "val_overlay/2"]
    images = events.Images("val_overlay/2")
    assert [image.step for image in images] == [1, 2]
    png = Image.open(io.BytesIO(images[-1].encoded_image_string))
    assert png.size == (W, H)
    red, green, blue = np.asarray(png.convert("RGB"))[1, 0]  # ground truth only, on a black pixel: green
    assert green > 100 and red < 30 and blue < 30


def test_learning_rate_writer_logs_the_rate_each_epoch_used(tmp_path):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    trainer = Engine(lambda engine, batch: optimizer.step())
    TensorBoardStatsHandler(log_dir=str(tmp_path), iteration_log=False, epoch_event_writer=learning_rate_writer(optimizer)).attach(trainer)
    LrScheduleHandler(torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5), print_lr=False).attach(trainer)
    trainer.run([0], max_epochs=3)

    scalars = EventAccumulator(str(tmp_path)).Reload().Scalars("lr")
    assert [(s.step, s.value) for s in scalars] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.05)), (3, pytest.approx(0.025))]
