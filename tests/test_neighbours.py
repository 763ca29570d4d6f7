"""2.5D input: neighbouring slices of the same subject stacked as channels, repeated at edges and gaps."""

from pathlib import Path

import numpy as np
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image

from pipelines.data.datalist import load_split
from pipelines.data.demo import make_lgg_demo
from pipelines.data.lgg import KAGGLE_3M_SEQUENCES, build_kaggle_3m, channel_names, load_folder, stacked_channels
from pipelines.data.manifest import write_manifest
from pipelines.errors import InputError

from transforms import SelectChannelsd


def write_slices(root: Path, subject: str, numbers) -> None:
    """RGB 4x4 slices ``<subject>_<k>.tif`` whose three channels all hold the value k."""
    (root / subject).mkdir(parents=True)
    for k in numbers:
        Image.fromarray(np.full((4, 4, 3), k, np.uint8)).save(root / subject / f"{subject}_{k}.tif")


def stacks(items) -> dict[tuple[str, int], list[int]]:
    """(subject, slice) -> slice numbers of the files of its 2.5D stack, read from the file names."""
    return {(i["subject"], i["slice"]): [int(Path(p).stem.rsplit("_", 1)[1]) for p in i["image"]] for i in items}


def test_edges_repeat_the_edge_slice_and_subjects_never_mix(tmp_path):
    write_slices(tmp_path, "A", [1, 2, 3, 4])
    write_slices(tmp_path, "B", [1, 2])
    assert stacks(load_folder(tmp_path, neighbours=1)) == {
        ("A", 1): [1, 1, 2], ("A", 2): [2, 1, 3], ("A", 3): [3, 2, 4], ("A", 4): [4, 3, 4],  # order: slice, previous, next
        ("B", 1): [1, 1, 2], ("B", 2): [2, 1, 2],
    }


def test_a_single_slice_volume_repeats_itself(tmp_path):
    write_slices(tmp_path, "A", [7])
    assert stacks(load_folder(tmp_path, neighbours=2)) == {("A", 7): [7] * 5}


def test_gaps_take_the_nearest_slice_towards_the_current_one(tmp_path):
    write_slices(tmp_path, "A", [1, 2, 5, 6])
    assert stacks(load_folder(tmp_path, neighbours=2)) == {  # order: s, s-1, s+1, s-2, s+2
        ("A", 1): [1, 1, 2, 1, 2],
        ("A", 2): [2, 1, 2, 1, 2],  # 3 and 4 are missing: repeat 2
        ("A", 5): [5, 5, 6, 5, 6],  # 4 and 3 are missing: repeat 5
        ("A", 6): [6, 5, 6, 5, 6],
    }


def test_without_neighbours_the_image_stays_one_path(tmp_path):
    write_slices(tmp_path, "A", [1, 2])
    assert all(isinstance(item["image"], str) for item in load_folder(tmp_path))


def test_loaded_channels_follow_stacked_channels(tmp_path):
    """LoadImaged concatenates the listed RGB files along the channel axis; stacked_channels picks from that layout."""
    write_slices(tmp_path, "A", [1, 2, 3])
    middle = next(item for item in load_folder(tmp_path, neighbours=1) if item["slice"] == 2)
    channels = stacked_channels([1], neighbours=1)
    assert channels == [1, 4, 7] and stacked_channels([0, 2], 0) == [0, 2]
    load = Compose([LoadImaged("image", reader="PILReader", image_only=True), EnsureChannelFirstd("image"), SelectChannelsd("image", channels)])
    image = load(middle)["image"]
    assert image.shape == (3, 4, 4) and [int(image[c, 0, 0]) for c in range(3)] == [2, 1, 3]  # FLAIR of slice 2, then of 1 and 3
    assert image.meta["filename_or_obj"].endswith("A_2.tif")  # writers name outputs after the slice itself


def test_manifest_datalist_stacks_within_the_split(tmp_path):
    root = make_lgg_demo(tmp_path / "data", n_subjects=6, n_slices=3, size=32)
    manifest = write_manifest(build_kaggle_3m(root), tmp_path / "manifest.csv")
    items = load_split(manifest, root, ["train", "val", "test"], neighbours=1)
    assert all(len(item["image"]) == 3 and all(Path(p).parent.name.startswith(item["subject"]) for p in item["image"]) for item in items)
    assert list(stacks(items).values()) == [[1, 1, 2], [2, 1, 3], [3, 2, 3]] * 6


def test_negative_neighbours_is_a_one_line_error(tmp_path):
    write_slices(tmp_path, "A", [1])
    with pytest.raises(InputError, match=r"^neighbour_slices -1: expected a whole number of slices on each side, 0 or more$"):
        load_folder(tmp_path, neighbours=-1)


def test_channel_names_follow_the_stacked_order():
    assert channel_names([1], 0) == ["FLAIR"] and channel_names([0, 1, 2], 0) == list(KAGGLE_3M_SEQUENCES)
    names = channel_names([0, 2], 2)
    assert names == ["pre-contrast, slice", "post-contrast, slice", "pre-contrast, previous slice", "post-contrast, previous slice",
                     "pre-contrast, next slice", "post-contrast, next slice", "pre-contrast, 2 slices before", "post-contrast, 2 slices before",
                     "pre-contrast, 2 slices after", "post-contrast, 2 slices after"]
    assert [KAGGLE_3M_SEQUENCES[index % 3] for index in stacked_channels([0, 2], 2)] == [name.split(",")[0] for name in names]
