"""Volume inference (bundles/volume_inference.json): 3D scans in, masks in the scans' own geometry out.

Geometry is checked with stand-in networks whose answer is known (a 1x1 convolution that thresholds intensity), on
synthetic scans of known geometry (anisotropic spacing, rotated and flipped directions, an origin) in every
supported format; the slice convention is anchored by a round trip: a demo patient's slices stacked into volumes give
the same masks through the volume path as through the slice path, with an untrained network of the real recipe.
"""

from __future__ import annotations

import importlib.util
import json
import locale
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

import itk
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import REPO, assert_error_line, bundle_error_in_process, fast, run_bundle

from pipelines.data.volumes import VolumeSliceDataset, find_cases

# the scan's world placement: 0.9 x 1.1 mm in-plane, 4 mm slices, rotated 0.3 rad about the slice axis and flipped
SPACING, ORIGIN = (0.9, 1.1, 4.0), (10.0, -20.0, 30.0)
ROTATED = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]]) @ np.diag([1, -1, 1])
SHAPE_ZYX = (16, 120, 100)  # slices, rows, columns; not square in-plane


def write_scan(array_zyx: np.ndarray, path: Path, direction: np.ndarray = ROTATED) -> None:
    """Write a (Z, Y, X) array as a volume (NIfTI, NRRD, MHA by suffix) or, for a folder, a DICOM series, with ITK."""
    image = itk.image_from_array(np.ascontiguousarray(array_zyx))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(itk.matrix_from_array(direction))
    if path.suffix:
        itk.imwrite(image, str(path))
        return
    path.mkdir()
    with c_locale_restored():
        _write_dicom_series(array_zyx, path, direction)


