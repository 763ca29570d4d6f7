"""Per-patient 3D post-processing in the metrics writer, on hand-made volumes with known components."""

import csv
import functools
import json

import masks
import pytest
from ignite.engine import Engine, Events
from masks import SQUARE
from monai.transforms import KeepLargestConnectedComponent, RemoveSmallObjects

from pipelines.engine.evaluation import SegmentationMetricsWriter
from pipelines.errors import InputError

mask = functools.partial(masks.mask, size=6)  # (1, 6, 6) masks
# Subject P: the tumour is a 2x2 square in slices 1 and 2 (8 voxels), predicted exactly, plus a stray voxel at
# (5, 5) of slice 3, a component of its own. Raw: tp 8, fp 1 -> 3D Dice 16/17; the largest component alone: Dice 1.
P = [("P", 3, mask((5, 5)), mask()), ("P", 1, mask(*SQUARE), mask(*SQUARE)), ("P", 2, mask(*SQUARE), mask(*SQUARE))]  # out of slice order
# Subject Q: nothing predicted, 1 tumour voxel: Dice 0 before and after.
Q = [("Q", 1, mask(), mask((3, 3)))]


def scores(cases, postprocessing):
    """Summary of a writer fed ``cases`` (subject, slice, pred, label) one slice per iteration."""
    writer = SegmentationMetricsWriter(["tumour"], postprocessing=postprocessing)
    engine = Engine(lambda e, batch: [{"pred": item["pred"], "label": item["label"]} for item in batch])
    writer.attach(engine)
    engine.run([[{"subject": s, "slice": k, "pred": p, "label": l}] for s, k, p, l in cases], max_epochs=1)
    return writer.summarise()[2], engine.state.metrics


def test_largest_component_drops_the_stray_voxel():
    summary, metrics = scores(P + Q, KeepLargestConnectedComponent())
    raw, post = summary["classes"]["tumour"], summary["postprocessed"]["classes"]["tumour"]
    assert raw["per_subject_3d"]["dice"] == pytest.approx((16 / 17 + 0) / 2) and post["per_subject_3d"]["dice"] == pytest.approx((1 + 0) / 2)
    assert raw["per_slice"]["dice"] == pytest.approx(2 / 4) and post["per_slice"]["dice"] == pytest.approx(3 / 4)  # P3 becomes empty/empty
    assert post["slices_with_tumour"]["n"] == raw["slices_with_tumour"]["n"] == 3  # the ground truth is never post-processed
    assert summary["postprocessed"]["transforms"] == ["KeepLargestConnectedComponent"]
    assert metrics["test_dice_3d"] == pytest.approx(8 / 17) and metrics["test_dice_3d_postprocessed"] == pytest.approx(0.5)


def test_components_connect_across_slices():
    touching = [("P", 3, mask((2, 2)), mask())]  # diagonal neighbour of the square's corner (1, 1) in slice 2
    full, _ = scores(P[1:] + touching, KeepLargestConnectedComponent())  # default: full (26-) connectivity in 3D
    faces, _ = scores(P[1:] + touching, KeepLargestConnectedComponent(connectivity=1))  # 6-connectivity: a separate voxel
    assert full["postprocessed"]["classes"]["tumour"]["per_subject_3d"]["dice"] == pytest.approx(16 / 17)
    assert faces["postprocessed"]["classes"]["tumour"]["per_subject_3d"]["dice"] == 1.0


def test_slices_stack_in_slice_order_even_with_gaps():
    # the stray voxel sits right above the square in the slice numbered 9: stacked next to slice 2, it joins the square
    above = [("P", 9, mask((1, 1)), mask())]
    summary, _ = scores(P[1:] + above, KeepLargestConnectedComponent(connectivity=1))
    assert summary["postprocessed"]["classes"]["tumour"]["per_subject_3d"]["dice"] == pytest.approx(16 / 17)


