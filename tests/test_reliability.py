"""Same seed, same run; a non-finite loss stops training and leaves the earlier checkpoints as they were."""

import json
import re

import pytest
import torch
from bundle_utils import fast, run_bundle, tree_digest

NAN_LOSS = "$lambda input, target: torch.nn.functional.binary_cross_entropy_with_logits(input, target) * float('nan')"


@pytest.fixture
def settings(tmp_path, lgg_demo_root, lgg_demo_manifest):
    return {"dataset_dir": lgg_demo_root, "manifest": lgg_demo_manifest, **fast("lgg_unet_augment"), "batch_size": 4}


def test_two_runs_with_the_same_seed_are_identical(tmp_path, settings):
    """lgg_unet_augment: random patches, flips, elastic deformation and the balanced sampler all follow ``seed``."""
    runs = []
    for name in ("first", "second"):
        result = run_bundle("lgg_unet_augment", "train", epochs=1, ckpt_dir=tmp_path / name / "models", output_dir=tmp_path / name / "train", **settings)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(tmp_path / name)
    weights = [torch.load(run / "models" / "model.pt", weights_only=True) for run in runs]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    best = [json.loads((run / "train" / "training_run.json").read_text())["best_metric"] for run in runs]
    assert best[0] == best[1]


@pytest.mark.parametrize("every_iteration", [True, False], ids=["per step (CPU)", "per epoch (CUDA setting)"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoints(tmp_path, settings, every_iteration):
    common = {**settings, "ckpt_dir": tmp_path / "models", "output_dir": tmp_path / "train"}
    assert run_bundle("lgg_unet_augment", "train", epochs=1, **common).returncode == 0
    before = tree_digest(tmp_path / "models")
    result = run_bundle("lgg_unet_augment", "train", epochs=2, loss=NAN_LOSS, loss_every_iteration=every_iteration, **common)
    assert result.returncode == 1
    # the user's line; MONAI's and ignite's exception logs quote it after "Exception: " / "exception: "
    errors = re.findall(r"(?<!xception: )error: .*", result.stderr.replace("\r", "\n"))
    where = "at epoch 1, iteration 1 of" if every_iteration else "mean training loss of epoch 1 is nan"
    assert len(errors) == 1 and where in errors[0] and "checkpoint_epoch=1.pt, model.pt" in errors[0], result.stderr[-3000:]
    assert tree_digest(tmp_path / "models") == before
