import csv
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.data.demo import make_lgg_demo
from pipelines.errors import InputError
from pipelines.data.datalist import load_split
from pipelines.data.lgg import build_kaggle_3m, build_kaggle_3m_from_listing
from pipelines.data.manifest import SPLITS, assign_splits, restrict_to_available, split_summary, validate_manifest, write_manifest
from pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]
LISTING = REPO.parent / "shared/data/lgg/kaggle_3m_listing.csv"
REAL_DATA = Path(os.environ.get("LGG_DATA_DIR", "/root/data/kaggle_3m"))
ROW_FIELDS = ("subject", "slice", "image", "label", "diagnosis")


@pytest.fixture
def small(tmp_path):
    """(manifest CSV, dataset root) of 6 subjects x 3 slices of 32x32: rows 2-4 are TCGA_DM_0001 slices 1-3, and so on."""
    root = make_lgg_demo(tmp_path / "data", n_subjects=6, n_slices=3, size=32)
    return write_manifest(build_kaggle_3m(root), tmp_path / "manifest.csv"), root


def _load(csv_path):
    with csv_path.open(newline="", encoding="utf-8") as stream:
        return list(csv.reader(stream))


def _save(csv_path, table, **dialect):
    with csv_path.open("w", newline="", encoding="utf-8") as stream:
        csv.writer(stream, lineterminator="\n", **dialect).writerows(table)


def _write_listing(root, listing_csv):
    """The listing CSV (as in ../shared/data/lgg) of a kaggle_3m folder."""
    table = [["patient", "case_dir", "slice", "image", "mask", "mask_pixels"]]
    for mask in sorted(root.glob("TCGA_*/*_mask.tif")):
        case = mask.parent.name
        image = mask.with_name(mask.name.replace("_mask", ""))
        pixels = np.count_nonzero(np.asarray(Image.open(mask)))
        table.append([case[:12], case, image.stem.rsplit("_", 1)[1], f"{case}/{image.name}", f"{case}/{mask.name}", pixels])
    _save(listing_csv, table)
    return listing_csv


def _fields(rows):
    return [tuple(row[field] for field in ROW_FIELDS) for row in rows]


# --- splits -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n_subjects, counts", [(110, (77, 16, 17)), (6, (4, 1, 1)), (19, (13, 3, 3)), (1, (1, 0, 0))])
def test_assign_splits_counts(n_subjects, counts):
    split_of = assign_splits([f"S{i:03d}" for i in range(n_subjects)], seed=0)
    assert tuple(Counter(split_of.values())[split] for split in SPLITS) == counts


def test_assign_splits_depends_on_seed_not_on_order_or_repeats():
    subjects = [f"S{i:03d}" for i in range(20)]
    split_of = assign_splits(subjects, seed=3)
    assert assign_splits(reversed(subjects + subjects), seed=3) == split_of
    assert assign_splits(subjects, seed=4) != split_of


@pytest.mark.parametrize("ratios", [(0.7, 0.2, 0.2), (0.5, 0.5), (1.2, -0.1, -0.1)])
def test_assign_splits_rejects_bad_ratios(ratios):
    with pytest.raises(InputError, match="split ratios must be"):
        assign_splits(["a", "b"], seed=0, ratios=ratios)


# --- builders (pipelines.data.lgg) ---------------------------------------------------------------------------------

def test_build_kaggle_3m_rows(lgg_demo_root):
    rows = build_kaggle_3m(lgg_demo_root)
    assert len(rows) == 72 and list(rows[0]) == ["subject", "slice", "image", "label", "diagnosis", "split"]
    assert rows[3] == {
        "subject": "TCGA_DM_0001", "slice": 4,
        "image": "TCGA_DM_0001_20000101/TCGA_DM_0001_20000101_4.tif",
        "label": "TCGA_DM_0001_20000101/TCGA_DM_0001_20000101_4_mask.tif",
        "diagnosis": 1, "split": rows[0]["split"],
    }
    assert [(row["subject"], row["slice"]) for row in rows] == sorted((row["subject"], row["slice"]) for row in rows)
    assert len({(row["subject"], row["split"]) for row in rows}) == 6, "each subject in exactly one split"


def test_builders_agree_on_demo_data(lgg_demo_root, tmp_path):
    listing = _write_listing(lgg_demo_root, tmp_path / "listing.csv")
    assert build_kaggle_3m_from_listing(listing, seed=5) == build_kaggle_3m(lgg_demo_root, seed=5)


