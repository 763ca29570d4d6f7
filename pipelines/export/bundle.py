"""Export a trained bundle as one zip in the MONAI model-zoo layout that runs on its own, and import such a zip.

``python -m pipelines export bundles/<name> --out <name>.zip [--ckpt_path P] [--eval_dir D] [--<config id> VALUE ...]``
writes the bundle folder ``<name>/``:

- ``configs/train.json``, ``configs/evaluate.json``, ``configs/inference.json``: each the project's merged
  config of that workflow (recipe, ``bundles/common.json``, the family's file, the workflow file;
  :func:`pipelines.bundles.config_files`) with the overrides the checkpoint was trained with (e.g.
  ``--network_def#features 4``), ``bundle_root`` ``"."`` and ``"$import scripts"`` first among the imports, so
  that ``python -m monai.bundle run --config_file configs/<workflow>.json`` runs from the bundle folder and
  writes what the project writes (masks, NIfTI volumes, ``predictions.csv``, the Dice tables);
- ``configs/manifest.csv``: the manifest the run used (when it is a file), the configs' default ``manifest``;
- ``configs/metadata.json``: the bundle's, with the running MONAI/PyTorch/NumPy versions, in
  ``required_packages_version`` every other package that running the configs imports (:func:`required_packages`,
  ``fire`` for ``monai.bundle``'s command line included) at its installed version, ``model_sha256`` of both
  model files, ``eval_metrics`` from ``<eval_dir>/test_summary.json`` when that evaluation scored the exported
  checkpoint (else none: never a placeholder), and (LGG) the input channels the network was trained on;
- ``configs/logging.conf``, ``LICENSE``;
- ``scripts/``: the project's ``pipelines`` (what configs build: data, engine, portable, errors; not the
  command line, export or reports), ``transforms`` and ``networks``, copied from the project's own modules; its
  ``__init__.py`` puts the folder first on ``sys.path`` (the configs name ``pipelines.*`` as in the project)
  and installs the one-line error hook;
- ``models/model.pt`` (the state dict, read with ``weights_only=True``) and ``models/model.pt2``: the same
  network as a ``torch.export`` program for use outside MONAI (input ``(B, C, *spatial)`` float32, ``B``
  dynamic, spatial sizes any multiple of the factor in metadata's ``spatial_shape``; output logits);
  ``large_files.yml`` lists both with their SHA-256;
- ``docs/README.md``: for the person who receives it (:data:`RECEIVER_README`): what the model does, input and
  output formats, the measured results of these weights and where they come from, and the commands.

Why ``torch.export`` and not TorchScript: TorchScript (``torch.jit.script``/``trace``) is deprecated in recent
PyTorch, and ``torch.jit.script`` cannot compile the seeds' U-Net; ``torch.export`` captures the network as an ATen
graph with its weights that ``torch.export.load`` reads without the network's Python code. The batch dimension is
dynamic because the sliding-window inferer's last batch is smaller.

``python -m pipelines export --import <zip> --into <folder>`` checks the archive (readable, CRCs, one
top folder, no path escaping it, SHA-256 of the model files) and extracts it as ``<folder>/<name>``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
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

from pipelines.atomic import file_target, save_atomic
from pipelines.bundles import VOLUME_MODE, bundle_family, config_files
from pipelines.data.lgg import channel_names
from pipelines.data.preflight import model_weights
from pipelines.data.volumes import reference_sequence
from pipelines.engine.evaluation import POSTPROCESSED
from pipelines.errors import InputError, first_line
from pipelines.portable.checksum import file_sha256

__all__ = ["export_bundle", "import_bundle", "summary_metrics", "write_scripts"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("pipelines", "transforms", "networks")  # packages copied into scripts/
NOT_SHIPPED = ("pipelines/export", "pipelines/report.py", "pipelines/__main__.py", "pipelines/data/demo.py",  # what no config calls
               *(f"pipelines/cli/{command}.py" for command in ("crossval", "demo", "export", "manifest", "report")))
# what the configs import besides MONAI, PyTorch and NumPy (distribution names); fire runs monai.bundle's command line;
# itk-io (with itk-core) reads and writes the scans of volume inference;
# scikit-image only for a recipe with 3D post-processing (MONAI's connected components)
REQUIRED_PACKAGES = ("pytorch-ignite", "fire", "pillow", "nibabel", "pandas", "tensorboard", "tqdm", "itk-io")
POSTPROCESSING_PACKAGES = ("scikit-image",)
IMPORT_LIMIT_BYTES = 2**31  # unpacked size of an archive to import; an exported bundle is tens of MB
SCRIPTS_INIT = '''"""The project's code that this bundle's configs call (``pipelines``, ``transforms``, ``networks``), copied by
``python -m pipelines export`` from the project's own modules. Importing this package (the configs' first import)
puts this folder first on ``sys.path``, so that the configs' ``pipelines.*``, ``transforms.*`` and ``networks.*``
are these copies, and makes an input error end a run as one ``error:`` line."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pipelines.portable.errors import install_excepthook  # noqa: E402  (after the path is set)

