"""Export (issue 7): a bundle zip that runs with MONAI and PyTorch alone, pixel-equal to the project, and its import.

Two LGG bundles (lgg_unet_small, and lgg_best for 2.5D input) and the OASIS bundle are trained for one epoch on the demo data at small
settings, evaluated with the project (whose masks are the reference), exported, and unzipped. The standalone
inference runs in a subprocess that cannot import ``pipelines``, ``transforms`` or ``networks``.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from bundle_utils import REPO, assert_one_line_error, fast, run_bundle
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out
from PIL import Image

from pipelines.cli import main
from pipelines.errors import InputError
from pipelines.export.bundle import PORTABLE, _export, summary_metrics

SCHEMA = REPO / "pipelines" / "export" / "resources" / "meta_schema_20240725.json"
SCHEMA_MD5 = "a9865bb93fde816eeb34b5690b1898e4"
PROJECT_PACKAGES = ("pipelines", "transforms", "networks")
# a meta-path finder first in line: importing project code raises, wherever it is installed
NO_PROJECT_CODE = f"""
import sys
class NoProjectCode:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in {PROJECT_PACKAGES!r}:
            raise ImportError(name + ' is project code, which an exported bundle must not need')
sys.meta_path.insert(0, NoProjectCode())
"""
MONAI_BUNDLE_CLI = NO_PROJECT_CODE + "import runpy; sys.argv[0] = 'monai.bundle'; runpy.run_module('monai.bundle', run_name='__main__')"


def without_project(*args: str, cwd) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` in ``cwd`` with project code unimportable and no PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    command = [sys.executable, "-c", MONAI_BUNDLE_CLI, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def as_flags(overrides: dict) -> list[str]:
    return [item for key, value in overrides.items() for item in (f"--{key}", str(value))]


def trained_and_exported(tmp_path_factory, bundle: str, dataset_dir, manifest, train_overrides: dict) -> SimpleNamespace:
    """Train ``bundle`` for one epoch, evaluate it on the test split, export it and unzip the export."""
    run = tmp_path_factory.mktemp(f"{bundle}_export")
    overrides = {**fast(bundle), **train_overrides}
    common = {"dataset_dir": dataset_dir, "manifest": manifest, "ckpt_dir": run / "models", **overrides}
    for mode, output_dir in (("train", run / "train"), ("evaluate", run / "eval")):
        result = run_bundle(bundle, mode, epochs=1, output_dir=output_dir, **common)
        assert result.returncode == 0, result.stderr[-3000:]
    archive = run / f"{bundle}.zip"
    exported = main(["export", str(REPO / "bundles" / bundle), "--out", str(archive), "--ckpt_path", str(run / "models" / "model.pt"),
                     "--eval_dir", str(run / "eval"), *as_flags(overrides)])
    assert exported == 0
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(run / "unzipped")
    return SimpleNamespace(run=run, archive=archive, bundle=run / "unzipped" / bundle, common=common, overrides=overrides)


@pytest.fixture(scope="module")
def lgg(tmp_path_factory, lgg_demo_root, lgg_demo_manifest):
    return trained_and_exported(tmp_path_factory, "lgg_unet_small", lgg_demo_root, lgg_demo_manifest, {})


@pytest.fixture(scope="module")
def lgg_2_5d(tmp_path_factory, lgg_demo_root, lgg_demo_manifest):
    """lgg_best in 2.5D (``neighbour_slices`` 1: each slice with a neighbour on each side, 9 channels)."""
    return trained_and_exported(tmp_path_factory, "lgg_best", lgg_demo_root, lgg_demo_manifest, {"neighbour_slices": 1})


@pytest.fixture(scope="module")
def oasis(tmp_path_factory, oasis_demo_root, oasis_demo_manifest):
    enough_to_predict_two_classes = {"batch_size": 2, "learning_rate": 0.01}  # 12 steps in the epoch
    return trained_and_exported(tmp_path_factory, "oasis_unet", oasis_demo_root, oasis_demo_manifest, enough_to_predict_two_classes)


def masks(folder) -> dict[str, np.ndarray]:
    return {path.relative_to(folder).as_posix(): np.asarray(Image.open(path)) for path in sorted(folder.rglob("*_pred.png"))}


def test_zip_holds_a_complete_bundle(lgg):
    names = set(zipfile.ZipFile(lgg.archive).namelist())
    expected = ["configs/metadata.json", "configs/inference.json", "configs/logging.conf", "configs/train.json", "configs/evaluate.json",
                "configs/common.json", "configs/lgg.json", "models/model.pt", "models/model.pt2", "docs/README.md", "LICENSE",
                *(f"scripts/{module}.py" for module in ("__init__", "channels", "checksum", "datalist", "errors", "masks"))]
    assert names == {f"lgg_unet_small/{name}" for name in expected}
    for module in (lgg.bundle / "scripts").glob("[!_]*.py"):  # the project's own code, not a copy that could drift
        assert module.read_bytes() == (PORTABLE / module.name).read_bytes()
    inference = (lgg.bundle / "configs" / "inference.json").read_text()
    assert not re.search(r"(?<![\w.])(pipelines|transforms|networks)\.", inference)  # names no project code
    assert json.loads((lgg.bundle / "configs" / "train.json").read_text())["network_def"]["features"] == 4  # the overrides it was trained with


def test_metadata_records_checksums_versions_and_the_evaluation(lgg):
    meta = json.loads((lgg.bundle / "configs" / "metadata.json").read_text())
    for path, sha in meta["model_sha256"].items():
        assert hashlib.sha256((lgg.bundle / path).read_bytes()).hexdigest() == sha
    assert meta["pytorch_version"] == torch.__version__.split("+")[0]
    summary = json.loads((lgg.run / "eval" / "test_summary.json").read_text())
    assert meta["eval_metrics"]["test_mean_dice_per_slice"] == summary["mean_over_classes"]["per_slice"]["dice"]
    assert meta["eval_metrics"]["test_dice_tumour_per_subject_3d"] == summary["classes"]["tumour"]["per_subject_3d"]["dice"]
    assert meta["eval_metrics"]["test_n_slices"] == summary["n_slices"]
    state = torch.load(lgg.bundle / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(state[key], value) for key, value in torch.load(lgg.run / "models" / "model.pt", weights_only=True).items())


def test_the_guard_blocks_project_code():
    result = subprocess.run([sys.executable, "-c", NO_PROJECT_CODE + "import networks"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "networks is project code" in result.stderr


@pytest.mark.parametrize("name", ["lgg", "lgg_2_5d", "oasis"])
def test_standalone_inference_writes_the_project_masks(name, request):
    """The masks the project's evaluation wrote for the test split (PredictionWriter after the preprocessing,
    inferer and postprocessing that the project's inference shares) are written again by the standalone run.

    Same weights, same transforms and the same float32 ATen ops on the CPU: pixel-equal here. A handful of
    pixels may differ elsewhere, because the standalone run batches all slices (not only the test split), and
    a kernel may sum in another order for another batch, flipping a pixel whose probability is 0.5 to the last bit.
    """
    exported = request.getfixturevalue(name)
    out = exported.run / "standalone"
    result = without_project("run", "--config_file", "configs/inference.json", "--dataset_dir", str(exported.common["dataset_dir"]),
                             "--output_dir", str(out), cwd=exported.bundle)
    assert result.returncode == 0, result.stderr[-3000:]
    project = {path.rpartition("/")[2]: mask for path, mask in masks(exported.run / "eval" / "masks").items()}  # <subject>/<name>
    standalone = {path.rpartition("/")[2]: mask for path, mask in masks(out / "masks").items()}  # <input sub-folder>/<name>
    assert project and all(standalone[file].shape == mask.shape for file, mask in project.items())
    assert sum(int((standalone[file] != mask).sum()) for file, mask in project.items()) <= 5
    assert len(np.unique(np.concatenate([mask.ravel() for mask in project.values()]))) > 1  # not two blank predictions
    if name.startswith("lgg"):  # every slice predicted, in its patient folder
        slices = [path for path in exported.common["dataset_dir"].rglob("*.tif") if not path.stem.endswith("_mask")]
        assert set(masks(out / "masks")) == {f"{path.parent.name}/{path.stem}_pred.png" for path in slices}


def test_standalone_inference_applies_the_recipe_3d_postprocessing(lgg, lgg_2_5d, tmp_path, import_scripts_from):
    """lgg_best's ``postprocess_3d`` (largest 3D component per patient folder) runs after the standalone prediction,
    as in the project's PredictionWriter: here on hand-made masks with two components, written where the
    standalone run writes them; lgg_unet_small has none, so its step leaves masks alone."""
    blob_and_speck = {1: (slice(1, 3), slice(1, 3)), 2: (slice(1, 3), slice(1, 3)), 3: (slice(6, 7), slice(6, 7))}  # rows, columns
    for exported, speck_left in ((lgg_2_5d, 0), (lgg, 255)):
        dataset, output = tmp_path / exported.bundle.name / "slices", tmp_path / exported.bundle.name / "out"
        for number, (rows, columns) in blob_and_speck.items():
            for folder in (dataset / "P1", output / "masks" / "P1"):
                folder.mkdir(parents=True, exist_ok=True)
            (dataset / "P1" / f"P1_{number}.tif").touch()  # found by the glob; never read here
            mask = np.zeros((8, 8), np.uint8)
            mask[rows, columns] = 255
            Image.fromarray(mask).save(output / "masks" / "P1" / f"P1_{number}_pred.png")
        import_scripts_from(exported.bundle)
        parser = ConfigParser()
        parser.read_config(exported.bundle / "configs" / "inference.json")
        parser.update({"bundle_root": str(exported.bundle), "dataset_dir": str(dataset), "output_dir": str(output)})
        parser.get_parsed_content("run#1")
        written = masks(output / "masks")
        assert written["P1/P1_3_pred.png"].sum() == speck_left
        assert written["P1/P1_1_pred.png"].sum() == written["P1/P1_2_pred.png"].sum() == 4 * 255  # the blob stays, in place
        assert written["P1/P1_1_pred.png"][1:3, 1:3].all()


@pytest.mark.parametrize("name", ["lgg", "lgg_2_5d"])
def test_verify_metadata_and_net_in_out_pass_on_the_unzipped_bundle(name, request, import_scripts_from):
    """Also when an override changed the input channels: lgg_best's metadata says 3, its 2.5D export 9. In this
    process, as ``python -m monai.bundle verify_net_in_out`` run in the bundle folder: its scripts/ importable."""
    exported = request.getfixturevalue(name)
    import_scripts_from(exported.bundle)
    configs = exported.bundle / "configs"
    verify_metadata(meta_file=str(configs / "metadata.json"), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)
    verify_net_in_out(net_id="network_def", meta_file=str(configs / "metadata.json"), config_file=str(configs / "inference.json"),
                      bundle_root=str(exported.bundle))
    image = json.loads((configs / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    if name == "lgg_2_5d":
        assert image["num_channels"] == 9 and image["channel_def"]["4"] == "FLAIR, previous slice"


def test_tampered_program_stops_inference_before_loading(lgg, tmp_path):
    bundle = shutil.copytree(lgg.bundle, tmp_path / "bundle")
    program = bundle / "models" / "model.pt2"
    data = bytearray(program.read_bytes())
    data[len(data) // 2] ^= 1  # truncation is the same check (see test_import_refuses_a_damaged_archive for a truncated zip)
    program.write_bytes(bytes(data))
    result = without_project("run", "--config_file", "configs/inference.json", "--dataset_dir", str(lgg.common["dataset_dir"]), cwd=bundle)
    assert_one_line_error(result, "models/model.pt2", "SHA-256 is not the one recorded at export")
    assert not (bundle / "eval").exists()


@pytest.mark.parametrize("case", ["model file missing", "dataset_dir missing", "no slices"])
def test_bad_input_to_the_standalone_inference_is_one_line(lgg, tmp_path, case):
    """The checks of scripts/ raise an InputError; the hook that importing scripts installs prints its one line."""
    bundle = shutil.copytree(lgg.bundle, tmp_path / "bundle")
    dataset_dir, fragments = str(lgg.common["dataset_dir"]), {
        "model file missing": ("models/model.pt2", "no such file (run from the bundle folder or pass --bundle_root DIR)"),
        "dataset_dir missing": (f"dataset_dir {tmp_path / 'nowhere'}: no such folder",),
        "no slices": (f"dataset_dir {tmp_path / 'empty'}: no '*.tif' slices found (names ending in '_mask.tif' are skipped)",),
    }[case]
    if case == "model file missing":
        (bundle / "models" / "model.pt2").unlink()
    elif case == "dataset_dir missing":
        dataset_dir = str(tmp_path / "nowhere")
    else:
        (tmp_path / "empty" / "P1").mkdir(parents=True)
        (tmp_path / "empty" / "P1" / "P1_1_mask.tif").touch()  # a mask is no slice
        dataset_dir = str(tmp_path / "empty")
    result = without_project("run", "--config_file", "configs/inference.json", "--dataset_dir", dataset_dir, cwd=bundle)
    assert_one_line_error(result, *fragments)
    assert not (bundle / "eval").exists()


def test_imported_bundle_evaluates_with_the_project_command(lgg, tmp_path, capsys):
    assert main(["export", "--import", str(lgg.archive), "--into", str(tmp_path / "bundles")]) == 0
    bundle = tmp_path / "bundles" / "lgg_unet_small"
    assert "--bundle_root" in capsys.readouterr().out
    files = ",".join(repr(str(bundle / "configs" / name)) for name in ("train.json", "common.json", "lgg.json", "evaluate.json"))
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", f"[{files}]", "--bundle_root", str(bundle),
               "--dataset_dir", str(lgg.common["dataset_dir"]), "--manifest", str(lgg.common["manifest"])]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    imported, original = (json.loads((folder / "test_summary.json").read_text()) for folder in (bundle / "eval", lgg.run / "eval"))
    assert imported["checkpoint"] == str(bundle / "models" / "model.pt")
    assert imported["classes"] == original["classes"]


def corrupt_member(archive, member, out):
    """Copy of ``archive`` with one byte of ``member`` changed (valid zip, valid CRC)."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = bytearray(source.read(info))
            if info.filename == member:
                data[len(data) // 2] ^= 1
            target.writestr(info, bytes(data))
    return out


@pytest.mark.parametrize("damage", ["weights changed", "archive truncated", "byte flipped in the archive"])
def test_import_refuses_a_damaged_archive(lgg, tmp_path, capsys, damage):
    archive = tmp_path / "received.zip"
    if damage == "weights changed":
        corrupt_member(lgg.archive, "lgg_unet_small/models/model.pt", archive)
        fragment = "SHA-256 is not the one recorded at export"
    else:
        data = bytearray(lgg.archive.read_bytes())
        if damage == "archive truncated":
            data = data[: len(data) - 1000]
        else:
            data[len(data) // 3] ^= 1
        archive.write_bytes(bytes(data))
        fragment = str(archive)
    assert main(["export", "--import", str(archive), "--into", str(tmp_path / "bundles")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0]
    assert not (tmp_path / "bundles" / "lgg_unet_small").exists()


def test_import_refuses_to_overwrite(lgg, tmp_path, capsys):
    (tmp_path / "lgg_unet_small").mkdir()
    assert main(["export", "--import", str(lgg.archive), "--into", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "truncated", "wrong architecture"])
def test_export_refuses_a_checkpoint_that_does_not_fit(lgg, tmp_path, capsys, case):
    ckpt = tmp_path / "model.pt"
    overrides = as_flags(lgg.overrides)
    if case == "truncated":
        ckpt.write_bytes((lgg.run / "models" / "model.pt").read_bytes()[:5000])
    elif case == "wrong architecture":
        shutil.copyfile(lgg.run / "models" / "model.pt", ckpt)
        overrides = ["--network_def#features", "8"]
    out = tmp_path / "out.zip"
    assert main(["export", str(REPO / "bundles" / "lgg_unet_small"), "--out", str(out), "--ckpt_path", str(ckpt), *overrides]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    expected = {"missing": "no such file", "truncated": "damaged or not a PyTorch checkpoint", "wrong architecture": "does not fit this bundle's network"}
    assert err[-1].startswith(f"error: checkpoint {ckpt}") and expected[case] in err[-1] and len(err) == 1
    assert not out.exists()


def test_export_refuses_normalisation_that_refers_to_other_ids(lgg, tmp_path, capsys):
    """The export copies ``intensity_normalisation`` as written; a reference to another id could not resolve there."""
    referring = "[{'_target_': 'NormalizeIntensityd', 'keys': 'image', 'subtrahend': '@learning_rate'}]"
    out = tmp_path / "out.zip"
    assert main(["export", str(REPO / "bundles" / "lgg_unet_small"), "--out", str(out), "--ckpt_path", str(lgg.run / "models" / "model.pt"),
                 "--eval_dir", str(lgg.run / "eval"), *as_flags(lgg.overrides), "--intensity_normalisation", referring]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: intensity_normalisation refers to other config ids") and "@learning_rate" in err[0]
    assert not out.exists()


def test_a_network_torch_export_cannot_capture_is_one_line():
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(InputError, match="torch.export cannot capture DataDependent") as err:
        _export(DataDependent(), torch.zeros(2, 1, 16, 16), ["16*n", "16*n"])
    assert "\n" not in str(err.value)


def test_summary_metrics_flatten_every_convention_and_the_postprocessed_block():
    scores = {"classes": {"tumour": {"per_slice": {"n": 4, "dice": 0.5}, "per_subject_3d": {"n": 2, "dice": 0.6, "dice_median": 0.65, "dice_min": 0.2}}},
              "mean_over_classes": {"per_slice": {"dice": 0.5, "jaccard": 0.4}, "per_subject_3d": {"dice": 0.6, "jaccard": 0.45}}}
    summary = {"split": "test", "n_subjects": 2, "n_slices": 4, **scores, "postprocessed": {"transforms": ["KeepLargestConnectedComponent"], **scores}}
    metrics = summary_metrics(summary)
    assert metrics["test_n_subjects"] == 2 and metrics["test_mean_jaccard_per_slice"] == 0.4
    for suffix in ("", "_postprocessed"):
        assert metrics[f"test_dice_tumour_per_subject_3d{suffix}"] == 0.6 and metrics[f"test_dice_tumour_per_subject_3d_median{suffix}"] == 0.65
        assert metrics[f"test_dice_tumour_per_subject_3d_min{suffix}"] == 0.2 and metrics[f"test_mean_dice_per_slice{suffix}"] == 0.5
    assert "test_dice_tumour_per_slice_median" not in metrics
