"""Bad input to an LGG bundle ends in one line naming the file and the problem, before anything is written."""


import numpy as np
import pytest
from bundle_utils import assert_one_line_error, fast, run_bundle, tree_digest
from PIL import Image

from pipelines.demo import make_lgg_demo
from pipelines.manifest import build_kaggle_3m, write_manifest

BUNDLE = "lgg_unet_bce"


@pytest.fixture
def outputs(tmp_path):
    """A run folder that already holds results: a checkpoint and a log that must survive a failed run."""
    (tmp_path / "run" / "models").mkdir(parents=True)
    (tmp_path / "run" / "models" / "model.pt").write_bytes(b"weights of an earlier run")
    (tmp_path / "run" / "eval").mkdir()
    (tmp_path / "run" / "eval" / "events.out.tfevents.1").write_bytes(b"earlier log")
    return tmp_path / "run"


def make_data(folder, size=256):
    """Private demo data (3 subjects x 4 slices of ``size`` pixels, one subject per split) and its manifest."""
    root = make_lgg_demo(folder / "data", n_subjects=3, n_slices=4, size=size)
    return root, write_manifest(build_kaggle_3m(root, ratios=(0.34, 0.33, 0.33)), folder / "manifest.csv")


@pytest.fixture
def small_data(tmp_path):
    """Demo data and manifest that a test is free to damage."""
    return make_data(tmp_path)


def run(bundle, mode, data, outputs, **overrides):
    root, manifest = data
    args = {"dataset_dir": root, "manifest": manifest, "ckpt_dir": outputs / "models", "output_dir": outputs / "eval", **fast(bundle)}
    return run_bundle(bundle, mode, epochs=1, **{**args, **overrides})


def first_row(manifest, split="train"):
    lines = manifest.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.endswith("," + split))
    return lines, index


def test_unknown_split_name(small_data, outputs, tmp_path):
    before = tree_digest(outputs)
    lines, index = first_row(small_data[1])
    lines[index] = lines[index].removesuffix(",train") + ",tarin"
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines) + "\n")
    assert_one_line_error(run(BUNDLE, "train", small_data, outputs, manifest=broken), str(broken), f"row {index + 1}", "column 'split'", "tarin")
    assert tree_digest(outputs) == before


def test_missing_dataset_dir(small_data, outputs, tmp_path):
    before = tree_digest(outputs)
    assert_one_line_error(run(BUNDLE, "train", small_data, outputs, dataset_dir=tmp_path / "nowhere"), "dataset_dir", "nowhere", "no such folder")
    assert tree_digest(outputs) == before


def test_evaluate_without_checkpoint(small_data, outputs, tmp_path):
    result = run(BUNDLE, "evaluate", small_data, outputs, ckpt_dir=tmp_path / "empty")
    assert_one_line_error(result, "checkpoint", "model.pt", "no such file")


def test_missing_image_is_named(small_data, outputs):
    before = tree_digest(outputs)
    missing = sorted(small_data[0].rglob("*_3.tif"))[0]
    missing.unlink()
    assert_one_line_error(run(BUNDLE, "evaluate", small_data, outputs), "column 'image'", missing.name)
    assert tree_digest(outputs) == before


def test_grayscale_images_for_a_three_channel_bundle(small_data, outputs):
    lines, index = first_row(small_data[1])
    image = small_data[0] / lines[index].split(",")[2]
    Image.open(image).convert("L").save(image)
    result = run("lgg_unet_small", "train", small_data, outputs)  # channels are checked before sizes
    assert_one_line_error(result, str(image), "has 1 channel(s)", "channels [0, 1, 2]", f"row {index + 1}")


def test_mask_that_is_not_binary(small_data, outputs):
    before = tree_digest(outputs)
    lines, index = first_row(small_data[1])
    label = small_data[0] / lines[index].split(",")[3]
    Image.fromarray(np.full((256, 256), 128, np.uint8)).save(label)
    assert_one_line_error(run(BUNDLE, "train", small_data, outputs), str(label), "values [128]", "0 and 255")
    assert tree_digest(outputs) == before


def test_rgb_mask(small_data, outputs):
    lines, index = first_row(small_data[1])
    label = small_data[0] / lines[index].split(",")[3]
    Image.open(label).convert("RGB").save(label)
    assert_one_line_error(run(BUNDLE, "train", small_data, outputs), str(label), "3 channels", "single-channel")


def test_images_smaller_than_the_bundle_works_at(tmp_path, outputs):
    result = run("lgg_unet_augment", "train", make_data(tmp_path, size=64), outputs)
    assert_one_line_error(result, "64x64 is smaller than the 256x256 this bundle works at")


def test_corrupted_image_is_named(small_data, outputs):
    lines, index = first_row(small_data[1])
    image = small_data[0] / lines[index].split(",")[2]
    image.write_bytes(b"not a tif")
    assert_one_line_error(run(BUNDLE, "train", small_data, outputs), f"row {index + 1} column 'image'", "cannot read image")


def test_empty_split_the_run_needs(small_data, outputs, tmp_path):
    lines = small_data[1].read_text().splitlines()
    only_train = tmp_path / "only_train.csv"
    only_train.write_text("\n".join(line for line in lines if not line.endswith(",val")) + "\n")
    assert_one_line_error(run(BUNDLE, "train", small_data, outputs, manifest=only_train), "no rows with split 'val'")
