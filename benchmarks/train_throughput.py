"""Training and inference throughput and peak memory of a bundle, side by side with a seed-style loop and the
model-only limit, on the same slices, network, loss, optimiser, batch size and device.

    python benchmarks/train_throughput.py --bundle bundles/<name> --dataset_dir <root> [--manifest <csv>]
        [--steps 20] [--warmup 3] [--repeats 1] [--threads N] [--set KEY=VALUE ...] [--out runs/benchmarks/<name>.json]

Six variants, each in its own subprocess so that each peak resident memory (``ru_maxrss``) is its own. The
device is the bundle's (CUDA when PyTorch sees it, else the CPU); every variant first calls
``set_determinism(seed)`` as the bundle does. Each times ``--steps`` steps after ``--warmup`` untimed ones
(synchronising CUDA at both ends only) and counts the images (network input samples: patches for a bundle
that crops) that went through:

- ``train_naive``: seed-notebook style. A ``torch.utils.data.Dataset`` that opens each file with PIL at every
  draw, converts with numpy (channels, resize, crop, scaling and label values as the recipe has them), a
  default ``DataLoader``, and a hand-written float32 step loop reading ``loss.item()`` every step.
- ``train_project``: the bundle's ``train#trainer`` as ``monai.bundle run`` builds it from the same config
  files (after its ``initialize``): ``CacheDataset``, the bundle's loader (MONAI's ``DataLoader`` on the CPU,
  ``ThreadDataLoader`` on CUDA), ``SupervisedTrainer`` with every handler. Validation runs at epoch end, which the timed steps never reach (it is measured in
  ``infer_project``). ``cache_fill_s``: building ``train#dataset``, i.e. filling its cache;
  ``data_path_images_per_s``: its loader alone, without the network (metadata tracking off, as in training).
- ``train_limit``: the same network, loss, optimiser, AMP setting and update as ``SupervisedTrainer``'s,
  stepping in turn on ``HELD_BATCHES`` batches of the bundle's own training transforms (items spread over the
  split) held on the device: no data path at all.
- ``infer_naive``: seed style: the PIL dataset over the validation split, a default ``DataLoader``, the
  network's forward on whole slices in eval mode, predictions copied to the host every batch.
- ``infer_project``: ``validate#dataloader`` (cache filled in ``cache_fill_s``) through a ``SupervisedEvaluator``
  with the bundle's ``validate#inferer`` (its ``SlidingWindowInferer``) and AMP setting, no postprocessing;
  ``data_path_images_per_s`` as in training. ``validation_images_per_s``: the bundle's whole ``validate#evaluator`` (postprocessing, metrics, handlers;
  epoch-end work such as saving ``model.pt`` excluded).
- ``infer_limit``: the network's forward in eval mode on the windows the inferer cuts from one batch, held on
  the device; images/s counts the windows of one image as one image.

Writes the JSON (``train`` and ``inference``: each variant's ``images_per_s``, ``seconds``, ``images``,
``peak_rss_mib``, ``wall_s``, ``peak_gpu_mib`` on CUDA, plus ``project_over_limit`` and ``project_over_naive``)
to ``--out`` and the readable table beside it (``.md``) and on stdout; each variant's log goes to
``<out>.<variant>.log``. ``--repeats R`` runs every variant R times in interleaved rounds and keeps the
median run by images/s (the lower middle one for even R), with the highest peak RSS of all runs and every
run's rate in ``images_per_s_runs``: the same process can run 1.5x faster or slower from one start to the
next on a shared 2-core machine, and a median of interleaved runs is what a ratio can rest on;
``--threads N`` sets ``torch.set_num_threads(N)`` in every variant. Timings are never asserted anywhere:
compare ratios taken in one run.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELD_BATCHES = 4  # train_limit cycles through this many batches, from items spread over the split, as the loop
# over real data does: the first batch alone would be a few neighbouring, mostly tumour-free slices, soon fitted
VARIANTS = ("train_naive", "train_project", "train_limit", "infer_naive", "infer_project", "infer_limit")


# --- command line ------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/lgg_unet_bce")
    parser.add_argument("--dataset_dir", required=True, help="root of the data the manifest's paths are relative to")
    parser.add_argument("--manifest", help="manifest CSV (default: the bundle's)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (batches) per variant (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default 3)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="bundle config override, as monai.bundle's --KEY VALUE (repeatable), e.g. network_def#features=4")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each variant, interleaved; the median is kept, with the highest peak RSS of all (default 1)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads in every variant (default: PyTorch's choice)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--out", help="result JSON (default runs/benchmarks/<bundle>.json)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: run one variant in this process
    parser.add_argument("--result", help=argparse.SUPPRESS)  # internal: where that variant writes its figures
    args = parser.parse_args(argv)
    bundle = Path(args.bundle)
    if not (bundle / "configs" / "train.json").is_file():
        parser.error(f"--bundle {args.bundle}: not a bundle folder (no configs/train.json)")
    if not Path(args.dataset_dir).is_dir():
        parser.error(f"--dataset_dir {args.dataset_dir}: no such folder")
    if args.manifest and not Path(args.manifest).is_file():
        parser.error(f"--manifest {args.manifest}: no such file")
    if min(args.steps, args.warmup, args.repeats, args.threads or 1) < 1:
        parser.error(f"--steps, --warmup, --repeats and --threads must be >= 1, got {args.steps}, {args.warmup}, {args.repeats} and {args.threads}")
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {', '.join(sorted(unknown))}; choose from {','.join(VARIANTS)}")
    if any("=" not in item for item in args.overrides):
        parser.error(f"--set expects KEY=VALUE, got {next(item for item in args.overrides if '=' not in item)!r}")
    args.bundle = str(bundle.resolve())
    args.dataset_dir = str(Path(args.dataset_dir).resolve())
    args.manifest = str(Path(args.manifest).resolve()) if args.manifest else None
    args.out = Path(args.out or REPO / "runs" / "benchmarks" / f"{bundle.resolve().name}.json").resolve()
    return args


def override_value(text: str) -> object:
    """A ``--set`` value as monai.bundle's command line reads it: a Python literal, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# --- parent: one subprocess per variant, then the report ---------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.variant:
        Path(args.result).write_text(json.dumps(run_variant(args)))
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for variant in args.variants.split(","):
        args.out.with_suffix(f".{variant}.log").write_text("")
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):  # rounds of every variant, so that a busy spell on a shared machine hits each alike
        for variant in args.variants.split(","):
            figures = run_subprocess(args, variant)
            print(f"{variant}: {figures['images_per_s']:.2f} images/s, peak RSS {figures['peak_rss_mib']} MiB", file=sys.stderr)
            runs.setdefault(variant, []).append(figures)
    report = summarise(args, {variant: median_run(figures) for variant, figures in runs.items()})
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(report)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


