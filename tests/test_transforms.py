import numpy as np
import pytest
import torch

from transforms import SelectChannelsd


def test_keeps_the_requested_channels_in_order():
    image = torch.arange(3 * 2 * 2).reshape(3, 2, 2)
    out = SelectChannelsd("image", channels=[2, 0])({"image": image, "label": "untouched"})
    assert torch.equal(out["image"], image[[2, 0]])
    assert out["label"] == "untouched"


def test_flair_channel_of_an_rgb_slice():
    rgb = np.stack([np.full((4, 4), value, np.uint8) for value in (10, 20, 30)])
    assert SelectChannelsd("image", channels=[1])({"image": rgb})["image"].shape == (1, 4, 4)


def test_missing_channel_is_named():
    with pytest.raises(ValueError, match=r"channels \[1\] of an image with 1 channel"):
        SelectChannelsd("image", channels=[1])({"image": torch.zeros(1, 2, 2)})


def test_missing_key_allowed_only_when_asked():
    assert SelectChannelsd("image", [0], allow_missing_keys=True)({"label": 1}) == {"label": 1}
    with pytest.raises(KeyError):
        SelectChannelsd("image", [0])({"label": 1})
