"""The bundles cache uint8 slices and convert them when drawn (transforms.Uint8ToFloatd), with the same
float32 values as scaling at load time gave; with ``cache_validation_input`` the LGG validation cache holds the
network's float32 input instead, the same values computed once."""

import pytest
import torch
from bundle_utils import REPO
from monai.bundle import ConfigParser
from monai.data import MetaTensor, decollate_batch, list_data_collate
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, NormalizeIntensityd, Resized, ScaleIntensityRanged

from pipelines.bundles import config_files
from transforms import SelectChannelsd, Uint8ToFloatd


def bundle_config(bundle: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(REPO / "bundles" / bundle, "train")])
    parser.update(overrides)
    return parser


def float_at_load(keys, *then):
    """The chain before the compact cache: load as float32, channel first, scale 0..255 to 0..1, then ``then``."""
    return Compose([LoadImaged(keys, reader="PILReader", image_only=True, allow_missing_keys=True),
                    EnsureChannelFirstd(keys, allow_missing_keys=True), *then])


def test_equals_scaling_a_float_load_bit_for_bit_and_keeps_metadata():
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    image = MetaTensor(pixels, meta={"filename_or_obj": "slice.tif"})
    out = Uint8ToFloatd(["image", "label"])({"image": image, "label": pixels * 0 + 255})
    scaled = ScaleIntensityRanged("image", a_min=0, a_max=255, b_min=0.0, b_max=1.0)({"image": pixels.float()})["image"]
    assert out["image"].dtype == torch.float32 and torch.equal(out["image"].as_tensor(), torch.as_tensor(scaled))
    assert out["image"].meta["filename_or_obj"] == "slice.tif" and torch.equal(out["label"], torch.ones(1, 16, 16))
    assert image.dtype == torch.uint8  # input untouched


def test_refuses_other_types_and_missing_keys_unless_allowed():
    with pytest.raises(ValueError, match="image: expected a uint8 tensor"):
        Uint8ToFloatd("image")({"image": torch.zeros(1, 2, 2)})
    with pytest.raises(KeyError):
        Uint8ToFloatd("label")({"image": torch.zeros(1, 2, 2, dtype=torch.uint8)})
    assert Uint8ToFloatd("label", allow_missing_keys=True)({"image": 1}) == {"image": 1}


@pytest.mark.parametrize("bundle, image_size", [("lgg_unet_dicece_rgb", [256, 256]), ("lgg_unet_small", [128, 128])])
def test_lgg_cache_is_uint8_and_validation_input_unchanged(bundle, image_size, lgg_demo_root, lgg_demo_manifest):
    config = bundle_config(bundle, dataset_dir=str(lgg_demo_root), manifest=str(lgg_demo_manifest), num_workers=0)
    train = config.get_parsed_content("train#dataset")
    assert {key: train._cache[0][key].dtype for key in ("image", "label")} == {"image": torch.uint8, "label": torch.uint8}
    assert train[0]["image"].shape == (3, *image_size) and train[0]["image"].dtype == torch.float32
    item = config.get_parsed_content("data").datalist("val")[5]
    before = float_at_load(["image", "label"], SelectChannelsd("image", [0, 1, 2]),
                           ScaleIntensityRanged(["image", "label"], a_min=0, a_max=255, b_min=0.0, b_max=1.0),
                           Resized("image", spatial_size=image_size, mode="bilinear"))(dict(item))
    now = config.get_parsed_content("validate#preprocessing")(dict(item))
    for key in ("image", "label"):
        assert torch.equal(now[key].as_tensor(), before[key].as_tensor())
    assert len(now["image"].applied_operations) == len(before["image"].applied_operations)  # what Invertd undoes


@pytest.mark.parametrize("bundle, image_size", [("lgg_best", [256, 256]), ("lgg_unet_small", [128, 128])])
def test_cached_validation_input_equals_the_uint8_cache_drawn_and_stays_intact(bundle, image_size, lgg_demo_root, lgg_demo_manifest):
    configs = {cached: bundle_config(bundle, dataset_dir=str(lgg_demo_root), manifest=str(lgg_demo_manifest), num_workers=0,
                                     cache_validation_input=cached) for cached in (True, False)}
    datasets = {cached: config.get_parsed_content("validate#dataset") for cached, config in configs.items()}
    first = datasets[True]._cache[0]
    assert (first["image"].dtype, first["image"].shape[1:], first["label"].dtype) == (torch.float32, tuple(image_size), torch.uint8)
    assert datasets[False]._cache[0]["image"].dtype == torch.uint8
    items = [datasets[True][index] for index in range(len(datasets[True]))]
    for index, item in enumerate(items):
        uncached = datasets[False][index]
        assert torch.equal(item["image"].as_tensor(), uncached["image"].as_tensor())
        assert torch.equal(item["label"].as_tensor(), uncached["label"].as_tensor()) and item["label"].dtype == torch.float32
        assert len(item["image"].applied_operations) == len(uncached["image"].applied_operations)
    before = first["image"].clone(), len(first["image"].applied_operations)
    batch = list_data_collate(items[:4])  # one validation step's postprocessing (Invertd reads the image's history)
    batch["pred"] = torch.zeros_like(batch["image"][:, :1])
    postprocessing = configs[True].get_parsed_content("validate#postprocessing")
    assert all(out["pred"].shape[1:] == (256, 256) for out in map(postprocessing, decollate_batch(batch)))
    assert torch.equal(datasets[True]._cache[0]["image"], before[0])
    assert len(datasets[True]._cache[0]["image"].applied_operations) == before[1]


def test_oasis_cache_is_uint8_and_input_unchanged(oasis_demo_root, oasis_demo_manifest):
    config = bundle_config("oasis_unet", dataset_dir=str(oasis_demo_root), manifest=str(oasis_demo_manifest), num_workers=0)
    train = config.get_parsed_content("train#dataset")
    assert {key: train._cache[0][key].dtype for key in ("image", "label")} == {"image": torch.uint8, "label": torch.uint8}
    item = config.get_parsed_content("data").datalist("val")[3]
    before = float_at_load("image", ScaleIntensityRanged("image", a_min=0, a_max=255, b_min=0.0, b_max=1.0),
                           NormalizeIntensityd("image", subtrahend=0.1317, divisor=0.1864))(dict(item))
    now = config.get_parsed_content("validate#preprocessing")(dict(item))
    assert torch.equal(now["image"].as_tensor(), before["image"].as_tensor())
    assert torch.equal(train[0]["image"], config.get_parsed_content("validate#preprocessing")(dict(train.data[0]))["image"].as_tensor())
