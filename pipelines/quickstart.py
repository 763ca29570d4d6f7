"""The README's first command: make the demo data, then train, evaluate and run inference with a bundle.

Each step is the plain ``python -m monai.bundle run`` command a user would type; it is printed before
it runs, so the demo doubles as a worked example.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from pipelines.bundles import MODES, bundle_command
from pipelines.demo import make_lgg_demo

__all__ = ["run_demo"]

DEMO_MANIFEST = Path("data_manifests/lgg_demo.csv")


def run_demo(bundle: str = "lgg_unet_bce", epochs: int = 3, out: str = "runs/demo") -> Path:
    """Generate the demo data under ``demo_data/``, then train, evaluate and predict; return the run folder."""
    bundle_dir = Path("bundles") / bundle
    if not (bundle_dir / "configs" / "train.json").is_file():
        raise SystemExit(f"error: bundle {bundle_dir}: no configs/train.json (run from the repository root)")
    dataset_dir = make_lgg_demo("demo_data")
    run_dir = Path(out) / bundle
    overrides = {"dataset_dir": dataset_dir, "manifest": DEMO_MANIFEST, "ckpt_dir": run_dir / "models", "output_dir": run_dir / "eval"}
    for mode in MODES:
        command = bundle_command(bundle_dir, mode, {**overrides, **({"epochs": epochs} if mode == "train" else {})})
        print(f"\n=== {mode}: {shlex.join(['python', *command[1:]])}", flush=True)
        result = subprocess.run(command)
        if result.returncode != 0:
            raise SystemExit(f"error: the {mode} step of {bundle} failed (exit code {result.returncode}); see the output above")
    summary = json.loads((run_dir / "eval" / "test_summary.json").read_text())
    scores = summary["classes"]["tumour"]
    print(
        f"\nDemo finished (synthetic data, {epochs} epochs: a functional check, not a result).\n"
        f"  test Dice per slice {scores['per_slice']['dice']:.3f}, tumour slices only {scores['slices_with_tumour']['dice']:.3f}, "
        f"per patient 3D {scores['per_subject_3d']['dice']:.3f}\n"
        f"  checkpoints:  {run_dir / 'models'}\n"
        f"  TensorBoard:  tensorboard --logdir {run_dir / 'eval'}\n"
        f"  evaluation:   {run_dir / 'eval'} (test_summary.json, test_per_slice.csv, test_per_subject.csv, masks/, volumes/)\n"
        f"  inference:    {run_dir / 'eval' / 'predictions'} (masks/, volumes/, predictions.csv)"
    )
    return run_dir
