"""Reports of evaluated bundle runs: figures and a markdown page for one run, a comparison table across runs.

:func:`write_report` reads an evaluation folder (``<split>_per_slice.csv``, ``<split>_per_subject.csv``,
``<split>_summary.json`` of :class:`pipelines.engine.evaluation.SegmentationMetricsWriter`, and the predicted masks
``masks/<subject>/<image stem>_pred.png`` of :class:`pipelines.engine.inference.PredictionWriter`) and, optionally,
the TensorBoard event files of training. It writes into its output folder, each figure at a fixed pixel size
(``FIGURE_INCHES`` at ``DPI`` dots per inch):

- ``curves.png`` (1200 x 450 px): training loss and validation Dice per epoch;
- ``overlays.png`` (800 x 1200 px): best, median and worst subject by 3D Dice, image with ground-truth
  (green) and predicted (red) contours;
- ``per_subject.png`` (1000 x 500 px): per-subject 3D Dice (one class), or per-slice Dice per class;
- ``report.md``: the summary table naming each Dice convention, and the figures.

:func:`compare` puts the summaries of several runs into one CSV and markdown table, next to the figures
the seed notebooks reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from pipelines.atomic import folder_target, save_atomic, write_text_atomic
from pipelines.errors import InputError, existing_dir, first_line

__all__ = ["DPI", "FIGURE_INCHES", "SEED_RESULTS", "compare", "evaluated", "find_summary", "read_scalars", "write_report"]

DPI = 100
FIGURE_INCHES = {"curves.png": (12.0, 4.5), "overlays.png": (8.0, 12.0), "per_subject.png": (10.0, 5.0)}
# Slice-level figures as the seed notebooks report them, by bundle name.
SEED_RESULTS = {
    "lgg_unet_bce": {"dice": 0.741},
    "lgg_unet_dicece_rgb": {"dice": 0.762, "jaccard": 0.665, "precision": 0.802, "recall": 0.828},
    "lgg_unet_small": {"dice": 0.658, "jaccard": 0.490},
    "oasis_unet": {"dice_background": 0.996, "dice_csf": 0.898, "dice_grey_matter": 0.938, "dice_white_matter": 0.966},
}
GROUND_TRUTH_COLOUR, PREDICTION_COLOUR = "lime", "red"
LOSS_TAG, EPOCH_LOSS_TAG = "train_loss", "train_loss_epoch"  # per iteration (CPU runs), mean per epoch (every run)
FIXED_COLUMNS = ("run", "split", "n_subjects", "n_slices", "dice_per_slice", "dice_slices_with_class", "dice_3d", "dice_3d_std",
                 "jaccard", "precision", "recall")
TRAINING_COLUMNS = ("epochs", "train_seconds", "device")  # from training_run.json
INTEGER_COLUMNS = ("n_subjects", "n_slices", "epochs")
SMOOTHING = 0.1  # weight of the newest iteration in the loss's exponential moving average


# ---------------------------------------------------------------------------------------------------- inputs


def _read_csv(path: Path, columns: Iterable[str]) -> pd.DataFrame:
    """The CSV at ``path``; InputError if it is missing, unreadable, or lacks one of ``columns``."""
    if not path.is_file():
        raise InputError(f"{path}: not found (run the evaluation first)")
    try:
        table = pd.read_csv(path, dtype={"subject": str, "image": str, "label": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: unreadable CSV: {first_line(err)}") from None
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    return table


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: unreadable JSON: {first_line(err)}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _read_summary(path: Path) -> dict:
    """A ``<split>_summary.json``, checked to hold the three Dice conventions for every class."""
    summary = _read_json(path)
    if not summary.get("classes"):
        raise InputError(f"{path}: no 'classes' entry (not a summary of SegmentationMetricsWriter)")
    for name, groups in summary["classes"].items():
        for group in ("per_slice", f"slices_with_{name}", "per_subject_3d"):
            if "dice" not in groups.get(group, {}):
                raise InputError(f"{path}: missing classes.{name}.{group}.dice")
    return summary


def _train_summary(*folders: Path) -> dict:
    """The first ``training_run.json`` (of :class:`pipelines.engine.training.TrainSummaryWriter`) in ``folders``, or {}."""
    for folder in folders:
        if (folder / "training_run.json").is_file():
            return _read_json(folder / "training_run.json")
    return {}


def read_scalars(log_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Every scalar of the TensorBoard event files under ``log_dir`` (searched recursively).

    Returns ``{tag: DataFrame(step, value)}`` sorted by step; where several files hold the same tag and
    step (a resumed run), the value written last wins. Empty if there are no event files.
    """
    frames: dict[str, list[pd.DataFrame]] = {}
    for path in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={SCALARS: 0}).Reload()  # 0: keep every point
        for tag in events.Tags()["scalars"]:
            frames.setdefault(tag, []).append(pd.DataFrame([(e.wall_time, e.step, e.value) for e in events.Scalars(tag)],
                                                           columns=["wall_time", "step", "value"]))
    return {
        tag: pd.concat(parts).sort_values("wall_time", kind="stable").drop_duplicates("step", keep="last")
        .sort_values("step")[["step", "value"]].reset_index(drop=True)
        for tag, parts in frames.items()
    }