def test_build_ignores_other_files_and_folders(small):
    manifest, root = small
    (root / "README.txt").write_text("notes")
    (root / "previews").mkdir()
    (root / "TCGA_DM_0001_20000101" / "Thumbs.db").write_bytes(b"\0")
    assert _load(write_manifest(build_kaggle_3m(root), manifest.with_name("again.csv"))) == _load(manifest)


@pytest.mark.parametrize("removed, message", [
    ("_2_mask.tif", "_2.tif: image has no mask"),
    ("_2.tif", "_2_mask.tif: mask has no image"),
])
def test_build_rejects_unpaired_slice(small, removed, message):
    case = small[1] / "TCGA_DM_0002_20000101"
    (case / f"{case.name}{removed}").unlink()
    with pytest.raises(InputError, match=message):
        build_kaggle_3m(small[1])


def test_build_rejects_folder_without_cases(tmp_path):
    with pytest.raises(InputError, match=f"^{tmp_path}: no TCGA_"):
        build_kaggle_3m(tmp_path)


@pytest.mark.skipif(not REAL_DATA.is_dir() or not LISTING.is_file(), reason="real kaggle_3m subset or listing not here")
def test_real_folder_matches_listing():
    scanned = build_kaggle_3m(REAL_DATA)
    subjects = {row["subject"] for row in scanned}
    listed = [row for row in build_kaggle_3m_from_listing(LISTING) if row["subject"] in subjects]
    assert _fields(scanned) == _fields(listed)


@pytest.mark.skipif(not LISTING.is_file(), reason="../shared/data/lgg listing not here")
def test_checked_in_lgg_manifest_is_regenerated_exactly(tmp_path):
    rebuilt = write_manifest(build_kaggle_3m_from_listing(LISTING, seed=0), tmp_path / "lgg.csv")
    assert rebuilt.read_bytes() == (REPO / "data_manifests/lgg_kaggle_3m.csv").read_bytes()
    summary = split_summary(validate_manifest(rebuilt, None, check_files=False))
    assert [(s["subjects"], s["slices"]) for s in summary] == [(77, 2680), (16, 575), (17, 674)]
    assert sum(s["tumour_slices"] for s in summary) == 1373


def test_checked_in_demo_manifest_is_regenerated_exactly(lgg_demo_manifest):
    assert lgg_demo_manifest.read_bytes() == (REPO / "data_manifests/lgg_demo.csv").read_bytes()


# --- writing ----------------------------------------------------------------------------------

def test_write_manifest_is_lf_ordered_and_leaves_no_temp_file(tmp_path):
    rows = [{"subject": "s", "slice": 1, "image": "a, b.tif", "label": "m.tif", "split": "val", "diagnosis": 0,
             "row": 9, "fold": 2}]
    path = write_manifest(rows, tmp_path / "new" / "m.csv")
    assert path.read_bytes() == b'subject,slice,image,label,diagnosis,split,fold\ns,1,"a, b.tif",m.tif,0,val,2\n'
    assert os.listdir(path.parent) == ["m.csv"]


# --- validation -------------------------------------------------------------------------------

def test_validate_returns_typed_rows_with_line_numbers(small):
    rows = validate_manifest(*small, required_splits=SPLITS)
    assert [row["row"] for row in rows] == list(range(2, 20))
    assert rows[0] == {**build_kaggle_3m(small[1])[0], "row": 2}


def _with_spaces_and_accents(csv_path, root):
    table = _load(csv_path)
    for column in (2, 3):
        moved = Path("Pätient scans", f"Ünïcode slice {column}.tif")
        (root / moved.parent).mkdir(exist_ok=True)
        (root / table[1][column]).rename(root / moved)
        table[1][column] = moved.as_posix()
    _save(csv_path, table)


def _with_crlf_bom_and_blank_lines(csv_path, root):
    lines = csv_path.read_text().splitlines()
    csv_path.write_bytes("\ufeff".encode() + "\r\n".join([*lines[:5], "", ",,,,,", *lines[5:]]).encode() + b"\r\n")


def _with_fold_column_and_padding(csv_path, root):
    table = _load(csv_path)
    _save(csv_path, [[f" {cell} " for cell in row] + [fold] for row, fold in zip(table, ["fold", *"012" * 6])])