@contextmanager
def c_locale_restored():
    """GDCM's DICOM writer leaves the process in the C locale (ASCII text I/O for later tests in this worker): undo it."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_series(array_zyx: np.ndarray, path: Path, direction: np.ndarray) -> None:
    for k, plane in enumerate(array_zyx):  # one file per slice, placed by its DICOM position and orientation tags
        slice_image = itk.image_from_array(np.ascontiguousarray(plane))
        slice_image.SetSpacing(SPACING[:2])
        tags = slice_image.GetMetaDataDictionary()
        tags["0020|0032"] = "\\".join(f"{v:.6f}" for v in np.array(ORIGIN) + direction[:, 2] * SPACING[2] * k)  # image position
        tags["0020|0037"] = "\\".join(f"{v:.6f}" for v in np.concatenate([direction[:, 0], direction[:, 1]]))  # row, column cosines
        tags["0028|0030"] = f"{SPACING[1]:.6f}\\{SPACING[0]:.6f}"
        tags["0018|0050"] = f"{SPACING[2]:.6f}"
        tags["0008|0060"], tags["0020|000e"], tags["0020|0013"] = "MR", "1.2.826.0.1.3680043.2.1125.1", str(k + 1)
        io = itk.GDCMImageIO.New()
        io.KeepOriginalUIDOn()
        itk.imwrite(slice_image, str(path / f"IM{k:03d}.dcm"), imageio=io)


def lesion_scan() -> tuple[np.ndarray, np.ndarray]:
    """(scan, lesion): int16 (Z, Y, X) brain at 100 with an ellipsoid lesion at 1000 off centre, and the lesion mask."""
    z, y, x = np.mgrid[: SHAPE_ZYX[0], : SHAPE_ZYX[1], : SHAPE_ZYX[2]]
    lesion = ((x - 65) / 18) ** 2 + ((y - 40) / 15) ** 2 + ((z - 9) / 3.5) ** 2 < 1
    return np.where(lesion, 1000, 100).astype(np.int16), lesion


def read_back(path: Path) -> tuple[np.ndarray, object]:
    image = itk.imread(str(path))
    return itk.array_from_image(image), image


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def stand_in(path: Path, weight: list[float], bias: list[float]) -> Path:
    """A checkpoint of ``Conv2d(in, len(bias), 1)`` whose every output channel is ``weight[c] * input + bias[c]``."""
    conv = torch.nn.Conv2d(1, len(bias), 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight).reshape(-1, 1, 1, 1))
        conv.bias.copy_(torch.tensor(bias))
    path.mkdir(parents=True, exist_ok=True)
    torch.save(conv.state_dict(), path / "model.pt")
    return path


def conv_network(out_channels: int) -> str:
    return json.dumps({"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": out_channels, "kernel_size": 1})


def test_lesion_masks_keep_each_formats_geometry(tmp_path):
    # a FLAIR-only recipe; its input is the 0..255 slice scaled to 0..1, and logit 10 * (x - 0.5) thresholds it at 0.5
    scan, lesion = lesion_scan()
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("nifti.nii.gz", "nrrd.nrrd", "mha.mha", "dicom"):
        write_scan(scan, cases / name)
    models = stand_in(tmp_path / "models", [10.0], [-5.0])
    result = run_bundle("lgg_unet_bce", "volume_inference", network_def=conv_network(1), ckpt_dir=models, output_dir=tmp_path / "out",
                        **{"volumes#input_dir": cases, "volumes#suffix": "input"})
    assert result.returncode == 0, result.stderr[-3000:]

    table = pd.read_csv(tmp_path / "out/volumes/volumes.csv").set_index("case")
    expected_ml = lesion.sum() * np.prod(SPACING) / 1000
    for case, scan_name, suffix in (("nifti", "nifti.nii.gz", ".nii.gz"), ("nrrd", "nrrd.nrrd", ".nrrd"), ("mha", "mha.mha", ".mha"), ("dicom", "dicom", ".nii.gz")):
        mask, image = read_back(tmp_path / "out/volumes" / f"{case}{suffix}")
        pixels, source = read_back(cases / scan_name)  # the scan as ITK reads it (a DICOM series comes back right-handed)
        assert mask.shape == pixels.shape == SHAPE_ZYX and mask.dtype == np.uint8, case
        assert dice(mask == 1, pixels > 500) > 0.95, case  # the same voxels: the mask lands where the lesion is
        for field in ("GetSpacing", "GetOrigin"):
            np.testing.assert_allclose(getattr(image, field)(), getattr(source, field)(), atol=1e-4, err_msg=f"{case} {field}")
        np.testing.assert_allclose(itk.array_from_matrix(image.GetDirection()), itk.array_from_matrix(source.GetDirection()), atol=1e-5)
        assert table.loc[case, "ml_tumour"] == pytest.approx(expected_ml, rel=0.05), case
        assert table.loc[case, "shape"] == "100x120x16" and table.loc[case, "spacing_mm"] == "0.9x1.1x4"
    _, nifti = read_back(cases / "nifti.nii.gz")
    np.testing.assert_allclose(itk.array_from_matrix(nifti.GetDirection()), ROTATED, atol=1e-6)  # the geometry really is that one


def test_oasis_tissue_classes_from_a_t1_volume(tmp_path):
    # four intensity bands (background, CSF, grey, white matter); the stand-in's logits c * x + b_c pick the band of x,
    # x being the recipe's normalised input, so the thresholds are set halfway between the bands in those units
    recipe = json.loads((REPO / "bundles/oasis_unet/configs/train.json").read_text())
    levels = np.array([0, 60, 130, 220])
    x = (levels / levels.max() - recipe["intensity_mean"]) / recipe["intensity_std"]  # minmax maps 220 to 255, i.e. 1.0
    thresholds = (x[:-1] + x[1:]) / 2
    bias = [0.0, *(-np.cumsum(thresholds))]
    z, y, xx = np.mgrid[: SHAPE_ZYX[0], : SHAPE_ZYX[1], : SHAPE_ZYX[2]]
    radius = np.sqrt(((xx - 50) / 40) ** 2 + ((y - 60) / 50) ** 2 + ((z - 8) / 7) ** 2)
    truth = np.select([radius < 0.35, radius < 0.6, radius < 0.9], [3, 2, 1], 0).astype(np.uint8)  # white inside grey inside CSF
    (tmp_path / "cases").mkdir()
    write_scan(levels[truth].astype(np.int16), tmp_path / "cases" / "subject01.nii.gz")
    models = stand_in(tmp_path / "models", [0.0, 1.0, 2.0, 3.0], bias)
    result = run_bundle("oasis_unet", "volume_inference", network_def=conv_network(4), ckpt_dir=models, output_dir=tmp_path / "out",
                        **{"volumes#input_dir": tmp_path / "cases"})
    assert result.returncode == 0, result.stderr[-3000:]

    mask, image = read_back(tmp_path / "out/volumes/subject01.nii.gz")
    for c in (1, 2, 3):
        assert dice(mask == c, truth == c) > 0.9, c
    np.testing.assert_allclose(itk.array_from_matrix(image.GetDirection()), ROTATED, atol=1e-5)
    row = pd.read_csv(tmp_path / "out/volumes/volumes.csv").iloc[0]
    assert row["ml_white_matter"] == pytest.approx((truth == 3).sum() * np.prod(SPACING) / 1000, rel=0.1)
    assert {"ml_csf", "ml_grey_matter", "voxels_csf"} <= set(row.index)


@pytest.mark.parametrize("neighbour_slices", [0, 1])
def test_stacked_slices_give_the_slice_paths_masks(tmp_path, lgg_demo_root, lgg_demo_manifest, neighbour_slices):
    # lgg_best (three sequences, largest 3D component) with an untrained network: inference on the demo test patient's
    # slices writes its mask volume and one image volume per sequence; those volumes, as a case, give the same mask
    overrides = {**fast("lgg_best"), "neighbour_slices": neighbour_slices, "dataset_dir": lgg_demo_root, "manifest": lgg_demo_manifest}
    parser_overrides = {key: value for key, value in overrides.items() if key.startswith("network_def") or key == "neighbour_slices"}
    torch.manual_seed(0)
    network = untrained("lgg_best", parser_overrides)
    (tmp_path / "models").mkdir()
    torch.save(network.state_dict(), tmp_path / "models" / "model.pt")
    slices = run_bundle("lgg_best", "inference", ckpt_dir=tmp_path / "models", output_dir=tmp_path / "slices", **overrides)
    assert slices.returncode == 0, slices.stderr[-3000:]
    written = tmp_path / "slices/predictions/volumes"
    (subject,) = pd.read_csv(tmp_path / "slices/predictions/predictions.csv")["subject"].unique()
    case = tmp_path / "cases" / subject
    case.mkdir(parents=True)
    for sequence in ("pre-contrast", "flair", "post-contrast"):
        image = nib.load(written / f"{subject}_{sequence}.nii.gz")
        assert image.shape == nib.load(written / f"{subject}.nii.gz").shape and np.array_equal(image.affine, nib.load(written / f"{subject}.nii.gz").affine)
        shutil.copyfile(written / f"{subject}_{sequence}.nii.gz", case / f"{sequence}.nii.gz")

    volumes = run_bundle("lgg_best", "volume_inference", ckpt_dir=tmp_path / "models", output_dir=tmp_path / "volumes",
                         **overrides, **{"volumes#input_dir": tmp_path / "cases", "volumes#intensity": "unchanged"})
    assert volumes.returncode == 0, volumes.stderr[-3000:]
    from_slices, from_volume = nib.load(written / f"{subject}.nii.gz"), nib.load(tmp_path / "volumes/volumes" / f"{subject}.nii.gz")
    assert 0 < from_slices.get_fdata().sum() < from_slices.get_fdata().size  # the untrained network draws a partial mask
    assert np.array_equal(from_volume.get_fdata(), from_slices.get_fdata())
    np.testing.assert_allclose(from_volume.affine, from_slices.affine, atol=1e-6)
    agreement = volume_agreement(tmp_path / "slices/predictions", tmp_path / "volumes/volumes")  # the benchmark's comparison
    assert list(agreement["identical"]) == [True] and agreement["dice_between_paths"].iloc[0] == 1.0
    assert agreement["dice_3d_slice_path"].iloc[0] == agreement["dice_3d_volume_path"].iloc[0]


def volume_agreement(predictions: Path, volumes: Path) -> pd.DataFrame:
    """``benchmarks/volume_agreement.py``'s per-patient table of the two paths."""
    spec = importlib.util.spec_from_file_location("volume_agreement", REPO / "benchmarks" / "volume_agreement.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compare(predictions, volumes)


def untrained(bundle: str, overrides: dict) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    from pipelines.bundles import config_files

    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(REPO / "bundles" / bundle, "train")])
    parser.update({key: json.loads(value) if isinstance(value, str) else value for key, value in overrides.items()})  # command-line strings
    return parser.get_parsed_content("network_def")


