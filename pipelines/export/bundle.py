"""Export a trained bundle as one zip that runs without this project, and import such a zip.

``python -m pipelines export bundles/<name> --out <name>.zip [--ckpt_path P] [--eval_dir D] [--<config id> VALUE ...]``
writes the MONAI bundle folder ``<name>/``:

- ``models/model.pt``: the network's state dict as trained (read with ``weights_only=True``);
- ``models/model.pt2``: the same network as a ``torch.export`` program (input ``(B, C, *spatial)`` float32,
  ``B`` dynamic, spatial sizes any multiple of the factor in metadata's ``spatial_shape``, e.g. ``16*n``;
  output ``(B, out_channels, *spatial)`` logits);
- ``configs/inference.json``: standalone inference, MONAI, PyTorch and ``scripts/`` only (no ``pipelines``,
  ``transforms`` or ``networks``): the project's inference preprocessing and postprocessing with MONAI
  transforms, the ``.pt2`` program as the network, ``SaveImaged`` for the masks. Generated from
  ``resources/export_inference.json`` and ``resources/export_inference_<lgg|oasis>.json``, whose
  ``_from_bundle_`` maps its keys to the bundle config ids whose parsed values fill them, and
  ``_config_from_bundle_`` to ids whose config as written (MONAI transform definitions naming no other id,
  e.g. the recipe's ``intensity_normalisation``) fills them;
- ``scripts/``: the modules of :mod:`pipelines.portable` that ``configs/inference.json`` calls (model checksum,
  folder datalist with 2.5D stacks, channel selection, 3D post-processing of the masks), and an ``__init__.py``
  that imports them and installs their one-line error hook; the bundle folder must be on ``sys.path`` (it is
  as the working directory of ``python -m monai.bundle``);
- ``configs/metadata.json``: the bundle's, with the running MONAI/PyTorch/NumPy versions,
  ``model_sha256`` of both model files, ``eval_metrics`` from ``<eval_dir>/test_summary.json`` when that
  evaluation scored the exported checkpoint, and (LGG) the input channels the network was trained on
  (``num_channels``, ``channel_def``: the recipe's ``image_channels`` and ``neighbour_slices`` after the overrides);
- ``configs/train.json``, ``configs/common.json``, ``configs/<family>.json``, ``configs/evaluate.json``: the
  project recipe (which names its family) and the shared machinery (``bundles/evaluate.json`` the last), to
  evaluate the bundle inside a project;
- ``configs/logging.conf``, ``docs/README.md`` (the bundle's, plus how to run this export), ``LICENSE``.

Extra ``--<config id> VALUE`` pairs are the overrides the checkpoint was trained with (e.g.
``--network_def#features 4``); they are written into the exported recipe so that it builds the same network.

Why ``torch.export`` and not TorchScript: TorchScript (``torch.jit.script``/``trace``) is deprecated in
recent PyTorch; ``torch.export`` captures the network as an ATen graph with its weights (an
``ExportedProgram``, saved as ``.pt2``) that ``torch.export.load`` reads without the network's Python code.
The batch dimension is dynamic because the sliding-window inferer's last batch is smaller. The loaded
program becomes a module through ``torch.export.unflatten``: ``ExportedProgram.module()`` refuses
``.eval()``, which MONAI's ``SupervisedEvaluator`` and ``verify_net_in_out`` call. ``torch.export.load``
unpickles, so the inference config checks the file's SHA-256 against the value recorded at export before
loading it. That detects a damaged or swapped file; it is not a signature (whoever can change the zip can
change the recorded value too).

``python -m pipelines export --import <zip> --into <folder>`` checks the archive (readable, CRCs, one
top folder, no path escaping it, SHA-256 of the model files) and extracts it as ``<folder>/<name>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import monai
import numpy as np
import torch
from monai.bundle import ConfigParser

from pipelines.atomic import save_atomic
from pipelines.bundles import WORKFLOWS, bundle_family, config_files
from pipelines.data.lgg import channel_names
from pipelines.data.preflight import model_weights
from pipelines.engine.evaluation import POSTPROCESSED
from pipelines.errors import InputError, first_line
from pipelines.portable.checksum import file_sha256

__all__ = ["export_bundle", "import_bundle", "evaluate_files", "write_scripts"]

RESOURCES = Path(__file__).parent / "resources"
PORTABLE = Path(__file__).parents[1] / "portable"
SCRIPTS_INIT = '''"""The modules of the project's pipelines/portable/ that configs/inference.json calls, copied by
python -m pipelines export. Importing this package imports them and makes an input error end a run as one
``error:`` line."""

from . import {modules}

errors.install_excepthook()
'''
STATE_DICT, PROGRAM = "models/model.pt", "models/model.pt2"
COPIED = ("configs/logging.conf", "LICENSE")


def export_bundle(
    bundle_dir: str | os.PathLike,
    out: str | os.PathLike,
    ckpt_path: str | os.PathLike | None = None,
    eval_dir: str | os.PathLike | None = None,
    overrides: dict[str, object] | None = None,
) -> Path:
    """Write the zip of ``bundle_dir`` (``bundles/<name>``) to ``out`` atomically and return ``out``.

    ``ckpt_path`` defaults to the bundle's ``ckpt_path`` (``<bundle_dir>/models/model.pt``) and ``eval_dir``
    to its ``output_dir`` (``<bundle_dir>/eval``). Raises :class:`InputError` for a missing or unreadable
    checkpoint, one that does not fit the network, a network ``torch.export`` cannot capture, or transforms
    copied as written that refer to other config ids.
    """
    bundle_dir, name = Path(bundle_dir), Path(bundle_dir).resolve().name
    if not (bundle_dir / "configs" / "train.json").is_file():
        raise InputError(f"{bundle_dir}: not a bundle folder (no configs/train.json)")
    overrides = overrides or {}
    with tempfile.TemporaryDirectory() as staging:
        root = Path(staging) / name
        recipe_files = _write_recipe(bundle_dir, root, overrides)
        parser = ConfigParser(ConfigParser.load_config_files([str(path) for path in recipe_files]))
        parser["bundle_root"] = str(bundle_dir)
        ckpt = Path(ckpt_path or parser.get_parsed_content("ckpt_path"))
        meta = json.loads((bundle_dir / "configs" / "metadata.json").read_text())
        meta["model_sha256"] = _write_models(root, parser, ckpt, meta["network_data_format"]["inputs"]["image"]["spatial_shape"])
        meta.update(monai_version=monai.__version__, pytorch_version=torch.__version__.split("+")[0], numpy_version=np.__version__)
        summary = Path(eval_dir or parser.get_parsed_content("output_dir")) / "test_summary.json"
        meta["eval_metrics"] = _eval_metrics(summary, ckpt) or meta.get("eval_metrics", {})
        family = bundle_family(bundle_dir)
        if family == "lgg":  # the channels the network was trained on, whatever image_channels or neighbour_slices the overrides set
            names = channel_names(parser.get_parsed_content("image_channels"), parser.get_parsed_content("neighbour_slices"))
            meta["network_data_format"]["inputs"]["image"].update(num_channels=len(names), channel_def=dict(enumerate(names)))
        inference = _inference_config(parser, family, meta["model_sha256"][PROGRAM])
        for path, content in (("configs/metadata.json", meta), ("configs/inference.json", inference)):
            (root / path).write_text(json.dumps(content, indent=4) + "\n")
        for path in COPIED:
            shutil.copyfile(bundle_dir / path, root / path)
        shutil.copyfile(bundle_dir.parent / WORKFLOWS["evaluate"], root / "configs" / "evaluate.json")
        write_scripts(root)
        (root / "docs").mkdir()
        readme = (bundle_dir / "docs" / "README.md").read_text()
        (root / "docs" / "README.md").write_text(readme + _export_notes(root, inference, meta, ckpt, overrides))
        save_atomic(out, lambda tmp: _zip(root, tmp))
    return Path(out)


def _write_recipe(bundle_dir: Path, root: Path, overrides: dict[str, object]) -> list[Path]:
    """Copy the recipe and the shared files it merges with (``common.json``, ``<family>.json``) into ``root/configs``
    with ``overrides`` applied, each to the first file that has its id (else to the recipe)."""
    sources = config_files(bundle_dir, "train")
    parsers = [ConfigParser(ConfigParser.load_config_file(path)) for path in sources]
    for key, value in overrides.items():
        next((parser for parser in parsers if key in parser), parsers[0])[key] = value
    targets = [root / "configs" / "train.json"] + [root / "configs" / path.name for path in sources[1:]]
    targets[0].parent.mkdir(parents=True)
    for parser, target in zip(parsers, targets):
        target.write_text(json.dumps(parser.get(), indent=4) + "\n")
    return targets


def write_scripts(root: Path) -> None:
    """Write the ``scripts`` package of an exported bundle into the folder ``root``: the modules of
    :mod:`pipelines.portable`, and :data:`SCRIPTS_INIT` as its ``__init__.py``."""
    modules = [path for path in sorted(PORTABLE.glob("*.py")) if path.name != "__init__.py"]
    (root / "scripts").mkdir()
    for module in modules:
        shutil.copyfile(module, root / "scripts" / module.name)
    (root / "scripts" / "__init__.py").write_text(SCRIPTS_INIT.format(modules=", ".join(module.stem for module in modules)))


def _write_models(root: Path, parser: ConfigParser, ckpt: Path, spatial_shape: list) -> dict[str, str]:
    """Write ``models/model.pt`` and ``models/model.pt2`` of the network trained as ``ckpt``; return their SHA-256."""
    network = _trained_network(parser, ckpt)
    (root / "models").mkdir()
    torch.save(network.state_dict(), root / STATE_DICT)
    example = torch.zeros(2, parser.get_parsed_content("network_def#in_channels"), *parser.get_parsed_content("validate#inferer#roi_size"))
    torch.export.save(_export(network, example, spatial_shape), root / PROGRAM)
    return {path: file_sha256(root / path) for path in (STATE_DICT, PROGRAM)}


def _trained_network(parser: ConfigParser, ckpt: Path) -> torch.nn.Module:
    """The bundle's ``network_def`` on the CPU, in eval mode, with the state dict of ``ckpt`` loaded."""
    try:
        network = parser.get_parsed_content("network_def")
    except Exception as err:  # e.g. an override naming an argument the network does not have
        raise InputError(f"cannot build the network_def of this bundle: {first_line(err.__cause__ or err)}") from None
    network.load_state_dict(model_weights(ckpt, network, hint="train the bundle first or pass --ckpt_path"))
    return network.eval()