def median_run(runs: list[dict]) -> dict:
    """The median of ``runs`` by images/s (the lower middle one of an even count), with the highest peak RSS of
    all of them and ``images_per_s_runs``, every run's rate in the order they ran."""
    middle = sorted(runs, key=lambda figures: figures["images_per_s"])[(len(runs) - 1) // 2]
    return {**middle, "peak_rss_mib": max(figures["peak_rss_mib"] for figures in runs),
            "images_per_s_runs": [figures["images_per_s"] for figures in runs]}


def run_subprocess(args: argparse.Namespace, variant: str) -> dict:
    """Figures of one run of ``variant`` in a fresh interpreter (output appended to ``<out>.<variant>.log``)."""
    forwarded = ["--bundle", args.bundle, "--dataset_dir", args.dataset_dir, "--steps", str(args.steps), "--warmup", str(args.warmup),
                 *(["--manifest", args.manifest] if args.manifest else []), *(["--threads", str(args.threads)] if args.threads else []),
                 *(f"--set={item}" for item in args.overrides)]
    log = args.out.with_suffix(f".{variant}.log")
    with tempfile.TemporaryDirectory() as scratch, open(log, "a") as log_file:
        result = Path(scratch) / "result.json"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, *forwarded, "--variant", variant, "--result", str(result)],
                              cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            lines = log.read_text().strip().splitlines() or ["(no output)"]
            last = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1])
            raise SystemExit(f"error: {variant} failed (exit {done.returncode}): {last.strip()} (log: {log})")
        return {**json.loads(result.read_text()), "wall_s": round(time.perf_counter() - start, 1)}


