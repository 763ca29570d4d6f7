import csv

import numpy as np
import pytest
from PIL import Image

from pipelines.cli import main
from pipelines.data.demo import make_lgg_demo
from pipelines.errors import InputError


def _slice(root, subject, k):
    case = root / f"{subject}_20000101"
    image = Image.open(case / f"{case.name}_{k}.tif")
    mask = Image.open(case / f"{case.name}_{k}_mask.tif")
    return image, mask


def test_layout_matches_kaggle_3m(lgg_demo_root):
    assert lgg_demo_root.name == "kaggle_3m"
    cases = sorted(path.name for path in lgg_demo_root.iterdir() if path.is_dir())
    assert cases == [f"TCGA_DM_{i:04d}_20000101" for i in range(1, 7)]
    with (lgg_demo_root / "data.csv").open(newline="") as stream:
        assert [row["Patient"] for row in csv.DictReader(stream)] == [case[:12] for case in cases]
    for case in cases:
        names = {path.name for path in (lgg_demo_root / case).iterdir()}
        assert names == {f"{case}_{k}{suffix}.tif" for k in range(1, 13) for suffix in ("", "_mask")}


def test_slices_are_rgb_and_masks_binary(lgg_demo_root):
    image, mask = _slice(lgg_demo_root, "TCGA_DM_0003", 6)
    assert (image.mode, image.size, image.info["compression"]) == ("RGB", (256, 256), "raw")
    assert (mask.mode, mask.size) == ("L", (256, 256))
    assert set(np.unique(mask)) == {0, 255}


def test_tumour_spans_middle_slices_and_is_brightest_in_flair(lgg_demo_root):
    for subject in ("TCGA_DM_0001", "TCGA_DM_0006"):
        slices = [_slice(lgg_demo_root, subject, k) for k in range(1, 13)]
        has_tumour = [bool(np.asarray(mask).any()) for _, mask in slices]
        assert has_tumour == [False] * 3 + [True] * 6 + [False] * 3
        image, mask = (np.asarray(part) for part in slices[5])
        tumour, brain = mask > 0, (mask == 0) & (image.sum(axis=-1) > 0)
        boost = image[tumour].mean(axis=0) - image[brain].mean(axis=0)
        assert boost.argmax() == 1 and boost[1] > 60
        assert not image[~brain & ~tumour].any(), "background outside the head is black"


def test_same_arguments_give_same_bytes(tmp_path):
    first, second = (make_lgg_demo(tmp_path / name, n_subjects=2, n_slices=4, size=32) for name in ("a", "b"))
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert len(files) == 2 * 4 * 2 + 1
    assert all((first / file).read_bytes() == (second / file).read_bytes() for file in files)
    other_seed = make_lgg_demo(tmp_path / "c", n_subjects=2, n_slices=4, size=32, seed=1)
    assert (other_seed / files[0]).read_bytes() != (first / files[0]).read_bytes()


def test_small_sizes_still_have_tumour_in_every_middle_slice(tmp_path):
    root = make_lgg_demo(tmp_path, n_subjects=4, n_slices=3, size=32)
    for subject in (f"TCGA_DM_{i:04d}" for i in range(1, 5)):
        assert [bool(np.asarray(_slice(root, subject, k)[1]).any()) for k in (1, 2, 3)] == [False, True, False]


@pytest.mark.parametrize("arguments", [{"n_subjects": 0}, {"n_slices": 2}, {"size": 16}])
def test_rejects_unusable_arguments(tmp_path, arguments):
    with pytest.raises(InputError, match="demo data needs"):
        make_lgg_demo(tmp_path, **arguments)


def test_cli_demo_data_prints_root(tmp_path, capsys):
    assert main(["manifest", "demo-data", "--out", str(tmp_path), "--subjects", "1", "--slices", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "kaggle_3m")
    assert len(list((tmp_path / "kaggle_3m" / "TCGA_DM_0001_20000101").glob("*.tif"))) == 6