def _export(network: torch.nn.Module, example: torch.Tensor, spatial_shape: list) -> torch.export.ExportedProgram:
    """``torch.export`` of ``network`` traced on ``example`` (``(2, C, *roi_size)``: a batch of 2 keeps the batch
    dimension from being specialised to 1).

    The batch is dynamic; a spatial axis given as ``"<k>*n"`` in ``spatial_shape`` (metadata) is dynamic as
    multiples of ``k``, an integer one stays fixed. Raises :class:`InputError` when the export fails.
    """
    axes = {0: torch.export.Dim("batch", min=1)}
    for axis, size in enumerate(spatial_shape, start=2):
        if isinstance(size, str):
            axes[axis] = int(size.split("*")[0]) * torch.export.Dim(f"n{axis}", min=1)
    try:
        return torch.export.export(network, (example,), dynamic_shapes=(axes,))
    except Exception as err:
        raise InputError(f"torch.export cannot capture {type(network).__name__}: {first_line(err)}") from None


def _inference_config(parser: ConfigParser, family: str, program_sha256: str) -> dict:
    """The standalone ``configs/inference.json``: the templates filled with the bundle's parsed values and configs."""
    config = json.loads((RESOURCES / "export_inference.json").read_text())
    config.update(json.loads((RESOURCES / f"export_inference_{family}.json").read_text()))
    for key, bundle_id in config.pop("_from_bundle_").items():
        config[key] = parser.get_parsed_content(bundle_id)
    for key, bundle_id in config.pop("_config_from_bundle_", {}).items():
        written = parser.get(bundle_id)
        if "@" in json.dumps(written):
            raise InputError(f"{bundle_id} refers to other config ids, which the exported bundle does not have: "
                             f"write their values into it ({json.dumps(written)})")
        config[key] = written
    config["model_sha256"] = program_sha256
    return config


