"""Channel selection, which MONAI has no dictionary transform for: :class:`SelectChannelsd`, defined in
:mod:`pipelines.portable.channels` so that exported bundles ship the same transform."""

from pipelines.portable.channels import SelectChannelsd

__all__ = ["SelectChannelsd"]