def _load_slice(path: Path, channel: int | None = None) -> np.ndarray:
    """A 2D image as PIL reads it, (rows, columns); ``channel`` picks one channel of a multi-channel file."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except OSError as err:
        raise InputError(f"{path}: unreadable image: {first_line(err)}") from None
    return array[..., channel] if array.ndim == 3 and channel is not None else array


def _label_path(row: pd.Series) -> Path:
    """The per-slice CSV's ``label`` cell when filled, else the LGG convention: ``<image stem>_mask<suffix>`` beside the image."""
    if isinstance(row.get("label"), str):
        return Path(row["label"])
    image = Path(row["image"])
    return image.with_name(f"{image.stem}_mask{image.suffix}")


# ---------------------------------------------------------------------------------------------------- figures


def _new_figure(name: str) -> Figure:
    return Figure(figsize=FIGURE_INCHES[name], dpi=DPI, layout="constrained")


def _save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as PNG at exactly FIGURE_INCHES x DPI pixels (no tight bounding box)."""
    return save_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))


def _plot_curves(scalars: dict[str, pd.DataFrame], epochs: int | None, path: Path) -> Path:
    """Left: training loss per iteration (raw and smoothed, when logged) and its mean per epoch; right:
    validation Dice per epoch.

    With ``epochs`` known, iterations are drawn at fractional epochs (iteration / iterations per epoch);
    otherwise the left axis counts iterations. The mean per epoch is the logged ``train_loss_epoch`` (runs on
    CUDA log only that), else computed from the iterations when ``epochs`` is known.
    """
    figure = _new_figure("curves.png")
    loss_ax, dice_ax = figure.subplots(1, 2)
    loss, epoch_loss = scalars.get(LOSS_TAG), scalars.get(EPOCH_LOSS_TAG)
    if loss is not None:
        per_epoch = loss["step"].max() / epochs if epochs else 1.0
        x = loss["step"] / per_epoch
        loss_ax.plot(x, loss["value"], color="tab:blue", alpha=0.3, linewidth=0.8, label="per iteration")
        loss_ax.plot(x, loss["value"].ewm(alpha=SMOOTHING).mean(), color="tab:blue", label=f"smoothed (EMA, weight {SMOOTHING})")
        if epochs and epoch_loss is None:
            means = loss["value"].groupby(np.ceil(x - 1e-9).clip(lower=1)).mean()
            epoch_loss = pd.DataFrame({"step": means.index, "value": means.to_numpy()})
    if epoch_loss is not None:
        loss_ax.plot(epoch_loss["step"], epoch_loss["value"], "o-", color="tab:orange", label="mean per epoch")
    loss_ax.set(title="Training loss", xlabel="epoch" if epochs or loss is None else "iteration", ylabel="loss")
    lines = loss_ax.get_lines()
    if "lr" in scalars:
        lr_ax = loss_ax.twinx()
        lines += lr_ax.plot(scalars["lr"]["step"], scalars["lr"]["value"], "--", color="grey", label="learning rate (right axis)")
        lr_ax.set_ylabel("learning rate")
    if lines:
        loss_ax.legend(handles=lines, loc="upper right")
    for tag in sorted(tag for tag in scalars if tag.startswith("val_") and "dice" in tag):
        dice_ax.plot(scalars[tag]["step"], scalars[tag]["value"], marker="o", markersize=3, label=tag,
                     linestyle="-" if tag.startswith("val_dice_3d") else "--")
    dice_ax.set(title="Validation Dice", xlabel="epoch", ylabel="Dice", ylim=(0, 1.02))
    if dice_ax.get_lines():
        dice_ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small",
                       title="solid: per-subject 3D\ndashed: mean over slices", title_fontsize="small")
    return _save(figure, path)


def _contour(ax, mask: np.ndarray, colour: str, linewidth: float) -> bool:
    """Draw the boundaries between the label values of ``mask`` (0/255, or 0/85/170/255, ...) in ``colour``;
    False when ``mask`` holds one value only (nothing to draw)."""
    values = np.unique(mask).astype(np.float64)
    if len(values) > 1:
        ax.contour(mask, levels=(values[:-1] + values[1:]) / 2, colors=colour, linewidths=linewidth)
    return len(values) > 1


def _pick_slice(rows: pd.DataFrame) -> pd.Series:
    """The slice with the most ground-truth (non-zero) pixels; the middle slice if none has any."""
    rows = rows.sort_values("slice")
    pixels = [np.count_nonzero(_load_slice(_label_path(row))) for _, row in rows.iterrows()]
    return rows.iloc[int(np.argmax(pixels)) if max(pixels) > 0 else len(rows) // 2]


def _plot_overlays(slices: pd.DataFrame, subject_dice: pd.Series, dice_columns: list[str], eval_dir: Path,
                   channel: int | None, path: Path) -> list[str]:
    """Rows: best, median and worst subject by 3D Dice; columns: image, image with contours. Returns notes."""
    figure = _new_figure("overlays.png")
    axes = figure.subplots(3, 2)
    ranked = subject_dice.sort_values(ascending=False, kind="stable")
    notes = []
    for (role, subject), (image_ax, overlay_ax) in zip((("best", ranked.index[0]), ("median", ranked.index[len(ranked) // 2]),
                                                         ("worst", ranked.index[-1])), axes):
        row = _pick_slice(slices[slices["subject"] == subject])
        image = _load_slice(Path(row["image"]), channel)
        prediction_path = eval_dir / "masks" / str(subject) / f"{Path(row['image']).stem}_pred.png"
        for ax in (image_ax, overlay_ax):
            ax.imshow(image, cmap="gray")
            ax.set(xlabel="column (pixel)", ylabel="row (pixel)")
        _contour(overlay_ax, _load_slice(_label_path(row)), GROUND_TRUTH_COLOUR, 2.5)  # wider: visible under a matching prediction
        if not prediction_path.is_file():
            notes.append(f"No predicted mask `{prediction_path}`: the {role} row shows the ground truth only.")
            shown = "ground truth (no saved prediction)"
        elif _contour(overlay_ax, _load_slice(prediction_path), PREDICTION_COLOUR, 1.0):
            shown = "ground truth and prediction"
        else:
            shown = "ground truth (prediction: one class everywhere)"
        image_ax.set_title(f"{role}: {subject}, slice {row['slice']}\nsubject 3D Dice {subject_dice[subject]:.3f}", fontsize=9)
        overlay_ax.set_title(f"{shown}\nslice Dice {row[dice_columns].mean():.3f}", fontsize=9)
    shown_channel = f" (channel {channel} of the images)" if channel is not None and _load_slice(Path(row["image"])).ndim == 3 else ""
    figure.suptitle(f"Best, median and worst subject by per-subject 3D Dice{shown_channel}")
    figure.legend(handles=[Line2D([], [], color=GROUND_TRUTH_COLOUR, label="ground truth"),
                           Line2D([], [], color=PREDICTION_COLOUR, label="prediction")], loc="outside lower center", ncols=2)
    _save(figure, path)
    return notes


def _plot_per_subject(slices: pd.DataFrame, subjects: pd.DataFrame, classes: Sequence[str], path: Path) -> Path:
    """One class: per-subject 3D Dice as sorted bars with the mean as a line. Several: box plot of per-slice Dice per class."""
    figure = _new_figure("per_subject.png")
    ax = figure.subplots()
    if len(classes) == 1:
        dice = subjects.set_index("subject")[f"dice_{classes[0]}"].sort_values(ascending=False)
        ax.bar(dice.index.astype(str), dice.to_numpy(), color="tab:blue", label="3D Dice of a subject")
        ax.axhline(dice.mean(), color="tab:red", linestyle="--", label=f"mean {dice.mean():.3f}")
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.set(title=f"Per-subject 3D Dice of {classes[0]} (slices stacked per subject), sorted", xlabel="subject", ylabel="3D Dice")
        ax.legend(loc="lower left")
    else:
        boxes = ax.boxplot([slices[f"dice_{name}"].dropna() for name in classes], showmeans=True)
        ax.set_xticks(range(1, len(classes) + 1), classes)
        ax.set(title="Per-slice Dice per class", xlabel="class", ylabel="Dice per slice")
        ax.legend([boxes["medians"][0], boxes["means"][0]], ["median", "mean"], loc="lower left")
    ax.set_ylim(0, 1.05)
    return _save(figure, path)


# ---------------------------------------------------------------------------------------------------- markdown


def _markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a GitHub markdown table: floats with 3 decimals, missing values as empty cells."""
    def cell(value) -> str:
        if pd.isna(value):
            return ""
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in frame.astype(object).itertuples(index=False)]
    return "\n".join(lines)


