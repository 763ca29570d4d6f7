"""A MONAI ``CacheDataset`` for 2.5D items that holds each slice once.

A 2.5D item (:func:`pipelines.data.datalist.load_split` with ``neighbours`` > 0) lists the files of its slice and of
its neighbours, so caching the loaded stacks keeps every slice ``2 * neighbours + 1`` times. This dataset
caches the transforms up to the first random one (as ``CacheDataset``) on each slice alone and concatenates
the cached slices of an item's stack along the channel axis each time the item is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy

import torch
from monai.data import CacheDataset
from monai.transforms import Compose, RandomizableTrait, Transform

__all__ = ["StackedSliceDataset"]


class StackedSliceDataset(CacheDataset):
    """``CacheDataset`` whose items' ``stack_key`` may list several files, each loaded and cached once.

    ``data``: dicts as the datalists make them; ``stack_key`` is one path, or the list [own slice, neighbours...]
    whose every path is the own slice of some item of ``data`` (what ``load_split`` and ``load_folder`` give).
    ``transform``: a ``Compose`` whose part before the first random transform turns one file into a
    channel-first ``(C, H, W)`` tensor. A drawn item is the cached own-slice dict with ``stack_key`` replaced by
    the stack's tensors concatenated in list order, ``(len(list) * C, H, W)``, metadata of the own slice, then
    the random part applied. Items that are not cached (``cache_rate`` < 1, 0 for inference) run the deterministic
    part per file at draw time. Other arguments as ``CacheDataset``; without lists it behaves as one.
    """

    def __init__(self, data: Sequence[dict], transform: Compose, stack_key: str = "image", **cache_args) -> None:
        if not isinstance(transform, Compose):
            raise ValueError("StackedSliceDataset needs a monai.transforms.Compose transform")
        paths = [item[stack_key] if isinstance(item[stack_key], (list, tuple)) else [item[stack_key]] for item in data]
        own = {stack[0]: index for index, stack in enumerate(paths)}
        missing = sorted({path for stack in paths for path in stack if path not in own})
        if missing:
            raise ValueError(f"{stack_key}: {missing[0]} is stacked as a neighbour but is no item's own slice")
        self.stack_key = stack_key
        self.stacks = [[own[path] for path in stack] for stack in paths]
        self.first_random = transform.get_index_of_first(lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform))
        super().__init__([{**item, stack_key: stack[0]} for item, stack in zip(data, paths)], transform, **cache_args)

    def _transform(self, index: int):
        slices = [self._deterministic(i) for i in self.stacks[index]]
        item = dict(slices[0])
        if len(slices) > 1:
            item[self.stack_key] = torch.cat([part[self.stack_key] for part in slices])
        if self.copy_cache is True:
            item = deepcopy(item)
        return item if self.first_random is None else self.transform(item, start=self.first_random)

    def _deterministic(self, index: int) -> dict:
        """The own slice of item ``index`` after the transforms before the first random one (cached when it can be)."""
        if index >= self.cache_num:
            return self._load_cache_item(index)
        if self._cache[index] is None:  # MONAI's runtime caching
            self._cache[index] = self._load_cache_item(index)
        return self._cache[index]
