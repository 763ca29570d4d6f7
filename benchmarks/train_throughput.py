"""Training and inference throughput and peak memory of a bundle, side by side with a seed-style loop and the
model-only limit, on the same slices, network, loss, optimiser, batch size and device.

    python benchmarks/train_throughput.py --bundle bundles/<name> --dataset_dir <root> [--manifest <csv>]
        [--steps 10] [--warmup 2] [--repeats 3] [--threads N] [--set KEY=VALUE ...] [--out runs/benchmarks/<name>.json]

Three variants per phase. The device is the bundle's (CUDA when PyTorch sees it, else the CPU); each variant is
built from its own parse of the bundle's config files (its own network and optimiser, seeded with the bundle's
``seed``) and counts the images (network input samples: patches for a bundle that crops) that went through:

- ``train_naive``: seed-notebook style. A ``torch.utils.data.Dataset`` that opens each file with PIL at every
  draw, converts with numpy (channels, resize, crop, scaling, intensity normalisation and label values as the
  recipe has them), a default ``DataLoader``, and a hand-written float32 step loop reading ``loss.item()`` every step.
- ``train_project``: the bundle's ``train#trainer`` as ``monai.bundle run`` builds it from the same config
  files (after its ``initialize``): its cached dataset (``CacheDataset``; LGG's ``StackedSliceDataset``), the bundle's loader (MONAI's ``DataLoader`` on the CPU,
  ``ThreadDataLoader`` on CUDA), ``SupervisedTrainer`` with every handler. Its epoch never ends while it is
  timed, so validation and checkpoints are not (validation is measured below). ``cache_fill_s``: building
  ``train#dataset``, i.e. filling its cache; ``data_path_images_per_s``: its loader alone, without the network
  (metadata tracking off, as in training).
- ``train_limit``: the same network, loss, optimiser, AMP setting and update as ``SupervisedTrainer``'s,
  stepping in turn on ``HELD_BATCHES`` batches of the bundle's own training transforms (items spread over the
  split) held on the device: no data path at all.
- ``infer_naive``: seed style: the PIL dataset over the validation split, a default ``DataLoader``, the
  network's forward on whole slices in eval mode, predictions copied to the host every batch.
- ``infer_project``: ``validate#dataloader`` (cache filled in ``cache_fill_s``) through a ``SupervisedEvaluator``
  with the bundle's ``validate#inferer`` (its ``SlidingWindowInferer``) and AMP setting, no postprocessing;
  ``data_path_images_per_s`` as in training. ``validation_images_per_s``: the bundle's whole ``validate#evaluator``
  (postprocessing, metrics, handlers; epoch-end work such as saving ``model.pt`` excluded).
- ``infer_limit``: the network's forward in eval mode on the windows the inferer cuts from one batch, held on
  the device; images/s counts the windows of one image as one image.

Speed: one process per phase builds its three variants, runs ``--warmup`` untimed steps of each, then
``--repeats`` rounds in which each variant in turn runs ``--steps`` timed steps (CUDA synchronised at both
ends of each block). A variant's ``images_per_s`` is the median of its rounds (all in ``images_per_s_runs``)
and ``project_over_limit`` / ``project_over_naive`` the medians of the ratios of blocks that ran back to back.
Timing all three in one process matters on a shared machine: there, the same work can run 1.5x faster or
slower from one process start to the next, which separate processes would turn into false ratios.

Memory: one short process per variant (``--warmup`` steps and one more), so that each ``peak_rss_mib``
(``ru_maxrss``; ``peak_gpu_mib`` on CUDA) is that variant's own; its ``wall_s`` includes start-up and cache filling.

Writes the JSON (``train`` and ``inference``: each variant's figures, plus the two ratios) to ``--out`` and the
readable table beside it (``.md``) and on stdout; the processes' logs go to ``<out>.<name>.log``.
``--threads N`` sets ``torch.set_num_threads(N)`` everywhere. Timings are never asserted anywhere: compare
ratios taken in one run.
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = {"train": ("train_naive", "train_project", "train_limit"), "inference": ("infer_naive", "infer_project", "infer_limit")}
VARIANTS = tuple(itertools.chain(*PHASES.values()))
HELD_BATCHES = 4  # train_limit cycles through this many batches, from items spread over the split, as the loop
# over real data does: the first batch alone would be a few neighbouring, mostly tumour-free slices, soon fitted
ENDLESS = 10**9  # epoch length of the timed engines: they are interrupted, never reach an epoch's end


# --- command line ------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/lgg_unet_bce")
    parser.add_argument("--dataset_dir", required=True, help="root of the data the manifest's paths are relative to")
    parser.add_argument("--manifest", help="manifest CSV (default: the bundle's)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (batches) per variant and round (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each variant before the rounds (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of timed blocks, the variants in turn (default 3)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="bundle config override, as monai.bundle's --KEY VALUE (repeatable), e.g. network_def#features=4")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads in every process (default: PyTorch's choice)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--out", help="result JSON (default runs/benchmarks/<bundle>.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: "speed:<phase>" or "memory:<variant>" in this process
    parser.add_argument("--result", help=argparse.SUPPRESS)  # internal: where the child writes its figures
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
    args.variants = [variant for variant in VARIANTS if variant in args.variants.split(",")]
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


# --- parent: the speed and memory processes, then the report -----------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        Path(args.result).write_text(json.dumps(run_child(args)))
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(0)  # the figures are written; tearing down a trainer stopped mid-epoch can abort (exit -6 on CUDA)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for phase, variants in PHASES.items():
        chosen = [variant for variant in variants if variant in args.variants]
        if not chosen:
            continue
        speed = run_subprocess(args, f"speed:{phase}")
        for variant in chosen:
            memory = run_subprocess(args, f"memory:{variant}")
            results[variant] = {**speed["variants"][variant], "peak_rss_mib": memory["peak_rss_mib"], "wall_s": memory["wall_s"],
                                **({"peak_gpu_mib": memory["peak_gpu_mib"]} if "peak_gpu_mib" in memory else {})}
            print(f"{variant}: {results[variant]['images_per_s']:.2f} images/s, peak RSS {memory['peak_rss_mib']} MiB", file=sys.stderr)
        results[phase] = {**speed["ratios"], "setup": speed["setup"]}
    report = summarise(args, results)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(report)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


def run_subprocess(args: argparse.Namespace, child: str) -> dict:
    """Figures of ``child`` run in a fresh interpreter (its output goes to ``<out>.<child name>.log``)."""
    forwarded = ["--bundle", args.bundle, "--dataset_dir", args.dataset_dir, "--steps", str(args.steps), "--warmup", str(args.warmup),
                 "--repeats", str(args.repeats), "--variants", ",".join(args.variants),
                 *(["--manifest", args.manifest] if args.manifest else []), *(["--threads", str(args.threads)] if args.threads else []),
                 *(f"--set={item}" for item in args.overrides)]
    log = args.out.with_suffix(f".{child.replace(':', '_')}.log")
    with tempfile.TemporaryDirectory() as scratch, open(log, "w") as log_file:
        result = Path(scratch) / "result.json"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, *forwarded, "--child", child, "--result", str(result)],
                              cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise SystemExit(f"error: {child} failed (exit {done.returncode}): {last_error_line(log)} (log: {log})")
        return {**json.loads(result.read_text()), "wall_s": round(time.perf_counter() - start, 1)}


def last_error_line(log: Path) -> str:
    """The last line of ``log`` that mentions an error, else its last line (``(no output)`` when empty)."""
    lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
    return next((line for line in reversed(lines) if "error" in line.lower()), lines[-1]).strip()


def summarise(args: argparse.Namespace, results: dict[str, dict]) -> dict:
    """The JSON report: setup, machine, and per phase (train, inference) each variant's figures and the ratios."""
    setup = next(results[phase].pop("setup") for phase in PHASES if phase in results)
    for phase in PHASES:
        results.get(phase, {}).pop("setup", None)
    report = {
        "bundle": Path(args.bundle).name,
        "dataset_dir": args.dataset_dir,
        "manifest": args.manifest or setup["manifest"],
        "overrides": dict(item.split("=", 1) for item in args.overrides),
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "batch_size": setup["batch_size"],
        "device": setup["device"],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                    "torch_threads": setup["torch_threads"], "torch": setup["torch"], "monai": setup["monai"]},
    }
    for phase, variants in PHASES.items():
        if phase in results:
            prefix = variants[0].split("_")[0] + "_"
            report[phase] = {**{variant[len(prefix):]: results[variant] for variant in variants if variant in results}, **results[phase]}
    return report