def _summary_markdown(summary: dict) -> str:
    """Facts of the run, one table row per class (and their mean, when several) and Dice convention, and the conventions' definitions."""
    facts = [f"- {key}: `{value}`" for key, value in summary.items() if key not in ("conventions", "classes", "mean_over_classes")]
    scored = list(summary["classes"].items())
    if len(scored) > 1 and "mean_over_classes" in summary:
        scored.append(("mean over classes", summary["mean_over_classes"]))
    rows = []
    for name, groups in scored:
        for group, scores in groups.items():
            std = f" ± {scores['dice_std']:.3f}" if "dice_std" in scores else ""
            rows.append({"class": name, "convention": group, "n": scores.get("n"), "Dice": f"{scores['dice']:.3f}{std}",
                         **{metric: scores.get(metric) for metric in ("jaccard", "precision", "recall")}})
    conventions = [f"- `{key}`: {text}" for key, text in summary.get("conventions", {}).items()]
    return "\n".join([*facts, "", _markdown_table(pd.DataFrame(rows).astype({"n": "Int64"})), "", "Conventions (n counts slices, or subjects for per_subject_3d):",
                      *conventions])


def write_report(eval_dir: str | os.PathLike, train_log_dir: str | os.PathLike | None = None,
                 out_dir: str | os.PathLike | None = None, split: str = "test", image_channel: int | None = 1) -> Path:
    """Write the figures and ``report.md`` of one evaluated run into ``out_dir`` (default ``<eval_dir>/report``).

    Args:
        eval_dir: folder of ``<split>_per_slice.csv``, ``<split>_per_subject.csv``, ``<split>_summary.json``
            and ``masks/<subject>/<image stem>_pred.png``. Ground truth: the per-slice CSV's ``label`` column
            where filled, else ``<image stem>_mask<suffix>`` beside the image (LGG); relative paths are taken
            from the current folder.
        train_log_dir: folder holding the TensorBoard event files of training (``train_loss`` per iteration,
            ``val_*dice*`` and optionally ``lr`` per epoch); without it ``curves.png`` is skipped. The number
            of epochs, which places iterations on the epoch axis, comes from ``training_run.json`` in
            ``eval_dir`` or ``train_log_dir``, else from the last step of the per-epoch scalars.
        out_dir: output folder.
        split: file prefix of the evaluation files.
        image_channel: channel shown of multi-channel images (1 = FLAIR of the LGG RGB tifs; grey images as is);
            ``None`` shows an RGB image as it is.

    Returns the path of ``report.md``. Raises InputError on a missing folder or file, or an unreadable one.
    """
    eval_dir = existing_dir(eval_dir, "evaluation folder")
    out_dir = folder_target(out_dir if out_dir is not None else eval_dir / "report")
    summary = _read_summary(eval_dir / f"{split}_summary.json")
    classes = list(summary["classes"])
    dice_columns = [f"dice_{name}" for name in classes]
    slices = _read_csv(eval_dir / f"{split}_per_slice.csv", ["subject", "slice", "image", *dice_columns])
    subjects = _read_csv(eval_dir / f"{split}_per_subject.csv", ["subject", *dice_columns])
    unmatched = sorted(set(subjects["subject"]) - set(slices["subject"]))
    if unmatched:
        raise InputError(f"{eval_dir / f'{split}_per_subject.csv'}: subject {unmatched[0]!r} has no rows in {split}_per_slice.csv")
    sections = [f"# Evaluation report: {split} split", "", _summary_markdown(summary), ""]

    sections += ["## Training curves", ""]
    if train_log_dir is None:
        sections.append("No training log given (`--train_log_dir`): training curves skipped.")
    else:
        scalars = read_scalars(existing_dir(train_log_dir, "training log folder"))
        if scalars:
            epoch_steps = [frame["step"].max() for tag, frame in scalars.items() if tag != LOSS_TAG]
            epochs = _train_summary(eval_dir, Path(train_log_dir)).get("epochs") or max(epoch_steps, default=None)
            _plot_curves(scalars, epochs, out_dir / "curves.png")
            sections.append("![Training loss and validation Dice per epoch](curves.png)")
        else:
            sections.append(f"No TensorBoard scalars under `{train_log_dir}`: training curves skipped.")

    sections += ["", "## Best, median and worst subject", ""]
    subject_dice = subjects.set_index("subject")[dice_columns].mean(axis=1)
    notes = _plot_overlays(slices, subject_dice, dice_columns, eval_dir, image_channel, out_dir / "overlays.png")
    sections += ["![Image with ground-truth (green) and predicted (red) contours](overlays.png)"]
    sections += ["", *notes] if notes else []

    sections += ["", "## Dice per subject" if len(classes) == 1 else "## Dice per class", ""]
    _plot_per_subject(slices, subjects, classes, out_dir / "per_subject.png")
    sections.append("![Per-subject 3D Dice](per_subject.png)" if len(classes) == 1 else "![Per-slice Dice per class](per_subject.png)")
    return write_text_atomic(out_dir / "report.md", "\n".join(sections) + "\n")


