"""Checks of every family that a bundle's ``initialize`` step runs before anything is read for training or written
(each family checks its own slices: :meth:`pipelines.data.lgg.LggData.check`, :meth:`pipelines.data.oasis.OasisData.check`)."""

from __future__ import annotations

import ast
import difflib
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

__all__ = ["check_checkpoint", "check_overrides", "check_writable", "model_weights", "patch_within"]


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


def patch_within(patch_size: Sequence[int], image_size: Sequence[int]) -> list[int]:
    """``patch_size`` (the training crop, pixels) if it fits in ``image_size`` in every dimension; else an
    :class:`InputError` naming both settings."""
    if any(patch > image for patch, image in zip(patch_size, image_size)):
        raise InputError(f"--patch_size {list(patch_size)}: larger than --image_size {list(image_size)}; a training patch is cut from a resized slice")
    return list(patch_size)


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
