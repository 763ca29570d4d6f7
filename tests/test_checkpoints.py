"""Crash-safe checkpoints and weights-only loading, in process on a toy engine; the checks of a run's command line."""

import re

import monai
import pytest
import torch
from bundle_utils import REPO
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

import networks.flips
import networks.unet
import pipelines.engine.training
from pipelines.bundles import config_files
from pipelines.data.preflight import check_overrides, check_settings, model_weights, sizes_fit_network, total_stride
from pipelines.engine.training import AtomicCheckpointSaver, RunState, keeps_best_epoch, load_initial_weights
from pipelines.errors import InputError


def train(save_dir, epochs, network=None, fail_saving_at=None, monkeypatch=None):
    """``epochs`` epochs of 2 no-op steps, an epoch checkpoint after each; the save of epoch ``fail_saving_at``
    writes half a file and then fails, as a full disk or a crash would."""
    network = network or torch.nn.Linear(2, 2)
    engine = Engine(lambda engine, batch: None)
    save_dict = {"model": network, "optimizer": torch.optim.SGD(network.parameters(), lr=0.1)}
    AtomicCheckpointSaver(save_dir=str(save_dir), save_dict=save_dict, save_interval=1, n_saved=1, epoch_level=True).attach(engine)
    if fail_saving_at is not None:
        def failing_save(obj, path):
            open(path, "wb").write(b"half a checkpoint")
            raise OSError(28, "No space left on device")

        engine.add_event_handler(Events.EPOCH_STARTED(once=fail_saving_at), lambda: monkeypatch.setattr(pipelines.engine.training.torch, "save", failing_save))
    engine.run([0, 1], max_epochs=epochs)
    return network


def files(folder):
    return sorted(path.name for path in folder.iterdir())


def test_each_epoch_replaces_the_previous_checkpoint(tmp_path):
    network = train(tmp_path, epochs=3)
    assert files(tmp_path) == ["checkpoint_epoch=3.pt"]
    assert torch.equal(torch.load(tmp_path / "checkpoint_epoch=3.pt", weights_only=True)["model"]["weight"], network.weight)


def test_a_failed_save_keeps_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    network = torch.nn.Linear(2, 2)
    with pytest.raises(InputError, match=r"checkpoint_epoch=3.pt: the disk is full \(\d+ MB free, no space left on device\); not written"):
        train(tmp_path, epochs=3, network=network, fail_saving_at=3, monkeypatch=monkeypatch)
    assert files(tmp_path) == ["checkpoint_epoch=2.pt"]  # no half-written epoch 3, no temporary file
    assert torch.equal(torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)["model"]["weight"], network.weight)


def test_checkpoints_of_an_earlier_run_go_once_the_first_new_one_is_written(tmp_path, monkeypatch):
    torch.save({"weight": torch.zeros(1)}, tmp_path / "checkpoint_epoch=7.pt")
    with pytest.raises(InputError, match="the disk is full"):
        train(tmp_path, epochs=1, fail_saving_at=1, monkeypatch=monkeypatch)
    assert files(tmp_path) == ["checkpoint_epoch=7.pt"]
    monkeypatch.undo()
    train(tmp_path, epochs=1)
    assert files(tmp_path) == ["checkpoint_epoch=1.pt"]


def test_the_best_model_file_is_replaced_atomically(tmp_path, monkeypatch):
    engine = Engine(lambda engine, batch: None)
    scores = iter([0.5, 0.7])
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(dice=next(scores)))
    first, second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    network = torch.nn.Linear(2, 2)
    saver = AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": network}, save_key_metric=True, key_metric_name="dice", key_metric_filename="model.pt")
    saver.attach(engine)
    engine.add_event_handler(Events.EPOCH_STARTED(once=1), lambda: network.load_state_dict(first.state_dict()))
    engine.add_event_handler(Events.EPOCH_STARTED(once=2), lambda: (network.load_state_dict(second.state_dict()), monkeypatch.setattr(pipelines.engine.training.torch, "save", lambda obj, path: 1 / 0)))
    with pytest.raises(ZeroDivisionError):
        engine.run([0], max_epochs=2)
    assert files(tmp_path) == ["model.pt"]
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], first.weight)


