"""Padding a volume's in-plane grid to a square, which MONAI has no transform for (its pads take a fixed size)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import InvertibleTransform, MapTransform, SpatialPad

__all__ = ["SquareInPlanePadd"]


class SquareInPlanePadd(MapTransform, InvertibleTransform):
    """Pad the first two spatial axes to a square, centred, with zeros; the slice axis is untouched.

    Input per key: ``(C, X, Y, Z)`` tensor (a MetaTensor records the padding). Output: ``(C, M, M, Z)`` with
    ``M = max(X, Y)``, values unchanged inside, 0 in the padding, affine shifted so that every voxel keeps its
    place in the world. ``inverse`` crops the padding off again (MONAI's ``SpatialPad`` does both; one instance
    is kept because MONAI matches an inverse to the instance that recorded the step).

    Args:
        keys: keys of the volumes to pad.
        allow_missing_keys: do not raise if a key is absent.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.padder = SpatialPad(spatial_size=(-1, -1, -1), method="symmetric")

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            side = max(d[key].shape[1:3])
            self.padder.spatial_size = (side, side, -1)
            d[key] = self.padder(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.padder.inverse(d[key])
        return d
