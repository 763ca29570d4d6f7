"""The dataset families (pipelines/data/lgg.py, pipelines/data/oasis.py): the one ``@data`` object each bundle
builds, asked the same questions by bundles/common.json. Tested directly, without a bundle run."""

import csv
import json
import re

import pytest
import torch
from bundle_utils import REPO

from pipelines.data.datalist import load_split
from pipelines.data.lgg import load_folder
from pipelines.data.datasets import StackedSliceDataset
from pipelines.data.lgg import LggData
from pipelines.data.oasis import OasisData
from pipelines.errors import InputError


@pytest.fixture
def lgg(lgg_demo_root, lgg_demo_manifest):
    def make(**settings):
        return LggData(lgg_demo_manifest, lgg_demo_root, **{"image_channels": [0, 1, 2], "neighbour_slices": 0, "image_size": [64, 64], **settings})
    return make


@pytest.fixture
def oasis(oasis_demo_root, oasis_demo_manifest):
    return OasisData(oasis_demo_manifest, oasis_demo_root)


def test_both_families_answer_every_question_the_common_machinery_asks():
    asked = set(re.findall(r"@data\.(\w+)", (REPO / "bundles" / "common.json").read_text()))
    assert {"dataset", "check", "validation_split", "training_transforms", "evaluation_transforms", "facts"} <= asked
    for family in (LggData, OasisData):
        assert all(hasattr(family, name) for name in asked), (family, asked)


def test_lgg_split_datalists_and_folds(lgg, lgg_demo_root, lgg_demo_manifest):
    data = lgg(neighbour_slices=1)
    assert data.datalist("train") == load_split(lgg_demo_manifest, lgg_demo_root, "train", 1)
    assert data.validation_split == "val" and data.input_channels == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    fold = lgg(fold=0, folds=5, fold_validation="test", model_epoch="last")
    assert fold.validation_split == "test"
    assert fold.facts == {"manifest": lgg_demo_manifest, "fold": 0, "folds": 5, "fold_seed": 0, "fold_validation": "test"}
    with open(lgg_demo_manifest) as f:
        test_subjects = {row["subject"] for row in csv.DictReader(f) if row["split"] == "test"}
    assert not {item["subject"] for split in ("train", "val", "test") for item in fold.datalist(split)} & test_subjects  # folds leave the test split out
    with pytest.raises(InputError, match="--fold_validation test: only for cross-validation"):
        lgg(fold_validation="test").validation_split


def test_lgg_inference_datalist_is_the_folder_when_given(lgg, lgg_demo_root):
    data = lgg()
    assert data.inference_datalist("", "test") == data.datalist("test")
    folder = next(p for p in lgg_demo_root.iterdir() if p.is_dir())
    assert data.inference_datalist(str(folder), "test") == load_folder(folder)


def test_lgg_check_refuses_slices_smaller_than_the_image_size(lgg):
    lgg(image_size=[256, 256]).check(["train", "val"])
    with pytest.raises(InputError, match=r"256x256 is smaller than the 512x512 this bundle works at"):
        lgg(image_size=[512, 512]).check(["train", "val"])


@pytest.mark.parametrize("cache_validation_input", [False, True])
def test_lgg_datasets_cache_uint8_or_the_network_input_and_draw_the_same_values(lgg, cache_validation_input):
    data = lgg(cache_validation_input=cache_validation_input)
    validation = data.dataset("val", data.evaluation_transforms([]))
    uncached = data.uncached_dataset(data.datalist("val"), data.evaluation_transforms([]))
    assert isinstance(validation, StackedSliceDataset) and len(validation) == len(uncached)
    assert validation._cache[0]["image"].dtype == (torch.float32 if cache_validation_input else torch.uint8)
    assert torch.equal(validation[0]["image"].as_tensor(), uncached[0]["image"].as_tensor())
    assert validation[0]["image"].shape == (3, 64, 64) and validation[0]["label"].dtype == torch.float32
    training = data.dataset("train", data.training_transforms([], []))
    assert training._cache[0]["image"].dtype == torch.uint8 and training[0]["image"].shape == (3, 64, 64)


def test_oasis_datalists_checks_and_class_indices(oasis, oasis_demo_root, oasis_demo_manifest, tmp_path):
    assert oasis.validation_split == "val" and oasis.facts == {"manifest": oasis_demo_manifest}
    assert oasis.datalist("val") == load_split(oasis_demo_manifest, oasis_demo_root, "val")
    oasis.check(["train", "val"])
    item = oasis.dataset("test", oasis.evaluation_transforms([]))[0]
    assert item["label"].dtype == torch.uint8 and set(item["label"].unique().tolist()) <= {0, 1, 2, 3}
    assert item["image"].dtype == torch.float32 and 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    training = oasis.dataset("train", oasis.training_transforms([], []))
    assert training._cache[0]["image"].dtype == torch.uint8
    assert [item["slice"] for item in oasis.inference_datalist(str(oasis_demo_root / "keras_png_slices_test"), "test")] == list(range(8))
    with pytest.raises(InputError, match="no case_NNN_slice_K.nii.png slices found"):
        oasis.inference_datalist(str(tmp_path), "test")


def test_the_family_file_builds_the_family_component():
    for family, component in (("lgg", "pipelines.data.lgg.LggData"), ("oasis", "pipelines.data.oasis.OasisData")):
        assert json.loads((REPO / "bundles" / f"{family}.json").read_text())["data"]["_target_"] == component