def _eval_metrics(summary_path: Path, ckpt: Path) -> dict[str, float]:
    """Flat ``eval_metrics`` from an evaluation summary, or ``{}`` (with a note on stderr) when there is no
    summary or it scored another checkpoint than ``ckpt``."""
    if not summary_path.is_file():
        print(f"note: no {summary_path}: eval_metrics stay as in metadata.json", file=sys.stderr)
        return {}
    summary = json.loads(summary_path.read_text())
    scored = Path(summary.get("checkpoint", ""))
    if not (scored.is_file() and os.path.samefile(scored, ckpt)):
        print(f"note: {summary_path} scored {scored}, not {ckpt}: eval_metrics stay as in metadata.json", file=sys.stderr)
        return {}
    return summary_metrics(summary)


def summary_metrics(summary: dict) -> dict[str, float]:
    """Flat ``eval_metrics`` of an evaluation summary (``<prefix>_summary.json``), named
    ``<split>_mean_<metric>_<convention>``, ``<split>_dice_<class>_<convention>`` (with ``_median``, ``_min``
    where the convention has them), the same with ``_postprocessed`` for the summary's post-processed block,
    and ``<split>_n_subjects`` / ``<split>_n_slices``."""
    split = summary["split"]
    metrics = {f"{split}_n_subjects": summary["n_subjects"], f"{split}_n_slices": summary["n_slices"]}
    for block, suffix in ((summary, ""), (summary.get(POSTPROCESSED), f"_{POSTPROCESSED}")):
        if block is None:
            continue
        for group, scores in block["mean_over_classes"].items():
            metrics.update({f"{split}_mean_{metric}_{group}{suffix}": scores[metric] for metric in ("dice", "jaccard")})
        for name, groups in block["classes"].items():
            for group, scores in groups.items():
                metrics[f"{split}_dice_{name}_{group}{suffix}"] = scores["dice"]
                metrics.update({f"{split}_dice_{name}_{group}_{stat}{suffix}": scores[f"dice_{stat}"] for stat in ("median", "min") if f"dice_{stat}" in scores})
    return metrics


