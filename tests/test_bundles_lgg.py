"""End to end on demo data: each LGG bundle's train, evaluate and inference through ``monai.bundle run``'s command line
(forked from a process that has imported torch and MONAI, see tests/bundle_utils.py)."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from bundle_utils import fast, run_bundle
from PIL import Image

from pipelines.report import read_scalars

LGG_BUNDLES = ["lgg_unet_bce", "lgg_unet_dicece_rgb", "lgg_unet_small", "lgg_unet_augment", "lgg_best"]


@pytest.fixture(scope="module", params=LGG_BUNDLES)
def trained(request, tmp_path_factory, lgg_demo_root, lgg_demo_manifest):
    """A bundle trained for one epoch on the demo data; returns (bundle, common overrides, run folder)."""
    run = tmp_path_factory.mktemp(request.param)
    common = {"dataset_dir": lgg_demo_root, "manifest": lgg_demo_manifest, "ckpt_dir": run / "models", **fast(request.param)}
    result = run_bundle(request.param, "train", epochs=1, output_dir=run / "train", **common)
    assert result.returncode == 0, result.stderr[-3000:]
    (run / "train.log").write_text(result.stdout + result.stderr)
    return request.param, common, run


def rows_of(manifest, split):
    with open(manifest) as f:
        return [row for row in csv.DictReader(f) if row["split"] == split]


def test_train_saves_best_and_latest_checkpoints_and_tensorboard(trained):
    _, _, run = trained
    assert (run / "models" / "model.pt").is_file()
    assert list((run / "models").glob("checkpoint_epoch=1.pt"))
    assert list((run / "train").glob("events.out.tfevents.*"))
    facts = json.loads((run / "train" / "training_run.json").read_text())
    assert facts["epochs"] == facts["max_epochs"] == 1 and facts["device"] == "cpu" and facts["best_metric_epoch"] == 1
    assert facts["train_splits"] == ["train"]


def test_the_recipe_names_the_metric_that_picks_model_pt(trained):
    """Every LGG bundle selects by per-patient 3D Dice (post-processed where the recipe post-processes), never by
    the per-slice val_mean_dice, which scores an empty prediction on an empty slice 1."""
    bundle, _, run = trained
    facts = json.loads((run / "train" / "training_run.json").read_text())
    metric = facts["selection_metric"]
    assert metric == ("val_dice_3d_postprocessed" if bundle == "lgg_best" else "val_dice_3d")
    assert facts["model_epoch"] == ("last" if bundle == "lgg_best" else "best")
    assert f"Key metric: {metric} best value" in (run / "train.log").read_text()
    assert facts["best_metric"] == pytest.approx(read_scalars(run / "train")[metric]["value"].max())  # the metric the validator compared


def test_evaluate_writes_every_dice_convention(trained, lgg_demo_manifest):
    bundle, common, run = trained
    result = run_bundle(bundle, "evaluate", output_dir=run / "eval", **common)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = rows_of(lgg_demo_manifest, "test")
    summary = json.loads((run / "eval" / "test_summary.json").read_text())
    tumour = summary["classes"]["tumour"]
    assert summary["n_slices"] == len(rows) and summary["split"] == "test"
    assert tumour["slices_with_tumour"]["n"] == sum(int(row["diagnosis"]) for row in rows)
    for convention in ("per_slice", "slices_with_tumour", "per_subject_3d"):
        assert 0.0 <= tumour[convention]["dice"] <= 1.0
    assert ("postprocessed" in summary) == (bundle == "lgg_best")  # the recipes that set postprocess_3d
    with open(run / "eval" / "test_per_slice.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    masks = list((run / "eval" / "masks").rglob("*_pred.png"))  # kept for overlays in reports
    assert len(masks) == len(rows) and Image.open(masks[0]).size == (256, 256)  # scored at the original size


def test_inference_on_the_manifest_writes_masks_csv_and_volumes(trained, lgg_demo_manifest):
    bundle, common, run = trained
    result = run_bundle(bundle, "inference", output_dir=run / "pred", **common)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run / "pred" / "predictions" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(rows_of(lgg_demo_manifest, "test"))
    mask = np.asarray(Image.open(rows[0]["prediction"]))
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
    assert nib.load(rows[0]["volume"]).shape == (256, 256, len(rows))


def test_inference_on_a_folder_without_manifest(trained, lgg_demo_root):
    bundle, common, run = trained
    case = sorted(p for p in lgg_demo_root.iterdir() if p.is_dir())[0]
    overrides = {"infer#input_dir": case, "infer#output_dir": run / "folder_pred", "ckpt_dir": common["ckpt_dir"], **fast(bundle)}
    result = run_bundle(bundle, "inference", **overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    masks = sorted((run / "folder_pred" / "masks" / case.name).glob("*_pred.png"))
    assert len(masks) == len(list(case.glob("*_mask.tif")))


def test_training_loss_once_per_epoch_without_per_step_reads(tmp_path, lgg_demo_root, lgg_demo_manifest):
    """The CUDA setting (``loss_every_iteration`` false: no host-device sync per step) logs the epoch mean only,
    and the report still draws the loss curve from it."""
    from pipelines.report import write_report

    common = {"dataset_dir": lgg_demo_root, "manifest": lgg_demo_manifest, "ckpt_dir": tmp_path / "models", **fast("lgg_unet_small")}
    result = run_bundle("lgg_unet_small", "train", epochs=2, output_dir=tmp_path / "train", loss_every_iteration=False, **common)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Iter:" not in result.stdout + result.stderr and "train_loss_epoch: " in result.stdout + result.stderr
    scalars = read_scalars(tmp_path / "train")
    assert "train_loss" not in scalars and list(scalars["train_loss_epoch"]["step"]) == [1, 2]
    evaluated = run_bundle("lgg_unet_small", "evaluate", output_dir=tmp_path / "eval", **common)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (write_report(tmp_path / "eval", train_log_dir=tmp_path / "train").parent / "curves.png").is_file()
