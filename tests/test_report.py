"""Reports of a tiny evaluated run, made without training: hand-made predictions scored by the real writers."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from monai.transforms import LoadImage
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from pipelines import report
from pipelines.cli import main
from pipelines.engine.evaluation import SegmentationMetricsWriter
from pipelines.engine.inference import PredictionWriter

FIGURES = ("curves.png", "overlays.png", "per_subject.png")
OASIS_VALUES = (0, 85, 170, 255)
OASIS_CLASSES = ["background", "csf", "grey_matter", "white_matter"]
load = LoadImage(reader="PILReader", image_only=True, ensure_channel_first=True)  # (C, W, H), as the bundles load


def evaluate(items, eval_dir, class_names, label_values, mask_classes=("background", "tumour")):
    """Score ``items`` (dicts: subject, slice, image and optional label paths, ``pred_mask``/``label_mask``
    one-hot (C, W, H)) one batch per subject as an evaluator would: metrics files and predicted masks go to ``eval_dir``."""
    engine = Engine(lambda engine, batch: [{"pred": item["pred_mask"], "label": item["label_mask"]} for item in batch])
    SegmentationMetricsWriter(class_names, eval_dir, extra={"split": "test"}).attach(engine)
    PredictionWriter(eval_dir, label_values, mask_classes).attach(engine)
    subjects = dict.fromkeys(item["subject"] for item in items)
    engine.run([[item for item in items if item["subject"] == subject] for subject in subjects], max_epochs=1)


@pytest.fixture(scope="module")
def lgg_run(lgg_demo_root, tmp_path_factory):
    """Three demo subjects x 12 slices: subject 1 predicted exactly, subjects 2 and 3 with the ground truth
    shifted 6 and 20 pixels to the right (best, median, worst); no label paths, so the report falls back to
    the ``_mask`` siblings. A TensorBoard log of 4 epochs x 5 iterations in ``models/``."""
    run = tmp_path_factory.mktemp("lgg_run")
    items = []
    for shift, case in zip((0, 6, 20), sorted(path for path in lgg_demo_root.iterdir() if path.is_dir())[:3]):
        for k in range(1, 13):
            label = (load(case / f"{case.name}_{k}_mask.tif") > 0).float()  # (1, W, H)
            items.append({"subject": case.name[:12], "slice": k, "image": str(case / f"{case.name}_{k}.tif"),
                          "label_mask": label, "pred_mask": torch.roll(label, shifts=shift, dims=1)})  # W: to the right
    evaluate(items, run / "eval", ["tumour"], (0, 255))
    with SummaryWriter(str(run / "models")) as writer:
        for step in range(1, 21):
            writer.add_scalar("train_loss", 0.8 * np.exp(-step / 8) + 0.05 * np.sin(step), step)
        for epoch in range(1, 5):
            writer.add_scalar("val_mean_dice", 0.5 + 0.1 * epoch, epoch)
            writer.add_scalar("val_dice_3d", 0.4 + 0.1 * epoch, epoch)
            writer.add_scalar("lr", 1e-3 / epoch, epoch)
    return run


@pytest.fixture(scope="module")
def oasis_run(tmp_path_factory):
    """OASIS-like, 4 classes: 2 subjects x 3 grey PNG slices of 32 rows x 40 columns, labels in ``seg/``
    (not beside the images: found through the ``label`` column); subject c2's white matter is predicted as grey matter."""
    root = tmp_path_factory.mktemp("oasis")
    (root / "seg").mkdir()
    rows, cols = np.mgrid[0:32, 0:40]
    classes = 3 - np.digitize(np.hypot((rows - 16) / 14, (cols - 20) / 18), [0.4, 0.7, 1.0])  # white matter in the middle
    index = torch.as_tensor(classes.T.copy())  # (W, H), as MONAI loads it
    items = []
    for subject in ("c1", "c2"):
        pred = torch.where(index == 3, 2, index) if subject == "c2" else index
        for k in range(3):
            image, label = root / f"case_{subject}_slice_{k}.png", root / "seg" / f"seg_{subject}_slice_{k}.png"
            Image.fromarray((classes * 50 + cols).astype(np.uint8)).save(image)
            Image.fromarray(np.asarray(OASIS_VALUES, dtype=np.uint8)[classes]).save(label)
            items.append({"subject": subject, "slice": k, "image": str(image), "label": str(label),
                          "label_mask": torch.stack([index == c for c in range(4)]).float(),
                          "pred_mask": torch.stack([pred == c for c in range(4)]).float()})
    evaluate(items, root / "eval", OASIS_CLASSES, OASIS_VALUES, OASIS_CLASSES)
    return root / "eval"


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert np.asarray(image.convert("L")).std() > 0, f"{path.name} is blank"
        return image.size


