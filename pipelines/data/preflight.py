"""Checks of every family that a bundle's ``initialize`` step runs before anything is read for training or written
(each family checks its own slices: :meth:`pipelines.data.lgg.LggData.check`, :meth:`pipelines.data.oasis.OasisData.check`)."""

from __future__ import annotations

import ast
import difflib
import math
import os
import pickle
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from pipelines.bundles import COMMON, FAMILIES
from pipelines.errors import InputError, first_line

__all__ = ["check_checkpoint", "check_overrides", "check_settings", "check_writable", "model_weights", "patch_within", "sizes_fit_network", "total_stride"]


def model_weights(path: str | os.PathLike, network: torch.nn.Module, hint: str = "") -> dict[str, torch.Tensor]:
    """The network weights in checkpoint ``path``, loaded on the CPU with ``weights_only=True``.

    ``path`` holds a bare state dict (``model.pt``) or ``{"model": state dict, "optimizer": ...}`` (a
    ``checkpoint_epoch=N.pt``). Raises :class:`InputError` when the file is missing, damaged, would run code
    to load (a pickled class or function), does not fit ``network`` (missing or extra keys, other shapes), or holds
    NaN or infinite weights.
    """
    if not Path(path).is_file():
        raise InputError(f"checkpoint {path}: no such file" + (f" ({hint})" if hint else ""))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holding objects other than tensors and containers
        needs_code = re.search(r"GLOBAL ([\w.]+)", str(err))
        if needs_code:
            raise InputError(f"checkpoint {path}: refused, loading it would run code ({needs_code.group(1)}); only weights-only "
                             "checkpoints (tensors in plain containers) are loaded; re-save its state_dict() if you trust it") from None
        reason = "file ends early" if isinstance(err, EOFError) else "no pickled tensors" if isinstance(err, pickle.UnpicklingError) else first_line(err).split(". ")[0]
        raise InputError(f"checkpoint {path}: damaged or not a PyTorch checkpoint ({reason})") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    expected = getattr(network, "module", network).state_dict()  # a DDP-wrapped network saves its module's keys
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise InputError(f"checkpoint {path}: holds no state dict of network weights")
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    reshaped = [f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}" for key in expected.keys() & state.keys()
                if state[key].shape != expected[key].shape]
    if missing or unexpected or reshaped:
        problems = [f"{len(missing)} missing keys (e.g. {missing[0]})"] if missing else []
        problems += [f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})"] if unexpected else []
        problems += [f"{len(reshaped)} other shapes (e.g. {sorted(reshaped)[0]})"] if reshaped else []
        raise InputError(f"checkpoint {path}: does not fit this bundle's network ({'; '.join(problems)}); was it trained with another bundle or network_def?")
    broken = sorted(key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all())
    if broken:
        raise InputError(f"checkpoint {path}: {len(broken)} weight tensors hold NaN or infinite values (e.g. {broken[0]}); "
                         "the training that wrote it diverged: use an earlier checkpoint")
    return state


def check_checkpoint(path: str | os.PathLike, network: torch.nn.Module) -> Path:
    """Before evaluation or inference: ``path`` loads weights-only and fits ``network``; else an :class:`InputError`."""
    model_weights(path, network, hint="train the bundle first or pass --ckpt_path")
    return Path(path)


def check_writable(folders: dict[str, str | os.PathLike]) -> None:
    """Before a run writes anything: each folder (by the option that sets it, e.g. ``{"--output_dir": path}``)
    exists or can be made, and takes a file; else an :class:`InputError` naming it."""
    for option, folder in folders.items():
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise InputError(f"{option} {folder}: cannot write there ({err.strerror or err})") from None


def _whole(option: str, value: object, minimum: int, maximum: int | None = None, why: str = "") -> int:
    """``value`` if it is a whole number in ``minimum..maximum``; a float is refused, never rounded."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"--{option} {value!r}: must be a whole number" + (", not rounded" if isinstance(value, float) else ""))
    if value < minimum or (maximum is not None and value > maximum):
        raise InputError(f"--{option} {value}: must be " + (f"at least {minimum}" if maximum is None else f"in {minimum}..{maximum}") + why)
    return value


def _learning_rate(option: str, value: object) -> float:
    """``value`` if it is a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1:
        raise InputError(f"--{option} {value!r}: must be a number in (0, 1]")
    return float(value)