EXPORT_NOTES = """
## This export

Made by `python -m pipelines export` from `bundles/{name}` and the checkpoint `{ckpt}`{overrides}.

| file | content |
|---|---|
| `models/model.pt` | the state dict as trained (SHA-256 `{state_sha}`) |
| `models/model.pt2` | the network as a `torch.export` program, dynamic batch (SHA-256 `{program_sha}`); PyTorch {torch_version} |
| `configs/inference.json` | standalone inference: MONAI and PyTorch, and `scripts/` |
| `scripts/` | the project's code that `configs/inference.json` calls (checksum, datalist, channels, masks); importing it shows an input error as one `error:` line |
| {recipe} | the project recipe, to evaluate or retrain inside the project |

Inference without the project, from this folder (from elsewhere: `PYTHONPATH=DIR` for `scripts/` and `--bundle_root DIR`):

    python -m monai.bundle run --config_file configs/inference.json --dataset_dir /path/to/slices [--output_dir DIR]

It checks the SHA-256 of `models/model.pt2` before loading it, predicts every `{pattern}` below the folder
(skipping names ending in {skipped}) and writes `<output_dir>/masks/<sub-folder>/<name>_pred.png` (uint8,
values {label_values}; `output_dir` defaults to `./eval`), the masks the project's inference writes.{postprocessing}

Checks, from this folder (`verify_metadata` downloads the schema named in `metadata.json`; offline, add
`--filepath <local copy> --hash_val <its md5>`):

    python -m monai.bundle verify_metadata --meta_file configs/metadata.json
    python -m monai.bundle verify_net_in_out --net_id network_def --config_file configs/inference.json --meta_file configs/metadata.json

Inside the project: `python -m pipelines export --import {name}.zip --into bundles/` (checks the archive
and the SHA-256 of the model files), then evaluate `models/model.pt` from the repository root:

    python -m monai.bundle run --config_file "[{evaluate_files}]" --dataset_dir /path/to/data --manifest /path/to/manifest.csv
"""


