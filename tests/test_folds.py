"""Patient-level k-fold cross-validation: fold assignment, fold datalists, the folds command and crossval."""

import csv
import json
import re

import pytest
import torch
from bundle_utils import REPO, assert_error_line, bundle_error_in_process, fast, run_bundle
from ignite.engine import Engine
from monai.bundle import ConfigParser

from pipelines.bundles import config_files
from pipelines.cli import main
from pipelines.cli.crossval import fold_threads, summarise_folds
from pipelines.data import datalist
from pipelines.data.datalist import check_manifest, load_split, split_rows
from pipelines.data.demo import make_lgg_demo
from pipelines.data.lgg import build_kaggle_3m
from pipelines.data.manifest import assign_folds, fold_splits, training_splits, validate_manifest, validation_split, write_manifest
from pipelines.engine.evaluation import SegmentationMetricsWriter
from pipelines.errors import InputError

SUBJECTS = [f"TCGA_XX_{k:04d}" for k in range(19)]


@pytest.mark.parametrize("folds", [3, 5, 19])
def test_every_subject_in_exactly_one_fold_of_balanced_size(folds):
    fold_of = assign_folds(SUBJECTS * 2, folds)  # repeated subjects (one per slice) count once
    assert sorted(fold_of) == SUBJECTS and set(fold_of.values()) == set(range(folds))
    sizes = [list(fold_of.values()).count(k) for k in range(folds)]
    assert max(sizes) - min(sizes) <= 1


def test_assignment_is_reproducible_and_follows_the_seed():
    assert assign_folds(SUBJECTS, 5, seed=3) == assign_folds(list(reversed(SUBJECTS)), 5, seed=3)  # order of the rows does not matter
    assert assign_folds(SUBJECTS, 5, seed=3) != assign_folds(SUBJECTS, 5, seed=4)


def test_fold_roles_test_val_train():
    fold_of = assign_folds(SUBJECTS, 5)
    for fold in range(5):
        split_of = fold_splits(SUBJECTS, fold, 5)
        assert {s for s, split in split_of.items() if split == "test"} == {s for s, k in fold_of.items() if k == fold}
        assert {s for s, split in split_of.items() if split == "val"} == {s for s, k in fold_of.items() if k == (fold + 1) % 5}
    tested = [s for fold in range(5) for s, split in fold_splits(SUBJECTS, fold, 5).items() if split == "test"]
    assert sorted(tested) == SUBJECTS  # across the folds every subject is tested exactly once


def test_validation_on_the_test_fold_trains_on_every_other_fold():
    fold_of = assign_folds(SUBJECTS, 5)
    for fold in range(5):
        split_of = fold_splits(SUBJECTS, fold, 5, validation="test")
        assert {s for s, split in split_of.items() if split == "test"} == {s for s, k in fold_of.items() if k == fold}
        assert {s for s, split in split_of.items() if split == "train"} == {s for s, k in fold_of.items() if k != fold}
    with pytest.raises(InputError, match=r"^fold_validation 'held_out': expected one of next, test$"):
        fold_splits(SUBJECTS, 0, 5, validation="held_out")


def test_validation_split_guards_the_held_out_fold():
    assert validation_split(None, "next", "best") == validation_split(2, "next", "best") == "val"
    assert validation_split(2, "test", "last") == "test"
    for args, message in [((None, "test", "last"), "--fold_validation test: only for cross-validation (pass --fold k)"),
                          ((2, "test", "best"), "--fold_validation test with --model_epoch best: the held-out test fold would pick model.pt"),
                          ((2, "none", "last"), "--fold_validation 'none': expected one of next, test")]:
        with pytest.raises(InputError, match="^" + re.escape(message)):
            validation_split(*args)


