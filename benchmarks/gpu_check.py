"""One prepared check of every CUDA path, for a bare GPU machine: run it through ``benchmarks/gpu_check.sh``.

    bash benchmarks/gpu_check.sh [--out DIR] [--work DIR] [--budget SECONDS] [--bundles a,b] [--harness a,b] [--harness-first]
                                 [--epochs N] [--dry-run]

Steps, in this order; each is recorded in ``<out>/gpu_check.json`` (rewritten after every step, so a run cut
short keeps what it did) with its status (``ok``, ``failed`` with the last error line, or ``skipped`` when the
budget ran out), its seconds and its figures. A failed step is recorded and the rest go on.

1. ``environment``: Python, PyTorch, CUDA, the GPU, and the versions of the packages the project imports.
2. ``data``: full-size synthetic data made by ``benchmarks/make_data.py`` under ``<work>`` (LGG: 3929 slices of
   110 patients, 77/16/17 patients; OASIS: 11,328 slices), OASIS in the background while LGG bundles run. A
   family whose manifest an earlier run left under ``<work>`` is reused (a second run on a warm machine).
3. one step per bundle, each in its own process (``bundle:<name>``): training for ``--epochs`` (2) epochs with
   the bundle's CUDA defaults (AMP, the cache filled through ``EnsureTyped`` on the device, MONAI's
   ``ThreadDataLoader``, the training loss read once per epoch: no per-step host-device sync), then
   evaluation of the test split, then inference on it, each through ``monai.bundle``'s ``create_workflow``
   from the bundle's own config files, as ``python -m monai.bundle run`` builds it. Figures per workflow:
   seconds and images/s of each epoch (CUDA synchronised at the epoch's first and last iteration only),
   peak GPU memory (``torch.cuda.max_memory_allocated``), the engine's metrics, and the settings that took
   effect (``amp``, the loader class, ``loss_every_iteration``).
4. ``torchrun:lgg_unet_small``: its ``multi_gpu_train`` for one epoch under ``torchrun --nproc_per_node=1``
   (NCCL on CUDA, gloo on the CPU).
5. ``harness:<name>:<phase>`` for each bundle of ``--harness`` (default ``lgg_best``): ``benchmarks/train_throughput.py``
   (naive / project / limit), training then inference, one run each so that the first phase's figures are
   kept when the budget stops the second. Last, so that the budget skips figures before any bundle's CUDA path;
   ``--harness-first`` puts them first (once every CUDA path is known to run, the ratios are the figures wanted).

``--dry-run`` runs the same steps on the CPU, small: the demo data, one training step per epoch
(``train#trainer#epoch_length``), batch 2, LGG at 128x128, the CUDA defaults forced on (``amp``,
``ThreadDataLoader``, ``loss_every_iteration`` false: the config branches that run on a GPU; PyTorch
disables autocast on a CPU with a warning) and the harness's command line only checked, not run
(``tests/test_benchmarks.py`` runs the harness itself). ``tests/test_gpu_check.py`` runs it, so the script
cannot rot while no GPU is lent. On a GPU machine ``--dry-run`` is the same small run on CUDA, harness included
(5 steps): every CUDA path in a minute or two, without the full-size figures.

``<out>`` receives ``gpu_check.json``, ``gpu_check.md`` (the table) and ``logs.tar.gz`` (every process's
output); data, checkpoints and bundle outputs stay under ``<work>``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the bundles' custom code (pipelines, transforms, networks), installed or not
sys.path.insert(0, str(REPO / "benchmarks"))
import train_throughput  # noqa: E402 - the harness, beside this file
from pipelines.bundles import bundle_command, bundle_family, config_files  # noqa: E402

# in the order they run: lgg_best first (its epoch time is the figure asked for), OASIS last (its data is made meanwhile)
BUNDLES = ("lgg_best", "lgg_unet_small", "lgg_unet_dicece_rgb", "lgg_unet_augment", "lgg_unet_bce", "oasis_unet")
TORCHRUN_BUNDLE = "lgg_unet_small"
IMAGE_PACKAGES = ("torch", "numpy", "pillow", "pandas", "scikit-image", "tensorboard", "matplotlib", "tqdm", "pyyaml")  # in the GPU image (device tool's KINDS.md)
# volume inference reads scans with ITK on the CPU and is not a CUDA path of this check; its wheels (itk-core 81 MB,
# itk-io 28 MB for Python 3.12) are far over what a device call carries, so the GPU machine goes without them
NOT_ON_DEVICE = ("itk-io",)
CARRIED = tuple(line.split("==")[0] for line in (REPO / "benchmarks" / "gpu_wheels.txt").read_text().splitlines() if line and not line.startswith("#"))
PACKAGES = IMAGE_PACKAGES + CARRIED  # versions reported by the environment step
ENGINES = {"train": "train#trainer", "evaluate": "evaluator", "inference": "evaluator"}
CUDA_DEFAULTS = {"amp": True, "data_loader": "$monai.data.ThreadDataLoader", "loss_every_iteration": False}  # forced in the dry run
SETTINGS = ("amp", "loss_every_iteration")  # recorded per workflow, with the loader classes
DRY_RUN = {"batch_size": 2, "train#trainer#epoch_length": 1}
DRY_RUN_FAMILY = {"lgg": {"image_size": [128, 128]}, "oasis": {}}
HARNESS_PHASES = {"train": "train_naive,train_project,train_limit", "inference": "infer_naive,infer_project,infer_limit"}
HARNESS_ARGS = {False: ["--steps", "20", "--warmup", "3", "--repeats", "3"], True: ["--steps", "5", "--warmup", "2", "--repeats", "2"]}  # by --dry-run
STEP_TIMEOUT_S = 600


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "runs" / "gpu_check"), help="results folder (default $OUT, else runs/gpu_check)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_check"), help="data, checkpoints and bundle outputs (default /tmp/gpu_check)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all steps; steps that would start later are skipped (default 450)")
    parser.add_argument("--bundles", default=",".join(BUNDLES), help="comma-separated bundles to check (default: all six)")
    parser.add_argument("--harness", default="lgg_best", help="comma-separated bundles for the throughput harness, after the bundles (default lgg_best; '' for none)")
    parser.add_argument("--harness-first", action="store_true", help="run the harness before the bundles (default: after them)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per bundle (default 2)")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, small: demo data, one step per epoch, gloo")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: bundle name, run in this process
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)  # internal: the child's data description (JSON)
    args = parser.parse_args(argv)
    for option, names in (("--bundles", args.bundles), ("--harness", args.harness)):
        unknown = [name for name in names.split(",") if name and name not in BUNDLES]
        if unknown:
            parser.error(f"{option}: unknown {', '.join(unknown)}; choose from {','.join(BUNDLES)}")
    if args.epochs < 1 or args.budget <= 0:
        parser.error(f"--epochs must be >= 1 and --budget > 0, got {args.epochs} and {args.budget}")
    if not args.dry_run and not args.child and not torch.cuda.is_available():
        parser.error("no CUDA device visible to PyTorch: run on a GPU machine, or pass --dry-run on a CPU")
    args.bundles, args.harness = ([name for name in BUNDLES if name in names.split(",")] for names in (args.bundles, args.harness))
    args.out, args.work = args.out.resolve(), args.work.resolve()
    return args


# --- the checklist -----------------------------------------------------------------------------------------

class Checklist:
    """Runs named steps within a time budget; records each (status, seconds, figures) and rewrites ``path``."""

    def __init__(self, path: Path, budget_s: float, header: dict) -> None:
        self.path, self.deadline = path, time.monotonic() + budget_s
        self.report = {**header, "steps": {}}

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, step: Callable[[], dict]) -> dict | None:
        """``step()``'s figures, recorded as ``ok``; an exception is recorded as ``failed`` (its last line) and
        gives None; a step that would start after the deadline is ``skipped``."""
        if self.remaining() <= 0:
            return self._record(name, {"status": "skipped", "detail": "time budget spent"})
        start = time.monotonic()
        try:
            figures = step()
            entry = {"status": "ok", **figures}
        except Exception as error:  # noqa: BLE001 - any failure is recorded and the next step runs
            lines = [line for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
            entry = {"status": "failed", "detail": lines[-1][:500], "traceback": traceback.format_exc()[-2000:]}
            figures = None
        self._record(name, {**entry, "seconds": round(time.monotonic() - start, 1)})
        return figures

    def _record(self, name: str, entry: dict) -> None:
        self.report["steps"][name] = entry
        self.path.write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        print(f"[gpu_check] {name}: {entry['status']} {entry.get('detail', '')} ({entry.get('seconds', 0)} s)", flush=True)


def run_logged(command: list[str], log: Path, timeout: float, env: dict | None = None) -> None:
    """Run ``command`` from the repository root with its output in ``log``; raise with the last error line on failure."""
    with open(log, "w") as log_file:
        try:
            done = subprocess.run(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, timeout=max(timeout, 1), env=env)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {timeout:.0f} s (log: {log.name})") from None
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {train_throughput.last_error_line(log)} (log: {log.name})")


# --- steps of the parent -------------------------------------------------------------------------------------

def environment() -> dict:
    """Versions and the device, and every package the bundles import (a missing one fails this step)."""
    figures = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "cuda_available": torch.cuda.is_available(), "packages": {name: importlib.metadata.version(name) for name in PACKAGES}}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        figures.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), gpu=properties.name,
                       gpu_memory_gib=round(properties.total_memory / 2**30, 1), nccl=".".join(map(str, torch.cuda.nccl.version())))
    import fire, ignite, monai, nibabel  # noqa: F401, E401 - the bundles need them; fail here rather than in every bundle
    import networks, pipelines, transforms  # noqa: F401, E401
    figures["project"] = str(Path(pipelines.__file__).parent.parent)
    return figures


def make_data(args: argparse.Namespace, logs: Path) -> tuple[dict, subprocess.Popen | None]:
    """Data per family (``dataset_dir``, ``manifest``); full-size LGG now and OASIS in a background process
    (returned), or the demo data in a dry run."""
    if args.dry_run:
        from pipelines.data.demo import make_lgg_demo, make_oasis_demo
        from pipelines.data.lgg import build_kaggle_3m
        from pipelines.data.manifest import write_manifest
        from pipelines.data.oasis import build_oasis
        lgg, oasis = make_lgg_demo(args.work / "lgg"), make_oasis_demo(args.work / "oasis")
        return {"lgg": {"dataset_dir": str(lgg), "manifest": str(write_manifest(build_kaggle_3m(lgg), args.work / "lgg.csv"))},
                "oasis": {"dataset_dir": str(oasis), "manifest": str(write_manifest(build_oasis(oasis), args.work / "oasis.csv"))}}, None
    maker, oasis = [sys.executable, str(REPO / "benchmarks" / "make_data.py")], None
    if not (args.work / "oasis.csv").is_file():
        oasis = subprocess.Popen([*maker, "oasis", "--out", str(args.work)], cwd=REPO, stdout=open(logs / "data_oasis.log", "w"), stderr=subprocess.STDOUT)
    if not (args.work / "lgg.csv").is_file():
        run_logged([*maker, "lgg", "--out", str(args.work)], logs / "data_lgg.log", STEP_TIMEOUT_S)
    return {"lgg": {"dataset_dir": str(args.work / "kaggle_3m"), "manifest": str(args.work / "lgg.csv")},
            "oasis": {"dataset_dir": str(args.work / "keras_png_slices_data"), "manifest": str(args.work / "oasis.csv")}}, oasis


def check_bundle(args: argparse.Namespace, name: str, data: dict, logs: Path, timeout: float) -> dict:
    """The child process of one bundle (train, evaluate, inference); its figures."""
    result = args.work / name / "check.json"
    result.unlink(missing_ok=True)
    (args.work / name).mkdir(parents=True, exist_ok=True)
    data_file = args.work / name / "data.json"
    data_file.write_text(json.dumps(data))
    command = [sys.executable, __file__, "--child", name, "--data", str(data_file), "--work", str(args.work), "--epochs", str(args.epochs),
               *(["--dry-run"] if args.dry_run else [])]
    run_logged(command, logs / f"bundle_{name}.log", timeout)
    return json.loads(result.read_text())


def check_torchrun(args: argparse.Namespace, name: str, data: dict, logs: Path, timeout: float) -> dict:
    """One epoch of ``multi_gpu_train`` in one torchrun process; its ``training_run.json``."""
    run = args.work / "torchrun"
    overrides = {**bundle_overrides(name, data, run, args.dry_run), "epochs": 1}
    command = bundle_command(REPO / "bundles" / name, "multi_gpu_train", overrides, processes=1)
    run_logged(command, logs / "torchrun.log", timeout)
    summary = json.loads((run / "train" / "training_run.json").read_text())
    return {"bundle": name, "backend": "nccl" if torch.cuda.is_available() else "gloo", **summary}


def check_harness(args: argparse.Namespace, name: str, data: dict, logs: Path, timeout: float, phase: str) -> dict:
    """The throughput harness on ``name`` for one phase (``train`` or ``inference``: its three variants), so
    that a phase's figures are kept when the budget stops the next; a dry run on a CPU only parses the command."""
    family, out = data[bundle_family(REPO / 'bundles' / name)], args.work / "harness" / f"{name}_{phase}.json"
    command = [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--bundle", f"bundles/{name}", "--dataset_dir", family["dataset_dir"],
               "--manifest", family["manifest"], "--out", str(out), "--variants", HARNESS_PHASES[phase], *HARNESS_ARGS[args.dry_run]]
    if args.dry_run and not torch.cuda.is_available():
        train_throughput.parse_args(command[2:])
        return {"dry_run": "command line checked, not run", "command": command[2:]}
    try:
        run_logged(command, logs / f"harness_{out.stem}.log", timeout)
    finally:  # the harness's per-process logs go with the others, a failed run's too
        for extra in out.parent.glob(f"{out.stem}.*.log"):
            extra.replace(logs / f"harness_{extra.name}")
    return json.loads(out.read_text())


