"""Every bundle shares one machinery file and its family's file; each bundle's own files hold only its recipe
(which names the family) and its workflow choice."""

import json

import pytest
from bundle_utils import REPO

from pipelines.bundles import FAMILIES, bundle_family, config_files
from pipelines.errors import InputError

SHARED = REPO / "bundles"
COMMON = SHARED / "common.json"
ALL_BUNDLES = sorted(p for p in SHARED.iterdir() if p.is_dir())


def keys(path):
    return set(json.loads(path.read_text())) - {"_desc_"}


def top_level(path):
    """The top-level ids a file sets, a ``#`` key counted as its first part."""
    return {key.split("#")[0] for key in keys(path)}


@pytest.mark.parametrize("bundle", ALL_BUNDLES, ids=lambda p: p.name)
def test_recipe_and_shared_files_do_not_overlap(bundle):
    # the recipe is merged first, so a key defined in it and in a shared file would be silently replaced
    family = SHARED / f"{bundle_family(bundle)}.json"
    assert keys(bundle / "configs" / "train.json") & (top_level(COMMON) | top_level(family)) == set()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_file_adds_to_the_common_sections_and_replaces_none(family):
    """A family's ``#`` keys land inside the common sections (merged after them); its plain keys are its own."""
    common = json.loads(COMMON.read_text())
    for key in keys(SHARED / f"{family}.json"):
        section, _, rest = key.partition("#")
        if rest:
            assert section in common and rest.split("#")[0] not in common[section], key
        else:
            assert key not in common, key


@pytest.mark.parametrize("workflow", ["evaluate.json", "inference.json"])
def test_the_shared_workflow_files_add_the_workflow_and_replace_only_its_steps(workflow):
    """They define MONAI's workflow properties (dataset, evaluator, ...) at the top level and replace nothing the recipes,
    common.json or a family file define but the ``initialize``/``run`` steps."""
    others = set().union(*(top_level(path) for path in [COMMON, *(SHARED / f"{family}.json" for family in FAMILIES),
                                                          *(bundle / "configs" / "train.json" for bundle in ALL_BUNDLES)]))
    assert keys(SHARED / workflow) & others == {"initialize", "run"}
    assert {"dataset", "evaluator", "inferer", "preprocessing", "postprocessing", "handlers"} <= keys(SHARED / workflow)


@pytest.mark.parametrize("bundle", ALL_BUNDLES, ids=lambda p: p.name)
def test_workflow_files_only_pick_the_workflow(bundle):
    for mode in ("multi_gpu_train", "multi_gpu_evaluate"):
        assert keys(bundle / "configs" / f"{mode}.json") == {"initialize", "run", "finalize"}


@pytest.mark.parametrize("bundle", ALL_BUNDLES, ids=lambda p: p.name)
def test_config_files_in_merge_order(bundle):
    family = SHARED / f"{bundle_family(bundle)}.json"
    assert config_files(bundle, "train") == [bundle / "configs" / "train.json", COMMON, family]
    assert config_files(bundle, "evaluate") == [bundle / "configs" / "train.json", COMMON, family, SHARED / "evaluate.json"]
    assert config_files(bundle, "inference") == [bundle / "configs" / "train.json", COMMON, family, SHARED / "inference.json"]
    assert config_files(bundle, "multi_gpu_evaluate")[3:] == [SHARED / "multi_gpu.json", SHARED / "evaluate.json", bundle / "configs" / "multi_gpu_evaluate.json"]
    with pytest.raises(ValueError, match="unknown mode"):
        config_files(bundle, "predict")


def test_the_recipe_names_its_family(tmp_path):
    assert {bundle.name: bundle_family(bundle) for bundle in ALL_BUNDLES} == {
        "lgg_best": "lgg", "lgg_unet_augment": "lgg", "lgg_unet_bce": "lgg", "lgg_unet_dicece_rgb": "lgg", "lgg_unet_small": "lgg", "oasis_unet": "oasis"}
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "train.json").write_text('{"family": "brats"}')
    with pytest.raises(InputError, match=r"train.json: \"family\" is 'brats'; expected one of lgg, oasis"):
        bundle_family(tmp_path)
