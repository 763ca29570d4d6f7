"""The GPU check (benchmarks/gpu_check.sh) in its CPU dry run, so that it cannot rot while no GPU is lent: every
step it takes on a GPU runs here small, with the CUDA defaults forced on; and its checklist records a failed
step and goes on. No timing is asserted."""

import argparse
import json
import os
import re
import subprocess
import sys

import pytest

from bundle_utils import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
CHECKED = ["lgg_unet_small", "oasis_unet"]  # the two families, the custom U-Net, and the torchrun step


def test_dry_run_takes_every_step_with_the_cuda_defaults(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(out), "--work", str(work), "--bundles", ",".join(CHECKED)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "dry-run" and report["epochs"] == 2
    assert list(report["steps"]) == ["environment", "data", "bundle:lgg_unet_small", "torchrun:lgg_unet_small", "bundle:oasis_unet",
                                     "harness:lgg_best:train", "harness:lgg_best:inference"]
    assert all(step["status"] == "ok" for step in report["steps"].values()), report["steps"]
    assert set(report["steps"]["environment"]["packages"]) == set(gpu_check.PACKAGES)
    for name in CHECKED:
        bundle = report["steps"][f"bundle:{name}"]
        assert [len(bundle[mode]["epochs"]) for mode in gpu_check.ENGINES] == [2, 1, 1]
        assert all(epoch["images"] > 0 and epoch["images_per_s"] > 0 for mode in gpu_check.ENGINES for epoch in bundle[mode]["epochs"])
        assert bundle["train"]["epochs"][0]["images"] == 2  # one step of batch 2
        for mode in gpu_check.ENGINES:
            assert bundle[mode]["settings"] == {"amp": True, "loss_every_iteration": False, "loader": "ThreadDataLoader", "device": "cpu"}
        assert re.fullmatch(r"(test|val)_\w+", next(iter(bundle["evaluate"]["metrics"])))
    assert report["steps"]["torchrun:lgg_unet_small"]["backend"] == "gloo" and report["steps"]["torchrun:lgg_unet_small"]["epochs"] == 1
    for phase, variants in gpu_check.HARNESS_PHASES.items():
        command = report["steps"][f"harness:lgg_best:{phase}"]["command"]
        assert command[command.index("--variants") + 1] == variants
    assert {"gpu_check.json", "gpu_check.md", "logs.tar.gz"} == {p.name for p in out.iterdir()}  # what comes back from the machine
    table = (out / "gpu_check.md").read_text()
    assert table in done.stdout and "| bundle:oasis_unet | ok" in table


def test_a_failed_step_is_recorded_and_the_next_runs(tmp_path):
    checklist = gpu_check.Checklist(tmp_path / "report.json", budget_s=60, header={"mode": "test"})

    def broken():
        raise RuntimeError("exit 1: error: something broke (log: x.log)")

    assert checklist.run("first", broken) is None
    assert checklist.run("second", lambda: {"figure": 1}) == {"figure": 1}
    steps = json.loads((tmp_path / "report.json").read_text())["steps"]
    assert steps["first"]["status"] == "failed" and steps["first"]["detail"] == "exit 1: error: something broke (log: x.log)"
    assert steps["second"]["status"] == "ok" and steps["second"]["figure"] == 1


def test_steps_past_the_budget_are_skipped(tmp_path):
    checklist = gpu_check.Checklist(tmp_path / "report.json", budget_s=-1, header={})
    assert checklist.run("late", lambda: {"figure": 1}) is None
    assert json.loads((tmp_path / "report.json").read_text())["steps"]["late"]["status"] == "skipped"


def test_plan_runs_every_bundle_before_the_harness():
    assert gpu_check.plan(list(gpu_check.BUNDLES), ["lgg_best", "lgg_unet_small"]) == [
        "bundle:lgg_best", "bundle:lgg_unet_small", "torchrun:lgg_unet_small", "bundle:lgg_unet_dicece_rgb", "bundle:lgg_unet_augment",
        "bundle:lgg_unet_bce", "bundle:oasis_unet", "harness:lgg_best:train", "harness:lgg_best:inference", "harness:lgg_unet_small:train",
        "harness:lgg_unet_small:inference"]
    assert gpu_check.plan(["lgg_unet_small"], ["lgg_best"], harness_first=True) == [
        "harness:lgg_best:train", "harness:lgg_best:inference", "bundle:lgg_unet_small", "torchrun:lgg_unet_small"]


def test_data_an_earlier_run_made_is_reused(tmp_path, monkeypatch):
    for manifest in ("lgg.csv", "oasis.csv"):
        (tmp_path / manifest).write_text("image,mask,patient,split\n")
    monkeypatch.setattr(gpu_check.subprocess, "Popen", lambda *a, **k: pytest.fail("data made again"))
    monkeypatch.setattr(gpu_check, "run_logged", lambda *a, **k: pytest.fail("data made again"))
    data, oasis_maker = gpu_check.make_data(argparse.Namespace(dry_run=False, work=tmp_path), tmp_path)
    assert oasis_maker is None and data["lgg"]["manifest"] == str(tmp_path / "lgg.csv")


def test_bad_arguments_are_one_line_errors():
    for argv, fragment in ((["--dry-run", "--bundles", "lgg_fast"], "unknown lgg_fast"), (["--dry-run", "--epochs", "0"], "--epochs must be >= 1"),
                           ([], "no CUDA device")):
        done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and fragment in done.stderr.strip().splitlines()[-1], done.stderr


def test_every_dependency_is_in_the_device_image_or_carried():
    """Each runtime dependency of pyproject.toml is a package the GPU image ships, a pinned wheel of
    benchmarks/gpu_wheels.txt, whose pins are the versions the tests run with here, or one the check does not use
    (gpu_check.NOT_ON_DEVICE: ITK, for volume inference only)."""
    import importlib.metadata
    import tomllib

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.match(r"[A-Za-z0-9_.-]+", spec)[0].lower() for spec in dependencies}
    pins = dict(line.split("==") for line in (REPO / "benchmarks" / "gpu_wheels.txt").read_text().splitlines() if line and not line.startswith("#"))
    available = set(pins) | set(gpu_check.IMAGE_PACKAGES) | set(gpu_check.NOT_ON_DEVICE)
    assert names <= available, names - available
    assert {name: importlib.metadata.version(name) for name in pins} == pins
