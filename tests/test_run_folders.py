"""One run per folder (pipelines.engine.run_folders): the lock a run holds in each folder it writes, its take-over
when its run is gone, and the refusal to train over a finished run unasked. The bundle-level refusals are rows of
tests/test_bad_input.py; here the lock itself, and one lock held by a real, separate process."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
from bundle_utils import REPO, assert_error_line, bundle_error_in_process, fast
from test_bad_input import untrained_network

from pipelines.engine import run_folders
from pipelines.engine.run_folders import LOCK_NAME, check_new_training, claim_run_folders, release_run_folders
from pipelines.errors import InputError


@pytest.fixture(autouse=True)
def release_after_each_test():
    yield
    release_run_folders()


def write_lock(folder, **record):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "then", "command": "x", **record}))


def ended_process_id() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_holds_a_lock_naming_itself_until_it_releases_it(tmp_path):
    claim_run_folders({"--output_dir": tmp_path / "eval"})
    record = json.loads((tmp_path / "eval" / LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["started"] and "command" in record
    claim_run_folders({"--output_dir": tmp_path / "eval"})  # the same process again: allowed
    assert [path.name for path in (tmp_path / "eval").iterdir()] == [LOCK_NAME]  # no temporary file left
    release_run_folders()
    assert not (tmp_path / "eval" / LOCK_NAME).exists()


def test_the_lock_of_a_process_that_has_ended_is_taken_over_with_a_warning(tmp_path, caplog):
    write_lock(tmp_path, pid=ended_process_id())
    with caplog.at_level(logging.WARNING, logger=run_folders.__name__):
        claim_run_folders({"--output_dir": tmp_path})
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "no longer running" in caplog.text


def test_a_lock_file_that_is_not_a_record_is_taken_over(tmp_path, caplog):
    (tmp_path / LOCK_NAME).write_text('{"pid": ')  # cut short
    with caplog.at_level(logging.WARNING, logger=run_folders.__name__):
        claim_run_folders({"--output_dir": tmp_path})
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid() and "not a lock record" in caplog.text


def test_release_leaves_a_lock_that_another_run_has_taken_over(tmp_path):
    claim_run_folders({"--output_dir": tmp_path})
    write_lock(tmp_path, pid=1)
    release_run_folders()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == 1


def test_only_the_writing_process_takes_locks(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folders, "is_rank_zero", lambda: False)
    claim_run_folders({"--output_dir": tmp_path / "eval"})
    assert (tmp_path / "eval").is_dir() and not (tmp_path / "eval" / LOCK_NAME).exists()


def test_a_bundle_run_stops_while_another_process_holds_its_folder_and_goes_on_once_that_process_is_killed(tmp_path, lgg_demo_root, lgg_demo_manifest):
    busy = tmp_path / "eval"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; from pipelines.engine.run_folders import claim_run_folders; claim_run_folders({{'--output_dir': {str(busy)!r}}}); "
                               "print('held', flush=True); time.sleep(120)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        model = tmp_path / "models"
        model.mkdir()
        torch.save(untrained_network("lgg_unet_bce").state_dict(), model / "model.pt")
        settings = {"dataset_dir": lgg_demo_root, "manifest": lgg_demo_manifest, "ckpt_dir": model, "output_dir": busy, **fast("lgg_unet_bce")}
        message = bundle_error_in_process("lgg_unet_bce", "evaluate", **settings)
        assert_error_line(message, f"--output_dir {busy}: another run is writing there (PID {holder.pid} on {socket.gethostname()}")
    finally:
        holder.send_signal(signal.SIGKILL)  # no exit handler runs: the lock stays behind, stale
        holder.wait()
    assert json.loads((busy / LOCK_NAME).read_text())["pid"] == holder.pid
    claim_run_folders({"--output_dir": busy})
    assert json.loads((busy / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_new_training_refuses_a_folder_holding_checkpoints_unless_told_to_resume_or_start_over(tmp_path):
    check_new_training(tmp_path / "new", resume=False, overwrite=False)
    (tmp_path / "notes.txt").write_text("a researcher's notes")
    check_new_training(tmp_path, resume=False, overwrite=False)  # other files are not a training
    (tmp_path / "checkpoint_epoch=3.pt").write_bytes(b"")
    with pytest.raises(InputError, match=r"holds an earlier training \(checkpoint_epoch=3.pt\); pass --resume True"):
        check_new_training(tmp_path, resume=False, overwrite=False)
    check_new_training(tmp_path, resume=True, overwrite=False)
    check_new_training(tmp_path, resume=False, overwrite=True)
