"""Patient-level k-fold cross-validation of an LGG bundle: train and evaluate every fold, then pool the test folds.

    python -m pipelines crossval bundles/lgg_best --out runs/cv/lgg_best --folds 5 --dataset_dir DATA --manifest CSV [--epochs 20 ...]

Fold ``k`` runs the bundle's plain ``monai.bundle`` train and evaluate commands with ``--fold k --folds N
--fold_seed S`` (every subject of the manifest's train and val rows in one of N folds, its test split in none;
fold k is tested, fold k+1 validates, the rest train; with ``--fold_validation test`` the test fold validates
and every other fold trains; see :func:`pipelines.data.manifest.fold_splits`), writing ``<out>/fold<k>/models``,
``train`` and ``eval``. Every pooled subject is in exactly one test fold, so the pooled tables score each
patient once. ``<out>/crossval_per_subject.csv`` holds every fold's per-subject rows (with a ``fold`` column) and
``<out>/crossval_summary.json`` per class and convention (``per_subject_3d``, ``per_slice``,
``slices_with_<class>``) the Dice mean, std (over subjects or slices), min and max over the pooled test
folds, and for ``per_subject_3d`` each fold's mean; a ``postprocessed`` block holds the same after the
bundle's 3D post-processing when it has one. ``--jobs N`` runs N folds at once, each with its share of the CPU
cores (``OMP_NUM_THREADS``) and its output in ``<out>/fold<k>/crossval.log``.

Every input problem ends with one ``error: ...`` line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from pipelines.atomic import save_atomic, write_text_atomic
from pipelines.bundles import bundle_command, bundle_family
from pipelines.cli import config_overrides
from pipelines.engine.evaluation import POSTPROCESSED
from pipelines.errors import InputError, existing_dir

__all__ = ["fold_threads", "run_folds", "summarise_folds", "main"]


def _fold_dir(out: Path, fold: int) -> Path:
    return out / f"fold{fold}"


def _run_fold(bundle_dir: str | Path, out: Path, fold: int, folds: int, fold_seed: int, overrides: dict[str, str], log: Path | None, env: dict | None) -> str | None:
    """Train fold ``fold``, then evaluate it on its test fold; None when both steps succeed, else why not (one line).

    Each command is printed; its output goes to the terminal, or appended to ``log`` when given.
    """
    fold_overrides = {**overrides, "fold": fold, "folds": folds, "fold_seed": fold_seed, "ckpt_dir": _fold_dir(out, fold) / "models"}
    for mode, output in (("train", "train"), ("evaluate", "eval")):
        command = bundle_command(bundle_dir, mode, {**fold_overrides, "output_dir": _fold_dir(out, fold) / output})
        shown = shlex.join(["python", *command[1:]])
        print(f"\n=== fold {fold} of {folds}, {mode}: {shown}", flush=True)
        if log is None:
            code = subprocess.run(command).returncode
        else:
            with open(log, "a") as stream:
                stream.write(f"=== {mode}: {shown}\n")
                stream.flush()
                code = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env).returncode
        if code:
            return f"the {mode} step failed (exit code {code}); " + (f"{_last_error(log)}; its output is in {log}" if log else "see the output above")
    return None


def _last_error(log: Path) -> str:
    """The last ``error: ...`` line of a fold's log (every input problem ends a bundle run with one), else a pointer."""
    errors = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.startswith("error: ")]
    return errors[-1] if errors else "no error line"


