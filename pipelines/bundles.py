"""Which config files make up each workflow of a bundle, and the plain ``monai.bundle`` command for it.

A bundle's ``configs/train.json`` holds its recipe and names its dataset family (``"family": "lgg"`` or
``"oasis"``). The machinery every bundle shares is ``bundles/common.json``; what is specific to a family
(its data component ``@data``, classes, post-processing) is ``bundles/<family>.json``. The files merge in
this order:

- train:              ``configs/train.json``, ``common.json``, ``<family>.json``
- evaluate:           the same, then ``bundles/evaluate.json``
- inference:          the same, then ``bundles/inference.json``
- volume_inference:   the same, then ``bundles/volume_inference.json`` (3D scans in, masks in their geometry out)
- multi_gpu_train:    the same, then ``bundles/multi_gpu.json``, ``configs/multi_gpu_train.json``
- multi_gpu_evaluate: the same, then ``bundles/multi_gpu.json``, ``bundles/evaluate.json``, ``configs/multi_gpu_evaluate.json``

The multi-GPU modes run under ``torchrun``. The recipe comes first so that MONAI takes ``metadata.json`` and
``logging.conf`` from the bundle's own ``configs/`` folder; the family file after the common one, so that its
``#`` keys (e.g. ``validate#postprocessing``) land in the common sections; the workflow file last, so that it
picks the ``initialize``/``run`` steps. The evaluation and inference workflow files are shared by every bundle and
define MONAI's workflow properties (``dataset``, ``evaluator``, ``inferer``, ...) at the top level, where
``monai.bundle.ConfigWorkflow`` looks for them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipelines.errors import InputError

__all__ = ["FAMILIES", "MODES", "MULTI_GPU_MODES", "VOLUME_MODE", "WORKFLOWS", "bundle_family", "config_files", "bundle_command"]

MODES = ("train", "evaluate", "inference")  # what the demo runs on its slices
VOLUME_MODE = "volume_inference"
MULTI_GPU_MODES = ("multi_gpu_train", "multi_gpu_evaluate")
MULTI_GPU = "multi_gpu.json"  # in the bundles/ folder, shared by every bundle
COMMON = "common.json"  # in the bundles/ folder: the machinery of every bundle
WORKFLOWS = {"evaluate": "evaluate.json", "inference": "inference.json", VOLUME_MODE: "volume_inference.json"}  # in the bundles/ folder, shared by every bundle
FAMILIES = ("lgg", "oasis")  # each with bundles/<family>.json and pipelines/data/<family>.py


def bundle_family(bundle_dir: str | Path) -> str:
    """The dataset family that the recipe ``bundle_dir/configs/train.json`` names (one of :data:`FAMILIES`)."""
    recipe = Path(bundle_dir) / "configs" / "train.json"
    family = json.loads(recipe.read_text()).get("family")
    if family not in FAMILIES:
        raise InputError(f"{recipe}: \"family\" is {family!r}; expected one of {', '.join(FAMILIES)}")
    return family


def config_files(bundle_dir: str | Path, mode: str) -> list[Path]:
    """Config files of ``mode`` for the bundle at ``bundle_dir`` (``bundles/<name>``), in merge order."""
    if mode not in (*MODES, VOLUME_MODE, *MULTI_GPU_MODES):
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join((*MODES, VOLUME_MODE, *MULTI_GPU_MODES))}")
    configs, shared = Path(bundle_dir) / "configs", Path(bundle_dir).parent
    files = [configs / "train.json", shared / COMMON, shared / f"{bundle_family(bundle_dir)}.json"]
    if mode in MULTI_GPU_MODES:
        files.append(shared / MULTI_GPU)
    if mode in ("evaluate", "inference", VOLUME_MODE, "multi_gpu_evaluate"):
        files.append(shared / WORKFLOWS[mode.removeprefix("multi_gpu_")])
    return files + ([configs / f"{mode}.json"] if mode in MULTI_GPU_MODES else [])


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
