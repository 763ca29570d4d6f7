"""Export (issues 7 and 24): a trained bundle as a MONAI model-zoo bundle zip that runs on its own from its folder
(train, evaluate and inference configs, the project's code in scripts/), writes what the project writes, and its import.

Two LGG bundles (lgg_unet_small, and lgg_best for 2.5D input with 3D post-processing) and the OASIS bundle are trained
for one epoch on the demo data at small settings, evaluated with the project (whose masks are the reference), exported,
and unzipped. The exported workflows run in a subprocess that cannot import the project's own ``pipelines``,
``transforms`` or ``networks``: only the copies in the bundle's ``scripts/``. tests/test_export_venv.py (slow) runs them
in a new virtual environment holding exactly the packages the metadata declares.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from bundle_utils import REPO, assert_one_line_error, cases_from_image_volumes, fast, run_bundle
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out
from PIL import Image

import pipelines.export.bundle
from pipelines.cli import main
from pipelines.errors import InputError
from pipelines.export.bundle import REQUIRED_PACKAGES, _export, summary_metrics

SCHEMA_NAME = "meta_schema_20240725.json"
PROJECT_PACKAGES = ("pipelines", "transforms", "networks")
# a meta-path finder first in line: project code is importable only from an exported bundle's scripts/, never from the repository
NO_PROJECT_CODE = f"""
import importlib.machinery, sys
class NoProjectCode:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in {PROJECT_PACKAGES!r}:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or (spec.origin or '').startswith({str(REPO)!r}):  # not in the bundle's scripts/: no other finder may look
                raise ModuleNotFoundError(name + ' is project code, which an exported bundle must not need', name=name)
