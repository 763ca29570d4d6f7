"""What a researcher runs around the bundles, in layers:

- ``data``: manifests (LGG, OASIS), datalists, datasets, preflight checks, demo data;
- ``engine``: the handlers, writers, samplers and checks that bundle configs build (training, evaluation,
  inference, distributed, TensorBoard);
- ``export``: a trained bundle as a zip that runs with MONAI and PyTorch alone;
- ``report``: figures and tables of evaluated runs;
- ``cli``: the ``python -m pipelines`` commands, and the one place where an :class:`~pipelines.errors.InputError`
  becomes an ``error:`` line and an exit code.

Bundle configs ``$import pipelines`` and call its modules by name, e.g. ``pipelines.data.datalist.load_split``;
subpackages and their modules are imported on first use, so the command-line tools start without loading torch.
"""

import importlib

__all__ = ["cli", "data", "engine", "export", "report"]


def lazy_submodules(package: str, names: list[str]):
    """A module ``__getattr__`` for ``package`` that imports ``package.<name>`` on first use, for ``names``."""

    def __getattr__(name: str):
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = lazy_submodules(__name__, __all__)