def test_sequences_on_other_grids_are_resampled_onto_flair(tmp_path, caplog):
    # post-contrast at half the resolution and shifted origin still puts the lesion where FLAIR has it
    scan, lesion = lesion_scan()
    case = tmp_path / "cases" / "P1"
    case.mkdir(parents=True)
    write_scan(scan, case / "flair.nii.gz")
    write_scan(scan, case / "pre-contrast.nii.gz")
    coarse = itk.image_from_array(np.ascontiguousarray(scan[:, ::2, ::2]))
    coarse.SetSpacing((SPACING[0] * 2, SPACING[1] * 2, SPACING[2]))
    coarse.SetOrigin(ORIGIN)
    coarse.SetDirection(itk.matrix_from_array(ROTATED))
    itk.imwrite(coarse, str(case / "post-contrast.nrrd"))
    dataset = VolumeSliceDataset(find_cases(tmp_path / "cases", ["pre-contrast", "flair", "post-contrast"]), ["pre-contrast", "flair", "post-contrast"], [256, 256])
    with caplog.at_level(logging.INFO, logger="pipelines.data.volumes"):
        assert dataset.check() == SHAPE_ZYX[0]
    assert "post-contrast resampled onto the flair grid" in caplog.text and "pre-contrast resampled" not in caplog.text
    grid = dataset._grid(0)
    flair, post = grid[1] > 128, grid[2] > 128
    assert dice(post.numpy(), flair.numpy()) > 0.85


