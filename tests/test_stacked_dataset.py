"""pipelines.data.datasets.StackedSliceDataset: 2.5D items from a cache that holds each slice once, equal to
loading every stack's files together."""

import pytest
import torch
from monai.data import Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandFlipd
from test_compact_cache import bundle_config
from test_neighbours import write_slices

from pipelines.data.lgg import load_folder, stacked_channels
from pipelines.data.datasets import StackedSliceDataset
from transforms import SelectChannelsd, Uint8ToFloatd


def per_slice_load(channels, *then):
    """One file to its ``channels`` as uint8 (the cached part), then ``then`` at draw time."""
    return Compose([LoadImaged("image", reader="PILReader", image_only=True, dtype=torch.uint8), EnsureChannelFirstd("image"),
                    SelectChannelsd("image", channels), *then])


def stack_load(channels, neighbours):
    """The stack's files loaded together (LoadImaged concatenates them), then their ``channels``: the exported bundles' way."""
    return Compose([LoadImaged("image", reader="PILReader", image_only=True, dtype=torch.uint8), EnsureChannelFirstd("image"),
                    SelectChannelsd("image", stacked_channels(channels, neighbours)), Uint8ToFloatd("image")])


@pytest.mark.parametrize("cache_rate", [1.0, 0.0])
@pytest.mark.parametrize("neighbours", [0, 1, 2])
def test_items_equal_loading_each_stack_together(tmp_path, neighbours, cache_rate):
    write_slices(tmp_path, "A", [1, 2, 3, 5])  # a gap at 4
    write_slices(tmp_path, "B", [7])
    items = load_folder(tmp_path, neighbours=neighbours)
    stacked = StackedSliceDataset(items, per_slice_load([1, 2], Uint8ToFloatd("image")), cache_rate=cache_rate, copy_cache=False)
    together = Dataset(items, stack_load([1, 2], neighbours))
    assert len(stacked) == len(together) == 5
    for index in range(5):
        mine, theirs = stacked[index], together[index]
        assert mine["image"].shape == (2 * (2 * neighbours + 1), 4, 4)
        assert torch.equal(mine["image"].as_tensor(), theirs["image"].as_tensor())
        assert mine["image"].meta["filename_or_obj"] == theirs["image"].meta["filename_or_obj"]  # the own slice, which writers name outputs after
        assert (mine["subject"], mine["slice"]) == (items[index]["subject"], items[index]["slice"])


def test_the_cache_holds_each_slice_once_with_only_its_channels(tmp_path):
    write_slices(tmp_path, "A", [1, 2, 3, 4])
    dataset = StackedSliceDataset(load_folder(tmp_path, neighbours=2), per_slice_load([1], Uint8ToFloatd("image")), copy_cache=False)
    cached = [item["image"] for item in dataset._cache]
    assert [tuple(image.shape) for image in cached] == [(1, 4, 4)] * 4 and all(image.dtype == torch.uint8 for image in cached)
    assert len({image.untyped_storage().data_ptr() for image in cached}) == 4
    assert dataset[1]["image"].shape == (5, 4, 4)
    assert all(image.shape == (1, 4, 4) for image in (item["image"] for item in dataset._cache))  # drawing left the cache as it was


def test_random_transforms_see_the_whole_stack(tmp_path):
    write_slices(tmp_path, "A", [1, 2, 3])
    dataset = StackedSliceDataset(load_folder(tmp_path, neighbours=1), per_slice_load([0], Uint8ToFloatd("image"), RandFlipd("image", prob=1.0, spatial_axis=1)))
    assert dataset[1]["image"].shape == (3, 4, 4) and [float(dataset[1]["image"][c, 0, 0]) * 255 for c in range(3)] == pytest.approx([2, 1, 3])


def test_a_neighbour_that_is_no_items_own_slice_is_refused(tmp_path):
    write_slices(tmp_path, "A", [1, 2])
    items = load_folder(tmp_path, neighbours=1)
    items[0]["image"][1] = str(tmp_path / "elsewhere.tif")
    with pytest.raises(ValueError, match=r"^image: .*elsewhere.tif is stacked as a neighbour but is no item's own slice$"):
        StackedSliceDataset(items, per_slice_load([0]))


def test_lgg_best_in_2_5d_caches_three_channels_per_slice_and_trains_on_nine(lgg_demo_root, lgg_demo_manifest):
    config = bundle_config("lgg_best", dataset_dir=str(lgg_demo_root), manifest=str(lgg_demo_manifest), num_workers=0, image_size=[32, 32], patch_size=[16, 16],
                           neighbour_slices=1)
    for split, cached_type in (("train", torch.uint8), ("validate", torch.float32)):  # lgg_best caches the validation input (cache_validation_input)
        dataset = config.get_parsed_content(f"{split}#dataset")
        assert all(item["image"].shape[0] == 3 and item["image"].dtype == cached_type for item in dataset._cache)
    assert config.get_parsed_content("train#dataset")[0][0]["image"].shape == (9, 16, 16)  # 2 patches of 16x16 from the 9-channel stack
    assert config.get_parsed_content("validate#dataset")[0]["image"].shape == (9, 32, 32)


def nonzero_statistics(image: torch.Tensor) -> list[tuple[float, float]]:
    """Per channel of a (C, H, W) image: mean and standard deviation of its nonzero pixels."""
    return [(float(channel[channel != 0].mean()), float(channel[channel != 0].std(correction=0))) for channel in image]


def test_lgg_best_z_scores_each_channel_of_the_stack_over_its_nonzero_pixels(lgg_demo_root, lgg_demo_manifest):
    """In 2.5D (``neighbour_slices`` 1), each of the 9 channels (3 sequences of 3 slices) has mean 0 and std 1 over its nonzero pixels, in
    validation and in a training draw before the random part (the whole slice, as validation sees it); the
    seeds keep [0, 1]."""
    config = bundle_config("lgg_best", dataset_dir=str(lgg_demo_root), manifest=str(lgg_demo_manifest), num_workers=0, image_size=[32, 32],
                           augmentation=[], neighbour_slices=1)
    for split in ("train", "validate"):
        image = config.get_parsed_content(f"{split}#dataset")[3]["image"]
        assert image.shape == (9, 32, 32)
        assert all(abs(mean) < 1e-5 and abs(std - 1) < 1e-4 for mean, std in nonzero_statistics(image))
    seed = bundle_config("lgg_unet_dicece_rgb", dataset_dir=str(lgg_demo_root), manifest=str(lgg_demo_manifest), num_workers=0)
    image = seed.get_parsed_content("validate#dataset")[3]["image"]
    assert 0 <= image.min() and image.max() <= 1