def rate_cell(figures: dict) -> str:
    """``median`` images/s, and ``(min-max)`` of the rounds when there were several; ``-`` for a variant not run."""
    if "images_per_s" not in figures:
        return "-"
    runs = figures.get("images_per_s_runs", [])
    return f"{figures['images_per_s']}" + (f" ({min(runs)}-{max(runs)})" if len(runs) > 1 else "")


def markdown_table(report: dict) -> str:
    """One table: a row per variant, training and inference side by side, then the two ratios."""
    machine = report["machine"]
    lines = [f"{report['bundle']} on {report['device']} ({machine['cpus']} CPUs, {machine['torch_threads']} torch threads, "
             f"torch {machine['torch']}, MONAI {machine['monai']}), batch {report['batch_size']}, "
             f"median of {report['repeats']} rounds of {report['steps']} timed steps per variant, after {report['warmup']} untimed", "",
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


# --- child: the speed of one phase's variants, or the memory of one variant --------------------------------

def run_child(args: argparse.Namespace) -> dict:
    """``speed:<phase>``: the rounds of timed blocks of the phase's chosen variants; ``memory:<variant>``: one
    variant alone for ``--warmup`` + 1 steps, then the peak memory of this process."""
    import monai
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    kind, name = args.child.split(":")
    with tempfile.TemporaryDirectory() as scratch:
        if kind == "memory":
            parser = bundle_config(args, scratch)
            device = parser.get_parsed_content("device")
            VARIANT_BUILDERS[name](parser, device).run(args.warmup + 1)
            peak_kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
            figures = {"peak_rss_mib": round(peak_kib / (2**20 if sys.platform == "darwin" else 2**10))}  # ru_maxrss: bytes on macOS, KiB elsewhere
            if device.type == "cuda":
                figures["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
            return figures
        chosen = [variant for variant in PHASES[name] if variant in args.variants]
        parsers = {variant: bundle_config(args, f"{scratch}/{variant}") for variant in chosen}
        parser = next(iter(parsers.values()))
        device = parser.get_parsed_content("device")
        built = {variant: VARIANT_BUILDERS[variant](parsers[variant], device) for variant in chosen}
        if "infer_project" in built:
            built["infer_validation"] = infer_validation(parsers["infer_project"], device)
        speed = timed_rounds(built, args.warmup, args.steps, args.repeats, device)
        validation = speed["variants"].pop("infer_validation", None)
        if validation:
            speed["variants"]["infer_project"]["validation_images_per_s"] = validation["images_per_s"]
    speed["setup"] = {
        "batch_size": parser.get_parsed_content("batch_size"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "manifest": parser.get_parsed_content("manifest"),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
    }
    return speed


def bundle_config(args: argparse.Namespace, scratch: str):
    """A fresh parse of the bundle's training config files with the harness overrides, outputs under ``scratch``;
    MONAI's determinism set with the bundle's seed."""
    import monai
    from monai.bundle import ConfigParser

    from pipelines.bundles import config_files

    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(args.bundle, "train")])
    overrides = {"bundle_root": args.bundle, "dataset_dir": args.dataset_dir, "ckpt_dir": f"{scratch}/models", "output_dir": f"{scratch}/eval"}
    overrides.update({"manifest": args.manifest} if args.manifest else {})
    overrides.update({key: override_value(value) for key, value in (item.split("=", 1) for item in args.overrides)})
    parser.update(overrides)
    monai.utils.set_determinism(seed=parser.get_parsed_content("seed"))
    return parser


class Variant:
    """One way of stepping a phase: ``run(steps)`` does ``steps`` steps and returns the images they took in;
    ``extra``: figures of its own (cache fill time, ...)."""

    def __init__(self, run: Callable[[int], float], extra: dict | None = None) -> None:
        self.run, self.extra = run, dict(extra or {})


def timed_rounds(built: dict[str, Variant], warmup: int, steps: int, repeats: int, device) -> dict:
    """Warm every variant up, then ``repeats`` rounds of ``steps`` timed steps of each in turn; returns per variant
    the median rate, every round's rate, seconds and images, and the medians of the per-round ratios."""
    import torch

    def synchronise() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for variant in built.values():
        variant.run(warmup)
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in built}
    for _ in range(repeats):
        for name, variant in built.items():
            synchronise()
            start = time.perf_counter()
            images = variant.run(steps)
            synchronise()
            rounds[name].append((images, time.perf_counter() - start))
    rates = {name: [images / seconds for images, seconds in blocks] for name, blocks in rounds.items()}
    figures = {name: {"images_per_s": round(statistics.median(rates[name]), 3), "images_per_s_runs": [round(rate, 3) for rate in rates[name]],
                      "seconds": round(sum(seconds for _, seconds in rounds[name]), 3), "images": round(sum(images for images, _ in rounds[name]), 3),
                      **built[name].extra} for name in built}
    ratios = {}
    project = next((name for name in built if name.endswith("_project")), None)
    for other in ("limit", "naive"):
        name = next((n for n in built if n.endswith(f"_{other}")), None)
        if project and name:
            ratios[f"project_over_{other}"] = round(statistics.median(p / o for p, o in zip(rates[project], rates[name])), 3)
    return {"variants": figures, "ratios": ratios}