def fold_threads(jobs: int, cores: int | None = None) -> int:
    """PyTorch threads for each of ``jobs`` folds run at once: the usable CPU cores shared out, at least 1."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // jobs)


def run_folds(bundle_dir: str | Path, out: str | Path, folds: int, fold_seed: int, only: list[int], overrides: dict[str, str], jobs: int = 1) -> None:
    """Train, then evaluate on its test fold, each fold of ``only`` (every fold when empty), printing each command.

    ``overrides`` go to every command (e.g. ``dataset_dir``, ``manifest``, ``epochs``). With ``jobs`` above 1 that
    many folds run at once, each with :func:`fold_threads` PyTorch threads (``OMP_NUM_THREADS``, unless set) and its
    output in ``<out>/fold<k>/crossval.log`` (on a CPU, where one training leaves cores idle part of the time, folds at
    once end sooner: ``benchmarks/parallel_folds.py``, docs/performance.md). A failed fold does not stop the others;
    once all have ended, :class:`InputError` names each failed fold, its step and its error line.
    """
    out = Path(out)
    outside = [fold for fold in only if not 0 <= fold < folds]
    if outside:
        raise InputError(f"--only {' '.join(map(str, outside))}: folds are 0..{folds - 1} with --folds {folds}")
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: the number of folds run at once must be at least 1")
    selected = only or list(range(folds))
    if jobs == 1:
        for fold in selected:
            failure = _run_fold(bundle_dir, out, fold, folds, fold_seed, overrides, None, None)
            if failure:
                raise InputError(f"fold {fold}: {failure}")
        return
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(fold_threads(min(jobs, len(selected)))))}
    logs = {fold: _fold_dir(out, fold) / "crossval.log" for fold in selected}
    for log in logs.values():
        log.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        failures = dict(zip(selected, pool.map(lambda fold: _run_fold(bundle_dir, out, fold, folds, fold_seed, overrides, logs[fold], env), selected)))
    failed = [f"fold {fold}: {failure}" for fold, failure in failures.items() if failure]
    if failed:
        raise InputError(" | ".join(failed))


def _stats(values: pd.Series) -> dict:
    """n, mean (``dice``), std over the values (``dice_std``, ddof 0), ``dice_min`` and ``dice_max``, rounded to 6 digits."""
    stats = {"dice": values.mean(), "dice_std": values.std(ddof=0), "dice_min": values.min(), "dice_max": values.max()}
    return {"n": int(len(values)), **{key: round(float(value), 6) for key, value in stats.items()}}


def _pooled(subjects: pd.DataFrame, slices: pd.DataFrame, classes: list[str], suffix: str) -> dict:
    """Per class: the Dice statistics of every convention over the pooled test folds, for the columns ending in ``suffix``."""
    pooled = {}
    for name in classes:
        column = f"dice_{name}{suffix}"
        present = slices[slices[f"tp_{name}"] + slices[f"fn_{name}"] > 0]  # ground truth is not post-processed
        pooled[name] = {
            "per_subject_3d": {**_stats(subjects[column]), "fold_means": [round(float(m), 6) for m in subjects.groupby("fold")[column].mean()]},
            "per_slice": _stats(slices[column]),
            f"slices_with_{name}": _stats(present[column]),
        }
    return pooled


def summarise_folds(out: str | Path, folds: int) -> dict:
    """Pool the evaluations under ``<out>/fold<k>/eval`` (the folds found; at least one), write
    ``crossval_per_subject.csv`` and ``crossval_summary.json`` into ``out`` and return the summary."""
    out = existing_dir(out, "cross-validation folder")
    found = [fold for fold in range(folds) if (_fold_dir(out, fold) / "eval" / "test_summary.json").is_file()]
    if not found:
        raise InputError(f"{out}: no fold<k>/eval/test_summary.json for k in 0..{folds - 1}; run the folds first")
    tables = {"per_subject": [], "per_slice": []}
    for fold in found:
        for name, frames in tables.items():
            frames.append(pd.read_csv(_fold_dir(out, fold) / "eval" / f"test_{name}.csv").assign(fold=fold))
    subjects, slices = (pd.concat(frames, ignore_index=True) for frames in tables.values())
    first = json.loads((_fold_dir(out, found[0]) / "eval" / "test_summary.json").read_text())
    classes = list(first["classes"])
    summary = {
        "folds": folds, "fold_seed": first.get("fold_seed"), "evaluated_folds": found, "missing_folds": sorted(set(range(folds)) - set(found)),
        "manifest": first.get("manifest"), "n_subjects": int(len(subjects)), "n_slices": int(len(slices)),
        "conventions": {**first["conventions"], "pooled": "each subject is scored once, by the fold that held it out; std is over subjects (or slices)"},
        "classes": _pooled(subjects, slices, classes, ""),
    }
    if POSTPROCESSED in first:
        summary[POSTPROCESSED] = {"transforms": first[POSTPROCESSED]["transforms"], "classes": _pooled(subjects, slices, classes, f"_{POSTPROCESSED}")}
    save_atomic(out / "crossval_per_subject.csv", lambda tmp: subjects.to_csv(tmp, index=False, float_format="%.6f"))
    write_text_atomic(out / "crossval_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _report(summary: dict) -> str:
    """One line per class and post-processing: pooled per-patient 3D Dice (mean +- std, fold means) and slice Dice."""
    blocks = [("raw", summary)]
    if POSTPROCESSED in summary:
        blocks.append((f"{POSTPROCESSED} ({' + '.join(summary[POSTPROCESSED]['transforms'])})", summary[POSTPROCESSED]))
    lines = []
    for label, block in blocks:
        for name, scores in block["classes"].items():
            d3, folds = scores["per_subject_3d"], ", ".join(f"{m:.3f}" for m in scores["per_subject_3d"]["fold_means"])
            lines.append(f"  {name}, {label}: per patient 3D Dice {d3['dice']:.3f} +- {d3['dice_std']:.3f} over {d3['n']} patients "
                         f"(fold means {folds}); per slice {scores['per_slice']['dice']:.3f}, {name} slices {scores[f'slices_with_{name}']['dice']:.3f}")
    return "\n".join(lines)


def _overrides(extra: list[str]) -> dict[str, str]:
    """The ``--<config id> VALUE`` pairs for every fold's commands, passed on unchanged to ``monai.bundle run``."""
    overrides = config_overrides(extra)
    reserved = {"fold", "folds", "fold_seed", "ckpt_dir", "output_dir"} & overrides.keys()
    if reserved:
        raise InputError(f"--{', --'.join(sorted(reserved))}: set by crossval for each fold; use --folds/--fold_seed/--only/--out")
    return overrides


