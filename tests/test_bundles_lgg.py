"""End to end on demo data: each LGG bundle's train, evaluate and inference through ``python -m monai.bundle run``."""

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from bundle_utils import FAST, assert_one_line_error, run_bundle, tree_digest
from PIL import Image

LGG_BUNDLES = ["lgg_unet_bce"]


@pytest.fixture(scope="module", params=LGG_BUNDLES)
def trained(request, tmp_path_factory, lgg_demo_root, lgg_demo_manifest):
    """A bundle trained for one epoch on the demo data; returns (bundle, common overrides, run folder)."""
    run = tmp_path_factory.mktemp(request.param)
    common = {"dataset_dir": lgg_demo_root, "manifest": lgg_demo_manifest, "ckpt_dir": run / "models", **FAST}
    result = run_bundle(request.param, "train", epochs=1, output_dir=run / "train", **common)
    assert result.returncode == 0, result.stderr[-3000:]
    return request.param, common, run


def test_train_saves_best_and_latest_checkpoints_and_tensorboard(trained):
    _, _, run = trained
    assert (run / "models" / "model.pt").is_file()
    assert list((run / "models").glob("checkpoint_epoch=1.pt"))
    assert list((run / "train").glob("events.out.tfevents.*"))
    facts = json.loads((run / "train" / "train_summary.json").read_text())
    assert facts["epochs"] == facts["max_epochs"] == 1 and facts["device"] == "cpu" and facts["best_metric_epoch"] == 1


def test_evaluate_writes_every_dice_convention(trained, lgg_demo_manifest):
    bundle, common, run = trained
    result = run_bundle(bundle, "evaluate", output_dir=run / "eval", **common)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(lgg_demo_manifest) as f:
        test_rows = [row for row in csv.DictReader(f) if row["split"] == "test"]
    summary = json.loads((run / "eval" / "test_summary.json").read_text())
    tumour = summary["classes"]["tumour"]
    assert summary["n_slices"] == len(test_rows) and summary["split"] == "test"
    assert tumour["slices_with_tumour"]["n"] == sum(int(row["diagnosis"]) for row in test_rows)
    for convention in ("per_slice", "slices_with_tumour", "per_subject_3d"):
        assert 0.0 <= tumour[convention]["dice"] <= 1.0
    with open(run / "eval" / "test_per_slice.csv") as f:
        assert len(list(csv.DictReader(f))) == len(test_rows)
    assert len(list((run / "eval" / "masks").rglob("*_pred.png"))) == len(test_rows)  # kept for overlays in reports


def test_inference_on_the_manifest_writes_masks_csv_and_volumes(trained, lgg_demo_manifest):
    bundle, common, run = trained
    result = run_bundle(bundle, "inference", output_dir=run / "pred", **common)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run / "pred" / "predictions" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    with open(lgg_demo_manifest) as f:
        assert len(rows) == sum(row["split"] == "test" for row in csv.DictReader(f))
    mask = np.asarray(Image.open(rows[0]["prediction"]))
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
    volume = nib.load(rows[0]["volume"])
    assert volume.shape == (256, 256, len(rows))


def test_inference_on_a_folder_without_manifest(trained, lgg_demo_root):
    bundle, common, run = trained
    case = sorted(p for p in lgg_demo_root.iterdir() if p.is_dir())[0]
    overrides = {"infer#input_dir": case, "infer#output_dir": run / "folder_pred", "ckpt_dir": common["ckpt_dir"], **FAST}
    result = run_bundle(bundle, "inference", **overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    masks = sorted((run / "folder_pred" / "masks" / case.name).glob("*_pred.png"))
    assert len(masks) == len(list(case.glob("*_mask.tif")))


def test_bad_manifest_stops_before_training_and_keeps_outputs(trained, tmp_path):
    bundle, common, run = trained
    before = tree_digest(run)
    broken = tmp_path / "broken.csv"
    lines = common["manifest"].read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.endswith(",train"))
    lines[index] = lines[index].removesuffix(",train") + ",tarin"
    broken.write_text("\n".join(lines) + "\n")
    result = run_bundle(bundle, "train", epochs=1, output_dir=run / "train", **{**common, "manifest": broken})
    assert_one_line_error(result, str(broken), f"row {index + 1}", "column 'split'", "tarin")
    assert tree_digest(run) == before


def test_missing_dataset_dir_is_one_line(trained, tmp_path):
    bundle, common, _ = trained
    result = run_bundle(bundle, "train", **{**common, "dataset_dir": tmp_path / "nowhere", "ckpt_dir": tmp_path / "models"})
    assert_one_line_error(result, "dataset_dir", "nowhere", "no such folder")
    assert not (tmp_path / "models").exists()


def test_evaluate_without_checkpoint_is_one_line(trained, tmp_path):
    bundle, common, _ = trained
    result = run_bundle(bundle, "evaluate", output_dir=tmp_path / "eval", **{**common, "ckpt_dir": tmp_path / "empty"})
    assert_one_line_error(result, "checkpoint", "model.pt", "no such file")
    assert not (tmp_path / "eval").exists()


def test_missing_image_is_named_before_any_run(trained, tmp_path):
    bundle, common, _ = trained
    data = tmp_path / "data"
    shutil.copytree(common["dataset_dir"], data)
    missing = sorted(data.rglob("*_3.tif"))[0]
    missing.unlink()
    result = run_bundle(bundle, "evaluate", output_dir=tmp_path / "eval", **{**common, "dataset_dir": data})
    assert_one_line_error(result, "column 'image'", missing.name)
