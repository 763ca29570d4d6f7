"""The README's commands: the main one, ``python -m pipelines demo``, end to end (one epoch) and its input errors, and
the bundle section's ``python -m monai.bundle run`` lines, from the repository root and from an exported bundle."""

import json
import shlex
import shutil
import subprocess
import sys

from bundle_utils import REPO, assert_one_line_error, cases_from_image_volumes, run_preloaded

from pipelines.cli import main


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
    assert sorted(p.name for p in (run / "eval" / "predictions" / "volumes").iterdir()) == ["TCGA_DM_0002.nii.gz", "TCGA_DM_0002_flair.nii.gz"]  # the mask and the FLAIR it was read from


def test_demo_of_an_unknown_bundle_is_one_line(tmp_path):
    result = demo(tmp_path, "--bundle", "no_such_bundle")
    assert_one_line_error(result, "bundles/no_such_bundle")
    assert not (tmp_path / "data").exists()


def readme_bundle_commands() -> list[str]:
    """The ``python -m monai.bundle run`` lines of the README's bundle section, as written."""
    section = (REPO / "README.md").read_text().split("## The bundles", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.strip().startswith("python -m monai.bundle run")]


def test_the_readme_bundle_commands_run_as_written(tmp_path, lgg_demo_root, lgg_demo_manifest, oasis_demo_root, oasis_demo_manifest):
    """From the repository root: each LGG workflow of a bundle and OASIS's; then from an exported bundle's folder. The
    placeholders become the demo data, and each command gets the demo manifest, one epoch, small networks and
    output folders in tmp_path."""
    commands = readme_bundle_commands()
    repository, exported = [c for c in commands if "bundles/" in c], [c for c in commands if "configs/" in c and "bundles/" not in c]
    assert len(repository) == 7 and len(exported) == 3
    cases = tmp_path / "cases"  # volume inference: the image volumes that the inference before it wrote, as cases
    places = {"<bundle>": "lgg_unet_small", "/path/to/kaggle_3m": str(lgg_demo_root), "/path/to/keras_png_slices_data": str(oasis_demo_root),
              "/path/to/slices": str(lgg_demo_root), "/path/to/cases": str(cases)}
    for command in repository:
        oasis = "oasis" in command
        if "/path/to/cases" in command:
            cases_from_image_volumes(tmp_path / "lgg" / "out" / "predictions", cases)
        extra = ["--manifest", str(oasis_demo_manifest if oasis else lgg_demo_manifest), "--epochs", "1", "--network_def#features", "4",
                 "--ckpt_dir", str(tmp_path / ("oasis" if oasis else "lgg") / "models"), "--output_dir", str(tmp_path / ("oasis" if oasis else "lgg") / "out")]
        for placeholder, value in places.items():
            command = command.replace(placeholder, value)
        result = run_preloaded([sys.executable, *shlex.split(command)[1:], *extra])
        assert result.returncode == 0, (command, result.stderr[-3000:])
    archive = tmp_path / "lgg_unet_small.zip"
    assert main(["export", "bundles/lgg_unet_small", "--out", str(archive), "--ckpt_path", str(tmp_path / "lgg" / "models" / "model.pt"),
                 "--eval_dir", str(tmp_path / "lgg" / "out"), "--manifest", str(lgg_demo_manifest), "--network_def#features", "4"]) == 0
    shutil.unpack_archive(archive, tmp_path / "unzipped")
    for command in exported:
        for placeholder, value in places.items():
            command = command.replace(placeholder, value)
        result = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=tmp_path / "unzipped" / "lgg_unet_small", capture_output=True, text=True)
        assert result.returncode == 0, (command, result.stderr[-3000:])
    assert (tmp_path / "unzipped" / "lgg_unet_small" / "out" / "predictions" / "predictions.csv").is_file()
    assert (tmp_path / "unzipped" / "lgg_unet_small" / "eval" / "test_summary.json").is_file()
    assert (tmp_path / "unzipped" / "lgg_unet_small" / "out" / "volumes" / "volumes.csv").is_file()
