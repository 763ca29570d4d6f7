import functools
import json

import masks
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from masks import SQUARE

from pipelines.engine.evaluation import SegmentationMetricsWriter, scores_from_counts

mask = functools.partial(masks.mask, size=4)  # (1, 4, 4) masks
# subject A: a perfect tumour slice, then an empty slice predicted empty (Dice 1 by the seed convention);
# subject B: a tumour slice with half the pixels right (tp 2, fp 2, fn 2 -> Dice 0.5).
CASES = [
    ("A", 1, mask(*SQUARE), mask(*SQUARE)),
    ("A", 2, mask(), mask()),
    ("B", 1, mask((0, 0), (0, 1), (2, 2), (2, 3)), mask(*SQUARE)),
]


def run_writer(cases, **kwargs):
    writer = SegmentationMetricsWriter(class_names=["tumour"], **kwargs)
    batches = [[{"subject": s, "slice": k, "image": f"{s}_{k}.tif"} for s, k, _, _ in cases]]
    outputs = [{"pred": pred, "label": label} for _, _, pred, label in cases]
    engine = Engine(lambda engine, batch: outputs)
    writer.attach(engine)
    engine.run(batches, max_epochs=1)
    return writer, engine


def test_scores_from_counts_follow_the_stated_conventions():
    scores = scores_from_counts(tp=[4, 0, 2, 0], fp=[0, 0, 2, 3], fn=[0, 0, 2, 0])
    np.testing.assert_allclose(scores["dice"], [1.0, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(scores["jaccard"], [1.0, 1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(scores["precision"], [1.0, np.nan, 0.5, 0.0])
    np.testing.assert_allclose(scores["recall"], [1.0, np.nan, 0.5, np.nan])


def test_summary_reports_each_dice_convention(tmp_path):
    writer, engine = run_writer(CASES, output_dir=tmp_path, prefix="test", extra={"split": "test"})
    summary = json.loads((tmp_path / "test_summary.json").read_text())
    tumour = summary["classes"]["tumour"]
    assert summary["split"] == "test" and summary["n_slices"] == 3 and summary["n_subjects"] == 2
    assert tumour["per_slice"]["dice"] == pytest.approx((1 + 1 + 0.5) / 3, abs=1e-6)
    assert tumour["slices_with_tumour"] == pytest.approx({"n": 2, "dice": 0.75, "jaccard": (1 + 1 / 3) / 2, "precision": 0.75, "recall": 0.75}, abs=1e-6)
    assert tumour["per_subject_3d"]["dice"] == pytest.approx(0.75) and tumour["per_subject_3d"]["dice_std"] == pytest.approx(0.25)
    assert tumour["per_slice"]["precision"] == pytest.approx(0.75)  # the empty/empty slice is skipped, not counted as 0 or 1
    assert set(summary["conventions"]) == {"per_slice", "slices_with_class", "per_subject_3d", "undefined", "mean_over_classes"}
    assert summary["mean_over_classes"]["per_slice"] == {metric: tumour["per_slice"][metric] for metric in ("dice", "jaccard", "precision", "recall")}
    assert engine.state.metrics["test_dice_3d"] == pytest.approx(0.75)


def test_per_slice_and_per_subject_tables(tmp_path):
    run_writer(CASES, output_dir=tmp_path)
    slices = (tmp_path / "test_per_slice.csv").read_text().splitlines()
    assert slices[0].split(",")[:7] == ["subject", "slice", "image", "label", "tp_tumour", "fp_tumour", "fn_tumour"]
    assert [line.split(",")[:2] for line in slices[1:]] == [["A", "1"], ["A", "2"], ["B", "1"]]
    subjects = [line.split(",") for line in (tmp_path / "test_per_subject.csv").read_text().splitlines()]
    assert subjects[1][:6] == ["A", "2", "4", "0", "0", "1.000000"]
    assert subjects[2][:6] == ["B", "1", "2", "2", "2", "0.500000"]


def test_false_positive_on_an_empty_slice_scores_zero(tmp_path):
    writer, _ = run_writer([("A", 1, mask((1, 1)), mask())])
    _, _, summary = writer.summarise()
    assert summary["classes"]["tumour"]["per_slice"]["dice"] == 0.0
    assert summary["classes"]["tumour"]["per_slice"]["recall"] is None  # no ground-truth pixels: undefined, not 0 or 1


def test_without_output_dir_only_metrics_are_set(tmp_path):
    _, engine = run_writer(CASES, prefix="val")
    assert engine.state.metrics["val_dice_3d"] == pytest.approx(0.75)
    assert not list(tmp_path.iterdir())


def test_multi_class_one_hot_scores_each_class():
    writer = SegmentationMetricsWriter(class_names=["csf", "gm"], include_background=False)
    classes = torch.tensor([[0, 1], [2, 1]])
    label = torch.stack([classes == k for k in range(3)]).float()  # one-hot (3, 2, 2); background is dropped
    batches = [[{"subject": "c1", "slice": 0, "image": "c1_0.png"}]]
    engine = Engine(lambda e, b: [{"pred": label.clone(), "label": label}])
    writer.attach(engine)
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["test_dice_3d_csf"] == 1.0 and engine.state.metrics["test_dice_3d_gm"] == 1.0


def test_mean_over_classes_is_the_unweighted_mean_of_the_class_scores():
    writer = SegmentationMetricsWriter(class_names=["a", "b"])
    label = torch.stack([mask((0, 0), (0, 1)), mask((2, 2))]).squeeze(1)  # (2, 4, 4): class a 2 pixels, class b 1
    pred = torch.stack([mask((0, 0)), mask((2, 2), (3, 3))]).squeeze(1)  # a: tp 1 fn 1 -> 2/3; b: tp 1 fp 1 -> 2/3
    pred[0, 3, 0] = 1  # a: one more false positive -> Dice 2/4
    engine = Engine(lambda e, b: [{"pred": pred, "label": label}])
    writer.attach(engine)
    engine.run([[{"subject": "s", "slice": 0, "image": "s_0.png"}]], max_epochs=1)
    _, _, summary = writer.summarise()
    assert summary["classes"]["a"]["per_slice"]["dice"] == pytest.approx(0.5) and summary["classes"]["b"]["per_slice"]["dice"] == pytest.approx(2 / 3)
    assert summary["mean_over_classes"]["per_slice"]["dice"] == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-6)
    assert summary["mean_over_classes"]["per_subject_3d"]["recall"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-6)
    assert engine.state.metrics["test_dice_3d"] == pytest.approx((0.5 + 2 / 3) / 2)
