"""Bad input, every path: one table of damaged inputs, each fed to the command a user would run.

Each case damages a private copy of the demo data (3 subjects x 4 slices, one per split), a checkpoint or an
output folder, runs one command (``python -m pipelines manifest validate``, a bundle's train, evaluate or
inference workflow through ``python -m monai.bundle run``, ``python -m pipelines export`` or ``report``) and
expects a non-zero exit code with ONE ``error:`` line naming the file (and its row and column where there is
one), no traceback, and the earlier outputs of the run folder untouched. More cases of the same kind live
beside the code they test: tests/test_manifest.py, tests/test_export.py, tests/test_report.py.
"""

from __future__ import annotations

import ast
import errno
import json
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import REPO, assert_error_line, assert_one_line_error, bundle_error_in_process, fast, run_bundle, tree_digest
from monai.bundle import ConfigParser
from PIL import Image

from pipelines.bundles import config_files
from pipelines.cli import main
from pipelines.cli.errors import excepthook
from pipelines.data.demo import make_lgg_demo
from pipelines.data.lgg import build_kaggle_3m
from pipelines.data.manifest import write_manifest
from pipelines.engine.run_folders import LOCK_NAME

BUNDLE = "lgg_unet_bce"


@dataclass
class Data:
    """A private dataset, its manifest, a run folder holding earlier results, and a scratch folder."""

    root: Path
    manifest: Path
    outputs: Path
    tmp: Path

    def lines(self) -> list[str]:
        return self.manifest.read_text().splitlines()

    def row(self, split: str = "train") -> tuple[int, list[str]]:
        """(1-based row number, cells) of the first row of ``split``: the header is row 1."""
        index = next(i for i, line in enumerate(self.lines()) if line.endswith("," + split))
        return index + 1, self.lines()[index].split(",")

    def file(self, column: str, split: str = "train") -> Path:
        """The image (column 2) or label (column 3) file of the first row of ``split``."""
        return self.root / self.row(split)[1][{"image": 2, "label": 3}[column]]

    def manifest_with(self, edit: Callable[[list[str]], list[str]], name: str = "broken.csv", **write) -> Path:
        path = self.tmp / name
        path.write_text("\n".join(edit(self.lines())) + "\n", **write)
        return path


def untrained_network(bundle: str) -> torch.nn.Module:
    """``bundle``'s network_def as the tests run it (``fast`` overrides), freshly initialised."""
    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(REPO / "bundles" / bundle, "train")])
    parser.update({key: ast.literal_eval(value) if isinstance(value, str) else value for key, value in fast(bundle).items()})  # as the command line parses them
    return parser.get_parsed_content("network_def")


