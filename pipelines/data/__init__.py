"""Data: manifests (build, validate, folds), datalists for MONAI datasets, the cached datasets, the checks a
bundle runs before it reads an image or writes an output, and the synthetic demo data."""

from pipelines import lazy_submodules

__all__ = ["datalist", "datasets", "demo", "manifest", "oasis", "preflight"]
__getattr__ = lazy_submodules(__name__, __all__)
