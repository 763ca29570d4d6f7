"""The step from a compact uint8 cache to float32 network input."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTrait

__all__ = ["Uint8ToFloatd"]


class Uint8ToFloatd(MapTransform, RandomizableTrait):
    """uint8 slices to float32 divided by ``divisor``: 0..255 -> 0..1 with the default 255 (a 0/255 mask -> 0/1).

    Input per key: uint8 tensor ``(C, *spatial)`` (a MetaTensor keeps its metadata and transform history, so
    ``Invertd`` still works later). Output: a new float32 tensor, same shape and device, equal to
    ``ScaleIntensityRange(a_min=0, a_max=divisor, b_min=0, b_max=1)`` of the float32 input bit for bit.

    Deterministic, but it carries MONAI's ``RandomizableTrait`` because that is where ``CacheDataset`` stops
    caching: the cache holds the uint8 items of the transforms before this one (a quarter of float32) and the
    conversion runs each time an item is drawn. It never modifies its input, so the cached items stay intact
    without ``CacheDataset``'s per-draw ``copy_cache``.

    Args:
        keys: keys of the uint8 items.
        divisor: value mapped to 1.
        allow_missing_keys: do not raise if a key is absent (e.g. no label at inference).
    """

    def __init__(self, keys: KeysCollection, divisor: float = 255.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.divisor = float(divisor)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key].dtype != torch.uint8:
                raise ValueError(f"{key}: expected a uint8 tensor (load it with dtype uint8), got {d[key].dtype}")
            d[key] = d[key].to(torch.float32) / self.divisor
        return d
