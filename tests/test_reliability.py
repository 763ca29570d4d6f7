"""Same seed, same run; a killed training resumes to the same result; a non-finite loss stops training and
leaves the earlier checkpoints as they were."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import torch
from bundle_utils import REPO, assert_error_line, assert_one_line_error, bundle_error_in_process, fast, run_bundle, tree_digest

from pipelines.bundles import bundle_command

NAN_LOSS = "$lambda input, target: torch.nn.functional.binary_cross_entropy_with_logits(input, target) * float('nan')"


@pytest.fixture(scope="module")
def settings(lgg_demo_root, lgg_demo_manifest):
    """lgg_unet_augment at half size (128x128 slices, 64x64 patches and windows): every random part of a recipe, quickly."""
    return {"dataset_dir": lgg_demo_root, "manifest": lgg_demo_manifest, **fast("lgg_unet_augment"), "batch_size": 4,
            "image_size": "[128,128]", "roi_size": "[64,64]"}


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory, settings):
    """Run folder (``models/``, ``train/``) of one epoch of ``settings`` with the batches drawn in the training thread.
    Shared by the module: copy it before changing it."""
    run = tmp_path_factory.mktemp("one_epoch")
    result = run_bundle("lgg_unet_augment", "train", epochs=1, ckpt_dir=run / "models", output_dir=run / "train", cpu_loader_thread=False, **settings)
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_two_runs_with_the_same_seed_are_identical(tmp_path, settings, one_epoch):
    """lgg_unet_augment: random patches, flips, elastic deformation and the balanced sampler all follow ``seed``,
    whether batches are drawn in the training thread or in a background one (``cpu_loader_thread``)."""
    result = run_bundle("lgg_unet_augment", "train", epochs=1, ckpt_dir=tmp_path / "models", output_dir=tmp_path / "train",
                        cpu_loader_thread=True, **settings)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [one_epoch, tmp_path]
    weights = [torch.load(run / "models" / "model.pt", weights_only=True) for run in runs]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    best = [json.loads((run / "train" / "training_run.json").read_text())["best_metric"] for run in runs]
    assert best[0] == best[1]


@pytest.mark.parametrize("every_iteration", [True, False], ids=["per step (CPU)", "per epoch (CUDA setting)"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoints(tmp_path, settings, one_epoch, every_iteration):
    run = shutil.copytree(one_epoch, tmp_path / "run")
    common = {**settings, "ckpt_dir": run / "models", "output_dir": run / "train"}
    before = tree_digest(run / "models")
    result = run_bundle("lgg_unet_augment", "train", epochs=2, loss=NAN_LOSS, loss_every_iteration=every_iteration, overwrite=True, **common)
    where = "at epoch 1, iteration 1 of" if every_iteration else "mean training loss of epoch 1 is nan"
    assert_one_line_error(result, where, "checkpoint_epoch=1.pt, model.pt")
    assert "error: " not in result.stderr.strip().splitlines()[-2], result.stderr[-3000:]  # said once
    assert tree_digest(run / "models") == before


def test_training_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, settings):
    """SIGKILL in epoch 2 of 3, then ``--resume True``: same final weights, best checkpoint and best metric. Batches are
    drawn in a background thread (lgg_best's ``cpu_loader_thread``), which must not run ahead into the next epoch's
    reseeding; drawing them in the training thread gives the same batches (the test above)."""
    settings = {**settings, "cpu_loader_thread": True}
    full = run_bundle("lgg_unet_augment", "train", epochs=3, ckpt_dir=tmp_path / "full" / "models", output_dir=tmp_path / "full" / "train", **settings)
    assert full.returncode == 0, full.stderr[-3000:]
    part = tmp_path / "part"
    overrides = {"bundle_root": REPO / "bundles" / "lgg_unet_augment", "epochs": 3, "ckpt_dir": part / "models", "output_dir": part / "train", **settings}
    process = subprocess.Popen(bundle_command(REPO / "bundles" / "lgg_unet_augment", "train", overrides), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (part / "models" / "checkpoint_epoch=1.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # into epoch 2
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (part / "models" / "checkpoint_epoch=2.pt").exists()  # killed during epoch 2, not after it
    resumed = run_bundle("lgg_unet_augment", "train", resume=True, **{key: value for key, value in overrides.items() if key != "bundle_root"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all variables from" in resumed.stdout + resumed.stderr
    assert sorted(path.name for path in (part / "models").iterdir()) == ["checkpoint_epoch=3.pt", "model.pt"]  # epoch 1's went after epoch 2's
    for name in ("checkpoint_epoch=3.pt", "model.pt"):
        weights = [torch.load(run / "models" / name, weights_only=True) for run in (tmp_path / "full", part)]
        weights = [w.get("model", w) for w in weights]
        assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0]), name
    best = [json.loads((run / "train" / "training_run.json").read_text()) for run in (tmp_path / "full", part)]
    assert (best[0]["best_metric"], best[0]["best_metric_epoch"]) == (best[1]["best_metric"], best[1]["best_metric_epoch"])
    # the resumed run trained epochs 2 and 3 and times them alone; epoch 1's time is the killed run's
    assert list(best[1]["epoch_seconds"]) == ["1", "2", "3"] and best[1]["seconds_per_epoch"] * 2 == pytest.approx(best[1]["train_seconds"], abs=0.1)
    assert "training done: 3 of 3 epochs" in resumed.stdout + resumed.stderr


def test_resume_without_a_checkpoint_is_one_line(tmp_path, settings):
    message = bundle_error_in_process("lgg_unet_augment", "train", resume=True, ckpt_dir=tmp_path / "models", output_dir=tmp_path / "train", **settings)
    assert_error_line(message, "--resume", str(tmp_path / "models"))


def test_ctrl_c_during_training_is_one_line_saying_how_to_resume(tmp_path, settings):
    """SIGINT to the command's process group (what Ctrl-C in a terminal sends) once epoch 1 is saved: one
    ``error:`` line naming the checkpoint folder and ``--resume True``, no traceback, no lock left, epoch 1 whole. The
    process ends as killed by SIGINT (exit status 130 in a shell), as Python reports an interrupt to its caller."""
    models = tmp_path / "models"
    overrides = {"bundle_root": REPO / "bundles" / "lgg_unet_augment", "epochs": 20, "ckpt_dir": models, "output_dir": tmp_path / "train", **settings}
    process = subprocess.Popen(bundle_command(REPO / "bundles" / "lgg_unet_augment", "train", overrides), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (models / "checkpoint_epoch=1.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == -signal.SIGINT and "Traceback" not in stderr, stderr[-3000:]
    assert_error_line(stderr.strip().splitlines()[-1], "error: interrupted (Ctrl-C)", f"are in {models}", "--resume True")
    assert not list(tmp_path.rglob(".run.lock"))
    torch.load(models / "checkpoint_epoch=1.pt", weights_only=True)