def expected_pixels(name):
    width, height = report.FIGURE_INCHES[name]
    return round(width * report.DPI), round(height * report.DPI)


def test_report_figures_have_their_stated_size_and_the_page_links_them(lgg_run):
    page = report.write_report(lgg_run / "eval", train_log_dir=lgg_run / "models")
    assert page == lgg_run / "eval" / "report" / "report.md"
    text = page.read_text()
    for name in FIGURES:
        assert png_size(page.parent / name) == expected_pixels(name)
        assert f"]({name})" in text
    summary = json.loads((lgg_run / "eval" / "test_summary.json").read_text())
    tumour = summary["classes"]["tumour"]
    for convention in ("per_slice", "slices_with_tumour", "per_subject_3d"):
        assert f"| tumour | {convention} | {tumour[convention]['n']} | {tumour[convention]['dice']:.3f}" in text
    assert f"{tumour['per_subject_3d']['dice']:.3f} ± {tumour['per_subject_3d']['dice_std']:.3f}" in text
    assert "No predicted mask" not in text


def test_report_without_training_log_skips_the_curves(lgg_run, tmp_path):
    text = report.write_report(lgg_run / "eval", out_dir=tmp_path).read_text()
    assert "training curves skipped" in text and "curves.png" not in text
    assert sorted(path.name for path in tmp_path.iterdir()) == ["overlays.png", "per_subject.png", "report.md"]


def test_report_without_predicted_masks_says_so(lgg_run, tmp_path):
    eval_dir = shutil.copytree(lgg_run / "eval", tmp_path / "eval", ignore=shutil.ignore_patterns("masks", "report"))
    text = report.write_report(eval_dir).read_text()
    assert text.count("No predicted mask") == 3 and png_size(eval_dir / "report" / "overlays.png") == expected_pixels("overlays.png")


def test_read_scalars_returns_every_point(lgg_run):
    scalars = report.read_scalars(lgg_run / "models")
    assert list(scalars["train_loss"]["step"]) == list(range(1, 21))
    assert scalars["val_dice_3d"]["value"].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8])


def test_multi_class_report_uses_the_label_column(oasis_run, tmp_path):
    text = report.write_report(oasis_run, out_dir=tmp_path).read_text()
    for name in ("overlays.png", "per_subject.png"):
        assert png_size(tmp_path / name) == expected_pixels(name)
    assert "| white_matter | per_subject_3d |" in text and "Per-slice Dice per class" in text
    mean_dice = json.loads((oasis_run / "test_summary.json").read_text())["mean_over_classes"]["per_slice"]["dice"]
    assert f"| mean over classes | per_slice |  | {mean_dice:.3f} |" in text


