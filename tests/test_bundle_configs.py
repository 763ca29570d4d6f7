"""The LGG bundles share one machinery file; each bundle's own files hold only its recipe and workflow choice."""

import json

import pytest
from bundle_utils import REPO

from pipelines.bundles import config_files

COMMON = REPO / "bundles" / "lgg_common.json"
LGG_BUNDLES = sorted(p for p in (REPO / "bundles").glob("lgg_*") if p.is_dir())


def keys(path):
    return set(json.loads(path.read_text())) - {"_desc_"}


@pytest.mark.parametrize("bundle", LGG_BUNDLES, ids=lambda p: p.name)
def test_recipe_and_common_machinery_do_not_overlap(bundle):
    # the recipe is merged first, so a key defined in both would be silently replaced by the common one
    assert keys(bundle / "configs" / "train.json") & keys(COMMON) == set()


ALL_BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if p.is_dir())


@pytest.mark.parametrize("bundle", ALL_BUNDLES, ids=lambda p: p.name)
def test_workflow_files_only_pick_the_workflow(bundle):
    for mode in ("evaluate", "inference"):
        assert keys(bundle / "configs" / f"{mode}.json") == {"initialize", "run"}
    for mode in ("multi_gpu_train", "multi_gpu_evaluate"):
        assert keys(bundle / "configs" / f"{mode}.json") == {"initialize", "run", "finalize"}


@pytest.mark.parametrize("bundle", LGG_BUNDLES, ids=lambda p: p.name)
def test_config_files_in_merge_order(bundle):
    assert config_files(bundle, "train") == [bundle / "configs" / "train.json", COMMON]
    assert config_files(bundle, "evaluate")[-1] == bundle / "configs" / "evaluate.json"
    assert config_files(bundle, "multi_gpu_evaluate")[2:] == [REPO / "bundles" / "multi_gpu.json", bundle / "configs" / "multi_gpu_evaluate.json"]
    with pytest.raises(ValueError, match="unknown mode"):
        config_files(bundle, "predict")