# ---------------------------------------------------------------------------------------------------- comparison


def find_summary(run_dir: str | os.PathLike) -> Path:
    """The evaluation summary of a run or bundle folder: ``eval/test_summary.json`` if there, else the
    shallowest ``test_summary.json``, else the shallowest other ``*_summary.json``."""
    run_dir = existing_dir(run_dir, "run folder")
    found = list(run_dir.rglob("*_summary.json"))
    if not found:
        raise InputError(f"{run_dir}: no *_summary.json found (evaluate the bundle first)")
    return min(found, key=lambda path: (path != run_dir / "eval" / "test_summary.json", path.name != "test_summary.json",
                                        len(path.parts), str(path)))


def _run_name(run_dir: Path) -> str:
    """The folder after the last ``bundles`` component of the path, else the folder's own name."""
    parts = run_dir.resolve().parts
    if "bundles" not in parts[:-1]:
        return parts[-1]
    return parts[len(parts) - 1 - parts[-2::-1].index("bundles")]


def _seed_bundle(run_name: str) -> str | None:
    """The bundle of :data:`SEED_RESULTS` a run is named after: ``run_name`` itself or ``<bundle>_<suffix>``."""
    return next((bundle for bundle in SEED_RESULTS if run_name == bundle or run_name.startswith(bundle + "_")), None)