def _export_notes(root: Path, inference: dict, meta: dict, ckpt: Path, overrides: dict) -> str:
    """The ``## This export`` section appended to the bundle's ``docs/README.md``; ``root`` is the staged bundle."""
    name, recipe = root.name, [path.relative_to(root) for path in evaluate_files(root)]
    return EXPORT_NOTES.format(
        name=name,
        ckpt=ckpt,
        overrides=", with the overrides " + " ".join(f"`--{key} {value}`" for key, value in overrides.items()) if overrides else "",
        state_sha=meta["model_sha256"][STATE_DICT],
        program_sha=meta["model_sha256"][PROGRAM],
        torch_version=meta["pytorch_version"],
        recipe=", ".join(f"`{path}`" for path in recipe),
        pattern=inference["image_pattern"],
        skipped=", ".join(f"`{suffix}`" for suffix in inference["skip_suffixes"]) or "nothing",
        label_values=inference["label_values"],
        postprocessing="" if inference.get("postprocess_3d") is None else
        " When every slice is predicted, each sub-folder's masks are stacked in slice order (the number ending the file"
        f" name) and post-processed as one 3D volume by the recipe's `postprocess_3d` (`{json.dumps(inference['postprocess_3d'])}`),"
        " then written again.",
        evaluate_files=",".join(f"'bundles/{name}/{path}'" for path in recipe),
    )


def evaluate_files(bundle: Path) -> list[Path]:
    """Config files of the project's evaluate command for the exported bundle folder ``bundle``, in merge order."""
    return [bundle / "configs" / path.name for path in config_files(bundle, "evaluate")]


def _zip(root: Path, archive: Path) -> None:
    """Zip the folder ``root`` as ``<root name>/...`` into ``archive``."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zipped.write(path, PurePosixPath(root.name, *path.relative_to(root).parts))


def import_bundle(archive: str | os.PathLike, into: str | os.PathLike) -> Path:
    """Extract an exported bundle zip as ``<into>/<name>`` and return that folder.

    Raises :class:`InputError` when ``archive`` is not a readable zip (e.g. truncated), a member fails its
    CRC, the members are not all below one ``<name>/`` folder (or a path escapes it), a model file's
    SHA-256 differs from ``configs/metadata.json``, or ``<into>/<name>`` already exists.
    """
    try:
        zipped = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{archive}: not a readable zip archive ({first_line(err)})") from None
    with zipped:
        members = [PurePosixPath(member) for member in zipped.namelist()]
        names = {member.parts[0] for member in members}
        if len(names) != 1 or any(member.is_absolute() or ".." in member.parts for member in members):
            raise InputError(f"{archive}: expected every file below one <bundle name>/ folder")
        name = names.pop()
        try:
            damaged = zipped.testzip()
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
            damaged = first_line(err)
        if damaged:
            raise InputError(f"{archive}: damaged archive ({damaged} fails its check)")
        try:
            expected = json.loads(zipped.read(f"{name}/configs/metadata.json"))["model_sha256"]
        except (KeyError, ValueError) as err:
            raise InputError(f"{archive}: not an exported bundle (no model_sha256 in {name}/configs/metadata.json: {first_line(err)})") from None
        for path, sha in expected.items():
            if hashlib.sha256(zipped.read(f"{name}/{path}")).hexdigest() != sha:
                raise InputError(f"{archive}: {name}/{path}: SHA-256 is not the one recorded at export (file damaged or replaced)")
        target = Path(into) / name
        if target.exists():
            raise InputError(f"{target}: already exists; remove it or import into another folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
        try:
            zipped.extractall(staging)
            (staging / name).rename(target)  # all or nothing: the folder appears complete or not at all
        finally:
            shutil.rmtree(staging)
    return target
