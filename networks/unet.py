"""The seeds' custom U-Net, built from MONAI blocks."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers import Conv, Pool
from torch import nn

__all__ = ["UNet"]


class UNet(nn.Module):
    """U-Net of the seed notebooks (Ronneberger et al. 2015, as in Buda's brain-segmentation-pytorch).

    ``depth`` encoder blocks (two 3x3 conv + batch norm + ReLU each, then 2x max-pool), a bottleneck
    block, ``depth`` decoder blocks (up-sampling, concatenation with the encoder's skip, two conv) and a
    1x1 output convolution. Block ``i`` has ``features * 2**i`` channels.

    Input: ``(B, in_channels, *spatial)`` float, each spatial size divisible by ``2**depth``.
    Output: ``(B, out_channels, *spatial)`` logits (no activation: apply sigmoid or softmax downstream,
    which keeps the loss numerically stable and safe under mixed precision).

    Args:
        spatial_dims: 2 for slices, 3 for volumes.
        in_channels: input channels (1 for FLAIR alone, 3 for the LGG RGB slices).
        out_channels: output channels (1 for a binary mask, C for C classes).
        features: channels of the first block (32 in the seeds).
        depth: number of down-sampling steps (4 in the seeds).
        dropout: dropout probability inside every conv block (0 disables it).
        upsample: ``"deconv"`` (transposed convolution) or ``"nontrainable"`` (interpolation followed
            by a 1x1 convolution), passed to :class:`monai.networks.blocks.UpSample`.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: int = 32,
        depth: int = 4,
        dropout: float = 0.0,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        widths = [features * 2**level for level in range(depth + 1)]
        self.depth = depth

        def conv_block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(*(
                Convolution(spatial_dims, c, cout, kernel_size=3, act="relu", norm="batch", dropout=dropout or None, bias=False)
                for c in (cin, cout)
            ))

        self.encoders = nn.ModuleList(conv_block(in_channels if lvl == 0 else widths[lvl - 1], widths[lvl]) for lvl in range(depth))
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.bottleneck = conv_block(widths[depth - 1], widths[depth])
        levels_up = range(depth - 1, -1, -1)
        self.upsamplers = nn.ModuleList(
            UpSample(spatial_dims, widths[lvl + 1], widths[lvl], scale_factor=2, mode=upsample, align_corners=False)
            for lvl in levels_up
        )
        self.decoders = nn.ModuleList(conv_block(2 * widths[lvl], widths[lvl]) for lvl in levels_up)
        self.head = Conv[Conv.CONV, spatial_dims](widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2**self.depth
        if any(size % factor for size in x.shape[2:]):
            raise ValueError(f"UNet of depth {self.depth} needs spatial sizes divisible by {factor}, got {tuple(x.shape[2:])}")
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsampler, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(torch.cat([upsampler(x), skip], dim=1))
        return self.head(x)