def summarise(args: argparse.Namespace, results: dict[str, dict]) -> dict:
    """The JSON report: setup, machine, and per phase (train, inference) each variant's figures and the ratios."""
    first = next(iter(results.values()))
    report = {
        "bundle": Path(args.bundle).name,
        "dataset_dir": args.dataset_dir,
        "manifest": args.manifest or first["manifest"],
        "overrides": dict(item.split("=", 1) for item in args.overrides),
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "batch_size": first["batch_size"],
        "device": first["device"],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                    "torch_threads": first["torch_threads"], "torch": first["torch"], "monai": first["monai"]},
    }
    for phase, prefix in (("train", "train_"), ("inference", "infer_")):
        figures = {name[len(prefix):]: values for name, values in results.items() if name.startswith(prefix)}
        for values in figures.values():
            for key in ("batch_size", "device", "manifest", "torch_threads", "torch", "monai"):
                values.pop(key)
        if not figures:
            continue
        rate = {name: values["images_per_s"] for name, values in figures.items()}
        if "project" in rate:
            figures.update({f"project_over_{other}": round(rate["project"] / rate[other], 3) for other in ("limit", "naive") if other in rate})
        report[phase] = figures
    return report


def rate_cell(figures: dict) -> str:
    """``median`` images/s, and ``(min-max)`` of the runs when there were several; ``-`` for a variant not run."""
    if "images_per_s" not in figures:
        return "-"
    runs = figures.get("images_per_s_runs", [])
    return f"{figures['images_per_s']}" + (f" ({min(runs)}-{max(runs)})" if len(runs) > 1 else "")


def markdown_table(report: dict) -> str:
    """One table: a row per variant, training and inference side by side, then the two ratios."""
    machine = report["machine"]
    lines = [f"{report['bundle']} on {report['device']} ({machine['cpus']} CPUs, {machine['torch_threads']} torch threads, "
             f"torch {machine['torch']}, MONAI {machine['monai']}), batch {report['batch_size']}, "
             f"{report['steps']} timed steps after {report['warmup']}, median of {report['repeats']} interleaved runs", "",
             "| variant | training images/s | training peak RSS (MiB) | inference images/s | inference peak RSS (MiB) | cache fill (s) |",
             "|---|---|---|---|---|---|"]
    train, infer = report.get("train", {}), report.get("inference", {})
    for name in ("naive", "project", "limit"):
        t, i = train.get(name, {}), infer.get(name, {})
        fill = " / ".join(f"{part['cache_fill_s']:.1f}" for part in (t, i) if "cache_fill_s" in part)
        lines.append(f"| {name} | {rate_cell(t)} | {t.get('peak_rss_mib', '-')} | {rate_cell(i)} | {i.get('peak_rss_mib', '-')} | {fill or '-'} |")
    for ratio in ("project_over_limit", "project_over_naive"):
        lines.append(f"| {ratio.replace('_over_', ' / ')} | {train.get(ratio, '-')} | | {infer.get(ratio, '-')} | | |")
    data_path = [f"{phase} {part['project']['data_path_images_per_s']}" for phase, part in (("training", train), ("inference", infer))
                 if "project" in part]
    if data_path:
        lines += ["", f"Project data path alone (loader, no network), images/s: {', '.join(data_path)}."]
    if "validation_images_per_s" in infer.get("project", {}):
        lines += [f"Whole validation step (validate#evaluator with postprocessing and metrics): "
                  f"{infer['project']['validation_images_per_s']} images/s."]
    return "\n".join(lines) + "\n"


# --- child: one variant ------------------------------------------------------------------------------------

