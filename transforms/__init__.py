"""Custom MONAI dictionary transforms: only what MONAI itself lacks."""

from transforms.cache import Uint8ToFloatd
from transforms.channels import SelectChannelsd

__all__ = ["SelectChannelsd", "Uint8ToFloatd"]
