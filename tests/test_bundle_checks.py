"""Offline MONAI bundle checks for every bundle: metadata against the shipped schema, network in/out shapes.

``monai.bundle``'s own ``verify_metadata`` and ``verify_net_in_out``, the functions its command line calls, run
in this process: each raises on a failed check.
"""

import json

import pytest
from bundle_utils import REPO
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

from pipelines.bundles import config_files
from pipelines.export.bundle import required_packages

SCHEMA = REPO / "pipelines" / "export" / "resources" / "meta_schema_20240725.json"
SCHEMA_MD5 = "a9865bb93fde816eeb34b5690b1898e4"  # of ../shared/reference/meta_schema_20240725.json
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
# in the repository the evaluation and inference workflows are bundles/evaluate.json and bundles/inference.json, shared
LAYOUT = ["LICENSE", "docs/README.md", "configs/metadata.json", "configs/train.json", "configs/multi_gpu_train.json",
          "configs/multi_gpu_evaluate.json", "configs/logging.conf"]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_model_zoo_layout(bundle):
    assert [name for name in LAYOUT if not (bundle / name).is_file()] == []


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_verify_metadata_offline(bundle):
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["schema"].endswith(SCHEMA.name)
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_verify_net_in_out(bundle):
    configs = bundle / "configs"
    recipe = [str(path) for path in config_files(bundle, "train")]  # the recipe and the shared files it merges with
    verify_net_in_out(net_id="network_def", meta_file=str(configs / "metadata.json"), config_file=recipe)


def test_schema_is_the_published_one():
    assert SCHEMA.read_bytes()[:1] == b"{" and json.loads(SCHEMA.read_text())["$defs"]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_metadata_declares_the_packages_running_the_bundle_imports(bundle):
    """The names the export writes (fire included; scikit-image only with 3D post-processing), and no placeholder metrics
    (before, every bundle's eval_metrics held a val_mean_dice of 0.0)."""
    parser = ConfigParser(ConfigParser.load_config_files([str(path) for path in config_files(bundle, "train")]))
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert list(meta["required_packages_version"]) == list(required_packages(parser))
    assert meta["eval_metrics"] == {} or "test_n_subjects" in meta["eval_metrics"]  # none, or an evaluation's (lgg_best's released weights)