@pytest.fixture
def data(tmp_path) -> Data:
    root = make_lgg_demo(tmp_path / "data", n_subjects=3, n_slices=4)
    manifest = write_manifest(build_kaggle_3m(root, ratios=(0.34, 0.33, 0.33)), tmp_path / "manifest.csv")
    outputs = tmp_path / "run"
    (outputs / "models").mkdir(parents=True)
    torch.save(untrained_network(BUNDLE).state_dict(), outputs / "models" / "model.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), outputs / "models" / "checkpoint_epoch=9.pt")
    (outputs / "eval").mkdir()
    (outputs / "eval" / "events.out.tfevents.1").write_bytes(b"earlier log")
    return Data(root, manifest, outputs, tmp_path / "scratch")


def replace_row(data: Data, row: int, line: str) -> Path:
    return data.manifest_with(lambda lines: lines[: row - 1] + [line] + lines[row:])


def set_cell(data: Data, column: int, value: str, split: str = "train") -> tuple[Path, int]:
    row, cells = data.row(split)
    cells[column] = value
    return replace_row(data, row, ",".join(cells)), row


def save_checkpoint(data: Data, content: Callable[[Path], object]) -> Path:
    path = data.tmp / "model.pt"
    content(path)
    return path


# --- each damage returns (command, arguments, fragments the error line must hold) ---------------------------


def manifest_case(data: Data, manifest: Path, *fragments) -> tuple:
    return "manifest", ["validate", "--manifest", str(manifest), "--dataset_dir", str(data.root)], (str(manifest), *fragments)


def empty_manifest(data):
    (path := data.tmp / "empty.csv").write_bytes(b"")
    return manifest_case(data, path, "file is empty")


def header_only(data):
    return manifest_case(data, data.manifest_with(lambda lines: lines[:1]), "no rows under the header")


def not_utf8(data):
    path = data.manifest_with(lambda lines: lines)
    path.write_bytes(path.read_bytes().replace(b"TCGA_DM_0001,", "TCGA_DM_0001é,".encode("latin-1"), 1))
    return manifest_case(data, path, "row 2", "not UTF-8")


def extra_comma(data):
    row, cells = data.row()
    return manifest_case(data, replace_row(data, row, ",".join(cells[:2] + ["x"] + cells[2:])), f"row {row}", "7 cells but the header has 6")


def missing_cell(data):
    row, cells = data.row()
    return manifest_case(data, replace_row(data, row, ",".join(cells[:-1])), f"row {row} column 'split'", "missing cell")


def duplicate_header(data):
    return manifest_case(data, data.manifest_with(lambda lines: [lines[0].replace("diagnosis", "subject")] + lines[1:]), "column 'subject' appears twice")


def semicolons(data):
    return manifest_case(data, data.manifest_with(lambda lines: [line.replace(",", ";") for line in lines]), "separated by ';'")


def absolute_path(data):
    path, row = set_cell(data, 2, str(data.file("image")))
    return manifest_case(data, path, f"row {row} column 'image'", "absolute path")


def outside_path(data):
    path, row = set_cell(data, 2, "../elsewhere/slice_1.tif")
    return manifest_case(data, path, f"row {row} column 'image'", "outside the dataset folder")


def unknown_split(data):
    path, row = set_cell(data, 5, "tarin")
    return manifest_case(data, path, f"row {row} column 'split'", "tarin")


def subject_in_two_splits(data):
    row, cells = data.row("val")
    cells[:2] = data.row("train")[1][0], "99"
    return manifest_case(data, replace_row(data, row, ",".join(cells)), "column 'split'", f"row {row}", "belongs to one split")


def duplicate_slice(data):
    row, cells = data.row()
    return manifest_case(data, data.manifest_with(lambda lines: lines + [",".join(cells[:2] + ["copy.tif", "copy_mask.tif"] + cells[4:])]), "slice", f"already in row {row}")


def missing_image(data):
    row, _ = data.row()
    (image := data.file("image")).unlink()
    return manifest_case(data, data.manifest, f"row {row} column 'image'", "file not found", image.name)


def damaged_tif(content: Callable[[Path], object]):
    def damage(data):
        row, _ = data.row()
        content(data.file("image"))
        return manifest_case(data, data.manifest, f"row {row} column 'image'", "cannot read image")

    return damage


def mask_of_another_size(data):
    row, _ = data.row()
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(data.file("label"))
    return manifest_case(data, data.manifest, f"row {row} column 'label'", "size 128x128")


def missing_dataset_dir(data):
    return "manifest", ["validate", "--manifest", str(data.manifest), "--dataset_dir", str(data.tmp / "nowhere")], (str(data.tmp / "nowhere"),)


def bundle_case(mode: str, *fragments, bundle: str = BUNDLE, **overrides) -> tuple:
    return mode, {"bundle": bundle, **overrides}, fragments


def train_unknown_split(data):
    manifest, row = set_cell(data, 5, "tarin")
    return bundle_case("train", str(manifest), f"row {row}", "column 'split'", "tarin", manifest=manifest)


def train_missing_dataset_dir(data):
    return bundle_case("train", "dataset_dir", "nowhere", "no such folder", dataset_dir=data.tmp / "nowhere")


def train_empty_split(data):
    manifest = data.manifest_with(lambda lines: [line for line in lines if not line.endswith(",val")])
    return bundle_case("train", "no rows with split 'val'", manifest=manifest)


def train_corrupted_image(data):
    row, _ = data.row()
    data.file("image").write_bytes(b"not a tif")
    return bundle_case("train", f"row {row} column 'image'", "cannot read image")


def train_grayscale_for_three_channels(data):
    row, _ = data.row()
    image = data.file("image")
    Image.open(image).convert("L").save(image)
    return bundle_case("train", str(image), "has 1 channel(s)", "channels [0, 1, 2]", f"row {row}", bundle="lgg_unet_small")


def train_float_image_with_nan(data):
    row, _ = data.row()
    image = data.file("image")
    Image.fromarray(np.full((256, 256), np.nan, np.float32)).save(image)
    return bundle_case("train", str(image), "pixel format F (32-bit float)", "8-bit", f"row {row}")


def train_mask_not_binary(data):
    label = data.file("label")
    Image.fromarray(np.full((256, 256), 128, np.uint8)).save(label)
    return bundle_case("train", str(label), "values [128]", "0 and 255")


def train_rgb_mask(data):
    label = data.file("label")
    Image.open(label).convert("RGB").save(label)
    return bundle_case("train", str(label), "3 channels", "single-channel")


def train_images_too_small(data):
    shutil.rmtree(data.root.parent)
    make_lgg_demo(data.root.parent, n_subjects=3, n_slices=4, size=64)
    return bundle_case("train", "64x64 is smaller than the 256x256 this bundle works at", bundle="lgg_unet_augment")


def train_patch_larger_than_image(data):
    return bundle_case("train", "--patch_size [384, 384]", "larger than --image_size [256, 256]", bundle="lgg_best", patch_size="[384,384]")


def output_dir_under_a_file(data):
    (blocker := data.tmp / "a_file").write_text("not a folder")
    return bundle_case("train", "output_dir", str(blocker / "eval"), "cannot write", output_dir=blocker / "eval", ckpt_dir=data.tmp / "models")


def resume_from_another_network(data):
    return bundle_case("train", "checkpoint_epoch=9.pt", "does not fit this bundle's network", resume=True)


def resume_with_no_more_epochs(data):
    (ckpt_dir := data.tmp / "models").mkdir()
    torch.save({"model": untrained_network(BUNDLE).state_dict()}, ckpt_dir / "checkpoint_epoch=3.pt")
    return bundle_case("train", "--resume True --epochs 2", "checkpoint_epoch=3.pt has already trained 3 epochs", "pass --epochs above 3",
                       resume=True, epochs=2, ckpt_dir=ckpt_dir)


def train_over_a_finished_run(data):
    return bundle_case("train", f"--ckpt_dir {data.outputs / 'models'}", "holds an earlier training (checkpoint_epoch=9.pt, model.pt)",
                       "pass --resume True to continue it, --overwrite True to start over")


def locked_folder(folder: Path, pid: int = 1, host: str = socket.gethostname()) -> Path:
    """``folder`` holding the lock of another run (PID 1 is always alive)."""
    folder.mkdir(parents=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host, "started": "2026-12-05T10:00:00+0000", "command": "monai.bundle run"}))
    return folder