@pytest.mark.parametrize("edit", [_with_spaces_and_accents, _with_crlf_bom_and_blank_lines, _with_fold_column_and_padding])
def test_validate_accepts_spreadsheet_variants(small, edit):
    edit(*small)
    rows = validate_manifest(*small)
    assert len(rows) == 18 and rows[0]["subject"] == "TCGA_DM_0001"


def test_validate_counts_blank_lines_in_row_numbers(small):
    _with_crlf_bom_and_blank_lines(*small)
    assert [row["row"] for row in validate_manifest(*small)][3:5] == [5, 8]


def _edit_table(change):
    def edit(csv_path, root):
        table = _load(csv_path)
        change(table)
        _save(csv_path, table)
    return edit


def _set(row, column, value):
    def change(table):
        table[row - 1][table[0].index(column)] = value
    return _edit_table(change)


def _copy(from_row, from_column, to_row, to_column):
    def change(table):
        table[to_row - 1][table[0].index(to_column)] = table[from_row - 1][table[0].index(from_column)]
    return _edit_table(change)


def _set_column(column, values):
    """Replace (or append) a column; values[0] is the header, then one value per row, or None to drop the column."""
    def change(table):
        position = table[0].index(column) if column in table[0] else len(table[0])
        for line, value in zip(table, values or [None] * len(table)):
            del line[position:position + 1]
            if values:
                line.insert(position, value)
    return _edit_table(change)


def _resize_row(row, n_cells):
    """Cut the row to ``n_cells`` cells, or pad it with 'extra'."""
    def change(table):
        table[row - 1][:] = (table[row - 1] + ["extra"] * n_cells)[:n_cells]
    return _edit_table(change)


def _edit_bytes(change):
    def edit(csv_path, root):
        csv_path.write_bytes(change(csv_path.read_bytes()))
    return edit


def _edit_file(row, column, change):
    def edit(csv_path, root):
        table = _load(csv_path)
        change(root / table[row - 1][table[0].index(column)])
    return edit


def _semicolon_separated(csv_path, root):
    _save(csv_path, _load(csv_path), delimiter=";")


def _replace_by_folder(csv_path, root):
    csv_path.unlink()
    csv_path.mkdir()


def _latin1_on_line_4(data):
    lines = data.split(b"\n")
    lines[3] = lines[3].replace(b"TCGA", "TCGA_é".encode("latin-1"), 1)
    return b"\n".join(lines)


def _subject_split_across(table):
    for line in table[1:]:
        line[5] = "train"
    table[2][5] = "val"


def _case(name, edit, expected, required_splits=(), dataset_subdir=""):
    """One validator mistake: ``edit(csv_path, root)`` makes it; ``expected`` starts the message ({csv}, {root} filled in)."""
    return pytest.param(edit, expected, required_splits, dataset_subdir, id=name)