def _column_group(column: str) -> int:
    """Column order of the comparison table: fixed scores, per-class Dice, training, seed figures, summary path."""
    if column in FIXED_COLUMNS:
        return 0
    if column in TRAINING_COLUMNS:
        return 2
    return {"dice": 1, "seed": 3}.get(column.split("_", 1)[0], 4)


def _comparison_row(run_dir: Path) -> dict:
    path = find_summary(run_dir)
    summary = _read_summary(path)
    classes = summary["classes"]

    def mean(group: str, metric: str) -> float | None:
        """Mean over classes of one figure (the class's own figure when there is one class)."""
        values = [groups[group.format(name=name)].get(metric) for name, groups in classes.items()]
        values = [value for value in values if value is not None]
        return float(np.mean(values)) if values else None

    name = _run_name(run_dir)
    row = {"run": name, "split": summary.get("split", path.name.removesuffix("_summary.json")),
           "n_subjects": summary.get("n_subjects"), "n_slices": summary.get("n_slices"),
           "dice_per_slice": mean("per_slice", "dice"), "dice_slices_with_class": mean("slices_with_{name}", "dice"),
           "dice_3d": mean("per_subject_3d", "dice"), "dice_3d_std": mean("per_subject_3d", "dice_std"),
           **{metric: mean("per_slice", metric) for metric in ("jaccard", "precision", "recall")}}
    if len(classes) > 1:
        row.update({f"dice_{name}": groups["per_slice"]["dice"] for name, groups in classes.items()})
    others = sorted({found.parent for found in run_dir.rglob("training_run.json")}, key=lambda folder: (len(folder.parts), str(folder)))
    training = _train_summary(path.parent, *others)
    row.update({key: training.get(key) for key in TRAINING_COLUMNS})
    row.update({f"seed_{metric}": value for metric, value in SEED_RESULTS.get(_seed_bundle(name), {}).items()})
    row["summary"] = str(path)
    return row