def engine_steps(engine, start: Callable[[], object]) -> Callable[[int], float]:
    """``run(steps)`` for an ignite engine: ``start()`` runs or resumes it, and it is interrupted after ``steps``
    iterations (its epoch never ends, so no epoch-end work is timed); returns the images of those iterations."""
    from ignite.engine import Events

    counted = {"steps": 0, "images": 0, "target": 0}

    def on_iteration(engine) -> None:
        batch = engine.state.batch  # a list of items once MONAI has decollated it
        counted["images"] += len(batch) if isinstance(batch, list) else len(batch["image"])
        counted["steps"] += 1
        if counted["steps"] >= counted["target"]:
            engine.interrupt()

    engine.state.max_epochs, engine.state.epoch_length = 1, ENDLESS  # the loader restarts when the split runs out
    engine.add_event_handler(Events.ITERATION_COMPLETED, on_iteration)

    def run(steps: int) -> float:
        counted.update(steps=0, images=0, target=steps)
        start()
        return counted["images"]

    return run


def looped(step: Callable[[], float]) -> Callable[[int], float]:
    """``run(steps)`` calling ``step()`` (which returns its images) ``steps`` times."""
    return lambda steps: sum(step() for _ in range(steps))


def cache_fill_seconds(parser, dataset: str) -> float:
    """Run the bundle's ``initialize`` (its input checks), then build ``dataset`` (filling its cache): the seconds the latter took."""
    parser.get_parsed_content("initialize")
    start = time.perf_counter()
    parser.get_parsed_content(dataset)
    return round(time.perf_counter() - start, 3)


