"""Which config files make up each workflow of a bundle, and the plain ``monai.bundle`` command for it.

An LGG bundle's ``configs/train.json`` holds its recipe and names its shared machinery in
``base_config`` (``bundles/lgg_common.json``). The files merge in this order:

- train:              ``configs/train.json``, base
- evaluate:           ``configs/train.json``, base, ``configs/evaluate.json``
- inference:          ``configs/train.json``, base, ``configs/inference.json``
- multi_gpu_train:    ``configs/train.json``, base, ``bundles/multi_gpu.json``, ``configs/multi_gpu_train.json``
- multi_gpu_evaluate: ``configs/train.json``, base, ``bundles/multi_gpu.json``, ``configs/multi_gpu_evaluate.json``

(OASIS has no base: its ``train.json`` holds the whole recipe.) The multi-GPU modes run under ``torchrun``.

The recipe comes first so that MONAI takes ``metadata.json`` and ``logging.conf`` from the bundle's own
``configs/`` folder; the workflow file comes last so that it picks the ``initialize``/``run`` steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["MODES", "MULTI_GPU_MODES", "config_files", "bundle_command"]

MODES = ("train", "evaluate", "inference")
MULTI_GPU_MODES = ("multi_gpu_train", "multi_gpu_evaluate")
MULTI_GPU = "multi_gpu.json"  # in the bundles/ folder, shared by every bundle


def config_files(bundle_dir: str | Path, mode: str) -> list[Path]:
    """Config files of ``mode`` for the bundle at ``bundle_dir`` (``bundles/<name>``), in merge order."""
    if mode not in MODES + MULTI_GPU_MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES + MULTI_GPU_MODES)}")
    configs = Path(bundle_dir) / "configs"
    recipe = configs / "train.json"
    base = json.loads(recipe.read_text()).get("base_config")
    files = [recipe] + ([Path(bundle_dir).parents[1] / base] if base else [])
    if mode in MULTI_GPU_MODES:
        files.append(Path(bundle_dir).parent / MULTI_GPU)
    return files + ([configs / f"{mode}.json"] if mode != "train" else [])


def bundle_command(bundle_dir: str | Path, mode: str, overrides: dict[str, object], processes: int = 1) -> list[str]:
    """``python -m monai.bundle run --config_file [...]`` for ``mode``, with ``--key value`` overrides;
    ``torchrun --standalone --nproc_per_node=<processes> -m monai.bundle run ...`` for the multi-GPU modes."""
    files = [str(path) for path in config_files(bundle_dir, mode)]
    config_arg = files[0] if len(files) == 1 else "[" + ",".join(repr(f) for f in files) + "]"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if mode in MULTI_GPU_MODES else [sys.executable]
    command = [*launcher, "-m", "monai.bundle", "run", "--config_file", config_arg]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command