def folder_of_a_live_run(mode: str, option: str):
    def damage(data):
        busy = locked_folder(data.tmp / "busy")
        settings = {"ckpt_dir": data.tmp / "models"} if mode == "train" else {}  # a new training: no earlier checkpoints there
        settings[option.removeprefix("--")] = busy
        return bundle_case(mode, f"{option} {busy}: another run is writing there (PID 1 on {socket.gethostname()}", f"choose another {option}", **settings)
    return damage


def output_folder_locked_on_another_host(data):
    busy = locked_folder(data.tmp / "busy", pid=4321, host="gpu-node-7")
    return bundle_case("evaluate", f"--output_dir {busy}: another run may be writing there (PID 4321 on gpu-node-7", f"delete {busy / LOCK_NAME}",
                       output_dir=busy)


def value_case(mode: str, reason: str, bundle: str = BUNDLE, **override):
    """A bundle run with one setting of the wrong type or range: the error line quotes the option, its value
    (as the config parser reads it) and ``reason``."""
    (key, value), = override.items()
    parsed = ast.literal_eval(value) if isinstance(value, str) else value
    return lambda data: bundle_case(mode, f"--{key} {parsed!r}", reason, bundle=bundle, **override)


VALUE_CASES = {
    "train: epochs a fraction (never rounded)": value_case("train", 'must be a whole number, not rounded', epochs=2.5),
    "train: zero epochs": value_case("train", 'must be at least 1', epochs=0),
    "train: zero batch size": value_case("train", 'must be at least 1', batch_size=0),
    "train: batch size written as a float": value_case("train", 'must be a whole number, not rounded', batch_size=2.0),
    "train: negative learning rate": value_case("train", 'must be a number in (0, 1]', learning_rate=-0.1),
    "train: learning rate not a number": value_case("train", 'must be a number in (0, 1]', learning_rate="'fast'"),
    "train: image size not divisible by the network's stride": value_case("train", "divisible by 16, the network's total stride", image_size="[250,250]"),
    "train: image size of one length": value_case("train", 'two whole numbers of pixels', image_size="[256]"),
    "train: roi size not divisible by the network's stride": value_case("train", 'divisible by 16', bundle="lgg_unet_augment", roi_size="[100,100]"),
    "train: patch size not divisible by the network's stride": value_case("train", 'divisible by 16', bundle="lgg_best", patch_size="[100,100]"),
    "train: negative neighbour slices": value_case("train", 'must be at least 0', bundle="lgg_best", neighbour_slices=-1),
    "train: neighbour slices a fraction": value_case("train", 'not rounded', bundle="lgg_best", neighbour_slices=1.5),
    "train: two folds": value_case("train", 'at least 3 (a test, a validation and a training fold)', folds=2),
    "train: fold outside the folds": value_case("train", 'must be in 0..4 with --folds 5', fold=7),
    "train: zero validation interval": value_case("train", 'must be at least 1', val_interval=0),
    "train: overwrite neither True nor False": value_case("train", 'must be True or False', overwrite="'yes'"),
    "train: OASIS epochs a fraction": value_case("train", 'not rounded', bundle="oasis_unet", epochs=1.5),
    "evaluate: negative batch size": value_case("evaluate", 'must be at least 1', batch_size=-1),
    "inference: image size of zero pixels": value_case("inference", 'each at least 1', image_size="[0,256]"),
    "volume inference: zero epochs in the recipe": value_case("volume_inference", 'must be at least 1', bundle="lgg_best", epochs=0),
}


