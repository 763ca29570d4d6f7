"""The fast-training settings of the bundles: metadata tracking off while training draws batches, on for
validation; the training thread loads the batches on the CPU."""

import pytest
from bundle_utils import REPO
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from monai.data import DataLoader, ThreadDataLoader, get_track_meta

from pipelines.bundles import config_files
from pipelines.engine.training import NoMetadataInTraining


def test_metadata_is_off_for_training_steps_and_on_for_validation_and_after():
    seen = {"train": set(), "validate": set()}
    validator = Engine(lambda engine, batch: seen["validate"].add(get_track_meta()))
    trainer = Engine(lambda engine, batch: seen["train"].add(get_track_meta()))
    NoMetadataInTraining().attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: validator.run([0, 1]))  # as MONAI's ValidationHandler
    trainer.run([0, 1, 2], max_epochs=2)
    assert seen == {"train": {False}, "validate": {True}} and get_track_meta()


def test_metadata_is_back_on_after_a_terminated_run():
    trainer = Engine(lambda engine, batch: engine.terminate())
    NoMetadataInTraining().attach(trainer)
    trainer.run([0, 1], max_epochs=1)
    assert get_track_meta()


@pytest.mark.parametrize("bundle", ["lgg_unet_bce", "oasis_unet"])
@pytest.mark.parametrize("device, loader", [("cpu", DataLoader), ("cuda", ThreadDataLoader)])
def test_batches_load_in_the_training_thread_on_the_cpu_and_in_a_thread_on_cuda(bundle, device, loader):
    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(REPO / "bundles" / bundle, "train")])
    parser["device"] = f"$torch.device('{device}')"
    assert parser.get_parsed_content("data_loader") is loader