install_excepthook()
'''
STATE_DICT, PROGRAM = "models/model.pt", "models/model.pt2"
COPIED = ("configs/logging.conf", "LICENSE")
WORKFLOW_FILES = {"train": "train.json", "evaluate": "evaluate.json", "inference": "inference.json", VOLUME_MODE: "volume_inference.json"}


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
    checkpoint, one that does not fit the network, or a network ``torch.export`` cannot capture.
    """
    bundle_dir, name = Path(bundle_dir), Path(bundle_dir).resolve().name
    if not (bundle_dir / "configs" / "train.json").is_file():
        raise InputError(f"{bundle_dir}: not a bundle folder (no configs/train.json)")
    file_target(out)
    configs = {mode: _merged_config(bundle_dir, mode, overrides or {}) for mode in WORKFLOW_FILES}
    parser = ConfigParser(configs["train"])
    parser["bundle_root"] = str(bundle_dir)
    ckpt = Path(ckpt_path or parser.get_parsed_content("ckpt_path"))
    manifest = Path(parser.get_parsed_content("manifest"))
    with tempfile.TemporaryDirectory() as staging:
        root = Path(staging) / name
        (root / "configs").mkdir(parents=True)
        meta = json.loads((bundle_dir / "configs" / "metadata.json").read_text())
        meta["model_sha256"] = _write_models(root, parser, ckpt, meta["network_data_format"]["inputs"]["image"]["spatial_shape"])
        meta.update(monai_version=monai.__version__, pytorch_version=torch.__version__.split("+")[0], numpy_version=np.__version__,
                    required_packages_version={package: importlib.metadata.version(package) for package in required_packages(parser)})
        summary_path = Path(eval_dir or parser.get_parsed_content("output_dir")) / "test_summary.json"
        meta["eval_metrics"] = _eval_metrics(summary_path, ckpt)
        if bundle_family(bundle_dir) == "lgg":  # the channels the network was trained on, whatever image_channels or neighbour_slices the overrides set
            names = channel_names(parser.get_parsed_content("image_channels"), parser.get_parsed_content("neighbour_slices"))
            meta["network_data_format"]["inputs"]["image"].update(num_channels=len(names), channel_def=dict(enumerate(names)))
        if manifest.is_file():
            shutil.copyfile(manifest, root / "configs" / "manifest.csv")
        for mode, config in configs.items():
            standalone = {**config, "bundle_root": ".", "imports": ["$import scripts", *config.get("imports", [])]}
            if manifest.is_file():
                standalone["manifest"] = "$@bundle_root + '/configs/manifest.csv'"
            (root / "configs" / WORKFLOW_FILES[mode]).write_text(json.dumps(standalone, indent=4) + "\n")
        (root / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
        for path in COPIED:
            shutil.copyfile(bundle_dir / path, root / path)
        write_scripts(root)
        _write_large_files(root, meta["model_sha256"])
        (root / "docs").mkdir()
        shutil.copyfile(SCHEMA, root / "docs" / SCHEMA.name)
        (root / "docs" / "README.md").write_text(_receiver_readme(root, parser, meta, ckpt, overrides or {}, manifest.is_file()))
        save_atomic(out, lambda tmp: _zip(root, tmp))
    return Path(out)


def required_packages(parser: ConfigParser) -> tuple[str, ...]:
    """The distributions besides MONAI, PyTorch and NumPy that running the bundle of ``parser`` imports."""
    return REQUIRED_PACKAGES + (POSTPROCESSING_PACKAGES if parser.get("postprocess_3d") is not None else ())


def _merged_config(bundle_dir: Path, mode: str, overrides: dict[str, object]) -> dict:
    """The config of workflow ``mode`` as MONAI merges the bundle's files, with ``overrides`` set (a ``#`` id inside
    its section), unparsed."""
    parser = ConfigParser(ConfigParser.load_config_files([str(path) for path in config_files(bundle_dir, mode)]))
    for key, value in overrides.items():
        parser[key] = value
    return parser.get()


def write_scripts(root: Path) -> None:
    """Write the ``scripts`` package of an exported bundle into the folder ``root``: the modules of :data:`SHIPPED`
    but :data:`NOT_SHIPPED`, and :data:`SCRIPTS_INIT` as its ``__init__.py``."""
    left_out = {path for pattern in NOT_SHIPPED for path in REPO_ROOT.glob(pattern)}
    for package in SHIPPED:
        for module in sorted((REPO_ROOT / package).rglob("*.py")):
            if not any(module == skip or skip in module.parents for skip in left_out):
                target = root / "scripts" / module.relative_to(REPO_ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(module, target)
    (root / "scripts" / "__init__.py").write_text(SCRIPTS_INIT)


def _write_large_files(root: Path, sha256: dict[str, str]) -> None:
    """``large_files.yml`` in the model zoo's format: each model file with its SHA-256; they ship in the zip (no url)."""
    lines = ["# The model files, shipped in this bundle (url empty: nothing to download); `python -m monai.bundle",
             "# download_large_files --bundle_path .` checks each file's hash.", "large_files:"]
    for path, sha in sha256.items():
        lines += [f'  - path: "{path}"', '    url: ""', f'    hash_val: "{sha}"', '    hash_type: "sha256"']
    (root / "large_files.yml").write_text("\n".join(lines) + "\n")


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


def _eval_metrics(summary_path: Path, ckpt: Path) -> dict[str, float]:
    """Flat ``eval_metrics`` from an evaluation summary, or ``{}`` (with a note on stderr) when there is no
    summary or it scored another checkpoint than ``ckpt``."""
    if not summary_path.is_file():
        print(f"note: no {summary_path}: these weights were not evaluated; eval_metrics stays empty", file=sys.stderr)
        return {}
    summary = json.loads(summary_path.read_text())
    scored = Path(summary.get("checkpoint", ""))
    if not (scored.is_file() and os.path.samefile(scored, ckpt)):
        print(f"note: {summary_path} scored {scored}, not {ckpt}: eval_metrics stays empty", file=sys.stderr)
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


RECEIVER_README = """# {title}

{description}

Task: {task}. {intended_use}

This folder is a MONAI bundle exported by the brain-MRI bundles project (`python -m pipelines export`) from its
bundle `{name}` {version}, with the weights of `{ckpt_name}`{overrides}. It runs on its own: Python with the packages
in `configs/metadata.json` (`monai_version`, `pytorch_version`, `numpy_version` and `required_packages_version`),
nothing else; the project's code that the configs call is in `scripts/`.

## Input and output

- Input: {input_text}
- The network reads {image_classes}.
- Inference writes, under `<output_dir>/predictions/`: `masks/<subject>/<slice name>_pred.png` (uint8 values {label_values}),
  `volumes/<subject>.nii.gz` (the subject's masks stacked in slice order, class indices; the slices carry no spacing:
  1 mm voxels, axial, affine diag(-1, -1, 1)), `volumes/<subject>_<sequence>.nii.gz` (the subject's image volume of each
  sequence the network reads, same grid, to open with the mask in 3D Slicer or ITK-SNAP) and `predictions.csv` (one row
  per slice: subject, slice, image, mask, volume, pixels per class).{postprocessing}
- Volume inference takes 3D scans instead: a folder of cases, each `<case>/<sequence>.nii.gz` (or `.nii`, `.nrrd`, `.mha`,
  or `<sequence>/`, a DICOM series folder) for the sequences {sequences}{single_file}; it writes
  `<output_dir>/volumes/<case>.nii.gz`, the mask in the scan's own geometry (class indices), and `volumes.csv` (volume
  of each class in millilitres). The scan is cut into axial slices of the training data's size and its intensities mapped
  min..max to 0..255, as the training slices were made (`--volumes#intensity unchanged` for values already 0..255);
  sequences on other grids are resampled onto the {reference} grid; `--volumes#suffix input` writes the masks in the
  input's format.
- Evaluation writes the same under `<output_dir>/` for the split it scores, and the Dice tables: `test_per_slice.csv`, `test_per_subject.csv`,
  `test_summary.json`.
- Prediction: {pred_classes}

## Measured results of these weights

{results}

## Run it, from this folder

    # inference on a folder of slices
    python -m monai.bundle run --config_file configs/inference.json --infer#input_dir /path/to/slices --output_dir out
    # inference on 3D scans (NIfTI, NRRD, MHA, DICOM), masks in each scan's geometry
    python -m monai.bundle run --config_file configs/volume_inference.json --volumes#input_dir /path/to/cases --output_dir out
    # evaluation on the manifest's test split{manifest_note}
    python -m monai.bundle run --config_file configs/evaluate.json --dataset_dir /path/to/{dataset_folder} --output_dir eval
    # fine-tuning: train from these weights (--init_weights), into new folders
    python -m monai.bundle run --config_file configs/train.json --dataset_dir /path/to/{dataset_folder} --init_weights models/model.pt --ckpt_dir finetune/models --output_dir finetune/train --epochs 10

Every other key of the configs can be set the same way (`--batch_size 8`). Bad input ends in one `error:` line with
exit code 1, before anything is written. From another folder, pass `--bundle_root <this folder>` and put this folder on
`PYTHONPATH` (for `scripts`).

Checks (no network needed; the metadata schema is shipped in `docs/`):

    python -m monai.bundle verify_metadata --meta_file configs/metadata.json --filepath docs/{schema}
    python -m monai.bundle verify_net_in_out --net_id network_def --config_file configs/inference.json --meta_file configs/metadata.json

## Files

| file | content |
|---|---|
| `configs/train.json`, `evaluate.json`, `inference.json`, `volume_inference.json` | the workflows, each complete (MONAI's `ConfigWorkflow` with `workflow_type` train, eval or infer runs them) |
| `configs/metadata.json` | versions, packages, input and output format, `eval_metrics` of these weights |
| `models/model.pt` | the network's state dict (load with `torch.load(..., weights_only=True)`; SHA-256 in `large_files.yml`) |
| `models/model.pt2` | the same network as a `torch.export` program, for use without its code: `torch.export.load("models/model.pt2").module()(x)`, `x` float32 `(B, {in_channels}, H, W)` with H and W multiples of {divisor}, gives logits `(B, {out_channels}, H, W)` (TorchScript is not offered: deprecated in PyTorch, and `torch.jit.script` cannot compile every network here) |
| `scripts/` | the project's `pipelines`, `transforms` and `networks` modules that the configs call |
| `large_files.yml` | the model files and their SHA-256 |
"""

INPUTS = {
    "lgg": "a folder of kaggle_3m-style slices, `<patient folder>/<name>_<slice number>.tif`, 256x256 uint8 with three channels "
           "(pre-contrast, FLAIR, post-contrast); the patient folder names the subject; files ending in `_mask.tif` are skipped. "
           "Evaluation reads a manifest CSV (`subject,slice,image,label,diagnosis,split`, paths relative to `--dataset_dir`).",
    "oasis": "a folder of OASIS PNG slices `case_NNN_slice_K.nii.png` (256x256, uint8 grey, skull-stripped and registered as in "
             "the OASIS `keras_png_slices_data`); NNN names the subject. Evaluation reads a manifest CSV "
             "(`subject,slice,image,label,diagnosis,split`, paths relative to `--dataset_dir`).",
}
DATASET_FOLDERS = {"lgg": "kaggle_3m", "oasis": "keras_png_slices_data"}
SCHEMA = Path(__file__).parent / "resources" / "meta_schema_20240725.json"


def _receiver_readme(root: Path, parser: ConfigParser, meta: dict, ckpt: Path, overrides: dict, has_manifest: bool) -> str:
    """``docs/README.md`` of the export: :data:`RECEIVER_README` filled from the metadata and the bundle's config."""
    family = bundle_family(root)
    postprocess = parser.get("postprocess_3d")
    image = meta["network_data_format"]["inputs"]["image"]
    sequences = list(parser.get_parsed_content("data").sequences)
    return RECEIVER_README.format(
        title=meta["name"], description=meta["description"], task=meta["task"], intended_use=meta.get("intended_use", ""),
        name=root.name, version=meta["version"], ckpt_name=ckpt.name,
        overrides=", trained with the overrides " + " ".join(f"`--{key} {value}`" for key, value in overrides.items()) if overrides else "",
        input_text=INPUTS[family], image_classes=meta["image_classes"], label_values=parser.get_parsed_content("label_values"),
        postprocessing="" if postprocess is None else
        f" Each subject's masks are post-processed as one 3D volume first (`{json.dumps(postprocess)}`).",
        pred_classes=meta["pred_classes"], results=_results_text(meta["eval_metrics"]),
        manifest_note=" (configs/manifest.csv, the manifest of the training run; --manifest for another)" if has_manifest else " (pass --manifest <csv>)",
        sequences=", ".join(f"`{name}`" for name in sequences), reference=reference_sequence(sequences),
        single_file=" (one sequence: a `<case>.nii.gz` file or a DICOM series folder `<case>/` also works)" if len(sequences) == 1 else "",
        dataset_folder=DATASET_FOLDERS[family], schema=SCHEMA.name, in_channels=image["num_channels"],
        divisor=str(image["spatial_shape"][0]).split("*")[0], out_channels=meta["network_data_format"]["outputs"]["pred"]["num_channels"],
    )


def _results_text(metrics: dict[str, float]) -> str:
    """The ``eval_metrics`` as a table, or a sentence saying that these weights were not evaluated."""
    if not metrics:
        return ("These weights were not evaluated before the export, so `eval_metrics` in `configs/metadata.json` is empty; "
                "evaluate them with the command below.")
    rows = "\n".join(f"| `{key}` | {value:.4f} |" if isinstance(value, float) else f"| `{key}` | {value} |" for key, value in metrics.items())
    return ("From the project's evaluation of exactly these weights on its test split (`configs/metadata.json` `eval_metrics`). "
            "`per_slice`: mean over slices, an empty prediction on an empty mask scores 1; `slices_with_<class>`: slices whose "
            "mask has the class; `per_subject_3d`: each subject's slices stacked into one volume, one Dice per subject, then the "
            "mean (median, min); `_postprocessed`: after the recipe's 3D post-processing.\n\n| metric | value |\n|---|---|\n" + rows)


def _zip(root: Path, archive: Path) -> None:
    """Zip the folder ``root`` as ``<root name>/...`` into ``archive``."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zipped.write(path, PurePosixPath(root.name, *path.relative_to(root).parts))


def _check_unpacked_size(archive: str | os.PathLike, zipped: zipfile.ZipFile, into: Path) -> None:
    """From the zip's directory, before anything is read or extracted: the members' unpacked size is at most
    :data:`IMPORT_LIMIT_BYTES` and fits the free space of the disk that holds ``into``; else an :class:`InputError`."""
    unpacked = sum(info.file_size for info in zipped.infolist())
    existing = next(folder for folder in (into, *into.parents) if folder.is_dir())
    free = shutil.disk_usage(existing).free
    for limit, what in ((IMPORT_LIMIT_BYTES, "the most an exported bundle may hold (a damaged or hostile zip?)"), (free, f"free on the disk of {into}")):
        if unpacked > limit:
            raise InputError(f"{archive}: its files take {unpacked / 2**20:.0f} MB unpacked, more than the {limit / 2**20:.0f} MB {what}; nothing extracted")


def import_bundle(archive: str | os.PathLike, into: str | os.PathLike) -> Path:
    """Extract an exported bundle zip as ``<into>/<name>`` and return that folder.

    Raises :class:`InputError` when ``archive`` is not a readable zip (e.g. truncated), its members would unpack
    to more than :data:`IMPORT_LIMIT_BYTES` or than the free disk (:func:`_check_unpacked_size`), a member fails its
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
        _check_unpacked_size(archive, zipped, Path(into))
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