def test_remove_small_objects_keeps_every_large_component():
    second = [("P", 3, mask((4, 4), (4, 5), (5, 4), (5, 5), (3, 0)), mask((4, 4), (4, 5), (5, 4), (5, 5)))]  # a real second lesion + 1 stray voxel
    largest, _ = scores(P[1:] + second, KeepLargestConnectedComponent())
    small, _ = scores(P[1:] + second, RemoveSmallObjects(min_size=2))
    assert largest["postprocessed"]["classes"]["tumour"]["per_subject_3d"]["dice"] == pytest.approx(16 / 20)  # loses the second lesion
    assert small["postprocessed"]["classes"]["tumour"]["per_subject_3d"]["dice"] == 1.0


def test_tables_carry_both_scores(tmp_path):
    writer = SegmentationMetricsWriter(["tumour"], output_dir=tmp_path, postprocessing=KeepLargestConnectedComponent())
    engine = Engine(lambda e, batch: [{"pred": item["pred"], "label": item["label"]} for item in batch])
    writer.attach(engine)
    engine.run([[{"subject": s, "slice": k, "image": f"{s}_{k}.tif", "pred": p, "label": l} for s, k, p, l in P + Q]], max_epochs=1)
    with open(tmp_path / "test_per_subject.csv") as f:
        subjects = {row["subject"]: row for row in csv.DictReader(f)}
    assert (subjects["P"]["fp_tumour"], subjects["P"]["fp_tumour_postprocessed"]) == ("1", "0")
    assert (float(subjects["P"]["dice_tumour"]), float(subjects["P"]["dice_tumour_postprocessed"])) == pytest.approx((16 / 17, 1.0), abs=1e-6)
    with open(tmp_path / "test_per_slice.csv") as f:
        slices = [(row["subject"], row["slice"], row["dice_tumour"], row["dice_tumour_postprocessed"]) for row in csv.DictReader(f)]
    assert slices == [("P", "1", "1.000000", "1.000000"), ("P", "2", "1.000000", "1.000000"), ("P", "3", "0.000000", "1.000000"), ("Q", "1", "0.000000", "0.000000")]
    assert "postprocessed" in json.loads((tmp_path / "test_summary.json").read_text())


def test_without_postprocessing_nothing_is_added(tmp_path):
    summary, metrics = scores(P, None)
    assert "postprocessed" not in summary and "test_dice_3d_postprocessed" not in metrics


def validator_like(key_metric):
    """(writer, engine, best) with an engine that, as MONAI's evaluators do, compares its key metric in an
    EPOCH_COMPLETED handler registered before the writer is attached; ``best`` collects what it compared."""
    writer = SegmentationMetricsWriter(["tumour"], prefix="val", postprocessing=KeepLargestConnectedComponent(), key_metric=key_metric)
    engine = Engine(lambda e, batch: [{"pred": item["pred"], "label": item["label"]} for item in batch])
    engine.state.key_metric_name = "val_mean_dice"
    best = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: best.append((e.state.key_metric_name, e.state.metrics.get(e.state.key_metric_name))))
    return writer, engine, best


def test_key_metric_is_scored_before_the_epoch_completed_handlers():
    writer, engine, best = validator_like("val_dice_3d_postprocessed")
    writer.attach(engine)
    engine.run([[{"subject": s, "slice": k, "pred": p, "label": l}] for s, k, p, l in P + Q], max_epochs=1)
    assert best == [("val_dice_3d_postprocessed", pytest.approx(0.5))]  # the largest-component 3D Dice of P (1) and Q (0)


def test_the_engines_own_key_metric_is_left_and_an_unknown_one_is_a_one_line_error():
    writer, engine, _ = validator_like("val_mean_dice")
    writer.attach(engine)
    assert engine.state.key_metric_name == "val_mean_dice"
    writer, engine, _ = validator_like("val_dice_2d")
    with pytest.raises(InputError, match=r"^key metric 'val_dice_2d': not one of val_mean_dice, val_dice_3d, val_dice_3d_postprocessed$"):
        writer.attach(engine)