@pytest.mark.parametrize("fold, folds, message", [
    (0, 2, "folds 2: need at least 3 folds"),
    (0, 20, "folds 20: need at least 3 folds (test, validation, training) and at most one per subject (19 subjects)"),
    (5, 5, "fold 5: must be one of 0..4 with folds 5"),
    (-1, 5, "fold -1: must be one of 0..4"),
    ("2", 5, "fold 2: must be one of 0..4"),
])
def test_bad_fold_settings_are_one_line_errors(fold, folds, message):
    with pytest.raises(InputError, match="^" + re.escape(message)):
        fold_splits(SUBJECTS, fold, folds)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(manifest, root) of 6 subjects x 3 slices of 32x32, split 4/1/1 by the split column."""
    tmp = tmp_path_factory.mktemp("folds")
    root = make_lgg_demo(tmp / "data", n_subjects=6, n_slices=3, size=32)
    return write_manifest(build_kaggle_3m(root), tmp / "manifest.csv"), root


def subjects_of(items):
    return {item["subject"] for item in items}


def test_fold_datalists_pool_train_and_val_and_never_share_a_subject(demo):
    manifest, root = demo
    everyone, held_out = subjects_of(load_split(manifest, root, ["train", "val"])), subjects_of(load_split(manifest, root, "test"))
    assert len(everyone) == 5 and len(held_out) == 1
    for fold in range(3):
        parts = {split: load_split(manifest, root, split, fold=fold, folds=3, seed=1) for split in ("train", "val", "test")}
        assert set.union(*map(subjects_of, parts.values())) == everyone and sum(len(p) for p in parts.values()) == 15  # the test split is in no fold
        assert not (subjects_of(parts["train"]) & subjects_of(parts["val"]) or subjects_of(parts["train"]) & subjects_of(parts["test"])
                    or subjects_of(parts["val"]) & subjects_of(parts["test"]))
        assert subjects_of(parts["test"]) == {s for s, k in assign_folds(everyone, 3, seed=1).items() if k == fold}
    assert load_split(manifest, root, "test") == load_split(manifest, root, "test", fold=None, folds=3)  # no fold: the split column


@pytest.mark.parametrize("validation", ["next", "test"])
def test_no_test_patient_of_the_full_manifest_lands_in_any_fold(monkeypatch, tmp_path, validation):
    """The bundles' fold datalists of the checked-in LGG manifest (its rows read without images): the 17 test
    patients are in no fold's train, val or test, and the folds' test parts are exactly the 93 others, once each."""
    manifest = REPO / "data_manifests" / "lgg_kaggle_3m.csv"
    rows = validate_manifest(manifest, None, check_files=False)
    monkeypatch.setattr(datalist, "_validated_rows", lambda *_: tuple(rows))
    held_out, pool = ({row["subject"] for row in rows if (row["split"] == "test") == test} for test in (True, False))
    assert (len(held_out), len(pool)) == (17, 93)
    tested = []
    for fold in range(5):
        parts = {split: subjects_of(split_rows(manifest, tmp_path, split, fold=fold, folds=5, validation=validation)) for split in ("train", "val", "test")}
        assert not set.union(*parts.values()) & held_out
        assert set.union(*parts.values()) == pool
        tested += sorted(parts["test"])
    assert sorted(tested) == sorted(pool)


def test_lgg_best_with_fold_validation_test_validates_on_the_held_out_fold(demo):
    """The parsed training config: the validation datalist is the test fold, the training datalist every other subject."""
    manifest, root = demo
    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(REPO / "bundles" / "lgg_best", "train")])
    parser.update({"dataset_dir": str(root), "manifest": str(manifest), "fold": 1, "folds": 3, "fold_validation": "test"})
    data = parser.get_parsed_content("data")
    validated, trained = (subjects_of(data.datalist(split)) for split in (parser.get_parsed_content("validate#split"), "train"))
    fold_of = assign_folds(subjects_of(load_split(manifest, root, ["train", "val"])), 3)
    assert validated == {s for s, k in fold_of.items() if k == 1} and trained == {s for s, k in fold_of.items() if k != 1}
    assert not (validated | trained) & subjects_of(load_split(manifest, root, "test"))  # the manifest's test patients neither train nor validate


def test_training_splits_default_and_train_plus_val(caplog):
    assert training_splits(["train"], "val", "best", cross_validation=False) == ["train"]
    assert training_splits(["train"], "test", "last", cross_validation=True) == ["train"]
    assert not caplog.messages
    with caplog.at_level("WARNING", logger="pipelines.data.manifest"):
        assert training_splits(["train", "val"], "val", "last", cross_validation=False) == ["train", "val"]
    assert caplog.messages == ["--train_splits ['train', 'val']: the val patients also train, so the validation curve (val_*) is not a held-out measure"]


@pytest.mark.parametrize("splits, validation, model_epoch, cross_validation, message", [
    (["train", "test"], "val", "last", False, "--train_splits ['train', 'test']: the test split is held out and never trains"),
    (["train", "val"], "val", "best", False, "--train_splits ['train', 'val'] with --model_epoch best: the val patients also train, so they cannot pick model.pt; use --model_epoch last"),
    (["train", "val"], "val", "last", True, "--train_splits ['train', 'val'] with --fold: cross-validation gives each patient its role; --fold_validation test trains"),
    ("train", "val", "last", False, "--train_splits 'train': must be a list of distinct splits of the manifest, e.g. ['train'] or ['train','val']"),
    ([], "val", "last", False, "--train_splits []: must be a list"),
    (["train", "train"], "val", "last", False, "--train_splits ['train', 'train']: must be a list of distinct splits"),
    (["training"], "val", "last", False, "--train_splits ['training']: must be a list of distinct splits"),
])
def test_bad_training_splits_are_one_line_errors(splits, validation, model_epoch, cross_validation, message):
    with pytest.raises(InputError, match="^" + re.escape(message)):
        training_splits(splits, validation, model_epoch, cross_validation)


def test_lgg_best_trains_on_train_and_val_and_says_so(demo, tmp_path):
    """The release's training on every non-test patient: the training datalist is the train and val subjects, the
    run warns that its validation curve is not held out and records the splits it trained on."""
    manifest, root = demo
    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(REPO / "bundles" / "lgg_best", "train")])
    parser.update({"dataset_dir": str(root), "manifest": str(manifest), "train_splits": ["train", "val"]})
    trained = subjects_of(parser.get_parsed_content("train#dataset").data)
    assert trained == subjects_of(load_split(manifest, root, ["train", "val"])) and not trained & subjects_of(load_split(manifest, root, "test"))
    result = run_bundle("lgg_best", "train", dataset_dir=root, manifest=manifest, epochs=1, train_splits="['train','val']", image_size="[32,32]",
                        patch_size="[32,32]", ckpt_dir=tmp_path / "models", output_dir=tmp_path / "train", **fast("lgg_best"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the val patients also train, so the validation curve (val_*) is not a held-out measure" in result.stdout + result.stderr
    assert json.loads((tmp_path / "train" / "training_run.json").read_text())["train_splits"] == ["train", "val"]


def test_seed_bundle_refuses_to_train_on_the_patients_that_pick_its_model(demo, tmp_path):
    manifest, root = demo
    message = bundle_error_in_process("lgg_unet_bce", "train", dataset_dir=root, manifest=manifest, bundle_root=tmp_path, train_splits="['train','val']")
    assert message == ("error: --train_splits ['train', 'val'] with --model_epoch best: the val patients also train, so they cannot pick model.pt; "
                       "use --model_epoch last")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("validation, val_count", [("next", "val 3 slices / 1 subjects"), ("test", "val the test fold")])
def test_check_manifest_logs_the_fold_roles(demo, caplog, validation, val_count):
    manifest, root = demo
    with caplog.at_level("INFO", logger="pipelines.data.datalist"):
        check_manifest(manifest, root, ("train",), fold=1, folds=3, validation=validation)
    assert re.search(rf"over the train and val rows \(seed 0, validation: {validation} fold\): train \d+ slices / \d subjects, {val_count}, test \d+ slices / \d subjects$", caplog.messages[-1])


def test_seed_bundle_refuses_validation_on_the_test_fold(demo, tmp_path):
    manifest, root = demo
    message = bundle_error_in_process("lgg_unet_bce", "train", dataset_dir=root, manifest=manifest, bundle_root=tmp_path, fold=0, folds=3, fold_validation="test")
    assert message == "error: --fold_validation test with --model_epoch best: the held-out test fold would pick model.pt; use --model_epoch last"
    assert not (tmp_path / "models").exists()


def test_bad_fold_in_a_datalist_ends_the_run_naming_the_manifest(demo):
    manifest, root = demo
    with pytest.raises(InputError, match=f"^manifest {manifest}: folds 6: need at least 3 folds .* \\(5 subjects\\)$"):
        load_split(manifest, root, "train", fold=0, folds=6)  # 6 subjects, 5 of them outside the test split


def test_bundle_with_fold_outside_the_folds_stops_with_one_line(demo, tmp_path):
    manifest, root = demo
    message = bundle_error_in_process("lgg_unet_bce", "train", dataset_dir=root, manifest=manifest, image_size="[32,32]", bundle_root=tmp_path, fold=3, folds=3)
    assert_error_line(message, "--fold 3: must be in 0..2 with --folds 3")
    assert not (tmp_path / "models").exists()


def test_folds_command_prints_and_writes_the_assignment(demo, tmp_path, capsys):
    manifest, _ = demo
    assert main(["manifest", "folds", "--manifest", str(manifest), "--folds", "3", "--fold", "1", "--out", str(tmp_path / "folds.csv")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["fold", "split", "subjects", "slices", "tumour_slices"]
    assert [line.split()[:4] for line in table[1:4]] == [["0", "train", "2", "6"], ["1", "test", "2", "6"], ["2", "val", "1", "3"]]
    assert table[4] == "in no fold, the manifest's test split: subjects 1, slices 3"
    with open(tmp_path / "folds.csv") as f:
        written = list(csv.DictReader(f))
    assert {row["subject"]: int(row["fold"]) for row in written} == assign_folds([row["subject"] for row in written], 3)
    assert len(written) == 5
    assert main(["manifest", "folds", "--manifest", str(manifest), "--folds", "3", "--fold", "1", "--fold_validation", "test"]) == 0
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:4]] == [["0", "train"], ["1", "test"], ["2", "train"]]
    assert main(["manifest", "folds", "--manifest", str(manifest), "--folds", "6"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {manifest}: folds 6: need at least 3 folds (test, validation, training) and at most one per subject (5 subjects)"


def write_fold(out, fold, cases, postprocessing=None):
    """An evaluated fold folder ``out/fold<k>/eval`` from (subject, slice, pred, label) cases of (1, 2, 2) masks."""
    writer = SegmentationMetricsWriter(["tumour"], output_dir=out / f"fold{fold}" / "eval", extra={"fold": fold, "fold_seed": 0}, postprocessing=postprocessing)
    engine = Engine(lambda e, b: [{"pred": pred, "label": label} for _, _, pred, label in cases])
    writer.attach(engine)
    engine.run([[{"subject": s, "slice": k, "image": f"{s}_{k}.tif"} for s, k, _, _ in cases]], max_epochs=1)


def test_crossval_pools_each_subject_once(tmp_path):
    full, empty = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    half = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    write_fold(tmp_path, 0, [("A", 1, full, full), ("A", 2, empty, empty)])  # A: 3D Dice 1, slices 1 and 1
    write_fold(tmp_path, 2, [("B", 1, half, full), ("C", 1, full, empty)])  # B: 3D Dice 2/3; C: 0 (false positives only)
    summary = summarise_folds(tmp_path, 3)
    tumour = summary["classes"]["tumour"]
    assert summary["evaluated_folds"] == [0, 2] and summary["missing_folds"] == [1] and summary["n_subjects"] == 3
    assert tumour["per_subject_3d"]["dice"] == pytest.approx((1 + 2 / 3 + 0) / 3, abs=1e-6)
    assert tumour["per_subject_3d"]["fold_means"] == pytest.approx([1.0, 1 / 3], abs=1e-6)
    assert tumour["per_slice"]["n"] == 4 and tumour["slices_with_tumour"] == pytest.approx({"n": 2, "dice": 5 / 6, "dice_std": 1 / 6, "dice_min": 2 / 3, "dice_max": 1.0}, abs=1e-6)
    assert "postprocessed" not in summary
    with open(tmp_path / "crossval_per_subject.csv") as f:
        assert [(row["subject"], row["fold"]) for row in csv.DictReader(f)] == [("A", "0"), ("B", "2"), ("C", "2")]


def test_crossval_reports_post_processing_when_the_folds_have_it(tmp_path):
    full, empty = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    write_fold(tmp_path, 0, [("A", 1, full, full), ("A", 2, full, empty)], postprocessing=lambda volume: volume * torch.tensor([1.0, 0.0]))  # drops slice 2
    summary = summarise_folds(tmp_path, 3)
    assert summary["classes"]["tumour"]["per_subject_3d"]["dice"] == pytest.approx(2 / 3, abs=1e-6)
    assert summary["postprocessed"]["classes"]["tumour"]["per_subject_3d"]["dice"] == 1.0
    assert summary["postprocessed"]["transforms"] == ["function"]


def test_crossval_errors(tmp_path, capsys):
    assert main(["crossval", "bundles/lgg_best", "--out", str(tmp_path), "--summarise-only"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: no fold<k>/eval/test_summary.json for k in 0..4; run the folds first"
    assert main(["crossval", "bundles/lgg_best", "--out", str(tmp_path), "--only", "5"]) == 1
    assert capsys.readouterr().err.strip() == "error: --only 5: folds are 0..4 with --folds 5"
    assert main(["crossval", "bundles/lgg_best", "--out", str(tmp_path), "--fold", "1", "--epochs", "1"]) == 1
    assert "--fold: set by crossval for each fold" in capsys.readouterr().err
    assert main(["crossval", "bundles/oasis_unet", "--out", str(tmp_path / "oasis")]) == 1
    assert capsys.readouterr().err.strip() == ("error: crossval bundles/oasis_unet: an OASIS bundle; patient-level cross-validation folds are for "
                                               "the LGG bundles (the OASIS data comes split by its folders)")
    assert not (tmp_path / "oasis").exists()


def test_crossval_runs_a_fold_of_a_bundle_end_to_end(demo, tmp_path, capsys):
    manifest, root = demo
    overrides = {"dataset_dir": root, "manifest": manifest, "epochs": 1, "image_size": "[32,32]", "patch_size": "[16,16]", **fast("lgg_best"), "batch_size": 4}
    argv = [str(REPO / "bundles" / "lgg_best"), "--out", str(tmp_path), "--folds", "3", "--only", "1"]
    assert main(["crossval", *argv] + [item for key, value in overrides.items() for item in (f"--{key}", str(value))]) == 0
    summary = json.loads((tmp_path / "crossval_summary.json").read_text())
    test_subjects = {s for s, k in assign_folds(subjects_of(load_split(manifest, root, ["train", "val"])), 3).items() if k == 1}
    assert summary["evaluated_folds"] == [1] and summary["n_subjects"] == len(test_subjects)
    assert summary["postprocessed"]["transforms"] == ["KeepLargestConnectedComponent"]
    fold_summary = json.loads((tmp_path / "fold1" / "eval" / "test_summary.json").read_text())
    assert (fold_summary["fold"], fold_summary["folds"]) == (1, 3) and (tmp_path / "fold1" / "models" / "model.pt").is_file()
    with open(tmp_path / "crossval_per_subject.csv") as f:
        assert {row["subject"] for row in csv.DictReader(f)} == test_subjects
    assert "per patient 3D Dice" in capsys.readouterr().out


@pytest.mark.parametrize("jobs, cores, threads", [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 16, 8), (3, 16, 5)])
def test_folds_run_at_once_share_the_cores(jobs, cores, threads):
    assert fold_threads(jobs, cores) == threads


def test_crossval_runs_folds_at_once_each_with_its_log(demo, tmp_path, capsys):
    manifest, root = demo
    overrides = {"dataset_dir": root, "manifest": manifest, "epochs": 1, "image_size": "[32,32]", "patch_size": "[16,16]", **fast("lgg_best"), "batch_size": 4}
    argv = [str(REPO / "bundles" / "lgg_best"), "--out", str(tmp_path), "--folds", "3", "--only", "0", "2", "--jobs", "2"]
    assert main(["crossval", *argv] + [item for key, value in overrides.items() for item in (f"--{key}", str(value))]) == 0
    summary = json.loads((tmp_path / "crossval_summary.json").read_text())
    assert summary["evaluated_folds"] == [0, 2] and summary["missing_folds"] == [1]
    for fold in (0, 2):
        log = (tmp_path / f"fold{fold}" / "crossval.log").read_text()
        assert log.index("=== train: ") < log.index("=== evaluate: ") and f"--fold {fold} " in log
        assert (tmp_path / f"fold{fold}" / "models" / "model.pt").is_file()
    assert not (tmp_path / "fold1").exists()


def test_crossval_with_jobs_names_every_failed_fold_and_its_error(demo, tmp_path, capsys):
    manifest, root = demo

    def crossval(out, jobs):  # --epochs 0 fails every fold's training at its settings check
        return main(["crossval", str(REPO / "bundles" / "lgg_best"), "--out", str(out), "--folds", "3", "--only", "0", "1", "--jobs", str(jobs),
                     "--dataset_dir", str(root), "--manifest", str(manifest), "--epochs", "0"])

    assert crossval(tmp_path, 2) == 1
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and message.startswith("error: fold 0: the train step failed (exit code 1); error: --epochs 0")
    assert f"its output is in {tmp_path / 'fold1' / 'crossval.log'}" in message and " | fold 1: " in message
    assert not (tmp_path / "fold0" / "models").exists() and not (tmp_path / "crossval_summary.json").exists()
    assert crossval(tmp_path / "alone", 1) == 1  # one at a time: stops at the first failed fold
    assert capsys.readouterr().err.strip() == "error: fold 0: the train step failed (exit code 1); see the output above"
    assert not (tmp_path / "alone").exists()
    assert crossval(tmp_path / "none", 0) == 1
    assert capsys.readouterr().err.strip() == "error: --jobs 0: the number of folds run at once must be at least 1"
    assert not (tmp_path / "none").exists()
