"""Data: manifests (build, validate, folds), datalists for MONAI datasets, the cached datasets, the checks a
bundle runs before it reads an image or writes an output, the one check of a slice image every path runs (``slices``), the synthetic demo data, and the 3D scans of volume
inference cut into slices (``volumes``)."""

from pipelines import lazy_submodules

__all__ = ["datalist", "datasets", "demo", "lgg", "manifest", "oasis", "preflight", "slices", "volumes"]
__getattr__ = lazy_submodules(__name__, __all__)