def train_project(parser, device) -> Variant:
    cache_fill = cache_fill_seconds(parser, "train#dataset")
    trainer = parser.get_parsed_content("train#trainer")
    extra = {"cache_fill_s": cache_fill, "data_path_images_per_s": data_path_rate(trainer.data_loader, device, track_meta=False)}
    return Variant(engine_steps(trainer, trainer.run), extra)  # SupervisedTrainer.run resumes an interrupted run


def infer_project(parser, device) -> Variant:
    from monai.engines import SupervisedEvaluator

    cache_fill = cache_fill_seconds(parser, "validate#dataset")
    loader = parser.get_parsed_content("validate#dataloader")
    evaluator = SupervisedEvaluator(device=device, val_data_loader=loader,
                                    network=parser.get_parsed_content("network"), inferer=parser.get_parsed_content("validate#inferer"),
                                    amp=parser.get_parsed_content("amp"))
    extra = {"cache_fill_s": cache_fill, "data_path_images_per_s": data_path_rate(loader, device)}
    return Variant(engine_steps(evaluator, lambda: run_engine(evaluator)), extra)


def infer_validation(parser, device) -> Variant:
    """The bundle's whole ``validate#evaluator`` (after :func:`infer_project` on the same ``parser``): timed in the
    rounds beside the inference variants, reported as the project's ``validation_images_per_s``."""
    validator = parser.get_parsed_content("validate#evaluator")
    return Variant(engine_steps(validator, lambda: run_engine(validator)))


