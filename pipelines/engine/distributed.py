"""Multi-process training and evaluation with PyTorch DDP, launched by ``torchrun`` (the model-zoo way).

``bundles/multi_gpu.json`` uses these functions; a bundle's ``configs/multi_gpu_train.json`` or
``multi_gpu_evaluate.json`` picks the workflow::

    torchrun --standalone --nproc_per_node=2 -m monai.bundle run --config_file \\
        "['bundles/lgg_unet_bce/configs/train.json','bundles/common.json','bundles/lgg.json','bundles/multi_gpu.json','bundles/lgg_unet_bce/configs/multi_gpu_train.json']"

Each process drives ``cuda:LOCAL_RANK`` (NCCL), or the CPU (gloo) when there is no GPU. Every function
also works in a single process without ``torchrun``: rank 0 of a world of one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ignite.distributed as idist
import torch
import torch.distributed as dist
from monai.data import DistributedSampler, DistributedWeightedRandomSampler
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler

__all__ = [
    "data_parallel", "destroy_process_group", "evaluation_sampler", "gather", "init_process_group", "is_rank_zero",
    "global_rank", "local_device", "training_sampler",
]


def global_rank() -> int:
    """Global rank of this process: from the process group, else torchrun's ``RANK``, else 0."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", 0))


def is_rank_zero() -> bool:
    """True in the process that writes files (checkpoints, logs, reports): rank 0, or a single process."""
    return global_rank() == 0


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if torch.cuda.is_available() else torch.device("cpu")


def init_process_group() -> None:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) once, and pin this process's GPU."""
    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_device())
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    # ignite sets up its own view of the group (a collective new_group) the first time a handler asks for the
    # rank; do it now on every rank, or ranks that skip the rank-0 handlers reach it in another order and hang
    idist.sync()


def destroy_process_group() -> None:
    """Leave the process group, if joined, once every rank has got here: a rank that left while rank 0 still
    wrote its files and talked to the group could abort ("terminate called without an active exception")."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def data_parallel(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` (already on :func:`local_device`) wrapped in ``DistributedDataParallel``."""
    device = next(network.parameters()).device
    return DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None)


def training_sampler(dataset: Dataset, seed: int, sampler: Sampler | None = None, num_replicas: int | None = None,
                     rank: int | None = None) -> Sampler:
    """This rank's share of an epoch, reshuffled every epoch (MONAI's workflow calls ``set_epoch``).

    ``sampler`` is the bundle's single-process sampler: ``None`` (plain shuffling) becomes a shuffling
    ``DistributedSampler``; a ``WeightedRandomSampler`` (e.g. the diagnosis-balanced one) becomes a
    ``DistributedWeightedRandomSampler`` with the same weights. Shards have equal length (padded by
    repetition), as DDP needs the same number of steps on every rank. ``num_replicas`` and ``rank`` default
    to the process group's.
    """
    shard = {"num_replicas": num_replicas, "rank": rank}
    if sampler is None:
        return DistributedSampler(dataset, shuffle=True, even_divisible=True, seed=seed, **shard)
    if isinstance(sampler, WeightedRandomSampler):
        generator = torch.Generator().manual_seed(seed + (global_rank() if rank is None else rank))
        return DistributedWeightedRandomSampler(dataset, weights=sampler.weights.tolist(), generator=generator, **shard)
    raise ValueError(f"no distributed form of {type(sampler).__name__}; use None or a WeightedRandomSampler")


def evaluation_sampler(dataset: Dataset, num_replicas: int | None = None, rank: int | None = None) -> Sampler:
    """Disjoint, unpadded, in-order shards covering ``dataset`` once, so gathered scores equal one process's."""
    return DistributedSampler(dataset, shuffle=False, even_divisible=False, num_replicas=num_replicas, rank=rank)


def gather(items: Sequence) -> list:
    """Every rank's ``items`` concatenated in rank order (a collective: all ranks must call it)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]