def test_compare_has_one_row_per_run_with_the_summary_numbers(lgg_run, oasis_run, tmp_path):
    bundle = shutil.copytree(lgg_run / "eval", tmp_path / "bundles" / "lgg_unet_bce" / "eval")
    trial = shutil.copytree(lgg_run / "eval", tmp_path / "runs" / "trial" / "eval")
    shutil.copy(trial / "test_summary.json", trial.parent / "val_summary.json")  # shallower, but not the preferred file
    (trial / "training_run.json").write_text(json.dumps({"epochs": 4, "train_seconds": 12.5, "device": "cpu", "image_size": [256, 256]}))
    table = report.compare([bundle.parent, trial.parent, oasis_run], tmp_path / "table.csv")

    assert table["run"].tolist() == ["lgg_unet_bce", "trial", "eval"]
    tumour = json.loads((bundle / "test_summary.json").read_text())["classes"]["tumour"]
    first = table.iloc[0]
    assert (first["split"], first["n_subjects"], first["n_slices"]) == ("test", 3, 36)
    assert first["dice_per_slice"] == tumour["per_slice"]["dice"] and first["dice_slices_with_class"] == tumour["slices_with_tumour"]["dice"]
    assert (first["dice_3d"], first["dice_3d_std"]) == (tumour["per_subject_3d"]["dice"], tumour["per_subject_3d"]["dice_std"])
    assert [first[m] for m in ("jaccard", "precision", "recall")] == [tumour["per_slice"][m] for m in ("jaccard", "precision", "recall")]
    assert first["seed_dice"] == 0.741 and pd.isna(first["epochs"]) and pd.isna(first["device"])
    assert (table.iloc[1]["epochs"], table.iloc[1]["train_seconds"], table.iloc[1]["device"]) == (4, 12.5, "cpu")
    assert table.iloc[1]["summary"] == str(trial / "test_summary.json")
    oasis = json.loads((oasis_run / "test_summary.json").read_text())["classes"]
    assert table.iloc[2]["dice_white_matter"] == oasis["white_matter"]["per_slice"]["dice"] < 1
    assert table.iloc[2]["dice_per_slice"] == pytest.approx(np.mean([c["per_slice"]["dice"] for c in oasis.values()]))

    written = pd.read_csv(tmp_path / "table.csv")
    assert written["run"].tolist() == table["run"].tolist()
    np.testing.assert_allclose(written["dice_3d"], table["dice_3d"], atol=1e-6)
    markdown = (tmp_path / "table.md").read_text()
    assert f"{tumour['per_subject_3d']['dice']:.3f} ± {tumour['per_subject_3d']['dice_std']:.3f}" in markdown
    assert "slice-level as they report them" in markdown


def test_cli_compare_writes_the_table(lgg_run, tmp_path, capsys):
    assert main(["report", "compare", str(lgg_run), "--out", str(tmp_path / "table.csv")]) == 0
    assert (tmp_path / "table.csv").is_file() and (tmp_path / "table.md").is_file()
    assert "1 runs" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing eval folder", "no summary", "unreadable csv"])
def test_cli_input_errors_are_one_line_naming_the_path(case, lgg_run, tmp_path, capsys):
    if case == "missing eval folder":
        argv, named = ["run", "--eval_dir", str(tmp_path / "nowhere")], tmp_path / "nowhere"
    elif case == "no summary":
        argv, named = ["compare", str(tmp_path), "--out", str(tmp_path / "t.csv")], tmp_path
    else:
        eval_dir = shutil.copytree(lgg_run / "eval", tmp_path / "eval", ignore=shutil.ignore_patterns("masks", "volumes"))
        (eval_dir / "test_per_subject.csv").write_text("subject,dice_tumour\nA,1\nB,1,2,3\n")
        argv, named = ["run", "--eval_dir", str(eval_dir)], eval_dir / "test_per_subject.csv"
    assert main(["report", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {named}") and err.count("\n") == 1


def test_cli_compare_skips_unevaluated_paths_when_asked(lgg_run, tmp_path, capsys):
    run = shutil.copytree(lgg_run / "eval", tmp_path / "runs" / "lgg_unet_bce_short" / "eval")
    (tmp_path / "runs" / "not_evaluated").mkdir()
    (tmp_path / "runs" / "common.json").write_text("{}")
    paths = sorted(str(path) for path in (tmp_path / "runs").iterdir())
    assert main(["report", "compare", *paths, "--skip-unevaluated", "--out", str(tmp_path / "table.csv")]) == 0
    out = capsys.readouterr().out
    assert "skipped (no evaluation summary)" in out and "not_evaluated" in out and "common.json" in out
    table = pd.read_csv(tmp_path / "table.csv")
    assert table["run"].tolist() == ["lgg_unet_bce_short"] and table["seed_dice"].tolist() == [0.741]
    assert table["summary"].tolist() == [str(run / "test_summary.json")]
