"""OASIS PNG slices: synthetic layout, manifest builder, mask checks, label mapping and per-class Dice."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from bundle_utils import REPO, assert_one_line_error
from ignite.engine import Engine
from monai.bundle import ConfigParser
from PIL import Image

from pipelines.bundles import config_files
from pipelines.cli import main
from pipelines.data.demo import make_oasis_demo
from pipelines.data.manifest import split_summary, validate_manifest, write_manifest
from pipelines.data.oasis import CLASS_NAMES, LABEL_VALUES, build_oasis, check_mask_values, load_folder
from pipelines.engine.evaluation import SegmentationMetricsWriter
from pipelines.engine.inference import PredictionWriter
from pipelines.errors import InputError

TRAIN_JSON = REPO / "bundles" / "oasis_unet" / "configs" / "train.json"


@pytest.fixture
def small(tmp_path):
    """A 32x32 synthetic OASIS root with one case per split (001 train, 002 validate, 003 test) x 2 slices."""
    return make_oasis_demo(tmp_path / "data", n_cases=(1, 1, 1), n_slices=2, size=32)


def bundle_config() -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(REPO / "bundles" / "oasis_unet", "train")])
    return parser


def build_cli(root, out):
    command = [sys.executable, "-m", "pipelines", "manifest", "build", "--layout", "oasis", "--dataset_dir", str(root), "--out", str(out)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


# --- synthetic data ---------------------------------------------------------------------------------

def test_demo_replicates_the_oasis_layout(oasis_demo_root):
    assert oasis_demo_root.name == "keras_png_slices_data"
    cases = {"train": ["001", "002", "003"], "validate": ["004"], "test": ["005"]}
    assert sorted(p.name for p in oasis_demo_root.iterdir()) == sorted(
        f"keras_png_slices_{seg}{split}" for split in cases for seg in ("", "seg_"))
    for split, numbers in cases.items():
        names = {p.name for p in (oasis_demo_root / f"keras_png_slices_{split}").iterdir()}
        assert names == {f"case_{n}_slice_{k}.nii.png" for n in numbers for k in range(8)}
        masks = {p.name for p in (oasis_demo_root / f"keras_png_slices_seg_{split}").iterdir()}
        assert masks == {f"seg_{n}_slice_{k}.nii.png" for n in numbers for k in range(8)}


def test_demo_tissues_are_nested_with_distinct_grey_levels(oasis_demo_root):
    image = Image.open(oasis_demo_root / "keras_png_slices_train/case_002_slice_4.nii.png")
    mask = np.asarray(Image.open(oasis_demo_root / "keras_png_slices_seg_train/seg_002_slice_4.nii.png"))
    assert (image.mode, image.size, mask.shape, mask.dtype) == ("L", (256, 256), (256, 256), np.uint8)
    assert np.unique(mask).tolist() == list(LABEL_VALUES)
    levels = [np.asarray(image)[mask == value].mean() for value in LABEL_VALUES]
    assert levels[0] == 0 and levels[1] + 30 < levels[2] and levels[2] + 15 < levels[3]  # CSF < grey < white matter
    row = mask[128]  # through the centre: background, CSF rim, grey matter, then white matter (or a ventricle) inside
    assert row[0] == 0 and row[128] in (85, 255)
    first = [int(np.argmax(row == value)) for value in (85, 170)]
    assert 0 < first[0] < first[1]


def test_demo_same_arguments_same_bytes(tmp_path):
    first, second = (make_oasis_demo(tmp_path / name, n_cases=(1, 1, 1), n_slices=2, size=32) for name in ("a", "b"))
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert len(files) == 3 * 2 * 2 and all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    other = make_oasis_demo(tmp_path / "c", n_cases=(1, 1, 1), n_slices=2, size=32, seed=1)
    assert (other / files[0]).read_bytes() != (first / files[0]).read_bytes()


@pytest.mark.parametrize("arguments", [{"n_cases": (1, 0, 1)}, {"n_cases": (1, 1)}, {"n_slices": 0}, {"size": 16}])
def test_demo_rejects_unusable_arguments(tmp_path, arguments):
    with pytest.raises(InputError, match="demo data needs"):
        make_oasis_demo(tmp_path, **arguments)


# --- manifest builder ------------------------------------------------------------------------------

def test_builder_pairs_every_image_with_its_mask(oasis_demo_root):
    rows = build_oasis(oasis_demo_root)
    assert len(rows) == 40 and [(r["subject"], r["slice"]) for r in rows[:2]] == [("001", 0), ("001", 1)]
    for row in rows:
        folder = {"train": "train", "val": "validate", "test": "test"}[row["split"]]
        assert row["image"] == f"keras_png_slices_{folder}/case_{row['subject']}_slice_{row['slice']}.nii.png"
        assert row["label"] == f"keras_png_slices_seg_{folder}/seg_{row['subject']}_slice_{row['slice']}.nii.png"
    assert [(s["split"], s["subjects"], s["slices"]) for s in split_summary(rows)] == [("train", 3, 24), ("val", 1, 8), ("test", 1, 8)]
    assert {r["diagnosis"] for r in rows} == {1}


def test_checked_in_demo_manifest_is_regenerated_exactly(oasis_demo_manifest, oasis_demo_root):
    assert oasis_demo_manifest.read_bytes() == (REPO / "data_manifests/oasis_demo.csv").read_bytes()
    assert len(validate_manifest(oasis_demo_manifest, oasis_demo_root, required_splits=("train", "val", "test"))) == 40


def test_diagnosis_is_zero_for_a_mask_without_tissue(small):
    Image.new("L", (32, 32)).save(small / "keras_png_slices_seg_validate/seg_002_slice_1.nii.png")
    diagnosis = {(r["subject"], r["slice"]): r["diagnosis"] for r in build_oasis(small)}
    assert diagnosis == {("001", 0): 1, ("001", 1): 1, ("002", 0): 1, ("002", 1): 0, ("003", 0): 1, ("003", 1): 1}


def test_cli_build_layout_oasis(small, tmp_path, capsys):
    out = tmp_path / "oasis.csv"
    assert main(["manifest", "build", "--layout", "oasis", "--dataset_dir", str(small), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 6 rows; train 1 subjects / 2 slices, val 1 subjects")
    assert out.read_bytes() == write_manifest(build_oasis(small), tmp_path / "direct.csv").read_bytes()


def test_case_with_different_image_and_mask_slices_is_one_line(small, tmp_path):
    (small / "keras_png_slices_seg_train/seg_001_slice_1.nii.png").unlink()
    result = build_cli(small, tmp_path / "oasis.csv")
    assert_one_line_error(result, str(small / "keras_png_slices_train/case_001_slice_1.nii.png"), "no mask seg_001_slice_1.nii.png",
                          "case 001: image slices 0-1, mask slices 0")
    assert not (tmp_path / "oasis.csv").exists()


ALLOWED = "(allowed: 0, 85, 170, 255 = background, CSF, grey matter, white matter)"


@pytest.mark.parametrize("edit, file, problem", [
    (lambda root: shutil.copy(root / "keras_png_slices_test/case_003_slice_1.nii.png", root / "keras_png_slices_test/case_003_slice_5.nii.png"),
     "keras_png_slices_test/case_003_slice_5.nii.png",
     "image has no mask seg_003_slice_5.nii.png in keras_png_slices_seg_test (case 003: image slices 0-1, 5, mask slices 0-1)"),
    (lambda root: (root / "keras_png_slices_train/case_001_slice_0.nii.png").unlink(),
     "keras_png_slices_seg_train/seg_001_slice_0.nii.png",
     "mask has no image case_001_slice_0.nii.png in keras_png_slices_train (case 001: image slices 1, mask slices 0-1)"),
    (lambda root: shutil.copy(root / "keras_png_slices_train/case_001_slice_0.nii.png", root / "keras_png_slices_test/case_001_slice_0.nii.png"),
     "keras_png_slices_test/case_001_slice_0.nii.png",
     "image has no mask seg_001_slice_0.nii.png in keras_png_slices_seg_test (case 001: image slices 0, mask slices none)"),
    (lambda root: shutil.rmtree(root / "keras_png_slices_seg_validate"),
     "keras_png_slices_seg_validate", "folder not found, but keras_png_slices_validate is there"),
    (lambda root: Image.fromarray(np.full((32, 32), 128, np.uint8)).save(root / "keras_png_slices_seg_test/seg_003_slice_1.nii.png"),
     "keras_png_slices_seg_test/seg_003_slice_1.nii.png", f"unexpected mask values 128 {ALLOWED}"),
])
def test_builder_errors_name_the_file_and_what_was_found(small, edit, file, problem):
    edit(small)
    with pytest.raises(InputError) as caught:
        build_oasis(small)
    assert str(caught.value) == f"{small / file}: {problem}"


def test_case_in_two_splits(small):
    for kind, prefix in (("", "case"), ("seg_", "seg")):
        shutil.copy(small / f"keras_png_slices_{kind}train/{prefix}_001_slice_0.nii.png", small / f"keras_png_slices_{kind}test/{prefix}_001_slice_0.nii.png")
    with pytest.raises(InputError, match="case_001_slice_0.nii.png: case 001 is also in keras_png_slices_train; a case belongs to one split"):
        build_oasis(small)


def test_check_mask_values_names_first_bad_file_and_its_values(small, tmp_path):
    manifest = write_manifest(build_oasis(small), tmp_path / "oasis.csv")
    check_mask_values(manifest, small, ["train", "val"])
    bad = small / "keras_png_slices_seg_validate/seg_002_slice_1.nii.png"
    Image.fromarray(np.array([[0, 84, 85, 300]], np.uint16)).save(bad)  # 16-bit PNG: the message lists the unexpected values
    check_mask_values(manifest, small, ["train"])  # only the splits asked for are read
    with pytest.raises(InputError) as caught:
        check_mask_values(manifest, small, ["train", "val"])
    assert str(caught.value) == f"{bad}: unexpected mask values 84, 300 {ALLOWED}"


def test_load_folder_lists_cases_and_slices_without_masks(oasis_demo_root):
    items = load_folder(oasis_demo_root)
    assert len(items) == 40 and [(i["subject"], i["slice"]) for i in items[:9]] == [("001", k) for k in range(8)] + [("002", 0)]
    assert all("/keras_png_slices_seg_" not in item["image"] for item in items)
    with pytest.raises(InputError, match="no case_NNN_slice_K.nii.png slices found"):
        load_folder(oasis_demo_root / "keras_png_slices_seg_test")


# --- label mapping and per-class Dice in the bundle's configuration -----------------------------------

def test_label_values_round_trip_through_the_bundle(oasis_demo_root, tmp_path):
    """0/85/170/255 -> classes 0..3 by the bundle's preprocessing -> 0/85/170/255 again in the written PNG."""
    config = bundle_config()
    assert config["label_values"] == list(LABEL_VALUES) and config["class_names"] == list(CLASS_NAMES)
    image = oasis_demo_root / "keras_png_slices_test/case_005_slice_3.nii.png"
    mask = oasis_demo_root / "keras_png_slices_seg_test/seg_005_slice_3.nii.png"
    item = config.get_parsed_content("validate#preprocessing")({"image": str(image), "label": str(mask), "subject": "005", "slice": 3})
    original = np.asarray(Image.open(mask))
    assert item["label"].dtype == torch.uint8 and item["label"].shape == (1, 256, 256)
    np.testing.assert_array_equal(item["label"][0].numpy().T, np.searchsorted(LABEL_VALUES, original))  # MONAI's PIL order is (W, H)
    pixel = np.asarray(Image.open(image))[128, 100]
    assert item["image"][0, 100, 128].item() == pytest.approx((pixel / 255 - 0.1317) / 0.1864, abs=1e-5)

    logits = (item["label"] == torch.arange(4)[:, None, None]).float()  # (4, W, H), highest for the true class
    output = config.get_parsed_content("validate#postprocessing")({"pred": logits, "label": item["label"]})
    engine = Engine(lambda e, b: [output])
    PredictionWriter(tmp_path, config["label_values"], config["class_names"]).attach(engine)
    engine.run([[item]], max_epochs=1)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "masks/005/case_005_slice_3.nii_pred.png")), original)


