"""Training-step time of candidate networks for a recipe, side by side: what a wider or another MONAI network costs.

    python benchmarks/network_cost.py [--bundle bundles/lgg_best] [--batch 16] [--size 128 128] [--steps 4] [--rounds 3]
        [--candidate NAME='{"_target_": "SegResNet", ...}' ...] [--out runs/benchmarks/network_cost.json]

The bundle's own ``network_def`` (as ``monai.bundle`` parses its recipe: input channels, classes) is the
reference; each candidate is a MONAI network config (``_target_`` and arguments; ``spatial_dims``,
``in_channels`` and ``out_channels`` are the bundle's unless given), by default a 1.5x wider UNet, ``SegResNet``
and ``DynUNet``. One step is the forward pass, a sigmoid cross-entropy loss, the backward pass and an AdamW update
on a batch of random inputs of ``--batch`` x channels x ``--size`` on the CPU, with no data path. After one
untimed step each, every round times ``--steps`` steps of each network in turn; a network's figure is the median
over rounds of its seconds per step, and ``over_recipe`` the median of its ratio to the recipe's network in the
same round. Prints and writes the JSON. A benchmark, never a test: the seconds are those of this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from pipelines.bundles import config_files

REPO = Path(__file__).resolve().parents[1]

DEFAULT_CANDIDATES = {
    "unet_24_384": {"_target_": "UNet", "channels": [24, 48, 96, 192, 384], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"},
    "segresnet_16": {"_target_": "SegResNet", "init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]},
    "dynunet_16_256": {"_target_": "DynUNet", "kernel_size": [3, 3, 3, 3, 3], "strides": [1, 2, 2, 2, 2], "upsample_kernel_size": [2, 2, 2, 2],
                       "filters": [16, 32, 64, 128, 256], "res_block": True},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(REPO / "bundles" / "lgg_best"), help="the recipe whose network is the reference")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, nargs="+", default=[128, 128], help="input size in pixels (default: 128 128)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per network and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=JSON", help="a network config to time (default: a wider UNet, SegResNet, DynUNet)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "network_cost.json")
    args = parser.parse_args(argv)
    if min(args.batch, args.steps, args.rounds, *args.size) < 1:
        parser.error("--batch, --size, --steps and --rounds must be at least 1")
    try:
        args.candidates = {name: json.loads(text) for name, text in (item.split("=", 1) for item in args.candidate)} or DEFAULT_CANDIDATES
    except ValueError as error:
        parser.error(f"--candidate expects NAME=JSON: {error}")
    return args


def build_networks(args: argparse.Namespace) -> tuple[dict[str, torch.nn.Module], dict[str, int]]:
    """The recipe's network (``recipe``) and each candidate, with the recipe's dimensions, input channels and classes
    (returned too, as ``spatial_dims``, ``in_channels``, ``out_channels``)."""
    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(args.bundle, "train")])
    recipe = parser.get_parsed_content("network_def")
    shape = {key: parser.get_parsed_content(f"network_def#{key}") for key in ("spatial_dims", "in_channels", "out_channels")}
    networks = {"recipe": recipe}
    for name, config in args.candidates.items():
        candidate = ConfigParser({"net": {**shape, **config}})
        networks[name] = candidate.get_parsed_content("net")
    return networks, shape


def step_time(network: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor, target: torch.Tensor, steps: int) -> float:
    """Seconds per training step, over ``steps`` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(network(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    networks, shape = build_networks(args)
    channels, classes = shape["in_channels"], shape["out_channels"]
    batch, target = torch.randn(args.batch, channels, *args.size), (torch.rand(args.batch, classes, *args.size) > 0.9).float()
    optimizers = {name: torch.optim.AdamW(network.parameters()) for name, network in networks.items()}
    for name, network in networks.items():
        step_time(network.train(), optimizers[name], batch, target, 1)
    rounds = [{name: step_time(network, optimizers[name], batch, target, args.steps) for name, network in networks.items()} for _ in range(args.rounds)]
    report = {
        "setup": {"bundle": args.bundle, "batch": args.batch, "size": args.size, "input_channels": channels, "steps": args.steps, "rounds": args.rounds,
                  "torch_threads": torch.get_num_threads()},
        "machine": {"cpu_cores": len(os.sched_getaffinity(0)), "platform": platform.platform(), "torch": torch.__version__},
        "networks": {name: {"parameters_millions": round(sum(p.numel() for p in network.parameters()) / 1e6, 2),
                            "seconds_per_step": round(statistics.median(entry[name] for entry in rounds), 3),
                            "over_recipe": round(statistics.median(entry[name] / entry["recipe"] for entry in rounds), 2)}
                     for name, network in networks.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
