"""Test-time flip augmentation as a network wrapper, so that any MONAI inferer and evaluator can use it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FlipAveraged"]


class FlipAveraged(nn.Module):
    """Mean of ``network``'s outputs for the input as it is and flipped along each of ``spatial_axes``.

    Each flipped input's output is flipped back before averaging, so the result lines up with the input.
    Input: ``(B, C, *spatial)``; output: the network's ``(B, out_channels, *spatial)``, here the mean of its logits
    over ``1 + len(spatial_axes)`` passes (the activation is applied downstream, as without the wrapper).

    Args:
        network: the trained network; its weights are the wrapper's ``network.*`` parameters.
        spatial_axes: spatial axes to flip (0 is the first axis after the channels; 0 is left-right for the
            LGG slices as MONAI's ``PILReader`` loads them), one extra pass each.
    """

    def __init__(self, network: nn.Module, spatial_axes: Sequence[int] = (0,)) -> None:
        super().__init__()
        self.network = network
        self.dims = [axis + 2 for axis in spatial_axes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.network(x)
        for dim in self.dims:
            total = total + torch.flip(self.network(torch.flip(x, [dim])), [dim])
        return total / (1 + len(self.dims))