def classes(*rows):
    """(4, H, W) one-hot float tensor of a class-index map given row by row."""
    index = torch.tensor(rows)
    return torch.stack([index == k for k in range(4)]).float()


LABEL = classes([0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3])
# slice 1: one CSF pixel predicted grey matter, one grey-matter pixel predicted white matter; slice 2: perfect
PRED = classes([0, 0, 1, 1], [0, 0, 1, 2], [2, 2, 3, 3], [2, 3, 3, 3])
SLICE_1_DICE = {"background": 1.0, "csf": 6 / 7, "grey_matter": 6 / 8, "white_matter": 8 / 9}
CASE_3D_DICE = {"background": 1.0, "csf": 14 / 15, "grey_matter": 14 / 16, "white_matter": 16 / 17}


def test_per_class_dice_on_hand_made_masks():
    config = bundle_config()
    writer = SegmentationMetricsWriter(config["class_names"], prefix="val")
    engine = Engine(lambda e, batch: [{"pred": PRED, "label": LABEL}, {"pred": LABEL.clone(), "label": LABEL}])
    for name, metric in {**config.get_parsed_content("validate#key_metric"), **config.get_parsed_content("validate#additional_metrics")}.items():
        metric.attach(engine, name)
    writer.attach(engine)
    engine.run([[{"subject": "001", "slice": k, "image": f"case_001_slice_{k}.nii.png"} for k in (0, 1)]], max_epochs=1)

    per_slice = {name: (dice + 1) / 2 for name, dice in SLICE_1_DICE.items()}
    metrics = engine.state.metrics
    for name in CLASS_NAMES:
        assert metrics[f"val_dice_{name}"] == pytest.approx(per_slice[name], abs=1e-4)
        assert metrics[f"val_dice_3d_{name}"] == pytest.approx(CASE_3D_DICE[name])
    assert metrics["val_mean_dice"] == pytest.approx(np.mean(list(per_slice.values())))
    assert metrics["val_dice_3d"] == pytest.approx(np.mean(list(CASE_3D_DICE.values())))

    slices, subjects, summary = writer.summarise()
    assert slices.loc[0, [f"dice_{name}" for name in CLASS_NAMES]].tolist() == pytest.approx(list(SLICE_1_DICE.values()))
    assert subjects.loc[0, [f"dice_{name}" for name in CLASS_NAMES]].tolist() == pytest.approx(list(CASE_3D_DICE.values()))
    assert summary["mean_over_classes"]["per_slice"]["dice"] == pytest.approx(np.mean(list(per_slice.values())), abs=1e-6)
    assert summary["mean_over_classes"]["per_subject_3d"]["dice"] == pytest.approx(np.mean(list(CASE_3D_DICE.values())), abs=1e-6)


def test_metadata_matches_the_configuration():
    meta = json.loads((TRAIN_JSON.parent / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(CLASS_NAMES)
    assert meta["eval_metrics"] == {}  # no trained weights ship with the bundle; an export fills in their measured figures