def run_engine(engine) -> None:
    """Run or resume an evaluator as a plain ignite engine: MONAI's ``Evaluator.run`` would restart it at iteration 0."""
    from ignite.engine import Engine

    Engine.run(engine, engine.data_loader)


def endless(loader):
    """The batches of ``loader``, epoch after epoch."""
    while True:
        yield from loader


def data_path_rate(loader, device, track_meta: bool = True, steps: int = 10) -> float:
    """Images/s of ``loader`` alone over ``steps`` batches, each moved to ``device`` as the engines' ``prepare_batch``
    does: no network. ``track_meta``: MONAI's metadata tracking while drawing (the trainer turns it off)."""
    from monai.data import set_track_meta

    set_track_meta(track_meta)
    try:
        images, start = 0, time.perf_counter()
        for batch in itertools.islice(endless(loader), steps):
            images += len(batch["image"].to(device))
        return round(images / (time.perf_counter() - start), 3)
    finally:
        set_track_meta(True)


def on_device(tensor, device):
    """A plain (metadata-free) tensor on ``device``."""
    from monai.utils import convert_to_tensor

    return convert_to_tensor(tensor, track_meta=False).to(device)


def split_items(parser, split: str) -> list[dict]:
    """The items of the bundle's ``split`` workflow (``train`` or ``validate``), from its data component."""
    return parser.get_parsed_content("data").datalist("train" if split == "train" else parser.get_parsed_content("validate#split"))


def uncached_dataset(parser, split: str):
    """The bundle's dataset of ``split`` (``train`` or ``validate``) uncached: its items, transforms and 2.5D
    stacking as configured, each item loaded when drawn."""
    return parser.get_parsed_content("data").uncached_dataset(split_items(parser, split), parser.get_parsed_content(f"{split}#preprocessing"))