def _size(option: str, value: object) -> list[int]:
    """``value`` if it is two whole numbers of pixels (height, width), each at least 1."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in value):
        raise InputError(f"--{option} {value!r}: must be two whole numbers of pixels, each at least 1, e.g. [256,256]")
    return list(value)


def _switch(option: str, value: object) -> bool:
    """``value`` if it is True or False."""
    if not isinstance(value, bool):
        raise InputError(f"--{option} {value!r}: must be True or False")
    return value


# Type and range of each setting that a bundle run reads, by its top-level config key (the option that sets it).
SETTING_RULES = {
    "resume": _switch,
    "overwrite": _switch,
    "epochs": lambda option, value: _whole(option, value, 1),
    "batch_size": lambda option, value: _whole(option, value, 1),
    "val_interval": lambda option, value: _whole(option, value, 1),
    "num_workers": lambda option, value: _whole(option, value, 0),
    "seed": lambda option, value: _whole(option, value, 0, 2**32 - 1),
    "learning_rate": _learning_rate,
    "image_size": _size,
    "roi_size": _size,
    "patch_size": _size,
    "neighbour_slices": lambda option, value: _whole(option, value, 0),
    "folds": lambda option, value: _whole(option, value, 3, why=" (a test, a validation and a training fold)"),
    "fold_seed": lambda option, value: _whole(option, value, 0, 2**32 - 1),
}


def check_settings(settings: dict[str, object], argv: Sequence[str] | None = None) -> None:
    """Before a bundle run builds or writes anything: the command line's overrides name defined settings
    (:func:`check_overrides` of ``argv``), and each of ``settings`` (top-level config keys and their values,
    ``checked_settings`` of bundles/common.json and the family's file) has the type and range of
    :data:`SETTING_RULES`, ``resume`` and ``overwrite`` are not both set, and ``fold`` (when set) is one of ``0..folds-1``; else an :class:`InputError`
    naming the option, e.g. ``--epochs 2.5: must be a whole number, not rounded``."""
    check_overrides(argv)
    for key, value in settings.items():
        if key in SETTING_RULES:
            SETTING_RULES[key](key, value)
    if settings.get("resume") and settings.get("overwrite"):
        raise InputError("--resume True --overwrite True: choose one: --resume continues the run in --ckpt_dir, --overwrite starts it over")
    if settings.get("fold") is not None:
        _whole("fold", settings["fold"], 0, settings["folds"] - 1, why=f" with --folds {settings['folds']}")


def total_stride(network: torch.nn.Module) -> int | None:
    """How many pixels of input one pixel of ``network``'s coarsest level spans: the product of its ``strides``
    (MONAI ``UNet``, ``DynUNet``) or ``2**depth`` (:class:`networks.unet.UNet`); None for another network."""
    network = getattr(network, "network", getattr(network, "module", network))  # inside FlipAveraged or DDP
    strides = getattr(network, "strides", None)
    if strides is not None:
        return math.prod(math.prod(stride) if isinstance(stride, (list, tuple)) else int(stride) for stride in strides)
    depth = getattr(network, "depth", None)
    return 2**depth if isinstance(depth, int) else None


def sizes_fit_network(sizes: dict[str, Sequence[int]], network: torch.nn.Module) -> None:
    """Each size (by the option that sets it, e.g. ``{"image_size": [256, 256]}``) is divisible by ``network``'s
    :func:`total_stride` in every dimension, as the U-Net's skip connections need; else an :class:`InputError`
    naming the option, the stride and the nearest sizes that fit."""
    stride = total_stride(network)
    for option, size in sizes.items():
        if stride and any(length % stride for length in size):
            below = [length // stride * stride for length in size]
            raise InputError(f"--{option} {list(size)}: each length must be divisible by {stride}, the network's total stride "
                             f"(its down-sampling steps multiplied), e.g. {below if all(below) else [stride] * len(size)}")


def patch_within(patch_size: Sequence[int], image_size: Sequence[int], network: torch.nn.Module | None = None) -> list[int]:
    """``patch_size`` (the training crop, pixels) if it is a size, fits in ``image_size`` in every dimension and
    (with ``network``) is divisible by its total stride; else an :class:`InputError` naming the setting."""
    patch = _size("patch_size", patch_size)
    if any(length > image for length, image in zip(patch, image_size)):
        raise InputError(f"--patch_size {patch}: larger than --image_size {list(image_size)}; a training patch is cut from a resized slice")
    if network is not None:
        sizes_fit_network({"patch_size": patch}, network)
    return patch


RUN_OPTIONS = ("run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file")  # monai.bundle run's own


def check_overrides(argv: Sequence[str] | None = None) -> None:
    """Before a bundle run reads or writes anything: every ``--key value`` of its ``python -m monai.bundle run`` command
    line names a setting that the merged configs define (``--network_def#dropout`` counts as ``network_def``); a
    typo such as ``--batchsize`` is an :class:`InputError` with the closest defined key, instead of a run with the
    recipe's value. Reads ``sys.argv`` (or ``argv``) and the files of its ``--config_file``; called otherwise (MONAI's
    Python API, whose overrides are keyword arguments), it checks nothing."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not (argv[0] == "monai.bundle" or Path(argv[0]).parts[-2:] == ("bundle", "__main__.py")):
        return
    options = {}
    for position, token in enumerate(argv):
        if token.startswith("--"):
            key, _, value = token[2:].partition("=")
            options[key] = value or (argv[position + 1] if position + 1 < len(argv) else "")
    if "config_file" not in options:
        return
    try:
        files = ast.literal_eval(options["config_file"])
    except (ValueError, SyntaxError):
        files = options["config_file"]
    files = [files] if isinstance(files, str) else list(files)
    defined = set(ConfigParser.load_config_files(files)) | {"bundle_root"}
    for key in options:
        top = key.split("#")[0]
        if key in RUN_OPTIONS or top in defined:
            continue
        family = next((path.stem for path in _other_family_files(files) if top in ConfigParser.load_config_file(str(path))), None)
        if family:
            raise InputError(f"--{key}: a setting of the {family.upper()} bundles, which this bundle is not")
        close = difflib.get_close_matches(top, sorted(defined), n=1)
        raise InputError(f"--{key}: no such setting in this bundle's configs" + (f"; did you mean --{close[0]}?" if close else ""))


def _other_family_files(files: Sequence[str]) -> list[Path]:
    """The family files (``bundles/<family>.json``) beside the common file of ``files`` that ``files`` do not merge."""
    common = next((Path(path) for path in files if Path(path).name == COMMON), None)
    return [] if common is None else [common.parent / f"{family}.json" for family in FAMILIES
                                      if str(common.parent / f"{family}.json") not in map(str, files) and (common.parent / f"{family}.json").is_file()]
