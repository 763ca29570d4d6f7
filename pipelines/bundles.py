"""Which config files make up each workflow of a bundle, and the plain ``monai.bundle`` command for it.

An LGG bundle's ``configs/train.json`` holds its recipe and names its shared machinery in
``base_config`` (``bundles/lgg_common.json``). The files merge in this order:

- train:     ``configs/train.json``, base
- evaluate:  ``configs/train.json``, base, ``configs/evaluate.json``
- inference: ``configs/train.json``, base, ``configs/inference.json``

The recipe comes first so that MONAI takes ``metadata.json`` and ``logging.conf`` from the bundle's own
``configs/`` folder; the workflow file comes last so that it picks the ``initialize``/``run`` steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["MODES", "config_files", "bundle_command"]

MODES = ("train", "evaluate", "inference")


def config_files(bundle_dir: str | Path, mode: str) -> list[Path]:
    """Config files of ``mode`` for the bundle at ``bundle_dir`` (``bundles/<name>``), in merge order."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    configs = Path(bundle_dir) / "configs"
    recipe = configs / "train.json"
    base = json.loads(recipe.read_text()).get("base_config")
    files = [recipe] + ([Path(bundle_dir).parents[1] / base] if base else [])
    return files + ([configs / f"{mode}.json"] if mode != "train" else [])


def bundle_command(bundle_dir: str | Path, mode: str, overrides: dict[str, object]) -> list[str]:
    """``python -m monai.bundle run --config_file [...]`` for ``mode``, with ``--key value`` overrides."""
    files = [str(path) for path in config_files(bundle_dir, mode)]
    config_arg = files[0] if len(files) == 1 else "[" + ",".join(repr(f) for f in files) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_arg]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command