def test_unchanged_intensities_outside_0_255_are_clipped_with_a_warning(tmp_path, caplog):
    scan, _ = lesion_scan()
    (tmp_path / "cases").mkdir()
    write_scan(scan, tmp_path / "cases" / "P1.nii.gz")
    dataset = VolumeSliceDataset(find_cases(tmp_path / "cases", ["flair"]), ["flair"], [256, 256], intensity="unchanged")
    with caplog.at_level(logging.WARNING, logger="pipelines.data.volumes"):
        dataset.check()
    assert "values 100..1000 outside the 0..255" in caplog.text
    assert int(dataset._grid(0).max()) == 255


def test_a_few_hot_voxels_warn(tmp_path, caplog):
    scan, _ = lesion_scan()
    scan[0, 0, :3] = 30000  # three voxels far above the rest squeeze the brain to the bottom of 0..255
    (tmp_path / "cases").mkdir()
    write_scan(scan, tmp_path / "cases" / "P1.nii.gz")
    with caplog.at_level(logging.WARNING, logger="pipelines.data.volumes"):
        VolumeSliceDataset(find_cases(tmp_path / "cases", ["flair"]), ["flair"], [256, 256]).check()
    assert "a few very bright voxels" in caplog.text


# --- bad scans: one error line naming the file, before anything is written ---------------------------------------


def _case_folder(tmp_path: Path, sequences=("flair",)) -> Path:
    scan, _ = lesion_scan()
    case = tmp_path / "cases" / "P1"
    case.mkdir(parents=True)
    for sequence in sequences:
        write_scan(scan, case / f"{sequence}.nii.gz")
    return case


def four_d(tmp_path):
    (tmp_path / "cases").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.int16), np.eye(4)), tmp_path / "cases" / "P1.nii.gz")
    return "lgg_unet_bce", ["P1.nii.gz", "not a single 3D volume"]


def two_d(tmp_path):
    (tmp_path / "cases").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.int16), np.eye(4)), tmp_path / "cases" / "P1.nii.gz")
    return "lgg_unet_bce", ["P1.nii.gz", "8x8 is 2D"]