def evaluate_without_checkpoint(data):
    return bundle_case("evaluate", "checkpoint", str(data.tmp / "empty" / "model.pt"), "no such file", ckpt_dir=data.tmp / "empty")


def evaluate_checkpoint(content: Callable[[Path], object], *fragments):
    def damage(data):
        path = save_checkpoint(data, content)
        return bundle_case("evaluate", f"checkpoint {path}", *fragments, ckpt_path=path)

    return damage


def diverged_weights(path: Path) -> None:
    """The bundle's network with a NaN and an infinity in its weights, as a diverged training saves them."""
    state = untrained_network(BUNDLE).state_dict()
    first, second = [key for key, value in state.items() if value.is_floating_point()][:2]
    state[first].view(-1)[0], state[second].view(-1)[0] = float("nan"), float("inf")
    torch.save(state, path)


def infer_with_diverged_weights(data):
    path = save_checkpoint(data, diverged_weights)
    return bundle_case("inference", f"checkpoint {path}", "2 weight tensors hold NaN or infinite values", ckpt_path=path)


def export_diverged_weights(data):
    path = save_checkpoint(data, diverged_weights)
    return "export", [str(REPO / "bundles" / BUNDLE), "--out", str(data.tmp / "out.zip"), "--ckpt_path", str(path), *fast_flags()], (f"checkpoint {path}", "NaN or infinite values")


