"""pipelines.portable: the code an exported bundle ships as scripts/ and the project runs too (checksum, folder
datalist and 2.5D stacks, channel selection, masks and their 3D post-processing, the input-error type and hook);
and that no JSON config needs a lambda or sys.exit for it."""

import ast
import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from bundle_utils import REPO
from monai.transforms import KeepLargestConnectedComponent, LoadImage
from PIL import Image

import pipelines.cli.errors
from pipelines.data.oasis import SLICE_NAME
from pipelines.errors import InputError
from pipelines.portable import errors
from pipelines.portable.checksum import file_sha256
from pipelines.portable.datalist import find_slices, folder_datalist, numbered_slices, with_neighbours
from pipelines.portable.masks import postprocess_volume, write_mask

PORTABLE = REPO / "pipelines" / "portable"


def items(*slices_of: tuple[str, list[int]]) -> list[dict]:
    return [{"image": f"{subject}/{k}.tif", "subject": subject, "slice": k} for subject, numbers in slices_of for k in numbers]


def stacks(stacked: list[dict]) -> dict[tuple[str, int], list[str]]:
    return {(item["subject"], item["slice"]): item["image"] for item in stacked}


def test_neighbour_stacks_repeat_edges_fill_gaps_towards_the_slice_and_never_mix_subjects():
    stacked = stacks(with_neighbours(items(("A", [1, 2, 5]), ("B", [3])), 2))  # order: s, s-1, s+1, s-2, s+2
    assert stacked[("A", 1)] == ["A/1.tif", "A/1.tif", "A/2.tif", "A/1.tif", "A/2.tif"]
    assert stacked[("A", 2)] == ["A/2.tif", "A/1.tif", "A/2.tif", "A/1.tif", "A/2.tif"]  # 3 and 4 missing: 2 itself
    assert stacked[("A", 5)] == ["A/5.tif", "A/5.tif", "A/5.tif", "A/5.tif", "A/5.tif"]  # 4 and 3 missing, nothing after
    assert stacked[("B", 3)] == ["B/3.tif"] * 5  # a lone slice


def test_without_neighbours_the_items_stay_as_they_are():
    listed = items(("A", [1, 2]))
    assert with_neighbours(listed, 0) is listed


@pytest.mark.parametrize("neighbours", [-1, 1.5, "1"])
def test_neighbours_must_be_a_whole_number_of_slices(neighbours):
    with pytest.raises(InputError, match=r"^neighbour_slices .*: expected a whole number of slices on each side, 0 or more$"):
        with_neighbours(items(("A", [1])), neighbours)


def test_slices_are_found_below_the_folder_numbered_and_sorted_by_subject_then_slice(tmp_path):
    for name in ("P2/P2_10.tif", "P2/P2_9.tif", "P2/P2_9_mask.tif", "P1/P1_1.tif", "P1/notes.txt", "P1/deeper/Q_3.tif", "P3/b.tif", "P3/a.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    paths = find_slices(tmp_path, "*.tif", ["_mask.tif"])
    assert paths == sorted(paths) and all(path.startswith(str(tmp_path)) for path in paths) and len(paths) == 6
    listed = [(item["subject"], item["slice"], item["image"].removeprefix(f"{tmp_path}/")) for item in numbered_slices(paths)]
    assert listed == [("P1", 1, "P1/P1_1.tif"), ("P2", 9, "P2/P2_9.tif"), ("P2", 10, "P2/P2_10.tif"), ("P3", 4, "P3/a.tif"), ("P3", 5, "P3/b.tif"),
                      ("deeper", 3, "P1/deeper/Q_3.tif")]  # a name without a number: its rank among the paths found


def test_a_relative_folder_gives_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "data" / "P1").mkdir(parents=True)
    (tmp_path / "data" / "P1" / "P1_1.tif").touch()
    monkeypatch.chdir(tmp_path)
    assert folder_datalist("data", "*.tif", neighbours=1) == [{"image": ["data/P1/P1_1.tif"] * 3, "subject": "P1", "slice": 1}]


def test_a_missing_or_empty_folder_is_one_line_naming_the_setting(tmp_path):
    with pytest.raises(InputError, match=r"^dataset_dir '': no such folder$"):
        folder_datalist("", "*.tif")
    (tmp_path / "P1").mkdir()
    (tmp_path / "P1" / "P1_1_mask.tif").touch()
    with pytest.raises(InputError) as err:
        folder_datalist(tmp_path, "*.tif", ["_mask.tif"], option="input_dir")
    assert str(err.value) == f"input_dir {tmp_path}: no '*.tif' slices found (names ending in '_mask.tif' are skipped)"
    with pytest.raises(InputError, match=r"no 'case_\*.png' slices found$"):
        folder_datalist(tmp_path, "case_*.png")


