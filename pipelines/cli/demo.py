"""The README's first command: make the demo data, then train, evaluate and run inference with a bundle.

Each step is the plain ``python -m monai.bundle run`` command a user would type; it is printed before
it runs, so the demo doubles as a worked example.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
from pathlib import Path

from pipelines.bundles import MODES, bundle_command, bundle_family
from pipelines.data.demo import make_lgg_demo, make_oasis_demo
from pipelines.errors import InputError
from pipelines.report import write_report

__all__ = ["run_demo", "main"]

# bundle family (the recipe's "family") -> demo data generator, its checked-in manifest, and the
# training overrides that let a few epochs on a few dozen slices learn something on a 2-core CPU (smaller
# batches so that an epoch has several steps, a larger learning rate, LGG at half resolution)
DEMOS = {
    "lgg": (make_lgg_demo, Path("data_manifests/lgg_demo.csv"), {"image_size": [128, 128], "batch_size": 4, "learning_rate": 0.002}),
    "oasis": (make_oasis_demo, Path("data_manifests/oasis_demo.csv"), {"batch_size": 4, "learning_rate": 0.002}),
}


def run_demo(bundle: str = "lgg_unet_bce", epochs: int = 20, out: str = "runs/demo", data_dir: str = "demo_data") -> Path:
    """Generate the bundle family's demo data under ``data_dir``, then train, evaluate and predict with the bundle
    (run from the repository root; a re-run trains over the earlier run, ``--overwrite True``); return the run
    folder ``<out>/<bundle>``."""
    bundle_dir = Path("bundles") / bundle
    if not (bundle_dir / "configs" / "train.json").is_file():
        raise InputError(f"bundle {bundle_dir}: no configs/train.json (run from the repository root)")
    make_demo, demo_manifest, demo_settings = DEMOS[bundle_family(bundle_dir)]
    dataset_dir = make_demo(data_dir)
    run_dir = Path(out) / bundle
    overrides = {"dataset_dir": dataset_dir, "manifest": demo_manifest, "ckpt_dir": run_dir / "models",
                 "output_dir": run_dir / "eval", **demo_settings}
    for mode in MODES:
        command = bundle_command(bundle_dir, mode, {**overrides, **({"epochs": epochs, "overwrite": True} if mode == "train" else {})})
        print(f"\n=== {mode}: {shlex.join(['python', *command[1:]])}", flush=True)
        result = subprocess.run(command)
        if result.returncode != 0:
            raise InputError(f"the {mode} step of {bundle} failed (exit code {result.returncode}); see the output above")
    report = write_report(run_dir / "eval", train_log_dir=run_dir / "eval")
    summary = json.loads((run_dir / "eval" / "test_summary.json").read_text())
    print(
        f"\nDemo finished (synthetic data, {epochs} epochs: a functional check, not a result).\n"
        f"{_dice_report(summary)}\n"
        f"  checkpoints:  {run_dir / 'models'}\n"
        f"  TensorBoard:  tensorboard --logdir {run_dir / 'eval'}\n"
        f"  evaluation:   {run_dir / 'eval'} (test_summary.json, test_per_slice.csv, test_per_subject.csv, masks/, volumes/)\n"
        f"  inference:    {run_dir / 'eval' / 'predictions'} (masks/, volumes/, predictions.csv)\n"
        f"  report:       {report} (curves, overlays of the best/median/worst test patients, per-patient Dice)"
    )
    return run_dir


def _dice_report(summary: dict) -> str:
    """Test Dice lines of an evaluation summary: one per class (named when there are several), then their mean."""
    classes = summary["classes"]
    lines = []
    for name, scores in classes.items():
        prefix = f"{name}: " if len(classes) > 1 else ""
        lines.append(f"  {prefix}test Dice per slice {scores['per_slice']['dice']:.3f}, {name} slices only "
                     f"{scores[f'slices_with_{name}']['dice']:.3f}, per patient 3D {scores['per_subject_3d']['dice']:.3f}")
    if len(classes) > 1:
        mean = summary["mean_over_classes"]
        lines.append(f"  mean over classes: test Dice per slice {mean['per_slice']['dice']:.3f}, "
                     f"per patient 3D {mean['per_subject_3d']['dice']:.3f}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines demo", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="lgg_unet_bce", help="bundle folder name under bundles/ (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default: %(default)s)")
    parser.add_argument("--out", default="runs/demo", help="folder for checkpoints, logs and outputs (default: %(default)s)")
    parser.add_argument("--data_dir", default="demo_data", help="folder for the synthetic data (default: %(default)s)")
    args = parser.parse_args(argv)
    run_demo(args.bundle, args.epochs, args.out, args.data_dir)