def fast_flags() -> list[str]:
    return [item for key, value in fast(BUNDLE).items() for item in (f"--{key}", str(value))]


def evaluate_missing_image(data):
    row, _ = data.row("test")
    (image := data.file("image", "test")).unlink()
    return bundle_case("evaluate", f"row {row} column 'image'", image.name)


def infer_missing_input_dir(data):
    return bundle_case("inference", "input_dir", "nowhere", "no such folder", **{"infer#input_dir": data.tmp / "nowhere"})


def infer_folder_without_slices(data):
    (empty := data.tmp / "no_slices").mkdir()
    return bundle_case("inference", str(empty), "no '*.tif' slices found", **{"infer#input_dir": empty})


def export_not_a_bundle(data):
    return "export", [str(data.tmp), "--out", str(data.tmp / "out.zip")], (str(data.tmp), "not a bundle folder")


def export_checkpoint_of_another_network(data):
    path = save_checkpoint(data, lambda path: torch.save(torch.nn.Linear(2, 2).state_dict(), path))
    return "export", [str(REPO / "bundles" / BUNDLE), "--out", str(data.tmp / "out.zip"), "--ckpt_path", str(path)], (f"checkpoint {path}", "does not fit")


def report_truncated_summary(data):
    (eval_dir := data.tmp / "eval").mkdir()
    (eval_dir / "test_summary.json").write_text('{"classes": {"tumour": ')
    return "report", ["compare", str(eval_dir), "--out", str(data.tmp / "table.csv")], (str(eval_dir / "test_summary.json"), "unreadable JSON")


def out_below_a_file(command: list[str]):
    """``python -m pipelines <command> --out <a file>/x``, for a command that writes into a folder."""
    def damage(data):
        (blocker := data.tmp / "a_file").write_text("not a folder")
        eval_dir = ["--eval_dir", str(data.outputs / "eval")] if command[0] == "report" else []
        return command[0], [*command[1:], *eval_dir, "--out", str(blocker / "x")], (f"--out {blocker / 'x'}: {blocker} is a file; give a folder to write into",)
    return damage


def pickled_class(path: Path) -> None:
    torch.save({"model": Data(Path(), Path(), Path(), Path())}, path)