def main(argv: list[str]) -> None:
    """``python -m pipelines crossval``; a failed fold is an :class:`InputError` naming it."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines crossval",
        allow_abbrev=False,
        description=__doc__.split("\n\n")[0],
        epilog="Further --<config id> VALUE pairs go to every train and evaluate command, e.g. --dataset_dir DATA --manifest CSV --epochs 20.",
    )
    parser.add_argument("bundle", help="LGG bundle folder, e.g. bundles/lgg_best")
    parser.add_argument("--out", required=True, help="folder for fold<k>/{models,train,eval} and the pooled summary")
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default: %(default)s)")
    parser.add_argument("--fold_seed", "--fold-seed", type=int, default=0, help="seed of the subject shuffle (default: %(default)s)")
    parser.add_argument("--only", type=int, nargs="+", default=[], metavar="K", help="run only these folds (the summary pools every fold found)")
    parser.add_argument("--jobs", type=int, default=1, help="folds run at once, each with its share of the CPU cores and its output in "
                        "<out>/fold<k>/crossval.log (default: %(default)s; on a CPU, 2 or 3 use the cores better than 1)")
    parser.add_argument("--summarise-only", "--summarise_only", action="store_true", help="do not run anything; pool the folds already evaluated under --out")
    args, extra = parser.parse_known_args(argv)
    overrides = _overrides(extra)
    if not args.summarise_only:
        existing_dir(Path(args.bundle) / "configs", "bundle configs folder")
        if bundle_family(args.bundle) != "lgg":
            raise InputError(f"crossval {args.bundle}: an {bundle_family(args.bundle).upper()} bundle; patient-level cross-validation folds are "
                             "for the LGG bundles (the OASIS data comes split by its folders)")
        run_folds(args.bundle, args.out, args.folds, args.fold_seed, args.only, overrides, args.jobs)
    summary = summarise_folds(args.out, args.folds)
    print(f"\nwrote {Path(args.out) / 'crossval_summary.json'} and crossval_per_subject.csv ({len(summary['evaluated_folds'])} of {args.folds} folds)\n{_report(summary)}")