def evaluated(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Split ``paths`` into (folders with an evaluation summary, the others), e.g. to compare ``bundles/*``."""
    found, skipped = [], []
    for path in map(Path, paths):
        has_summary = path.is_dir() and any(path.rglob("*_summary.json"))
        (found if has_summary else skipped).append(path)
    return found, skipped


def compare(run_dirs_or_bundle_dirs: Iterable[str | os.PathLike], out_path: str | os.PathLike) -> pd.DataFrame:
    """One row per run or bundle folder (its summary chosen by :func:`find_summary`), written as
    ``<out_path stem>.csv`` and ``.md``.

    Columns: run (bundle name: the folder after ``bundles/`` in the path, else the folder's name; a run
    named ``<bundle>_<anything>`` gets that bundle's seed figures), split,
    n_subjects, n_slices, dice_per_slice, dice_slices_with_class (LGG: tumour slices), dice_3d and
    dice_3d_std (per subject), jaccard, precision and recall (per slice), ``dice_<class>`` per slice when
    there are several classes (figures of several classes are means over classes), epochs, train_seconds
    and device from ``training_run.json`` (beside the summary, else the shallowest under the folder;
    empty when there is none), ``seed_<metric>`` from
    :data:`SEED_RESULTS`, and the summary's path. Raises InputError when a folder or its summary is missing.
    """
    rows = [_comparison_row(Path(path)) for path in run_dirs_or_bundle_dirs]
    if not rows:
        raise InputError("compare: no run or bundle folder given")
    columns = dict.fromkeys(key for row in rows for key in row)  # union, in order of appearance
    table = pd.DataFrame(rows, columns=sorted(columns, key=_column_group)).astype({key: "Int64" for key in INTEGER_COLUMNS})
    csv_path = Path(out_path).with_suffix(".csv")
    save_atomic(csv_path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))
    shown = table.drop(columns=["summary", "dice_3d_std"]).astype(object)
    shown["dice_3d"] = [f"{mean:.3f} ± {std:.3f}" if pd.notna(mean) else None for mean, std in zip(table["dice_3d"], table["dice_3d_std"])]
    shown = shown.rename(columns={"dice_3d": "dice_3d (mean ± std)"})
    notes = ["", "dice_per_slice, jaccard, precision, recall and dice_<class>: mean over slices (empty ground truth and "
             "empty prediction score 1); dice_slices_with_class: slices whose ground truth has the class (LGG: tumour "
             "slices); dice_3d: per subject, slices stacked (Buda et al. 2019). Figures of several classes are means over classes.",
             "", "seed_*: the figures the seed notebooks report, slice-level as they report them: compare them with the "
             "per-slice columns, not with dice_3d."]
    write_text_atomic(csv_path.with_suffix(".md"), _markdown_table(shown) + "\n" + "\n".join(notes) + "\n")
    return table