CASES = {
    "manifest: zero-byte file": empty_manifest,
    "manifest: header only": header_only,
    "manifest: not UTF-8": not_utf8,
    "manifest: a comma too many": extra_comma,
    "manifest: a cell missing": missing_cell,
    "manifest: duplicate header name": duplicate_header,
    "manifest: semicolon-separated": semicolons,
    "manifest: absolute path": absolute_path,
    "manifest: path outside the dataset": outside_path,
    "manifest: unknown split": unknown_split,
    "manifest: subject in two splits": subject_in_two_splits,
    "manifest: same slice twice": duplicate_slice,
    "manifest: missing image": missing_image,
    "manifest: zero-byte .tif": damaged_tif(lambda path: path.write_bytes(b"")),
    "manifest: truncated .tif": damaged_tif(lambda path: path.write_bytes(path.read_bytes()[:200])),
    "manifest: text file named .tif": damaged_tif(lambda path: path.write_text("not an image")),
    "manifest: mask of another size": mask_of_another_size,
    "manifest: missing dataset_dir": missing_dataset_dir,
    "train: missing dataset_dir": train_missing_dataset_dir,
    "train: unknown split": train_unknown_split,
    "train: empty split it needs": train_empty_split,
    "train: text file named .tif": train_corrupted_image,
    "train: grayscale image, 3-channel bundle": train_grayscale_for_three_channels,
    "train: float image with NaN": train_float_image_with_nan,
    "train: mask not binary": train_mask_not_binary,
    "train: RGB mask": train_rgb_mask,
    "train: images smaller than image_size": train_images_too_small,
    "train: patch larger than image_size": train_patch_larger_than_image,
    "train: output_dir not writable": output_dir_under_a_file,
    "train: resume from another network": resume_from_another_network,
    "train: resume with no more epochs than done": resume_with_no_more_epochs,
    **VALUE_CASES,
    "train: over a finished run without --resume or --overwrite": train_over_a_finished_run,
    "train: --resume and --overwrite together": lambda data: bundle_case("train", "--resume True --overwrite True: choose one", resume=True, overwrite=True),
    "train: checkpoint folder of a live run": folder_of_a_live_run("train", "--ckpt_dir"),
    "train: output folder of a live run": folder_of_a_live_run("train", "--output_dir"),
    "evaluate: output folder of a live run": folder_of_a_live_run("evaluate", "--output_dir"),
    "evaluate: output folder locked on another host": output_folder_locked_on_another_host,
    "inference: output folder of a live run": folder_of_a_live_run("inference", "--infer#output_dir"),
    "train: misspelt override": lambda data: bundle_case("train", "--batchsize: no such setting in this bundle's configs; did you mean --batch_size?", batchsize=4),
    "train: LGG option on the OASIS bundle": lambda data: bundle_case("train", "--fold: a setting of the LGG bundles", bundle="oasis_unet", fold=1),
    "inference: misspelt override": lambda data: bundle_case("inference", "--ckpt_pth: no such setting in this bundle's configs; did you mean --ckpt_path?", ckpt_pth=data.tmp / "model.pt"),
    "evaluate: no checkpoint": evaluate_without_checkpoint,
    "evaluate: checkpoint of another network": evaluate_checkpoint(lambda path: torch.save(torch.nn.Linear(2, 2).state_dict(), path), "does not fit this bundle's network"),
    "evaluate: checkpoint that runs code": evaluate_checkpoint(pickled_class, "refused, loading it would run code"),
    "evaluate: truncated checkpoint": evaluate_checkpoint(lambda path: path.write_bytes(b"PK\x03\x04 half a zip"), "damaged or not a PyTorch checkpoint"),
    "evaluate: weights with NaN and infinity": evaluate_checkpoint(diverged_weights, "2 weight tensors hold NaN or infinite values", "use an earlier checkpoint"),
    "inference: weights with NaN and infinity": infer_with_diverged_weights,
    "export: weights with NaN and infinity": export_diverged_weights,
    "evaluate: missing image": evaluate_missing_image,
    "inference: missing input_dir": infer_missing_input_dir,
    "inference: folder without slices": infer_folder_without_slices,
    "export: not a bundle folder": export_not_a_bundle,
    "export: --out is a folder": lambda data: ("export", [str(REPO / "bundles" / BUNDLE), "--out", str(data.outputs)], (str(data.outputs), "is a folder; give the path of the file")),
    "manifest build: --out is a folder": lambda data: ("manifest", ["build", "--dataset_dir", str(data.root), "--out", str(data.outputs)], (str(data.outputs), "is a folder")),
    "export: checkpoint of another network": export_checkpoint_of_another_network,
    "report: truncated summary JSON": report_truncated_summary,
    "report: --out below a file": out_below_a_file(["report", "run"]),
    "manifest demo-data: --out below a file": out_below_a_file(["manifest", "demo-data"]),
}


def bundle_settings(data: Data, bundle: str, arguments: dict) -> dict:
    """The bundle run of a case: its data, the run folder's outputs, a small network, then the case's overrides."""
    outputs = {"ckpt_dir": data.outputs / "models", "output_dir": data.outputs / "eval"}
    return {"dataset_dir": data.root, "manifest": data.manifest, "epochs": 1, **outputs, **fast(bundle), **arguments}


