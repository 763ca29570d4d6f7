"""Custom MONAI dictionary transforms: only what MONAI itself lacks."""

from transforms.channels import SelectChannelsd

__all__ = ["SelectChannelsd"]