def held_batches(parser, split: str, count: int = HELD_BATCHES) -> list[dict]:
    """``count`` batches of the bundle's own dataset for ``split`` (``train`` or ``validate``), collated as its
    loader does, from items spread evenly over the split (so that tumour slices are among them)."""
    from monai.data import list_data_collate

    dataset, batch_size = uncached_dataset(parser, split), parser.get_parsed_content("batch_size")
    spread = list(range(len(dataset)))[:: max(1, len(dataset) // (count * batch_size))][: count * batch_size]
    return [list_data_collate([dataset[index] for index in spread[k : k + batch_size]]) for k in range(0, len(spread), batch_size)]


def train_limit(parser, device) -> Variant:
    import torch

    held = itertools.cycle([(on_device(batch["image"], device), on_device(batch["label"], device)) for batch in held_batches(parser, "train")])
    network, loss_function, optimizer = (parser.get_parsed_content(key) for key in ("network", "loss", "optimizer"))
    amp = parser.get_parsed_content("amp")
    scaler = torch.amp.GradScaler("cuda") if amp else None

    def step() -> int:  # SupervisedTrainer's update, without the engine
        images, labels = next(held)
        network.train()
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
        return len(images)

    return Variant(looped(step))


def infer_limit(parser, device) -> Variant:
    import torch

    images = on_device(held_batches(parser, "validate", 1)[0]["image"], device)
    inferer, network = parser.get_parsed_content("validate#inferer"), parser.get_parsed_content("network").eval()
    calls = []  # the windows the inferer cuts from one image, found by letting it run on a recording stand-in
    inferer(images[:1], lambda windows: calls.append(windows) or windows[:, :1])
    windows = torch.cat(calls)
    batch = windows.repeat(math.ceil(inferer.sw_batch_size / len(windows)), 1, 1, 1)[: inferer.sw_batch_size]
    amp = parser.get_parsed_content("amp")

    def step() -> float:
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            network(batch)
        return len(batch) / len(windows)  # the windows of one image count as one image

    return Variant(looped(step), {"windows_per_image": len(windows)})


class NaiveSlices:
    """Seed-notebook dataset: each draw opens the image(s) and mask with PIL and builds float32 arrays with numpy.

    Item: ``(image (C, H, W) float32, label (1, H, W))``. The image files of an item (one, or a 2.5D list)
    are resized to ``size`` (bilinear) when they differ, concatenated channel-first, reduced to ``channels``
    (all when None), scaled to [0, 1], then given to ``normalise`` (the recipe's
    ``intensity_normalisation`` transforms on ``{"image": array}``) when there is one; the mask (nearest) becomes class
    indices ``0..len(label_values)-1`` as ``label_dtype``. With ``crop`` smaller than ``size``, a random
    ``crop``-sized window of both.
    """

    def __init__(self, items, channels=None, size=None, crop=None, label_values=(0, 255), normalise=None, label_dtype="float32"):
        import numpy as np

        self.items, self.channels, self.size, self.crop = items, channels, size, crop
        self.label_values, self.normalise, self.label_dtype = np.asarray(label_values), normalise, label_dtype
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
        if self.normalise is not None:
            image = np.asarray(self.normalise({"image": image})["image"], dtype=np.float32)
        label = np.searchsorted(self.label_values, self._read(item["label"], Image.Resampling.NEAREST)).astype(self.label_dtype)
        if self.crop and tuple(self.crop) != image.shape[1:]:
            top, left = (self.rng.integers(0, full - part + 1) for full, part in zip(image.shape[1:], self.crop))
            window = np.s_[:, top : top + self.crop[0], left : left + self.crop[1]]
            image, label = image[window], label[window]
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


def naive_dataset(parser, split: str) -> tuple:
    """``(NaiveSlices of split, samples per item)`` with the recipe's settings; the crop size, samples per item and
    label type come from running the bundle's own transforms on the first item."""
    from monai.transforms import Compose

    def setting(key: str):
        return parser.get_parsed_content(key) if key in parser else None

    sample = uncached_dataset(parser, split)[0]
    samples = len(sample) if isinstance(sample, list) else 1
    sample = sample[0] if isinstance(sample, list) else sample
    normalisation = setting("intensity_normalisation")  # parsed once: each parse builds new transforms
    dataset = NaiveSlices(
        split_items(parser, split),
        channels=setting("input_channels") or setting("image_channels"),  # input_channels: LGG's channels of a 2.5D stack
        size=setting("image_size"),
        crop=list(sample["image"].shape[1:]),
        label_values=parser.get_parsed_content("label_values"),
        normalise=Compose(normalisation) if normalisation else None,
        label_dtype=str(sample["label"].dtype).replace("torch.", ""),
    )
    return dataset, samples


def train_naive(parser, device) -> Variant:
    import torch

    dataset, samples = naive_dataset(parser, "train")
    batches = endless(torch.utils.data.DataLoader(dataset, batch_size=parser.get_parsed_content("batch_size") * samples, shuffle=True))
    network, loss_function, optimizer = (parser.get_parsed_content(key) for key in ("network", "loss", "optimizer"))

    def step() -> int:
        images, labels = next(batches)
        images, labels = images.to(device), labels.to(device)
        network.train()
        optimizer.zero_grad()
        loss = loss_function(network(images), labels)
        loss.backward()
        optimizer.step()
        loss.item()  # the seeds' running loss: a host read every step
        return len(images)

    return Variant(looped(step))


def infer_naive(parser, device) -> Variant:
    import torch

    dataset, _ = naive_dataset(parser, "validate")
    dataset.crop = None  # whole slices, as the seeds predicted
    batches = endless(torch.utils.data.DataLoader(dataset, batch_size=parser.get_parsed_content("batch_size")))
    network = parser.get_parsed_content("network").eval()

    def step() -> int:
        images, _ = next(batches)
        with torch.no_grad():
            network(images.to(device)).cpu()
        return len(images)

    return Variant(looped(step))


VARIANT_BUILDERS = {"train_naive": train_naive, "train_project": train_project, "train_limit": train_limit,
                    "infer_naive": infer_naive, "infer_project": infer_project, "infer_limit": infer_limit}

if __name__ == "__main__":
    sys.exit(main())