CASE1 = "TCGA_DM_0001_20000101/TCGA_DM_0001_20000101"  # files of rows 2-4 are CASE1_1.tif ... CASE1_3_mask.tif
INVALID = [
    _case("file missing", lambda csv_path, root: csv_path.unlink(), "{csv}: file not found"),
    _case("folder, not a file", _replace_by_folder, "{csv}: cannot read file: Is a directory"),
    _case("not utf-8", _edit_bytes(_latin1_on_line_4), "{csv} row 4: not UTF-8 text (byte 0xe9)"),
    _case("empty file", _edit_bytes(lambda data: b""), "{csv}: file is empty"),
    _case("header only", _edit_bytes(lambda data: data.split(b"\n")[0] + b"\n"), "{csv}: no rows under the header"),
    _case("semicolon separated", _semicolon_separated, "{csv} header: columns are separated by ';'"),
    _case("missing column", _set_column("diagnosis", None), "{csv} header: missing required column 'diagnosis'"),
    _case("misspelt column", _set(1, "label", "Lable"), "{csv} header: column 'Lable' is one edit from 'label'; rename it"),
    _case("swapped letters", _set(1, "split", "spilt"), "{csv} header: column 'spilt' is one edit from 'split'; rename it"),
    _case("letter missing", _set(1, "subject", "subjct"), "{csv} header: column 'subjct' is one edit from 'subject'; rename it"),
    _case("duplicate column", _set(1, "label", "image"), "{csv} header: column 'image' appears twice"),
    _case("extra cell", _resize_row(5, 7), "{csv} row 5: 7 cells but the header has 6 columns (extra: 'extra')"),
    _case("missing cell", _resize_row(5, 5), "{csv} row 5 column 'split': missing cell"),
    _case("empty subject", _set(3, "subject", ""), "{csv} row 3 column 'subject': empty cell"),
    _case("blank split", _set(19, "split", " "), "{csv} row 19 column 'split': empty cell"),
    _case("slice not integer", _set(3, "slice", "2.5"), "{csv} row 3 column 'slice': expected a whole number, got '2.5'"),
    _case("diagnosis not 0/1", _set(6, "diagnosis", "yes"),
          "{csv} row 6 column 'diagnosis': expected 0 (no tumour) or 1 (tumour), got 'yes'"),
    _case("fold not integer", _set_column("fold", ["fold", *"0001x" + "0" * 13]),
          "{csv} row 6 column 'fold': expected a whole number, got 'x'"),
    _case("absolute path", _set(4, "image", "/data/scan.tif"),
          "{csv} row 4 column 'image': '/data/scan.tif' is an absolute path"),
    _case("windows absolute path", _set(4, "label", "C:\\scans\\m.tif"),
          "{csv} row 4 column 'label': 'C:\\scans\\m.tif' is an absolute path"),
    _case("backslash separator", _set(4, "label", "case\\m.tif"), "{csv} row 4 column 'label': 'case\\m.tif' contains '\\'"),
    _case("escapes dataset root", _set(4, "image", "case/../../x.tif"),
          "{csv} row 4 column 'image': 'case/../../x.tif' points outside the dataset folder"),
    _case("unknown split", _set(3, "split", "training"),
          "{csv} row 3 column 'split': unknown split 'training'; use one of: train, val, test"),
    _case("duplicate image", _copy(2, "image", 3, "image"),
          f"{{csv}} row 3 column 'image': '{CASE1}_1.tif' is already the image of row 2"),
    _case("duplicate label", _copy(2, "label", 9, "label"),
          f"{{csv}} row 9 column 'label': '{CASE1}_1_mask.tif' is already the label of row 2"),
    _case("label is the image", _copy(4, "image", 4, "label"),
          f"{{csv}} row 4 column 'label': '{CASE1}_3.tif' is already the image of row 4"),
    _case("duplicate subject and slice", _set(3, "slice", "1"),
          "{csv} row 3 column 'slice': subject 'TCGA_DM_0001' slice 1 is already in row 2"),
    _case("subject in two splits", _edit_table(_subject_split_across),
          "{csv} row 3 column 'split': subject 'TCGA_DM_0001' is in 'val' here but in 'train' in row 2"),
    _case("required split missing", _set_column("split", ["split", *["train"] * 18]),
          "{csv} column 'split': no rows with split 'val', which this run needs", required_splits=("train", "val")),
    _case("dataset folder missing", lambda csv_path, root: None, "{root}/elsewhere: dataset folder not found",
          dataset_subdir="elsewhere"),
    _case("image file missing", _edit_file(3, "image", Path.unlink),
          f"{{csv}} row 3 column 'image': file not found: {{root}}/{CASE1}_2.tif"),
    _case("label file missing", _edit_file(7, "label", Path.unlink),
          "{csv} row 7 column 'label': file not found: {root}/TCGA_DM_0002_20000101/TCGA_DM_0002_20000101_3_mask.tif"),
    _case("label size differs", _edit_file(5, "label", lambda path: Image.new("L", (16, 24)).save(path)),
          "{csv} row 5 column 'label': size 16x24 differs from the image's 32x32"),
    _case("zero-byte image", _edit_file(5, "image", lambda path: path.write_bytes(b"")),
          "{csv} row 5 column 'image': cannot read image: file is empty (0 bytes)"),
    _case("truncated image header", _edit_file(5, "image", lambda path: path.write_bytes(path.read_bytes()[:12])),
          "{csv} row 5 column 'image': cannot read image: unknown format or damaged header"),
    _case("text named .tif", _edit_file(6, "label", lambda path: path.write_text("not an image")),
          "{csv} row 6 column 'label': cannot read image: unknown format or damaged header"),
]


@pytest.mark.parametrize("edit, expected, required_splits, dataset_subdir", INVALID)
def test_validate_reports_one_line_naming_file_row_and_column(small, edit, expected, required_splits, dataset_subdir):
    csv_path, root = small
    edit(csv_path, root)
    with pytest.raises(InputError) as caught:
        validate_manifest(csv_path, root / dataset_subdir, required_splits=required_splits)
    message = str(caught.value)
    assert message.startswith(expected.format(csv=csv_path, root=root.resolve())), message
    assert "\n" not in message


