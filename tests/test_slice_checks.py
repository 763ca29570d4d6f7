"""One set of slice checks on every path: for each damaged slice, ``manifest validate --bundle`` and the bundle's
training stop with the same error line, and inference on a folder holding the same image refuses it too; the
undamaged data passes all of them. Both families: LGG (resized to ``image_size``) and OASIS (read as they are)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_utils import REPO, assert_error_line, bundle_error_in_process, fast
from PIL import Image
from test_bad_input import untrained_network

from pipelines.cli import main
from pipelines.data.demo import make_lgg_demo, make_oasis_demo
from pipelines.data.lgg import build_kaggle_3m
from pipelines.data.manifest import validate_manifest, write_manifest
from pipelines.data.oasis import build_oasis


def grey_alpha(path: Path) -> None:
    Image.open(path).convert("LA").save(path)


def float_pixels(path: Path) -> None:
    Image.fromarray(np.asarray(Image.open(path).convert("L"), np.float32)).save(path)


def sixteen_bit(path: Path) -> None:
    Image.fromarray(np.asarray(Image.open(path).convert("L"), np.uint16) * 256).save(path)


def rgb(path: Path) -> None:
    Image.open(path).convert("RGB").save(path)


def half_size(path: Path) -> None:
    Image.open(path).resize((128, 128)).save(path)


# (bundle, damage of the first training image (and its mask, for a size), fragment of the error line)
CASES = {
    "LGG FLAIR bundle, grey + alpha image (channel 1 would be the alpha)": ("lgg_unet_bce", grey_alpha, "channel 1 of this grey + alpha image is its alpha"),
    "LGG, float image": ("lgg_unet_bce", float_pixels, "pixel format F (32-bit float)"),
    "LGG, 16-bit image": ("lgg_best", sixteen_bit, "pixel format I;16 (16-bit)"),
    "LGG, image smaller than image_size": ("lgg_best", half_size, "128x128 is smaller than the 256x256 this bundle works at"),
    "OASIS, 16-bit PNG": ("oasis_unet", sixteen_bit, "pixel format I;16 (16-bit)"),
    "OASIS, an RGB image among grey ones": ("oasis_unet", rgb, "has 3 channels (RGB), this bundle reads single-channel grey slices"),
    "OASIS, a slice of another size": ("oasis_unet", half_size, "128x128, but this bundle reads 256x256 slices as they are"),
}


def private_data(tmp_path: Path, bundle: str) -> tuple[Path, Path]:
    """A small dataset of ``bundle``'s family and its manifest."""
    if bundle.startswith("oasis"):
        root = make_oasis_demo(tmp_path / "data", n_cases=(2, 1, 1), n_slices=2)
        return root, write_manifest(build_oasis(root), tmp_path / "manifest.csv")
    root = make_lgg_demo(tmp_path / "data", n_subjects=3, n_slices=4)
    return root, write_manifest(build_kaggle_3m(root, ratios=(0.34, 0.33, 0.33)), tmp_path / "manifest.csv")


def validate_error(manifest: Path, root: Path, bundle: str, capsys) -> str:
    code = main(["manifest", "validate", "--manifest", str(manifest), "--dataset_dir", str(root), "--bundle", str(REPO / "bundles" / bundle)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("bundle, damage, fragment", CASES.values(), ids=CASES.keys())
def test_validator_training_and_inference_refuse_the_same_slice_in_the_same_words(tmp_path, bundle, damage: Callable, fragment, capsys):
    root, manifest = private_data(tmp_path, bundle)
    row = next(row for row in validate_manifest(manifest, root) if row["split"] == "train")
    image = root / row["image"]
    damage(image)
    if damage is half_size:
        damage(root / row["label"])  # a whole slice of another size, mask included
    settings = {"dataset_dir": root, "manifest": manifest, "ckpt_dir": tmp_path / "models", "output_dir": tmp_path / "eval", **fast(bundle)}
    from_training = bundle_error_in_process(bundle, "train", **settings)
    assert_error_line(from_training, f"image {image}: {fragment}", f"row {row['row']})")
    assert validate_error(manifest, root, bundle, capsys) == from_training
    assert not (tmp_path / "models").exists()

    (tmp_path / "models").mkdir()
    torch.save(untrained_network(bundle).state_dict(), tmp_path / "models" / "model.pt")
    folder = tmp_path / "to_predict" / image.parent.name
    folder.mkdir(parents=True)
    shutil.copy(image, folder / image.name)
    from_inference = bundle_error_in_process(bundle, "inference", **{**settings, "infer#input_dir": tmp_path / "to_predict"})
    assert_error_line(from_inference, f"image {folder / image.name}: {fragment}")


@pytest.mark.parametrize("bundle", ["lgg_unet_bce", "oasis_unet"])
def test_the_validator_accepts_what_training_accepts(tmp_path, bundle, capsys):
    root, manifest = private_data(tmp_path, bundle)
    assert main(["manifest", "validate", "--manifest", str(manifest), "--dataset_dir", str(root), "--bundle", str(REPO / "bundles" / bundle)]) == 0
    assert f"with the checks {REPO / 'bundles' / bundle} runs" in capsys.readouterr().out
