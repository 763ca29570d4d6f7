"""lgg_best's released weights (bundles/lgg_best/released/model.pt): the committed file matches its checksum in
the bundle's large_files.yml (MONAI's own check), metadata.json carries their measured test figures, and
inference on the demo data runs with them at the recipe's full size."""

import hashlib
import json
import shutil

import pytest
import yaml
from bundle_utils import REPO, run_bundle
from monai.apps.utils import HashCheckError
from monai.bundle import download_large_files

BUNDLE = REPO / "bundles" / "lgg_best"
LARGE_FILES = yaml.safe_load((BUNDLE / "large_files.yml").read_text())["large_files"]


def test_every_large_file_matches_its_sha256():
    assert [entry["path"] for entry in LARGE_FILES] == ["released/model.pt"]
    for entry in LARGE_FILES:
        assert entry["hash_type"] == "sha256"
        assert hashlib.sha256((BUNDLE / entry["path"]).read_bytes()).hexdigest() == entry["hash_val"]
    # MONAI's check: present and matching, nothing downloaded (without large_file_name: MONAI 1.6.1 fails with one)
    download_large_files(bundle_path=str(BUNDLE))


def test_monai_refuses_a_changed_weight_file(tmp_path):
    copy = tmp_path / "lgg_best"
    shutil.copytree(BUNDLE, copy, ignore=shutil.ignore_patterns("models", "eval"))
    with open(copy / "released" / "model.pt", "ab") as weights:
        weights.write(b"\0")
    with pytest.raises(HashCheckError):
        download_large_files(bundle_path=str(copy))


def test_metadata_holds_the_measured_test_figures():
    metrics = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["eval_metrics"]
    assert metrics["test_n_subjects"] == 17 and metrics["test_n_slices"] == 674
    for name in ("test_dice_tumour_per_subject_3d", "test_dice_tumour_per_subject_3d_postprocessed", "test_mean_dice_per_slice"):
        assert 0.5 < metrics[name] < 1.0, name  # measured figures, not a placeholder


def test_inference_on_the_demo_data_runs_with_the_released_weights(tmp_path, lgg_demo_root, lgg_demo_manifest):
    result = run_bundle("lgg_best", "inference", dataset_dir=lgg_demo_root, manifest=lgg_demo_manifest, ckpt_path=BUNDLE / "released" / "model.pt",
                        output_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    masks = sorted((tmp_path / "predictions").rglob("*.png"))
    assert len(masks) == 12  # the demo's test patient: 12 slices