def run_variant(args: argparse.Namespace) -> dict:
    """Run ``args.variant`` in this process; returns its figures (see the module docstring)."""
    import monai
    import torch
    from monai.bundle import ConfigParser

    from pipelines.bundles import config_files

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        parser = ConfigParser()
        parser.read_config([str(path) for path in config_files(args.bundle, "train")])
        overrides = {"bundle_root": args.bundle, "dataset_dir": args.dataset_dir, "ckpt_dir": f"{scratch}/models", "output_dir": f"{scratch}/eval"}
        overrides.update({"manifest": args.manifest} if args.manifest else {})
        overrides.update({key: override_value(value) for key, value in (item.split("=", 1) for item in args.overrides)})
        parser.update(overrides)
        device = parser.get_parsed_content("device")
        monai.utils.set_determinism(seed=parser.get_parsed_content("seed"))
        figures = VARIANT_RUNNERS[args.variant](parser, device, StepTimer(args.warmup, args.steps, device))
    peak_kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    figures.update(
        peak_rss_mib=round(peak_kib / (2**20 if sys.platform == "darwin" else 2**10)),  # ru_maxrss: bytes on macOS, KiB elsewhere
        batch_size=parser.get_parsed_content("batch_size"),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        manifest=parser.get_parsed_content("manifest"),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        monai=monai.__version__,
    )
    if device.type == "cuda":
        figures["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return figures


class StepTimer:
    """Times ``steps`` steps after ``warmup`` untimed ones: call :meth:`step` after each step with its image count."""

    def __init__(self, warmup: int, steps: int, device) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.count = self.images = 0
        self.start = self.seconds = 0.0

    @property
    def total(self) -> int:
        return self.warmup + self.steps

    def step(self, images: int) -> bool:
        """Count one finished step of ``images`` images; True once the last timed step is done."""
        import torch

        self.count += 1
        if self.count > self.warmup:
            self.images += images
        if self.count in (self.warmup, self.total):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            self.start, self.seconds = (now, 0.0) if self.count == self.warmup else (self.start, now - self.start)
        return self.count >= self.total

    def attach(self, engine) -> None:
        """Time an ignite engine's iterations and end its run after the last timed one (skipping epoch-end work)."""
        from ignite.engine import Events

        def on_iteration(engine) -> None:
            batch = engine.state.batch  # a list of items once MONAI has decollated it
            if self.step(len(batch) if isinstance(batch, list) else len(batch["image"])):
                engine.terminate(skip_completed=True)

        engine.state.epoch_length = self.total  # the loader restarts if the split has fewer batches
        engine.add_event_handler(Events.ITERATION_COMPLETED, on_iteration)

    def figures(self) -> dict:
        return {"images_per_s": round(self.images / self.seconds, 3), "seconds": round(self.seconds, 3), "images": self.images}


def train_project(parser, device, timer: StepTimer) -> dict:
    parser.get_parsed_content("initialize")
    start = time.perf_counter()
    parser.get_parsed_content("train#dataset")
    cache_fill = time.perf_counter() - start
    trainer = parser.get_parsed_content("train#trainer")
    data_path = data_path_rate(trainer.data_loader, device, timer, track_meta=False)  # as the trainer draws them (NoMetadataInTraining)
    trainer.state.max_epochs = 1
    timer.attach(trainer)
    trainer.run()
    return {**timer.figures(), "cache_fill_s": round(cache_fill, 3), "data_path_images_per_s": data_path}


def infer_project(parser, device, timer: StepTimer) -> dict:
    from monai.engines import SupervisedEvaluator

    parser.get_parsed_content("initialize")
    start = time.perf_counter()
    parser.get_parsed_content("validate#dataset")
    cache_fill = time.perf_counter() - start
    loader = parser.get_parsed_content("validate#dataloader")
    data_path = data_path_rate(loader, device, timer)
    evaluator = SupervisedEvaluator(device=device, val_data_loader=loader,
                                    network=parser.get_parsed_content("network"), inferer=parser.get_parsed_content("validate#inferer"),
                                    amp=parser.get_parsed_content("amp"))
    timer.attach(evaluator)
    evaluator.run()
    figures = {**timer.figures(), "cache_fill_s": round(cache_fill, 3), "data_path_images_per_s": data_path}
    validation = StepTimer(timer.warmup, timer.steps, device)
    validator = parser.get_parsed_content("validate#evaluator")
    validation.attach(validator)
    validator.run()
    return {**figures, "validation_images_per_s": validation.figures()["images_per_s"]}


def data_path_rate(loader, device, like: StepTimer, track_meta: bool = True) -> float:
    """Images/s of ``loader`` alone, each batch moved to ``device`` as the engines' ``prepare_batch`` does: no network.
    ``track_meta``: MONAI's metadata tracking while drawing (the trainer turns it off)."""
    from monai.data import set_track_meta

    timer = StepTimer(like.warmup, like.steps, device)
    set_track_meta(track_meta)
    try:
        while True:
            for batch in loader:
                batch["image"].to(device)
                if timer.step(len(batch["image"])):
                    return timer.figures()["images_per_s"]
    finally:
        set_track_meta(True)


def held_batches(parser, split: str, count: int = HELD_BATCHES) -> list[dict]:
    """``count`` batches of the bundle's own transforms for ``split`` (``train`` or ``validate``), collated as its
    loader does, from items spread evenly over the split (so that tumour slices are among them)."""
    from monai.data import list_data_collate

    items, batch_size = parser.get_parsed_content(f"{split}#dataset#data"), parser.get_parsed_content("batch_size")
    spread = items[:: max(1, len(items) // (count * batch_size))][: count * batch_size]
    transform = parser.get_parsed_content(f"{split}#dataset#transform")
    return [list_data_collate([transform(item) for item in spread[k : k + batch_size]]) for k in range(0, len(spread), batch_size)]


def on_device(tensor, device):
    """A plain (metadata-free) tensor on ``device``."""
    from monai.utils import convert_to_tensor

    return convert_to_tensor(tensor, track_meta=False).to(device)


def train_limit(parser, device, timer: StepTimer) -> dict:
    import torch

    held = [(on_device(batch["image"], device), on_device(batch["label"], device)) for batch in held_batches(parser, "train")]
    network, loss_function, optimizer = (parser.get_parsed_content(key) for key in ("network", "loss", "optimizer"))
    amp = parser.get_parsed_content("amp")
    scaler = torch.amp.GradScaler("cuda") if amp else None
    network.train()
    for step in itertools.count():  # SupervisedTrainer's update, without the engine
        images, labels = held[step % len(held)]
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast(device.type, enabled=amp):
            loss = loss_function(network(images), labels).mean()
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if timer.step(len(images)):
            return timer.figures()


def infer_limit(parser, device, timer: StepTimer) -> dict:
    import torch
    from monai.networks import eval_mode

    images = on_device(held_batches(parser, "validate", 1)[0]["image"], device)
    inferer, network = parser.get_parsed_content("validate#inferer"), parser.get_parsed_content("network")
    calls = []  # the windows the inferer cuts from one image, found by letting it run on a recording stand-in
    inferer(images[:1], lambda windows: calls.append(windows) or windows[:, :1])
    windows = torch.cat(calls)
    batch = windows.repeat(math.ceil(inferer.sw_batch_size / len(windows)), 1, 1, 1)[: inferer.sw_batch_size]
    with eval_mode(network), torch.autocast(device.type, enabled=parser.get_parsed_content("amp")):
        while True:
            network(batch)
            if timer.step(len(batch)):
                break
    figures = timer.figures()
    figures["images_per_s"] = round(figures["images_per_s"] / len(windows), 3)
    return {**figures, "windows_per_image": len(windows)}


class NaiveSlices:
    """Seed-notebook dataset: each draw opens the image(s) and mask with PIL and builds float32 arrays with numpy.

    Item: ``(image (C, H, W) float32, label (1, H, W))``. The image files of an item (one, or a 2.5D list)
    are resized to ``size`` (bilinear) when they differ, concatenated channel-first, reduced to ``channels``
    (all when None), scaled to [0, 1] and, with ``mean``/``std``, normalised; the mask (nearest) becomes class
    indices ``0..len(label_values)-1`` as ``label_dtype``. With ``crop`` smaller than ``size``, a random
    ``crop``-sized window of both.
    """

    def __init__(self, items, channels=None, size=None, crop=None, label_values=(0, 255), mean=None, std=None, label_dtype="float32"):
        import numpy as np

        self.items, self.channels, self.size, self.crop = items, channels, size, crop
        self.label_values, self.mean, self.std, self.label_dtype = np.asarray(label_values), mean, std, label_dtype
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, path: str, resample):
        """(C, H, W) uint8 array of one file, resized to ``size`` with ``resample`` when it differs."""
        import numpy as np
        from PIL import Image

        picture = Image.open(path)
        if self.size and picture.size != tuple(self.size):
            picture = picture.resize(tuple(self.size), resample)
        array = np.asarray(picture)
        return array.transpose(2, 0, 1) if array.ndim == 3 else array[None]

    def __getitem__(self, index: int):
        import numpy as np
        from PIL import Image

        item = self.items[index]
        paths = item["image"] if isinstance(item["image"], list) else [item["image"]]
        image = np.concatenate([self._read(path, Image.Resampling.BILINEAR) for path in paths]).astype(np.float32) / 255.0
        if self.channels is not None:
            image = image[self.channels]
        if self.mean is not None:
            image = (image - self.mean) / self.std
        label = np.searchsorted(self.label_values, self._read(item["label"], Image.Resampling.NEAREST)).astype(self.label_dtype)
        if self.crop and tuple(self.crop) != image.shape[1:]:
            top, left = (self.rng.integers(0, full - part + 1) for full, part in zip(image.shape[1:], self.crop))
            window = np.s_[:, top : top + self.crop[0], left : left + self.crop[1]]
            image, label = image[window], label[window]
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


def naive_dataset(parser, split: str) -> tuple:
    """``(NaiveSlices of split, samples per item)`` with the recipe's settings; the crop size, samples per item and
    label type come from running the bundle's own transforms on the first item."""
    def setting(key: str):
        return parser.get_parsed_content(key) if key in parser else None

    item = parser.get_parsed_content(f"{split}#dataset#data")[0]
    sample = parser.get_parsed_content(f"{split}#dataset#transform")(item)
    samples = len(sample) if isinstance(sample, list) else 1
    sample = sample[0] if isinstance(sample, list) else sample
    dataset = NaiveSlices(
        parser.get_parsed_content(f"{split}#dataset#data"),
        channels=setting("input_channels") or setting("image_channels"),  # input_channels: LGG's channels of a 2.5D stack
        size=setting("image_size"),
        crop=list(sample["image"].shape[1:]),
        label_values=parser.get_parsed_content("label_values"),
        mean=setting("intensity_mean"),
        std=setting("intensity_std"),
        label_dtype=str(sample["label"].dtype).replace("torch.", ""),
    )
    return dataset, samples


def train_naive(parser, device, timer: StepTimer) -> dict:
    import torch

    dataset, samples = naive_dataset(parser, "train")
    loader = torch.utils.data.DataLoader(dataset, batch_size=parser.get_parsed_content("batch_size") * samples, shuffle=True)
    network, loss_function, optimizer = (parser.get_parsed_content(key) for key in ("network", "loss", "optimizer"))
    running_loss = 0.0
    while True:
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            network.train()
            optimizer.zero_grad()
            loss = loss_function(network(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if timer.step(len(images)):
                return timer.figures()


def infer_naive(parser, device, timer: StepTimer) -> dict:
    import torch

    dataset, _ = naive_dataset(parser, "validate")
    dataset.crop = None  # whole slices, as the seeds predicted
    loader = torch.utils.data.DataLoader(dataset, batch_size=parser.get_parsed_content("batch_size"))
    network = parser.get_parsed_content("network").eval()
    with torch.no_grad():
        while True:
            for images, _ in loader:
                network(images.to(device)).cpu()
                if timer.step(len(images)):
                    return timer.figures()


VARIANT_RUNNERS = {"train_naive": train_naive, "train_project": train_project, "train_limit": train_limit,
                   "infer_naive": infer_naive, "infer_project": infer_project, "infer_limit": infer_limit}

if __name__ == "__main__":
    sys.exit(main())