def plan(bundles: list[str], harness: list[str], harness_first: bool = False) -> list[str]:
    """Step names in running order: ``bundle:<name>`` for each bundle, ``torchrun:<name>`` after its bundle,
    and ``harness:<name>:<phase>``: after the bundles, so that the budget skips figures before any bundle's
    CUDA path, or before them with ``harness_first``."""
    checks = []
    for name in bundles:
        checks += [f"bundle:{name}"] + [f"torchrun:{name}"] * (name == TORCHRUN_BUNDLE)
    figures = [f"harness:{name}:{phase}" for name in harness for phase in HARNESS_PHASES]
    return figures + checks if harness_first else checks + figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return bundle_child(args)
    logs = args.work / "logs"
    for folder in (args.out, logs):
        folder.mkdir(parents=True, exist_ok=True)
    checklist = Checklist(args.out / "gpu_check.json", args.budget, {"mode": "dry-run" if args.dry_run else "cuda", "epochs": args.epochs,
                                                                      "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    checklist.run("environment", environment)
    data, oasis_maker = {}, None

    def data_step() -> dict:
        nonlocal data, oasis_maker
        data, oasis_maker = make_data(args, logs)
        return {"families": data}

    checklist.run("data", data_step)
    checks = {"bundle": check_bundle, "harness": check_harness, "torchrun": check_torchrun}
    for step in plan(args.bundles, args.harness, args.harness_first):
        kind, name, *phase = step.split(":")
        if bundle_family(REPO / "bundles" / name) == "oasis" and oasis_maker is not None:
            checklist.run("data_oasis", lambda: {"exit": oasis_maker.wait(timeout=max(checklist.remaining(), 1))})
            oasis_maker = None
        checklist.run(step, lambda kind=kind, name=name, phase=phase: checks[kind](args, name, data, logs, checklist.remaining(), *phase))
    if oasis_maker is not None and oasis_maker.poll() is None:  # OASIS was not checked
        oasis_maker.kill()
    with tarfile.open(args.out / "logs.tar.gz", "w:gz") as archive:
        archive.add(logs, arcname="logs")
    table = markdown_table(checklist.report)
    (args.out / "gpu_check.md").write_text(table)
    print(table)
    return 0 if all(step["status"] == "ok" for step in checklist.report["steps"].values()) else 1


# --- one bundle, in the child process ------------------------------------------------------------------------

def bundle_overrides(name: str, data: dict, run: Path, dry_run: bool) -> dict:
    """The ``monai.bundle run`` overrides of bundle ``name``: its data, run folders, and the dry run's sizes."""
    family = bundle_family(REPO / "bundles" / name)
    overrides = {"bundle_root": str(REPO / "bundles" / name), "ckpt_dir": str(run / "models"), "output_dir": str(run / "train"), **data[family]}
    if not dry_run:
        return overrides
    return {**overrides, **DRY_RUN, **DRY_RUN_FAMILY[family], **({} if torch.cuda.is_available() else CUDA_DEFAULTS)}


class EpochTimer:
    """Ignite handler: seconds and images of each epoch of an engine, CUDA synchronised only at the start of an
    epoch and at its last iteration (no per-step sync). Images: the batches' first dimension (patches count)."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self._start, self._images = 0.0, 0

    def attach(self, engine) -> None:
        from ignite.engine import Events
        engine.add_event_handler(Events.EPOCH_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)

    @staticmethod
    def _sync() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def _started(self, engine) -> None:
        self._start, self._images = self._sync(), 0

    def _iteration(self, engine) -> None:
        batch = engine.state.batch
        self._images += len(batch) if isinstance(batch, list) else int(batch["image"].shape[0])
        if engine.state.iteration % engine.state.epoch_length == 0:
            seconds = self._sync() - self._start
            self.epochs.append({"seconds": round(seconds, 3), "images": self._images, "images_per_s": round(self._images / seconds, 2)})


def bundle_child(args: argparse.Namespace) -> int:
    """Train, evaluate and infer with bundle ``args.child`` in this process; writes ``<work>/<name>/check.json``."""
    from monai.bundle import create_workflow

    name, run = args.child, args.work / args.child
    overrides = {**bundle_overrides(name, json.loads(args.data.read_text()), run, args.dry_run), "epochs": args.epochs}
    figures = {}
    for mode, engine_id in ENGINES.items():
        mode_overrides = overrides if mode == "train" else {**overrides, "output_dir": str(run / mode)}
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        workflow = create_workflow(config_file=[str(path) for path in config_files(REPO / "bundles" / name, mode)], **mode_overrides)
        engine = workflow.parser.get_parsed_content(engine_id)
        timer = EpochTimer()
        timer.attach(engine)
        setup_s = time.perf_counter() - start
        workflow.run()
        workflow.finalize()
        loader = engine.data_loader
        figures[mode] = {
            "setup_s": round(setup_s, 1), "run_s": round(time.perf_counter() - start - setup_s, 1), "epochs": timer.epochs,
            "metrics": {key: value for key, value in engine.state.metrics.items() if isinstance(value, (int, float))},
            "settings": {**{key: workflow.parser.get_parsed_content(key) for key in SETTINGS}, "loader": type(loader).__name__,
                         "device": str(workflow.parser.get_parsed_content("device"))},
            **({"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)} if torch.cuda.is_available() else {}),
        }
    (run / "check.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


# --- the table -------------------------------------------------------------------------------------------------

def markdown_table(report: dict) -> str:
    """One row per bundle: training images/s of the last epoch, epoch seconds, inference images/s, peak GPU MiB, status."""
    rows = ["| step | status | training images/s (last epoch) | epoch s | evaluation images/s | inference images/s | peak GPU MiB (train / infer) | seconds |",
            "|---|---|---|---|---|---|---|---|"]
    for step, entry in report["steps"].items():
        cells = ["-"] * 5
        if step.startswith("bundle:") and entry["status"] == "ok":
            last = entry["train"]["epochs"][-1]
            cells = [str(last["images_per_s"]), str(last["seconds"]), str(entry["evaluate"]["epochs"][-1]["images_per_s"]),
                     str(entry["inference"]["epochs"][-1]["images_per_s"]),
                     f"{entry['train'].get('peak_gpu_mib', '-')} / {entry['inference'].get('peak_gpu_mib', '-')}"]
        rows.append(f"| {step} | {entry['status']} {entry.get('detail', '')} | " + " | ".join(cells) + f" | {entry.get('seconds', '-')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.exit(main())
