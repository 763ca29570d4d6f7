"""Custom networks of the seed experiments; MONAI's own networks are used directly where they fit."""

from networks.flips import FlipAveraged
from networks.unet import UNet

__all__ = ["FlipAveraged", "UNet"]
