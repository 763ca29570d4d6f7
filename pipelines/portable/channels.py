"""Channel selection, which MONAI has no dictionary transform for."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["SelectChannelsd"]


class SelectChannelsd(MapTransform):
    """Keep only the given channels of channel-first arrays, e.g. the FLAIR channel (index 1) of an LGG slice.

    Input per key: ``(C, *spatial)`` array or tensor. Output: ``(len(channels), *spatial)``, same type,
    values unchanged.

    Args:
        keys: keys of the items to select from.
        channels: channel indices to keep, in the order given.
        allow_missing_keys: do not raise if a key is absent.
    """

    def __init__(self, keys: KeysCollection, channels: Sequence[int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = list(channels)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if max(self.channels) >= image.shape[0]:
                raise ValueError(f"{key}: asked for channels {self.channels} of an image with {image.shape[0]} channel(s)")
            d[key] = image[self.channels]
        return d
