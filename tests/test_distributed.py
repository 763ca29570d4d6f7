"""Multi-process training and evaluation (torchrun, gloo on CPU) through the bundles' multi_gpu configs."""

import json
import re

import pytest
import torch
from bundle_utils import fast, run_bundle
from torch.utils.data import WeightedRandomSampler

from pipelines.engine.distributed import evaluation_sampler, gather, is_rank_zero, training_sampler

# demo manifests; LGG at the demo's 128x128, OASIS at its own 256x256, both with narrow networks (tests.bundle_utils.fast)
DEMO = {
    "lgg_unet_bce": {"manifest": "data_manifests/lgg_demo.csv", "image_size": "[128,128]"},
    "oasis_unet": {"manifest": "data_manifests/oasis_demo.csv"},
}


def shards(make_sampler, replicas=2):
    return [list(make_sampler(rank)) for rank in range(replicas)]


def test_evaluation_shards_are_disjoint_and_cover_the_split_once():
    data = list(range(11))
    parts = shards(lambda rank: evaluation_sampler(data, num_replicas=2, rank=rank))
    assert sorted(parts[0] + parts[1]) == data and not set(parts[0]) & set(parts[1])


def test_training_shards_cover_the_split_and_differ_per_rank():
    data = list(range(10))
    parts = shards(lambda rank: training_sampler(data, seed=3, num_replicas=2, rank=rank))
    assert sorted(parts[0] + parts[1]) == data and len(parts[0]) == len(parts[1]) == 5
    weighted = WeightedRandomSampler(torch.tensor([1.0] * 8 + [4.0] * 2), num_samples=10)
    parts = shards(lambda rank: training_sampler(data, seed=3, sampler=weighted, num_replicas=2, rank=rank))
    assert len(parts[0]) == len(parts[1]) == 5 and set(parts[0] + parts[1]) <= set(data)


def test_single_process_is_rank_zero_of_one():
    assert is_rank_zero() and gather([1, 2]) == [1, 2]


@pytest.fixture(scope="module", params=sorted(DEMO))
def ddp_run(request, tmp_path_factory, lgg_demo_root, oasis_demo_root):
    """A bundle trained for one epoch by two torchrun processes; then evaluated by two processes and by one."""
    bundle, run = request.param, tmp_path_factory.mktemp(request.param)
    dataset_dir = lgg_demo_root if bundle.startswith("lgg") else oasis_demo_root
    settings = {**DEMO[bundle], **fast(bundle), "dataset_dir": dataset_dir, "batch_size": 4, "ckpt_dir": run / "models"}
    trained = run_bundle(bundle, "multi_gpu_train", processes=2, epochs=1, output_dir=run / "train", **settings)
    assert trained.returncode == 0, trained.stderr[-3000:]
    for mode, processes in (("multi_gpu_evaluate", 2), ("evaluate", 1)):
        evaluated = run_bundle(bundle, mode, processes=processes, output_dir=run / mode, **settings)
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    return run


def test_only_rank_zero_writes(ddp_run):
    assert sorted(p.name for p in (ddp_run / "models").iterdir()) == ["checkpoint_epoch=1.pt", "model.pt"]
    writers = {re.search(r"tfevents\.\d+\.[^.]+\.(\d+)\.", p.name)[1] for p in (ddp_run / "train").glob("events.out.tfevents.*")}
    assert len(writers) == 1, writers  # every TensorBoard file comes from one process
    assert json.loads((ddp_run / "train" / "training_run.json").read_text())["epochs"] == 1


def test_distributed_evaluation_equals_one_process(ddp_run):
    distributed, single = ddp_run / "multi_gpu_evaluate", ddp_run / "evaluate"
    for name in ("test_summary.json", "test_per_slice.csv", "test_per_subject.csv"):
        assert (distributed / name).read_text() == (single / name).read_text(), name
    masks = sorted(p.relative_to(distributed) for p in (distributed / "masks").rglob("*.png"))
    assert masks == sorted(p.relative_to(single) for p in (single / "masks").rglob("*.png"))
    assert all((distributed / m).read_bytes() == (single / m).read_bytes() for m in masks)
