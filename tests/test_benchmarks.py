"""Smoke tests of the benchmarks: the throughput harness (benchmarks/train_throughput.py) at tiny sizes, every figure
present and sane; the time to quality and the parallel-folds benchmark's logic. No timing is asserted (speed is measured with the harness itself, see docs/performance.md)."""

import importlib.util
import json
import statistics
import subprocess
import sys
import time

import pytest
import torch

from bundle_utils import REPO

HARNESS = REPO / "benchmarks" / "train_throughput.py"
TINY = ["--set=network_def#features=2", "--set=batch_size=2", "--set=image_size=[32,32]", "--steps=1", "--warmup=1", "--repeats=2"]


def harness(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HARNESS), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_every_variant_of_training_and_inference_is_reported(tmp_path, lgg_demo_root, lgg_demo_manifest):
    out = tmp_path / "bce.json"
    result = harness("--bundle", "bundles/lgg_unet_bce", "--dataset_dir", lgg_demo_root, "--manifest", lgg_demo_manifest, "--out", out, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["bundle"] == "lgg_unet_bce" and report["device"] == "cpu" and report["batch_size"] == 2
    assert report["machine"]["cpus"] >= 1 and report["machine"]["torch_threads"] >= 1 and report["machine"]["monai"]
    for phase in ("train", "inference"):
        for variant in ("naive", "project", "limit"):
            figures = report[phase][variant]
            assert figures["images"] == 4, (phase, variant)  # 2 rounds of 1 step of 2 images
            assert len(figures["images_per_s_runs"]) == 2 and min(figures["images_per_s_runs"]) <= figures["images_per_s"] <= max(figures["images_per_s_runs"])
            assert figures["images_per_s"] > 0 and figures["seconds"] > 0 and figures["wall_s"] > 0
            assert 100 < figures["peak_rss_mib"] < 16 * 1024  # MiB of a process that imported torch
        assert report[phase]["project_over_limit"] > 0 and report[phase]["project_over_naive"] > 0
        assert report[phase]["project"]["cache_fill_s"] > 0 and report[phase]["project"]["data_path_images_per_s"] > 0
    assert report["inference"]["project"]["validation_images_per_s"] > 0 and report["inference"]["limit"]["windows_per_image"] == 1
    table = out.with_suffix(".md").read_text()
    assert "| project / limit |" in table and table in result.stdout
    logs = ["speed_train", "speed_inference", *(f"memory_{phase}_{variant}" for phase in ("train", "infer") for variant in ("naive", "project", "limit"))]
    assert all(out.with_suffix(f".{name}.log").is_file() for name in logs)


def test_bad_arguments_are_one_line_errors(tmp_path, lgg_demo_root):
    missing_bundle = harness("--bundle", tmp_path / "nope", "--dataset_dir", lgg_demo_root)
    missing_data = harness("--bundle", "bundles/lgg_unet_bce", "--dataset_dir", tmp_path / "nope")
    bad_variant = harness("--bundle", "bundles/lgg_unet_bce", "--dataset_dir", lgg_demo_root, "--variants", "train_fast")
    for result, fragment in ((missing_bundle, "not a bundle folder"), (missing_data, "--dataset_dir"), (bad_variant, "unknown train_fast")):
        assert result.returncode == 2 and fragment in result.stderr.strip().splitlines()[-1], result.stderr


def load_benchmark(name: str):
    """The module ``benchmarks/<name>.py`` (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def harness_module():
    return load_benchmark("train_throughput")


def test_rounds_interleave_the_variants_and_pair_their_ratios():
    module, calls = harness_module(), []

    def variant(name, images):  # each step takes 10 ms and counts ``images``
        return module.Variant(lambda steps: calls.append(name) or time.sleep(0.01 * steps) or images * steps)

    built = {"train_project": variant("project", 4), "train_limit": variant("limit", 8)}
    speed = module.timed_rounds(built, warmup=1, steps=2, repeats=3, device=torch.device("cpu"))
    assert calls == ["project", "limit"] + ["project", "limit"] * 3  # warm-up, then rounds in turn
    assert speed["variants"]["train_project"]["images"] == 24 and len(speed["variants"]["train_limit"]["images_per_s_runs"]) == 3
    assert speed["ratios"]["project_over_limit"] == pytest.approx(0.5, rel=0.2) and "project_over_naive" not in speed["ratios"]


def test_the_table_shows_the_median_and_the_spread_of_the_rounds():
    rate_cell = harness_module().rate_cell
    assert rate_cell({"images_per_s": 2.0, "images_per_s_runs": [3.0, 1.0, 2.0]}) == "2.0 (1.0-3.0)"
    assert rate_cell({"images_per_s": 2.0, "images_per_s_runs": [2.0]}) == "2.0" and rate_cell({}) == "-"


def test_every_training_variant_of_a_2_5d_bundle_sees_the_stacked_channels(lgg_demo_root, lgg_demo_manifest):
    """lgg_best in 2.5D caches single slices and stacks neighbours when drawn: the limit's held batches and the naive
    loop must get the same 9 channels as the project's loader, not a slice's own 3."""
    from monai.bundle import ConfigParser

    from pipelines.bundles import config_files

    module, channels = harness_module(), []
    for build in (lambda p: module.held_batches(p, "train", 1)[0]["image"], lambda p: module.naive_dataset(p, "train")[0][0][0]):
        parser = ConfigParser()
        parser.read_config([str(path) for path in config_files(REPO / "bundles" / "lgg_best", "train")])
        parser.update({"dataset_dir": str(lgg_demo_root), "manifest": str(lgg_demo_manifest), "image_size": [32, 32], "patch_size": [16, 16], "neighbour_slices": 1})
        channels.append(build(parser).shape[-3])
    assert channels == [9, 9]


def time_to_quality(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "time_to_quality.py"), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_time_to_quality_reads_the_validation_curve(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path))
    start = time.time()
    for epoch, score in enumerate([0.5, 0.79, 0.81, 0.80, 0.86], start=1):
        writer.add_scalar("val_dice_3d_postprocessed", score, epoch, walltime=start + 120 * epoch)
    writer.close()
    result = time_to_quality(tmp_path, "--targets", "0.8", "0.85", "0.9")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [point["epoch"] for point in report["curve"]] == [1, 2, 3, 4, 5]
    assert report["reached"]["0.80"]["epoch"] == 3 and abs(report["reached"]["0.80"]["minutes"] - 6) < 0.05
    assert report["reached"]["0.85"]["epoch"] == 5 and report["reached"]["0.90"] is None


def test_time_to_quality_errors_name_the_folder_or_the_metric(tmp_path):
    empty = time_to_quality(tmp_path)
    assert empty.returncode == 2 and "no TensorBoard event file" in empty.stderr.strip().splitlines()[-1]
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        writer.add_scalar("train_loss", 1.0, 1)
    missing = time_to_quality(tmp_path, "--metric", "val_dice_3d")
    assert missing.returncode == 2 and "no scalar 'val_dice_3d' in its event files; they have train_loss" in missing.stderr.strip().splitlines()[-1]


def test_parallel_folds_alternates_the_two_runs_and_pairs_them_by_round(tmp_path, monkeypatch):
    bench = load_benchmark("parallel_folds")
    runs = []

    def fake_run(command, jobs, log):  # the one-at-a-time run takes 100 s, the at-once run 60 s in round 0 and 80 s in round 1
        runs.append(command)
        return 100.0 if jobs == 1 else 60.0 + 20 * (len(runs) > 2)

    monkeypatch.setattr(bench, "timed_run", fake_run)
    out = tmp_path / "result.json"
    assert bench.main(["--bundle", "bundles/lgg_best", "--dataset_dir", str(tmp_path), "--only", "0", "2", "--jobs", "3", "--rounds", "2",
                       "--set", "epochs=1", "--set", "image_size=[64,64]", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [command[command.index("--jobs") + 1] for command in runs] == ["1", "3", "3", "1"]
    assert [entry["first"] for entry in report["rounds"]] == ["one_at_a_time", "at_once"]
    assert report["speedup"] == pytest.approx(statistics.median([100 / 60, 100 / 80]), abs=1e-3)
    command = runs[0]
    assert command[1:4] == ["-m", "pipelines", "crossval"] and command[command.index("--only") + 1:command.index("--jobs")] == ["0", "2"]
    assert command[-4:] == ["--epochs", "1", "--image_size", "[64,64]"]
    assert len({command[command.index("--out") + 1] for command in runs}) == 4  # every run into its own folder


@pytest.mark.parametrize("argv, message", [(["--jobs", "1"], "--jobs must be at least 2"), (["--rounds", "0"], "--rounds at least 1"),
                                           (["--set", "epochs"], "--set expects KEY=VALUE, got 'epochs'")])
def test_parallel_folds_bad_arguments(tmp_path, argv, message, capsys):
    bench = load_benchmark("parallel_folds")
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--bundle", "bundles/lgg_best", "--dataset_dir", str(tmp_path), "--out", str(tmp_path / "r.json"), *argv])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_network_cost_times_the_recipe_network_and_each_candidate_in_its_shape(tmp_path, capsys):
    bench = load_benchmark("network_cost")
    small = '{"_target_": "UNet", "channels": [4, 8], "strides": [2], "num_res_units": 0}'
    out = tmp_path / "cost.json"
    assert bench.main(["--bundle", "bundles/lgg_best", "--batch", "2", "--size", "32", "32", "--steps", "1", "--rounds", "2",
                       "--candidate", f"small={small}", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["networks"]) == ["recipe", "small"] and report["setup"]["input_channels"] == 9  # lgg_best is 2.5D: 3 sequences x 3 slices
    assert report["networks"]["recipe"]["over_recipe"] == 1.0 and report["networks"]["recipe"]["parameters_millions"] == 1.63
    assert report["networks"]["small"]["parameters_millions"] < 0.01 and report["networks"]["small"]["seconds_per_step"] > 0
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--candidate", "wide={not json", "--out", str(tmp_path / "bad.json")])
    assert stopped.value.code == 2 and "--candidate expects NAME=JSON" in capsys.readouterr().err and not (tmp_path / "bad.json").exists()