def test_validate_text_only_skips_files(small):
    _edit_file(3, "image", Path.unlink)(*small)
    assert len(validate_manifest(small[0], None, check_files=False)) == 18


# --- restricting and summarising ----------------------------------------------------------------

def test_a_researchers_own_columns_are_kept_and_never_read(small, tmp_path):
    """Notes, scanner, rater: any column that is not one edit from a known name; blank cells are fine there."""
    csv_path, root = small
    table = _load(csv_path)
    table[0] += ["notes", "Scanner"]
    for k, row in enumerate(table[1:]):
        row += ["re-check, rater 2" if k == 0 else "", "GE 1.5T"]
    _save(csv_path, table)
    rows = validate_manifest(csv_path, root)
    assert rows[0]["notes"] == "re-check, rater 2" and rows[1]["notes"] == "" and rows[0]["Scanner"] == "GE 1.5T"
    assert _load(write_manifest(rows, tmp_path / "again.csv")) == table
    assert load_split(csv_path, root, "train")[0].keys() == {"image", "label", "subject", "slice", "diagnosis"}


def test_restrict_keeps_available_rows_and_their_split(small):
    csv_path, root = small
    shutil.rmtree(root / "TCGA_DM_0002_20000101")
    kept = restrict_to_available(csv_path, root)
    full = validate_manifest(csv_path, None, check_files=False)
    assert kept == [row for row in full if row["subject"] != "TCGA_DM_0002"]


def test_restrict_reports_half_present_pair_and_nothing_present(small, tmp_path):
    csv_path, root = small
    _edit_file(4, "label", Path.unlink)(csv_path, root)
    with pytest.raises(InputError, match=r"row 4 column 'label': file not found"):
        restrict_to_available(csv_path, root)
    with pytest.raises(InputError, match=r"none of its 18 images is under"):
        restrict_to_available(csv_path, tmp_path)


def test_split_summary_of_demo_manifest(lgg_demo_manifest):
    summary = split_summary(validate_manifest(lgg_demo_manifest, None, check_files=False))
    assert summary == [
        {"split": "train", "subjects": 4, "slices": 48, "tumour_slices": 24, "non_tumour_slices": 24, "tumour_subjects": 4},
        {"split": "val", "subjects": 1, "slices": 12, "tumour_slices": 6, "non_tumour_slices": 6, "tumour_subjects": 1},
        {"split": "test", "subjects": 1, "slices": 12, "tumour_slices": 6, "non_tumour_slices": 6, "tumour_subjects": 1},
    ]


# --- command line and error plumbing --------------------------------------------------------------

def test_cli_build_validate_restrict_summary(small, tmp_path, capsys):
    csv_path, root = small
    listing = _write_listing(root, tmp_path / "listing.csv")
    built = tmp_path / "built.csv"
    assert main(["manifest", "build", "--listing", str(listing), "--out", str(built)]) == 0
    assert built.read_bytes() == csv_path.read_bytes()
    assert main(["manifest", "validate", "--manifest", str(built), "--dataset_dir", str(root), "--require", "train", "val"]) == 0
    shutil.rmtree(root / "TCGA_DM_0003_20000101")
    assert main(["manifest", "restrict", "--manifest", str(built), "--dataset_dir", str(root), "--out", str(tmp_path / "kept.csv")]) == 0
    assert main(["manifest", "summary", "--manifest", str(tmp_path / "kept.csv")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"wrote {built}: 18 rows; "
                      "train 4 subjects / 12 slices, val 1 subjects / 3 slices, test 1 subjects / 3 slices")
    assert out[1].startswith(f"OK {built}: 18 rows and files;")
    assert out[2].startswith(f"wrote {tmp_path / 'kept.csv'}: 15 rows with files under {root};")
    assert out[3].split() == ["split", "subjects", "slices", "tumour_slices", "non_tumour_slices", "tumour_subjects"]
    assert len(out) == 7


def test_cli_input_error_is_one_line_and_exit_code_2(small, capsys):
    csv_path, root = small
    _set(3, "slice", "two")(csv_path, root)
    assert main(["manifest", "validate", "--manifest", str(csv_path), "--dataset_dir", str(root)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {csv_path} row 3 column 'slice': expected a whole number, got 'two'\n"


def test_cli_help_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "pipelines", "manifest", "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "validate" in result.stdout and "demo-data" in result.stdout

