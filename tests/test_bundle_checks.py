"""Offline MONAI bundle checks for every bundle: metadata against the shipped schema, network in/out shapes."""

import json
import subprocess
import sys

import pytest
from bundle_utils import REPO

SCHEMA = REPO / "pipelines" / "resources" / "meta_schema_20240725.json"
SCHEMA_MD5 = "a9865bb93fde816eeb34b5690b1898e4"  # of ../shared/reference/meta_schema_20240725.json
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
LAYOUT = ["LICENSE", "docs/README.md", "configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/inference.json",
          "configs/multi_gpu_train.json", "configs/multi_gpu_evaluate.json", "configs/logging.conf"]


def monai_bundle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_model_zoo_layout(bundle):
    assert [name for name in LAYOUT if not (bundle / name).is_file()] == []


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_verify_metadata_offline(bundle):
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["schema"].endswith(SCHEMA.name)
    result = monai_bundle("verify_metadata", "--meta_file", str(bundle / "configs" / "metadata.json"), "--filepath", str(SCHEMA), "--hash_val", SCHEMA_MD5)
    assert result.returncode == 0 and "metadata is verified with no error" in result.stdout + result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_verify_net_in_out(bundle):
    configs = bundle / "configs"
    result = monai_bundle("verify_net_in_out", "--net_id", "network_def", "--meta_file", str(configs / "metadata.json"), "--config_file", str(configs / "train.json"))
    assert result.returncode == 0 and "data shape of network is verified with no error" in result.stdout + result.stderr, result.stderr[-2000:]


def test_schema_is_the_published_one():
    assert SCHEMA.read_bytes()[:1] == b"{" and json.loads(SCHEMA.read_text())["$defs"]