@pytest.mark.parametrize("damage", CASES.values(), ids=CASES.keys())
def test_bad_input_ends_in_one_line_and_keeps_earlier_outputs(data, damage, capsys):
    """Bundle workflows run through ``monai.bundle``'s ``__main__`` in this process (the next test runs two of
    them as the separate command a user types); the ``python -m pipelines`` commands through their ``main``."""
    data.tmp.mkdir()
    before = tree_digest(data.outputs)
    command, arguments, fragments = damage(data)
    if command in ("train", "evaluate", "inference", "volume_inference"):
        bundle = arguments.pop("bundle")
        message = bundle_error_in_process(bundle, command, **bundle_settings(data, bundle, arguments))
        assert_error_line(message, *fragments)
    else:
        assert main([command, *arguments]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert_error_line(err[0], *fragments)
    assert tree_digest(data.outputs) == before


@pytest.mark.parametrize("case", ["train: unknown split", "evaluate: checkpoint that runs code"])
def test_the_bundle_command_prints_only_the_error_line(data, case):
    """As a separate ``python -m monai.bundle run``: exit code non-zero, the last stderr line is the error, no traceback."""
    data.tmp.mkdir()
    command, arguments, fragments = CASES[case](data)
    bundle = arguments.pop("bundle")
    assert_one_line_error(run_bundle(bundle, command, fresh_interpreter=True, **bundle_settings(data, bundle, arguments)), *fragments)


@pytest.mark.parametrize("writer", ["tables", "masks"])
def test_a_full_disk_during_evaluation_is_one_line_and_leaves_no_partial_file(data, writer, monkeypatch):
    """ENOSPC while evaluation writes its tables (pandas) or its masks (PIL): one line naming the file, the earlier
    outputs unchanged, no temporary file left."""
    data.tmp.mkdir()
    before = tree_digest(data.outputs)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(*{"tables": (pd.DataFrame, "to_csv"), "masks": (Image.Image, "save")}[writer], full_disk)
    message = bundle_error_in_process(BUNDLE, "evaluate", **bundle_settings(data, BUNDLE, {}))
    assert_error_line(message, str(data.outputs / "eval"), "the disk is full", "not written, an earlier file of that name is unchanged")
    after = tree_digest(data.outputs)
    assert {name: after[name] for name in before} == before
    hidden = [name for name in after if Path(name).name.startswith(".")]
    assert hidden == ["eval/.run.lock"]  # no temporary file; the lock is this (still running) test process's


def test_the_python_api_sees_the_exception_and_the_top_level_prints_one_line(tmp_path, capsys):
    """MONAI wraps what a config expression raises in a ``RuntimeError``; a caller of the Python API gets it, and
    the hook that the bundle configs' ``$import pipelines.cli.errors`` installs prints only the InputError's line."""
    parser = ConfigParser({"imports": ["$import pipelines", "$import pipelines.cli.errors"], "items": f"$pipelines.data.oasis.load_folder({str(tmp_path / 'none')!r})"})
    with pytest.raises(RuntimeError) as caught:
        parser.get_parsed_content("items")
    assert sys.excepthook is excepthook
    excepthook(caught.type, caught.value, caught.tb)
    assert capsys.readouterr().err == f"error: input_dir {tmp_path / 'none'}: no such folder\n"


ACCEPTED = {
    "Windows line endings": lambda data: data.manifest_with(lambda lines: lines, newline="\r\n"),
    "UTF-8 with a byte-order mark (Excel)": lambda data: data.manifest_with(lambda lines: lines, encoding="utf-8-sig"),
    "spaces and non-ASCII letters in paths": lambda data: rename_subject_folder(data, "Patient Zoë 1"),
}


def rename_subject_folder(data: Data, name: str) -> Path:
    folder = data.file("image").parent
    folder.rename(folder.with_name(name))
    return data.manifest_with(lambda lines: [line.replace(f"{folder.name}/", f"{name}/") for line in lines])


@pytest.mark.parametrize("prepare", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_manifests_a_spreadsheet_may_write_are_accepted(data, prepare, capsys):
    data.tmp.mkdir()
    manifest = prepare(data)
    assert main(["manifest", "validate", "--manifest", str(manifest), "--dataset_dir", str(data.root)]) == 0, capsys.readouterr().err
    assert "OK" in capsys.readouterr().out