def test_the_checksum_reads_the_file_in_blocks(tmp_path):
    model = tmp_path / "model.pt2"
    model.write_bytes(b"x" * (3 << 20))  # more than one block
    assert file_sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest()


def test_masks_round_trip_in_monai_pil_order(tmp_path):
    mask = np.zeros((5, 3), np.uint8)  # (W, H): written as a 3-row, 5-column PNG
    mask[4, 0] = 255
    write_mask(mask, tmp_path / "m.tmp")  # PNG whatever the suffix
    assert np.asarray(Image.open(tmp_path / "m.tmp")).shape == (3, 5)
    read = LoadImage(reader="PILReader", image_only=True, dtype=np.uint8)(tmp_path / "m.tmp")  # as the bundles load images
    assert np.array_equal(np.asarray(read), mask) and np.asarray(read).dtype == np.uint8


def test_volume_postprocessing_keeps_the_largest_3d_component():
    blob, speck = np.zeros((6, 6), np.uint8), np.zeros((6, 6), np.uint8)
    blob[1:3, 1:3], speck[5, 5] = 255, 255
    volume = postprocess_volume([blob, blob, speck], KeepLargestConnectedComponent())
    assert volume.shape == (6, 6, 3) and volume.dtype == np.uint8
    assert np.array_equal(volume[..., 0], blob) and not volume[..., 2].any()
    assert np.array_equal(postprocess_volume([blob, speck], None), np.stack([blob, speck], -1))
    channel_first = postprocess_volume([blob[None] // 255, blob[None] // 255, speck[None] // 255], KeepLargestConnectedComponent())
    assert channel_first.shape == (1, 6, 6, 3) and np.array_equal(channel_first[0] * 255, volume)


def test_the_command_line_installs_the_portable_hook_once():
    errors.install_excepthook()
    assert sys.excepthook is errors.excepthook is pipelines.cli.errors.excepthook
    assert errors._previous_excepthook is not errors.excepthook
    assert errors.input_error_in(RuntimeError("no input error")) is None
    try:
        try:
            raise InputError("x.csv: bad")
        except InputError as err:
            raise RuntimeError("Failed to evaluate") from err  # as MONAI wraps what a config expression raises
    except RuntimeError as wrapped:
        assert errors.error_line(errors.input_error_in(wrapped)) == "error: x.csv: bad"


def test_the_package_imports_only_the_standard_library_numpy_torch_monai_and_itself():
    """What lets an exported bundle run it without the project; its errors module, which the command line imports, not even those."""
    for module in PORTABLE.glob("*.py"):
        tree = ast.parse(module.read_text())
        imported = {alias.name.partition(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.partition(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
        allowed = set(sys.stdlib_module_names) | ({"__future__"} if module.name == "errors.py" else {"numpy", "torch", "monai"})
        assert imported <= allowed, (module.name, imported - allowed)


@pytest.mark.parametrize("config", sorted([*(REPO / "pipelines" / "export" / "resources").glob("*.json"), *(REPO / "bundles").rglob("*.json")]),
                         ids=lambda path: str(path.relative_to(REPO)))
def test_no_json_config_holds_a_lambda_or_sys_exit(config):
    assert not re.search(r"\blambda\b|\bsys\.exit\b", config.read_text())


def test_a_name_pattern_takes_subject_and_slice_from_the_file_name(tmp_path):
    """OASIS names its slices case_NNN_slice_K: the project's and the exported bundle's folder datalist read both from the name."""
    for name in ("a/case_001_slice_10.nii.png", "a/case_001_slice_2.nii.png", "b/case_002_slice_0.nii.png", "b/case_notes.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    items = folder_datalist(tmp_path, "case_*.png", name_pattern=SLICE_NAME)
    assert [(item["subject"], item["slice"], Path(item["image"]).name) for item in items] == [
        ("001", 2, "case_001_slice_2.nii.png"), ("001", 10, "case_001_slice_10.nii.png"), ("002", 0, "case_002_slice_0.nii.png")]
    (tmp_path / "b/case_001_slice_2.nii.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"b/case_001_slice_2.nii.png: subject 001 slice 2 is also .*a/case_001_slice_2.nii.png$"):
        folder_datalist(tmp_path, "case_*.png", name_pattern=SLICE_NAME)
