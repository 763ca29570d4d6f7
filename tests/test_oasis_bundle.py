"""End to end on the OASIS demo data: oasis_unet's train, evaluate and inference through ``monai.bundle run``'s command
line (forked from a process that has imported torch and MONAI, see tests/bundle_utils.py)."""

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bundle_utils import assert_error_line, bundle_error_in_process, fast, run_bundle
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipelines.data.oasis import CLASS_NAMES, LABEL_VALUES

BUNDLE = "oasis_unet"
PER_CLASS = [f"val_dice_{name}" for name in CLASS_NAMES]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, oasis_demo_root, oasis_demo_manifest):
    """oasis_unet trained for one epoch on the demo data; returns (common overrides, run folder, finished process)."""
    run = tmp_path_factory.mktemp(BUNDLE)
    common = {"dataset_dir": oasis_demo_root, "manifest": oasis_demo_manifest, "ckpt_dir": run / "models", **fast(BUNDLE)}
    result = run_bundle(BUNDLE, "train", epochs=1, output_dir=run / "train", **common)
    assert result.returncode == 0, result.stderr[-3000:]
    return common, run, result


def test_train_logs_dice_per_class_and_saves_best_and_latest(trained):
    _, run, result = trained
    assert (run / "models" / "model.pt").is_file() and (run / "models" / "checkpoint_epoch=1.pt").is_file()
    epoch_line = next(line for line in (result.stdout + result.stderr).splitlines() if "Epoch[1] Metrics" in line)
    assert all(f"{name}: " in epoch_line for name in ["val_mean_dice", *PER_CLASS])
    events = EventAccumulator(str(run / "train"))
    events.Reload()
    assert {"train_loss", "val_mean_dice", *PER_CLASS} <= set(events.Tags()["scalars"])
    facts = json.loads((run / "train" / "training_run.json").read_text())
    assert facts["epochs"] == 1 and facts["best_metric_epoch"] == 1 and facts["device"] == "cpu"


def test_evaluate_writes_per_class_tables_summary_and_masks(trained):
    common, run, _ = trained
    result = run_bundle(BUNDLE, "evaluate", output_dir=run / "eval", **common)
    assert result.returncode == 0, result.stderr[-3000:]
    dice_columns = [f"dice_{name}" for name in CLASS_NAMES]
    slices = pd.read_csv(run / "eval" / "test_per_slice.csv", dtype={"subject": str})
    assert len(slices) == 8 and set(slices["subject"]) == {"005"} and slices[dice_columns].notna().all().all()
    subjects = pd.read_csv(run / "eval" / "test_per_subject.csv", dtype={"subject": str})
    assert subjects["subject"].tolist() == ["005"] and set(dice_columns) <= set(subjects.columns)
    summary = json.loads((run / "eval" / "test_summary.json").read_text())
    assert list(summary["classes"]) == list(CLASS_NAMES)
    per_class = [summary["classes"][name]["per_slice"]["dice"] for name in CLASS_NAMES]
    assert summary["mean_over_classes"]["per_slice"]["dice"] == pytest.approx(np.mean(per_class), abs=1e-6)
    masks = sorted((run / "eval" / "masks" / "005").glob("*_pred.png"))
    assert len(masks) == 8 and set(np.unique(np.asarray(Image.open(masks[0])))) <= set(LABEL_VALUES)


def test_inference_writes_label_maps_in_png_values_and_volumes_of_classes(trained):
    common, run, _ = trained
    result = run_bundle(BUNDLE, "inference", output_dir=run / "pred", **common)
    assert result.returncode == 0, result.stderr[-3000:]
    index = pd.read_csv(run / "pred" / "predictions" / "predictions.csv", dtype={"subject": str})
    assert len(index) == 8 and [f"pixels_{name}" for name in CLASS_NAMES[1:]] == list(index.columns[-3:])
    mask = np.asarray(Image.open(index["prediction"][0]))
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= set(LABEL_VALUES)
    volume = nib.load(index["volume"][0])
    assert volume.shape == (256, 256, 8) and set(np.unique(np.asarray(volume.dataobj))) <= {0, 1, 2, 3}


def test_inference_on_a_folder_without_manifest_or_masks(trained):
    common, run, _ = trained
    folder = common["dataset_dir"] / "keras_png_slices_test"
    result = run_bundle(BUNDLE, "inference", **{**common, "output_dir": run / "folder", "infer#input_dir": folder})
    assert result.returncode == 0, result.stderr[-3000:]
    masks = sorted((run / "folder" / "predictions" / "masks" / "005").glob("case_005_slice_*.nii_pred.png"))
    assert len(masks) == 8 and (run / "folder" / "predictions" / "volumes" / "005.nii.gz").is_file()


def test_mask_with_unexpected_values_stops_before_training(trained, tmp_path):
    common, _, _ = trained
    data = tmp_path / "data"
    shutil.copytree(common["dataset_dir"], data)
    bad = data / "keras_png_slices_seg_validate" / "seg_004_slice_2.nii.png"
    pixels = np.asarray(Image.open(bad)).copy()
    pixels[100:110, 100:110] = 128  # e.g. a mask resized with interpolation
    Image.fromarray(pixels).save(bad)
    message = bundle_error_in_process(BUNDLE, "train", **{**common, "dataset_dir": data, "ckpt_dir": tmp_path / "models"})
    assert_error_line(message, str(bad), "unexpected mask values 128", "0, 85, 170, 255")
    assert not (tmp_path / "models").exists()


def test_image_and_mask_of_different_size_stop_before_training(trained, tmp_path):
    common, _, _ = trained
    data = tmp_path / "data"
    shutil.copytree(common["dataset_dir"], data)
    bad = data / "keras_png_slices_seg_train" / "seg_002_slice_5.nii.png"
    Image.open(bad).resize((128, 128), Image.Resampling.NEAREST).save(bad)
    message = bundle_error_in_process(BUNDLE, "train", **{**common, "dataset_dir": data, "ckpt_dir": tmp_path / "models"})
    assert_error_line(message, str(common["manifest"]), "row 15 column 'label'", "size 128x128 differs from the image's 256x256", str(bad))
    assert not (tmp_path / "models").exists()
