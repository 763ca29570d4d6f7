"""MONAI's own bundle API on every bundle: ``ConfigWorkflow`` / ``create_workflow`` with ``workflow_type`` train,
eval and infer (slices, and 3D volumes) initialise, report no missing or wrongly referenced property (``check_properties()``) and run, in
this process, with the bundle's config list from :func:`pipelines.bundles.config_files`; bad input is an
exception the caller can catch, carrying the one-line message."""

import json

import pytest
from monai.bundle import ConfigWorkflow, create_workflow

from bundle_utils import REPO, cases_from_image_volumes, fast
from pipelines.bundles import config_files
from pipelines.cli.errors import input_error_in

BUNDLES = sorted(path.parent.parent.name for path in (REPO / "bundles").glob("*/configs/train.json"))
WORKFLOWS = {"train": "train", "evaluate": "eval", "inference": "infer", "volume_inference": "infer"}


def _literal(value):
    """A command-line override as the value it means (``"[4,8]"`` -> ``[4, 8]``), as ``fire`` would parse it."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


def _workflow(bundle: str, mode: str, **overrides) -> ConfigWorkflow:
    bundle_dir = REPO / "bundles" / bundle
    return ConfigWorkflow(
        config_file=[str(path) for path in config_files(bundle_dir, mode)], workflow_type=WORKFLOWS[mode],
        meta_file=str(bundle_dir / "configs" / "metadata.json"), logging_file=str(bundle_dir / "configs" / "logging.conf"),
        bundle_root=str(bundle_dir), **overrides)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_workflow_initialises_has_its_properties_and_runs(bundle, tmp_path, lgg_demo_root, lgg_demo_manifest, oasis_demo_root, oasis_demo_manifest):
    oasis = bundle.startswith("oasis")
    data = {"dataset_dir": str(oasis_demo_root if oasis else lgg_demo_root), "manifest": str(oasis_demo_manifest if oasis else lgg_demo_manifest)}
    common = {**data, **{key: _literal(value) for key, value in fast(bundle).items()}, "ckpt_dir": str(tmp_path / "models")}
    outputs = {"train": {"epochs": 1, "output_dir": str(tmp_path / "train")}, "evaluate": {"output_dir": str(tmp_path / "eval")},
               "inference": {"infer#output_dir": str(tmp_path / "infer")},
               "volume_inference": {"volumes#input_dir": str(tmp_path / "cases"), "volumes#intensity": "unchanged", "volumes#output_dir": str(tmp_path / "volumes")}}
    for mode in WORKFLOWS:
        if mode == "volume_inference":  # the image volumes inference wrote beside its masks, as cases
            cases_from_image_volumes(tmp_path / "infer", tmp_path / "cases")
        workflow = _workflow(bundle, mode, **common, **outputs[mode])
        workflow.initialize()
        assert workflow.check_properties() == [], (bundle, mode)
        workflow.run()
        workflow.finalize()
    assert (tmp_path / "models" / "model.pt").is_file()
    assert json.loads((tmp_path / "eval" / "test_summary.json").read_text())["split"] == "test"
    assert (tmp_path / "infer" / "predictions.csv").is_file()
    assert (tmp_path / "volumes" / "volumes.csv").is_file()


def test_bad_input_through_the_python_api_is_an_exception_with_the_one_line_message(tmp_path):
    """``create_workflow`` initialises the workflow: a missing dataset folder raises (MONAI wraps the project's
    InputError in a RuntimeError), and the process goes on; nothing is written."""
    with pytest.raises(RuntimeError) as caught:
        create_workflow(config_file=[str(path) for path in config_files(REPO / "bundles" / "lgg_unet_small", "train")], workflow_type="train",
                        dataset_dir=str(tmp_path / "nowhere"), ckpt_dir=str(tmp_path / "models"), output_dir=str(tmp_path / "train"))
    assert str(input_error_in(caught.value)) == f"dataset_dir {tmp_path / 'nowhere'}: no such folder (pass --dataset_dir <root of the data>)"
    assert not (tmp_path / "models").exists() and not (tmp_path / "train").exists()
