"""What a researcher runs around the bundles: manifests (LGG, OASIS), datalists, demo data, evaluation, inference writers.

Bundle configs ``$import pipelines`` and call its modules by name, e.g. ``pipelines.datalist.load_split``;
submodules are imported on first use, so the command-line tools start without loading torch.
"""

import importlib

__all__ = ["datalist", "datasets", "distributed", "evaluation", "inference", "manifest", "oasis", "preflight", "training", "visualize"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"pipelines.{name}")
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