def missing_sequence(tmp_path):
    _case_folder(tmp_path, ("pre-contrast", "flair"))
    return "lgg_best", ["P1", "no post-contrast volume"]


def one_file_for_three_sequences(tmp_path):
    (tmp_path / "cases").mkdir()
    write_scan(lesion_scan()[0], tmp_path / "cases" / "P1.nii.gz")
    return "lgg_best", ["P1.nii.gz", "reads 3 sequences"]


def two_volumes_for_one_sequence(tmp_path):
    case = _case_folder(tmp_path)
    write_scan(lesion_scan()[0], case / "FLAIR.nrrd")
    return "lgg_unet_bce", ["P1", "2 flair volumes"]


def empty_dicom_folder(tmp_path):
    (tmp_path / "cases" / "P1").mkdir(parents=True)
    (tmp_path / "cases" / "P1" / "notes.txt").write_text("not a DICOM file")
    return "lgg_unet_bce", ["P1", "cannot read the DICOM series folder"]


def damaged_volume(tmp_path):
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "P1.nii.gz").write_bytes(b"\x1f\x8b garbage")
    return "lgg_unet_bce", ["P1.nii.gz", "cannot read the volume"]


def nan_voxels(tmp_path):
    (tmp_path / "cases").mkdir()
    scan = lesion_scan()[0].astype(np.float32)
    scan[3, 4, 5] = np.nan
    write_scan(scan, tmp_path / "cases" / "P1.mha")  # (ITK reads a NaN of a NIfTI file as 0)
    return "lgg_unet_bce", ["P1.mha", "NaN or infinite"]


def constant_volume(tmp_path):
    (tmp_path / "cases").mkdir()
    nib.save(nib.Nifti1Image(np.full((8, 8, 4), 7, np.int16), np.eye(4)), tmp_path / "cases" / "P1.nii.gz")
    return "lgg_unet_bce", ["P1.nii.gz", "every voxel is 7"]


def no_cases(tmp_path):
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "readme.txt").write_text("nothing here")
    return "lgg_unet_bce", ["cases", "no cases"]


def missing_input_dir(tmp_path):
    return "lgg_unet_bce", ["cases", "folder of cases) not found"]


def unknown_intensity_mode(tmp_path):
    _case_folder(tmp_path)
    return "lgg_unet_bce", ["--volumes#intensity 'window'", "minmax, unchanged"], {"volumes#intensity": "window"}


def unknown_suffix(tmp_path):
    _case_folder(tmp_path)
    return "lgg_unet_bce", ["--volumes#suffix '.png'", ".nii.gz"], {"volumes#suffix": ".png"}


@pytest.mark.parametrize("damage", [four_d, two_d, missing_sequence, one_file_for_three_sequences, two_volumes_for_one_sequence,
                                    empty_dicom_folder, damaged_volume, nan_voxels, constant_volume, no_cases, missing_input_dir,
                                    unknown_intensity_mode, unknown_suffix])
def test_bad_scans_stop_in_one_line_before_writing(tmp_path, damage):
    bundle, fragments, *extra = damage(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    torch.save(untrained(bundle, fast(bundle)).state_dict(), models / "model.pt")
    message = bundle_error_in_process(bundle, "volume_inference", **fast(bundle), ckpt_dir=models, output_dir=tmp_path / "out",
                                      **{"volumes#input_dir": tmp_path / "cases", **(extra[0] if extra else {})})
    assert_error_line(message, *fragments)
    assert not (tmp_path / "out").exists()


def test_no_input_dir_says_which_option(tmp_path):
    (tmp_path / "models").mkdir()
    torch.save(untrained("lgg_unet_bce", fast("lgg_unet_bce")).state_dict(), tmp_path / "models" / "model.pt")
    message = bundle_error_in_process("lgg_unet_bce", "volume_inference", **fast("lgg_unet_bce"), ckpt_dir=tmp_path / "models", output_dir=tmp_path / "out")
    assert_error_line(message, "--volumes#input_dir")
