"""The README's main command, ``python -m pipelines demo``, end to end (one epoch) and its input errors."""

import json
import subprocess
import sys

from bundle_utils import REPO, assert_one_line_error


def demo(tmp_path, *arguments):
    command = [sys.executable, "-m", "pipelines", "demo", "--out", str(tmp_path / "runs"), "--data_dir", str(tmp_path / "data"), *arguments]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def test_demo_trains_evaluates_predicts_and_reports(tmp_path):
    result = demo(tmp_path, "--epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "lgg_unet_bce"
    for step in ("=== train: python -m monai.bundle run", "=== evaluate:", "=== inference:", "--image_size '[128, 128]'"):
        assert step in result.stdout
    assert "test Dice per slice" in result.stdout and str(run / "eval" / "report" / "report.md") in result.stdout
    assert (run / "models" / "model.pt").is_file() and (run / "eval" / "report" / "overlays.png").is_file()
    summary = json.loads((run / "eval" / "test_summary.json").read_text())
    assert summary["manifest"] == "data_manifests/lgg_demo.csv" and summary["n_slices"] == 12
    assert sorted(p.name for p in (run / "eval" / "predictions" / "volumes").iterdir()) == ["TCGA_DM_0002.nii.gz"]


def test_demo_of_an_unknown_bundle_is_one_line(tmp_path):
    result = demo(tmp_path, "--bundle", "no_such_bundle")
    assert_one_line_error(result, "bundles/no_such_bundle")
    assert not (tmp_path / "data").exists()
