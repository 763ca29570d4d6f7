import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.transforms import KeepLargestConnectedComponent, LoadImage
from PIL import Image

from pipelines.engine.inference import PredictionWriter


def slice_item(subject, number, folder):
    image = MetaTensor(torch.zeros(1, 6, 4), meta={"filename_or_obj": str(folder / f"{subject}_{number}.tif")})
    return {"subject": subject, "slice": number, "image": image}


def test_masks_volumes_and_index(tmp_path):
    # predictions in MONAI's PIL order (1, W=6, H=4): one pixel at column 5, row 2, class 1 or 2
    preds = {}
    for number, cls in ((2, 2), (1, 1)):  # arrive out of slice order
        pred = torch.zeros(1, 6, 4)
        pred[0, 5, 2] = cls
        preds[number] = pred
    batch = [slice_item("P1", number, tmp_path) for number in preds]
    outputs = [{"pred": preds[item["slice"]]} for item in batch]
    engine = Engine(lambda e, b: outputs)
    PredictionWriter(tmp_path / "out", label_values=[0, 85, 170], class_names=["bg", "a", "b"]).attach(engine)
    engine.run([batch], max_epochs=1)

    png = np.asarray(Image.open(tmp_path / "out/masks/P1/P1_2_pred.png"))
    assert png.shape == (4, 6) and png.dtype == np.uint8  # PNG is rows x columns, like the input slice
    assert png[2, 5] == 170 and png.sum() == 170
    reloaded = LoadImage(reader="PILReader", image_only=True)(tmp_path / "out/masks/P1/P1_2_pred.png")
    assert torch.equal(torch.as_tensor(reloaded), preds[2][0] * 85)  # MONAI reads it back in the orientation it was predicted

    volume = nib.load(tmp_path / "out/volumes/P1.nii.gz").get_fdata()
    assert volume.shape == (6, 4, 2) and volume[5, 2, 0] == 1 and volume[5, 2, 1] == 2  # slices stacked in slice order

    index = pd.read_csv(tmp_path / "out/predictions.csv")
    assert list(index["slice"]) == [1, 2]
    assert list(index.columns) == ["subject", "slice", "image", "prediction", "volume", "pixels_a", "pixels_b"]
    assert list(index["pixels_b"]) == [0, 1]
    assert not list((tmp_path / "out").rglob(".*"))  # no temporary files left behind


def test_label_values_must_match_class_names(tmp_path):
    with pytest.raises(ValueError, match="differ in length"):
        PredictionWriter(tmp_path, label_values=[0, 255], class_names=["bg", "a", "b"])


def test_one_slice_subject_gives_a_one_slice_volume(tmp_path):
    engine = Engine(lambda e, b: [{"pred": torch.ones(1, 6, 4)}])
    PredictionWriter(tmp_path / "out").attach(engine)
    engine.run([[slice_item("P1", 7, tmp_path)]], max_epochs=1)
    assert nib.load(tmp_path / "out/volumes/P1.nii.gz").shape == (6, 4, 1)


def test_postprocessing_applies_to_each_subject_volume_before_writing(tmp_path):
    # P1: a 2x2x2 blob over slices 3-4 and a lone pixel on slice 5 (two 3D components); P2: only a lone pixel
    preds = {("P1", number): torch.zeros(1, 6, 4) for number in (3, 4, 5)} | {("P2", 1): torch.zeros(1, 6, 4)}
    for number in (3, 4):
        preds["P1", number][0, 1:3, 1:3] = 1
    preds["P1", 5][0, 5, 3] = 1
    preds["P2", 1][0, 0, 0] = 1
    batch = [slice_item(subject, number, tmp_path) for subject, number in preds]
    outputs = [{"pred": preds[item["subject"], item["slice"]]} for item in batch]
    engine = Engine(lambda e, b: outputs)
    PredictionWriter(tmp_path / "out", postprocessing=KeepLargestConnectedComponent()).attach(engine)
    engine.run([batch], max_epochs=1)

    volume = nib.load(tmp_path / "out/volumes/P1.nii.gz").get_fdata()
    assert volume.shape == (6, 4, 3) and volume.sum() == 8 and volume[..., 2].sum() == 0  # the lone pixel is gone
    assert np.asarray(Image.open(tmp_path / "out/masks/P1/P1_5_pred.png")).sum() == 0
    assert np.asarray(Image.open(tmp_path / "out/masks/P1/P1_3_pred.png")).sum() == 4 * 255
    assert np.asarray(Image.open(tmp_path / "out/masks/P2/P2_1_pred.png")).sum() == 255  # each subject on its own
    index = pd.read_csv(tmp_path / "out/predictions.csv")
    assert list(zip(index["subject"], index["slice"], index["pixels_tumour"])) == [("P1", 3, 4), ("P1", 4, 4), ("P1", 5, 0), ("P2", 1, 1)]


def test_image_volumes_are_written_beside_the_mask_volume(tmp_path):
    # two RGB slices (H=4, W=6): each sequence read becomes a (W, H, S) volume on the mask's grid, with the same affine
    batch = []
    for number in (1, 2):
        pixels = np.zeros((4, 6, 3), np.uint8)
        pixels[2, 5] = (10 * number, 20 * number, 30 * number)  # row 2, column 5
        Image.fromarray(pixels).save(tmp_path / f"P1_{number}.tif")
        batch.append(slice_item("P1", number, tmp_path))
    engine = Engine(lambda e, b: [{"pred": torch.zeros(1, 6, 4)} for _ in batch])
    PredictionWriter(tmp_path / "out", sequence_channels={"flair": 1, "post-contrast": 2}).attach(engine)
    engine.run([batch], max_epochs=1)

    mask = nib.load(tmp_path / "out/volumes/P1.nii.gz")
    for sequence, channel in (("flair", 1), ("post-contrast", 2)):
        image = nib.load(tmp_path / f"out/volumes/P1_{sequence}.nii.gz")
        assert image.shape == mask.shape == (6, 4, 2) and np.array_equal(image.affine, mask.affine)
        values = image.get_fdata()
        assert values[5, 2, 0] == 10 * (channel + 1) and values[5, 2, 1] == 20 * (channel + 1) and values.sum() == 30 * (channel + 1)
    assert np.array_equal(mask.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))  # axial, radiological: docs/volumes.md
    assert not (tmp_path / "out/volumes/P1_pre-contrast.nii.gz").exists()