class Pickled:
    """Stands for any class a checkpoint could carry: unpickling it would import and run code."""


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda path: torch.save({"model": Pickled()}, path), "refused, loading it would run code (test_checkpoints.Pickled)"),
        (lambda path: torch.save(torch.nn.Linear(2, 2), path), "refused, loading it would run code (torch.nn.modules.linear.Linear)"),
        (lambda path: path.write_text("weights of an earlier run"), "damaged or not a PyTorch checkpoint (no pickled tensors)"),
        (lambda path: path.write_bytes(b""), "damaged or not a PyTorch checkpoint (file ends early)"),
        (lambda path: (torch.save(torch.nn.Linear(2, 2).state_dict(), path), path.write_bytes(path.read_bytes()[:300])), "damaged or not a PyTorch checkpoint (PytorchStreamReader failed"),
        (lambda path: torch.save([torch.zeros(1)], path), "holds no state dict of network weights"),
        (lambda path: torch.save(torch.nn.Linear(3, 2).state_dict(), path), "other shapes (e.g. weight (2, 3) vs (2, 2))"),
        (lambda path: torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)).state_dict(), path), "2 missing keys (e.g. bias); 2 unexpected keys (e.g. 0.bias)"),
    ],
    ids=["pickled class", "pickled module", "text", "zero bytes", "truncated", "no state dict", "other shapes", "other network"],
)
def test_a_checkpoint_that_is_not_safe_weights_for_this_network_is_one_line(tmp_path, content, message):
    path = tmp_path / "model.pt"
    content(path)
    with pytest.raises(InputError) as err:
        model_weights(path, torch.nn.Linear(2, 2))
    assert str(err.value).startswith(f"checkpoint {path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_weights_load_from_a_bare_state_dict_a_training_checkpoint_and_into_a_wrapped_network(tmp_path):
    network = torch.nn.Linear(2, 2)
    torch.save(network.state_dict(), tmp_path / "model.pt")
    torch.save({"model": network.state_dict(), "optimizer": {"state": {}}}, tmp_path / "checkpoint_epoch=1.pt")
    wrapped = torch.nn.Module()
    wrapped.module = torch.nn.Linear(2, 2)  # how DistributedDataParallel holds the network
    for path in (tmp_path / "model.pt", tmp_path / "checkpoint_epoch=1.pt"):
        assert torch.equal(model_weights(path, wrapped)["weight"], network.weight)


def test_run_state_carries_the_amp_gradient_scaler():
    trainers = [Engine(lambda engine, batch: None) for _ in range(2)]
    for trainer, scale in zip(trainers, (1024.0, 65536.0)):
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=scale)
        trainer.scaler.scale(torch.ones(1))  # a scaler holds its scale once it has been used
    saved, resumed = RunState(), RunState()
    saved.attach(trainers[0])
    resumed.attach(trainers[1])
    trainers[0].run([0], max_epochs=1)
    resumed.load_state_dict(saved.state_dict())
    assert trainers[1].scaler.get_scale() == 1024.0 and trainers[1].state.epoch == 1


@pytest.mark.parametrize("bundle, kept", [("lgg_unet_bce", 1.0), ("lgg_best", 2.0)], ids=["best (seed recipes)", "last (lgg_best)"])
def test_model_epoch_decides_which_validation_model_pt_holds(tmp_path, bundle, kept):
    """The recipe's ``validate#best_saver`` after two validations scoring 0.9, then 0.1, of weights filled with
    1, then 2: ``model_epoch: best`` keeps the first, ``last`` the second."""
    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files(REPO / "bundles" / bundle, "train")])
    parser.update({"ckpt_dir": str(tmp_path), "network": "$torch.nn.Linear(2, 2)"})
    saver = parser.get_parsed_content("validate#best_saver")
    network, scores = saver.save_dict["model"], iter([0.9, 0.1])
    validator = Engine(lambda engine, batch: None)

    @validator.on(Events.EPOCH_COMPLETED)
    def score(engine):
        engine.state.metrics, engine.state.key_metric_name = {"val_score": next(scores)}, "val_score"

    saver.attach(validator)
    for fill in (1.0, 2.0):
        with torch.no_grad():
            network.weight.fill_(fill)
        validator.run([0], max_epochs=1)
    assert files(tmp_path) == ["model.pt"]
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], torch.full((2, 2), kept))