sys.meta_path.insert(0, NoProjectCode())
"""
MONAI_BUNDLE_CLI = NO_PROJECT_CODE + "import runpy; sys.argv[0] = 'monai.bundle'; runpy.run_module('monai.bundle', run_name='__main__')"


def without_project(*args: str, cwd) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` in ``cwd`` with the repository's project code unimportable and no PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    command = [sys.executable, "-c", MONAI_BUNDLE_CLI, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def as_flags(overrides: dict) -> list[str]:
    return [item for key, value in overrides.items() for item in (f"--{key}", str(value))]


def trained_and_exported(tmp_path_factory, bundle: str, dataset_dir, manifest, train_overrides: dict) -> SimpleNamespace:
    """Train ``bundle`` for one epoch, evaluate it on the test split, export it (with the manifest) and unzip the export."""
    run = tmp_path_factory.mktemp(f"{bundle}_export")
    overrides = {**fast(bundle), **train_overrides}
    common = {"dataset_dir": dataset_dir, "manifest": manifest, "ckpt_dir": run / "models", **overrides}
    for mode, output_dir in (("train", run / "train"), ("evaluate", run / "eval")):
        result = run_bundle(bundle, mode, epochs=1, output_dir=output_dir, **common)
        assert result.returncode == 0, result.stderr[-3000:]
    archive = run / f"{bundle}.zip"
    exported = main(["export", str(REPO / "bundles" / bundle), "--out", str(archive), "--ckpt_path", str(run / "models" / "model.pt"),
                     "--eval_dir", str(run / "eval"), *as_flags({"manifest": manifest, **overrides})])
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


def test_zip_holds_a_model_zoo_bundle(lgg):
    names = {name.partition("/")[2] for name in zipfile.ZipFile(lgg.archive).namelist()}
    expected = {"configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/inference.json", "configs/volume_inference.json", "configs/logging.conf",
                "configs/manifest.csv", "models/model.pt", "models/model.pt2", "large_files.yml", "docs/README.md", f"docs/{SCHEMA_NAME}", "LICENSE"}
    assert expected <= names and all(name.startswith("scripts/") for name in names - expected)
    for name in names - expected:  # the project's own modules, not copies that could drift
        assert name == "scripts/__init__.py" or (lgg.bundle / name).read_bytes() == (REPO / name.removeprefix("scripts/")).read_bytes(), name
    assert {"scripts/pipelines/engine/evaluation.py", "scripts/networks/unet.py", "scripts/transforms/cache.py"} <= names
    assert not {"scripts/pipelines/export/bundle.py", "scripts/pipelines/report.py", "scripts/pipelines/cli/demo.py"} & names
    for workflow in ("train", "evaluate", "inference", "volume_inference"):
        config = json.loads((lgg.bundle / "configs" / f"{workflow}.json").read_text())
        assert config["bundle_root"] == "." and config["imports"][0] == "$import scripts" and config["network_def"]["features"] == 4
    large_files = yaml.safe_load((lgg.bundle / "large_files.yml").read_text())["large_files"]
    assert {item["path"]: item["hash_val"] for item in large_files} == {
        path: hashlib.sha256((lgg.bundle / path).read_bytes()).hexdigest() for path in ("models/model.pt", "models/model.pt2")}


def test_metadata_declares_versions_packages_checksums_and_the_measured_evaluation(lgg):
    meta = json.loads((lgg.bundle / "configs" / "metadata.json").read_text())
    for path, sha in meta["model_sha256"].items():
        assert hashlib.sha256((lgg.bundle / path).read_bytes()).hexdigest() == sha
    assert meta["pytorch_version"] == torch.__version__.split("+")[0]
    assert set(meta["required_packages_version"]) == set(REQUIRED_PACKAGES) and "fire" in meta["required_packages_version"]  # no 3D post-processing: no scikit-image
    summary = json.loads((lgg.run / "eval" / "test_summary.json").read_text())
    assert meta["eval_metrics"]["test_mean_dice_per_slice"] == summary["mean_over_classes"]["per_slice"]["dice"]
    assert meta["eval_metrics"]["test_dice_tumour_per_subject_3d"] == summary["classes"]["tumour"]["per_subject_3d"]["dice"]
    assert meta["eval_metrics"]["test_n_slices"] == summary["n_slices"]
    readme = (lgg.bundle / "docs" / "README.md").read_text()
    assert f"| `test_mean_dice_per_subject_3d` | {summary['mean_over_classes']['per_subject_3d']['dice']:.4f} |" in readme
    assert "bundles/" not in readme.replace("bundle `", "") and "python -m pipelines report" not in readme
    state = torch.load(lgg.bundle / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(state[key], value) for key, value in torch.load(lgg.run / "models" / "model.pt", weights_only=True).items())


def test_weights_without_an_evaluation_export_no_metrics(lgg, tmp_path, capsys):
    out = tmp_path / "out.zip"
    assert main(["export", str(REPO / "bundles" / "lgg_unet_small"), "--out", str(out), "--ckpt_path", str(lgg.run / "models" / "model.pt"),
                 "--eval_dir", str(tmp_path), *as_flags(lgg.overrides)]) == 0
    with zipfile.ZipFile(out) as zipped:
        assert json.loads(zipped.read("lgg_unet_small/configs/metadata.json"))["eval_metrics"] == {}
        assert "were not evaluated before the export" in zipped.read("lgg_unet_small/docs/README.md").decode()
    assert "these weights were not evaluated" in capsys.readouterr().err


def test_the_guard_blocks_the_repositorys_project_code():
    result = subprocess.run([sys.executable, "-c", NO_PROJECT_CODE + "import networks"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "networks is project code" in result.stderr


@pytest.mark.parametrize("name", ["lgg", "lgg_2_5d", "oasis"])
def test_exported_workflows_write_what_the_project_writes(name, request):
    """From the bundle folder, with only its own scripts: inference on the data folder and evaluation of the manifest's test
    split. The evaluation's masks and Dice tables equal the project's (same weights, same code, same batches), and
    inference writes a mask for every slice (lgg_best: after its 3D post-processing), the volumes and the CSV."""
    exported = request.getfixturevalue(name)
    out = exported.run / "standalone"
    data = str(exported.common["dataset_dir"])
    evaluated = without_project("run", "--config_file", "configs/evaluate.json", "--dataset_dir", data, "--output_dir", str(out / "eval"), cwd=exported.bundle)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    ours, theirs = masks(out / "eval" / "masks"), masks(exported.run / "eval" / "masks")
    assert theirs and ours.keys() == theirs.keys() and all(np.array_equal(ours[path], theirs[path]) for path in theirs)
    for table in ("test_per_slice.csv", "test_per_subject.csv"):
        assert (out / "eval" / table).read_text() == (exported.run / "eval" / table).read_text()
    ours, theirs = (json.loads((folder / "test_summary.json").read_text()) for folder in (out / "eval", exported.run / "eval"))
    assert ours["classes"] == theirs["classes"]
    inferred = without_project("run", "--config_file", "configs/inference.json", "--infer#input_dir", data, "--output_dir", str(out), cwd=exported.bundle)
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    predictions = out / "predictions"
    slices = [path for path in exported.common["dataset_dir"].rglob("*.tif" if name.startswith("lgg") else "case_*.png") if not path.stem.endswith("_mask")]
    assert len(masks(predictions / "masks")) == len(slices) and (predictions / "predictions.csv").is_file() and any((predictions / "volumes").iterdir())
    test_masks = {path.rpartition("/")[2]: mask for path, mask in masks(exported.run / "eval" / "masks").items()}
    assert all(np.array_equal(mask, test_masks[path.rpartition("/")[2]]) for path, mask in masks(predictions / "masks").items() if path.rpartition("/")[2] in test_masks)
    # volume inference on the image volumes that inference wrote beside its masks gives the same masks
    cases = cases_from_image_volumes(predictions, exported.run / "cases")
    volumes = without_project("run", "--config_file", "configs/volume_inference.json", "--volumes#input_dir", str(cases), "--volumes#intensity", "unchanged",
                              "--output_dir", str(out), cwd=exported.bundle)
    assert volumes.returncode == 0, volumes.stderr[-3000:]
    for case in cases.iterdir():
        assert np.array_equal(nib.load(out / "volumes" / f"{case.name}.nii.gz").get_fdata(), nib.load(predictions / "volumes" / f"{case.name}.nii.gz").get_fdata())



def test_monai_bundle_api_runs_the_export_from_its_own_files(lgg):
    """ConfigWorkflow with the exported files only: every property found, for train, eval and infer (in a subprocess
    that cannot import the repository's code)."""
    check = NO_PROJECT_CODE + (
        "from monai.bundle import ConfigWorkflow\n"
        "for name, kind, ckpt_dir in (('train', 'train', 'finetune'), ('evaluate', 'eval', 'models'), ('inference', 'infer', 'models')):\n"
        f"    workflow = ConfigWorkflow(config_file=f'configs/{{name}}.json', meta_file='configs/metadata.json', workflow_type=kind, dataset_dir={str(lgg.common['dataset_dir'])!r}, ckpt_dir=ckpt_dir, output_dir='out')\n"
        "    workflow.initialize()\n"
        "    assert workflow.check_properties() == [], (name, workflow.check_properties())\n"
        "print('all properties')\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=lgg.bundle, capture_output=True, text=True, timeout=300,
                            env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"})
    assert result.returncode == 0 and "all properties" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("name", ["lgg", "lgg_2_5d"])
def test_verify_metadata_and_net_in_out_pass_offline_in_the_unzipped_bundle(name, request, import_scripts_from, monkeypatch):
    """Also when an override changed the input channels: lgg_best's metadata says 3, its 2.5D export 9. In this
    process, as ``python -m monai.bundle verify_*`` run in the bundle folder: its scripts/ importable, the schema the one it ships."""
    exported = request.getfixturevalue(name)
    import_scripts_from(exported.bundle)
    monkeypatch.chdir(exported.bundle)
    verify_metadata(meta_file="configs/metadata.json", filepath=f"docs/{SCHEMA_NAME}")
    verify_net_in_out(net_id="network_def", meta_file="configs/metadata.json", config_file="configs/inference.json", bundle_root=".")
    image = json.loads((exported.bundle / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    if name == "lgg_2_5d":
        assert image["num_channels"] == 9 and image["channel_def"]["4"] == "FLAIR, previous slice"
        assert "scikit-image" in json.loads((exported.bundle / "configs" / "metadata.json").read_text())["required_packages_version"]  # 3D components


def test_the_exported_program_gives_the_networks_logits(lgg):
    """models/model.pt2 (torch.export) is the network of models/model.pt, for use without its code."""
    program = torch.export.load(lgg.bundle / "models" / "model.pt2").module()
    config = json.loads((lgg.bundle / "configs" / "inference.json").read_text())
    del config["imports"]  # the project's own modules build the network here; the bundle's scripts stay out of this process
    network = ConfigParser(config).get_parsed_content("network_def")
    network.load_state_dict(torch.load(lgg.bundle / "models" / "model.pt", weights_only=True))
    image = torch.rand(3, 3, 128, 128)
    assert torch.allclose(program(image), network.eval()(image), atol=1e-5)


@pytest.mark.parametrize("case", ["model file missing", "input_dir missing", "no slices"])
def test_bad_input_to_the_exported_inference_is_one_line(lgg, tmp_path, case):
    """The bundle's scripts raise an InputError; the hook that importing scripts installs prints its one line."""
    bundle = shutil.copytree(lgg.bundle, tmp_path / "bundle")
    input_dir, fragments = str(lgg.common["dataset_dir"]), {
        "model file missing": ("checkpoint ./models/model.pt: no such file",),
        "input_dir missing": (f"input_dir {tmp_path / 'nowhere'}: no such folder",),
        "no slices": (f"input_dir {tmp_path / 'empty'}: no '*.tif' slices found (names ending in '_mask.tif' are skipped)",),
    }[case]
    if case == "model file missing":
        (bundle / "models" / "model.pt").unlink()
    elif case == "input_dir missing":
        input_dir = str(tmp_path / "nowhere")
    else:
        (tmp_path / "empty" / "P1").mkdir(parents=True)
        (tmp_path / "empty" / "P1" / "P1_1_mask.tif").touch()  # a mask is no slice
        input_dir = str(tmp_path / "empty")
    result = without_project("run", "--config_file", "configs/inference.json", "--infer#input_dir", input_dir, cwd=bundle)
    assert_one_line_error(result, *fragments)
    assert not (bundle / "eval").exists()


def test_imported_bundle_evaluates_from_its_folder(lgg, tmp_path, capsys):
    assert main(["export", "--import", str(lgg.archive), "--into", str(tmp_path / "bundles")]) == 0
    bundle = tmp_path / "bundles" / "lgg_unet_small"
    assert "configs/evaluate.json" in capsys.readouterr().out
    result = without_project("run", "--config_file", "configs/evaluate.json", "--dataset_dir", str(lgg.common["dataset_dir"]), cwd=bundle)
    assert result.returncode == 0, result.stderr[-3000:]
    imported, original = (json.loads((folder / "test_summary.json").read_text()) for folder in (bundle / "eval", lgg.run / "eval"))
    assert imported["checkpoint"] == "./models/model.pt"
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


@pytest.mark.parametrize("limit", ["size limit", "free disk"])
def test_import_checks_the_unpacked_size_before_extracting(lgg, tmp_path, capsys, monkeypatch, limit):
    """Sizes come from the zip's directory: an archive larger unpacked than the limit, or than the free space, is refused."""
    unpacked = sum(info.file_size for info in zipfile.ZipFile(lgg.archive).infolist())
    if limit == "size limit":
        monkeypatch.setattr(pipelines.export.bundle, "IMPORT_LIMIT_BYTES", unpacked - 1)
        fragment = "MB the most an exported bundle may hold"
    else:
        monkeypatch.setattr(pipelines.export.bundle.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
        fragment = f"MB free on the disk of {tmp_path / 'new' / 'bundles'}"
    assert main(["export", "--import", str(lgg.archive), "--into", str(tmp_path / "new" / "bundles")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {lgg.archive}: its files take ") and fragment in err[0] and "nothing extracted" in err[0]
    assert not (tmp_path / "new").exists()


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
