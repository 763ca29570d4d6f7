"""Slow (``pytest -m slow``, the second stage of ``.ci/run``): an exported bundle runs in a brand-new virtual environment
that holds exactly the packages its ``configs/metadata.json`` declares (``monai_version``, ``pytorch_version``,
``numpy_version``, ``required_packages_version``) and nothing of the project, and writes the project's masks, from
slices and, through volume inference with ITK, from the image volumes stacked from them."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from bundle_utils import cases_from_image_volumes
from test_export import masks, trained_and_exported

pytestmark = pytest.mark.slow
INSTALL_TIMEOUT_S = 1200


def declared_requirements(meta: dict) -> list[str]:
    """``name==version`` of every package the metadata declares."""
    pinned = {"monai": meta["monai_version"], "torch": meta["pytorch_version"], "numpy": meta["numpy_version"], **meta["required_packages_version"]}
    return [f"{name}=={version}" for name, version in pinned.items()]


def test_the_export_runs_with_exactly_the_declared_packages(tmp_path_factory, lgg_demo_root, lgg_demo_manifest):
    exported = trained_and_exported(tmp_path_factory, "lgg_best", lgg_demo_root, lgg_demo_manifest, {"neighbour_slices": 1})
    meta = json.loads((exported.bundle / "configs" / "metadata.json").read_text())
    venv = exported.run / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "-q", *declared_requirements(meta)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    assert subprocess.run([python, "-c", "import pipelines"], cwd=exported.run, env=env, capture_output=True, timeout=120).returncode != 0  # no project here
    out = exported.run / "in_venv"
    for workflow, data_option in (("evaluate", "--dataset_dir"), ("inference", "--infer#input_dir")):
        result = subprocess.run([python, "-m", "monai.bundle", "run", "--config_file", f"configs/{workflow}.json", data_option, str(lgg_demo_root),
                                 "--output_dir", str(out)], cwd=exported.bundle, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (workflow, result.stderr[-3000:])
    ours, theirs = masks(out / "masks"), masks(exported.run / "eval" / "masks")
    assert theirs and ours.keys() == theirs.keys() and all(np.array_equal(ours[path], theirs[path]) for path in theirs)  # the same batches: identical
    assert (out / "test_per_subject.csv").read_text() == (exported.run / "eval" / "test_per_subject.csv").read_text()
    assert len(masks(out / "predictions" / "masks")) == len([path for path in lgg_demo_root.rglob("*.tif") if not path.stem.endswith("_mask")])
    cases = cases_from_image_volumes(out / "predictions", exported.run / "cases")  # volume inference reads them with itk-io
    result = subprocess.run([python, "-m", "monai.bundle", "run", "--config_file", "configs/volume_inference.json", "--volumes#input_dir", str(cases),
                             "--volumes#intensity", "unchanged", "--output_dir", str(out)], cwd=exported.bundle, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for case in cases.iterdir():
        assert np.array_equal(nib.load(out / "volumes" / f"{case.name}.nii.gz").get_fdata(), nib.load(out / "predictions" / "volumes" / f"{case.name}.nii.gz").get_fdata())