def test_an_unknown_model_epoch_is_one_line():
    assert keeps_best_epoch("best") and not keeps_best_epoch("last")
    with pytest.raises(InputError, match=r"^--model_epoch 'final': expected one of best, last$"):
        keeps_best_epoch("final")


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    """``--init_weights``: a model.pt (or an epoch checkpoint) checked to fit and loaded before training; "" changes nothing."""
    trained, fresh = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    before = {key: value.clone() for key, value in fresh.state_dict().items()}
    load_initial_weights(fresh, "")
    assert all(torch.equal(before[key], value) for key, value in fresh.state_dict().items())
    load_initial_weights(fresh, tmp_path / "model.pt")
    assert all(torch.equal(trained.state_dict()[key], value) for key, value in fresh.state_dict().items())
    with pytest.raises(InputError, match=r"checkpoint .*nowhere.pt: no such file \(--init_weights\)"):
        load_initial_weights(fresh, tmp_path / "nowhere.pt")
    with pytest.raises(InputError, match="does not fit this bundle's network"):
        load_initial_weights(torch.nn.Linear(3, 2), tmp_path / "model.pt")


LGG_FILES = "['bundles/lgg_unet_small/configs/train.json','bundles/common.json','bundles/lgg.json']"


@pytest.mark.parametrize("argv, message", [
    (["monai.bundle", "run", "--config_file", LGG_FILES, "--epochs", "2", "--network_def#dropout", "0.2", "--infer#input_dir=x"], None),
    (["monai.bundle", "run", "--config_file", LGG_FILES, "--batchsize", "4"], "--batchsize: no such setting in this bundle's configs; did you mean --batch_size?"),
    (["monai.bundle", "run", "--config_file", LGG_FILES, "--zzz", "1"], "--zzz: no such setting in this bundle's configs"),
    (["pytest", "--batchsize", "4"], None),  # not a bundle command line: MONAI's Python API passes overrides as arguments
])
def test_command_line_overrides_must_name_a_setting(argv, message, monkeypatch):
    """A ``#`` path below an existing key is allowed (it adds or changes an argument of a component)."""
    monkeypatch.chdir(REPO)
    if message is None:
        check_overrides(argv)
    else:
        with pytest.raises(InputError, match="^" + re.escape(message) + "$"):
            check_overrides(argv)


@pytest.mark.parametrize("network, stride", [
    (monai.networks.nets.UNet(2, 1, 1, channels=(4, 8, 16), strides=(2, 2)), 4),
    (monai.networks.nets.UNet(2, 1, 1, channels=(4, 8, 16, 32), strides=((2, 2), 2, 3)), 24),
    (networks.unet.UNet(depth=3, features=2), 8),
    (networks.flips.FlipAveraged(networks.unet.UNet(depth=4, features=2)), 16),
    (torch.nn.Conv2d(1, 1, 3), None),
])
def test_total_stride_of_each_network_kind(network, stride):
    assert total_stride(network) == stride


def test_sizes_fit_network_names_the_option_the_stride_and_a_size_that_fits():
    network = networks.unet.UNet(depth=4, features=2)
    sizes_fit_network({"image_size": [256, 128], "roi_size": [64, 64]}, network)
    with pytest.raises(InputError, match=re.escape("--roi_size [64, 100]: each length must be divisible by 16") + ".*e.g. \\[64, 96\\]$"):
        sizes_fit_network({"image_size": [256, 256], "roi_size": [64, 100]}, network)
    sizes_fit_network({"image_size": [250, 250]}, torch.nn.Conv2d(1, 1, 3))  # stride unknown: nothing to check


def test_settings_of_every_recipe_pass_their_own_checks(monkeypatch):
    """The recipes as shipped (the values a user starts from) are inside the ranges the checks enforce."""
    monkeypatch.chdir(REPO)
    for bundle in sorted(path for path in (REPO / "bundles").iterdir() if (path / "configs" / "train.json").is_file()):
        parser = ConfigParser()
        parser.read_config([str(path) for path in config_files(bundle, "train")])
        check_settings(parser.get_parsed_content("checked_settings"), argv=[])
        sizes_fit_network(parser.get_parsed_content("network_sizes"), parser.get_parsed_content("network_def"))
