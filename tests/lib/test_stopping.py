"""How a stage ends when it does not finish (stages.lib.stopping): each thing that can happen gives
its exit code and one line; a stopped training run names the command that continues it; a rank
tells a lost peer from a collective library that fails on every rank; a rank waiting on a peer
that stopped answering gives up within the timeout with every finished epoch on disk."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from stages.lib import launcher, stopping
from stages.lib.errors import Interrupted, PipelineError, stage_main
from stages.lib.trainer import RESUME_FILE
from tests.lib import distributed_runs


def ended(capsys, raise_it) -> tuple[int, str]:
    @stage_main
    def stage():
        raise_it()

    with pytest.raises(SystemExit) as info:
        stage()
    return info.value.code, capsys.readouterr().err


def interrupt():
    raise KeyboardInterrupt


def kept():
    raise Interrupted("epochs 1-2 are saved in R")


def terminate():
    os.kill(os.getpid(), signal.SIGTERM)  # stage_main's handler turns it into the stop
    time.sleep(5)


def fail():
    raise PipelineError("params.yaml: bad\nvalue")


@pytest.mark.parametrize(("happened", "code", "line"), [
    (interrupt, 130, "interrupted: this stage's outputs are incomplete and were not kept"),
    (kept, 130, "interrupted: epochs 1-2 are saved in R"),
    (terminate, 143, "terminated: this stage's outputs are incomplete and were not kept"),
    (fail, 1, "error: params.yaml: bad value"),
])
def test_each_way_a_stage_stops_has_its_exit_code_and_one_line(capsys, happened, code, line):
    assert ended(capsys, happened) == (code, line + "\n")


def test_a_bug_keeps_its_traceback():
    @stage_main
    def stage():
        raise ValueError("bad shape")

    with pytest.raises(ValueError, match="bad shape"):
        stage()


def test_the_launcher_stopped_by_another_signal_says_interrupted_with_its_number(capsys):
    def hangup():
        raise stopping.launcher_stopped(signal.SIGHUP, 2, "every finished epoch is kept in R")

    assert ended(capsys, hangup) == (129, "interrupted: its 2 training processes stopped; every finished epoch "
                                          "is kept in R\n")


@pytest.mark.parametrize(("environment", "command"), [
    ({}, "the next `dvc repro`"),
    ({"DVC_STAGE": "train@pets-triplet-0", "DVC_ROOT": "/r"}, "the next `dvc repro`"),
    ({"DVC_STAGE": "train@pets-triplet-0", "DVC_EXP_NAME": "signs", "DVC_EXP_BASELINE_REV": "0" * 40},
     "running the same `dvc exp run` again"),
])
def test_a_stopped_training_names_the_command_that_continues_it(monkeypatch, environment, command):
    for key in ("DVC_STAGE", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    path = Path("R/resume.pt")
    assert str(stopping.after_training(KeyboardInterrupt(), 2, path)) == (
        f"epochs 1-2 are saved in R/resume.pt; {command} resumes from epoch 3")
    assert str(stopping.after_training(KeyboardInterrupt(), None, path)) == (
        f"no epoch had finished; {command} starts training from epoch 1")
    assert stopping.launch_lines(Path("R")) == (
        "re-run to continue from the last epoch saved in R", f"every finished epoch is kept in R; {command} resumes "
        "after the last")


def test_after_training_an_error_says_what_was_kept_and_a_bug_stays_itself():
    said = stopping.after_training(PipelineError("training loss is nan"), 1, Path("R/resume.pt"))
    assert isinstance(said, PipelineError)
    assert str(said) == "training loss is nan; epochs 1-1 and their best weights are kept in R/resume.pt"
    assert str(stopping.after_training(PipelineError("bad"), None, None)) == "bad"
    bug = ValueError("x")
    assert stopping.after_training(bug, 1, Path("R")) is bug
    stop = KeyboardInterrupt()
    assert stopping.after_training(stop, None, None) is stop  # no resume folder: nothing to say


GLOO_LOST = "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242"
GLOO_TIMEOUT = "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 2000ms for recv"
NCCL_REMOTE = ("NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited or there was a network error, "
               "NCCL version 2.21.5\nncclRemoteError: A call failed possibly due to a network error or a remote "
               "process exiting prematurely.")
NCCL_SETUP = ("NCCL error in: ProcessGroupNCCL.cpp:1970, invalid usage (run with NCCL_DEBUG=WARN for details), "
              "NCCL version 2.21.5\nncclInvalidUsage: This usually reflects invalid usage of NCCL library.\n"
              "Last error:\nDuplicate GPU detected : rank 1 and rank 0 both on CUDA device 1000")


@pytest.mark.parametrize(("exc", "kind"), [
    (RuntimeError(GLOO_LOST), "lost"),
    (RuntimeError(GLOO_TIMEOUT), "lost"),
    (dist.DistBackendError(NCCL_REMOTE), "lost"),
    (dist.DistNetworkError("Connection reset by peer"), "lost"),
    (dist.DistBackendError(NCCL_SETUP), "error"),
    (RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error"), "error"),
    (ValueError("bad shape"), "bug"),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), "bug"),
])
def test_a_rank_tells_a_lost_peer_from_a_library_that_fails_everywhere(tmp_path, monkeypatch, exc, kind):
    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises((SystemExit, type(exc))) as info, stopping.reporting_to_launcher(True):
            raise exc
    finally:
        signal.signal(signal.SIGTERM, previous)
    record = json.loads(error_file.read_text())
    assert record["kind"] == kind
    first = str(exc).splitlines()[0]
    if kind == "lost":
        assert info.value.code == 1 and record["message"] == f"lost contact with another training process ({first})"
    elif kind == "error":
        assert info.value.code == 1 and record["message"].startswith(f"the training processes could not communicate "
                                                                     f"({first}); this is their set-up")
    else:
        assert info.value is exc and record["message"] == f"{type(exc).__name__}: {exc}"


def test_a_rank_joins_with_the_documented_timeout(monkeypatch):
    joined = {}
    monkeypatch.setattr(launcher, "_die_with_parent", lambda: None)
    monkeypatch.setattr(stopping, "stop_on_signals", lambda: None)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kwargs: joined.update(backend=backend, **kwargs))
    launcher.init(torch.device("cpu"))
    assert joined == {"backend": "gloo", "timeout": datetime.timedelta(minutes=10)}
    docs = (Path(__file__).resolve().parents[2] / "docs/scaling.md").read_text()
    assert "10 minutes" in docs and "COLLECTIVE_TIMEOUT_S" in docs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TIMEOUT_S = 4


def test_a_rank_waiting_on_a_peer_that_stopped_answering_gives_up_with_every_finished_epoch_on_disk(tmp_path):
    # Rank 1 stops taking part at the start of epoch 2 (hung, not dead: its connections stay open);
    # rank 0 waits in the epoch's first gradient exchange, gives up after the timeout, writes epoch 1
    # (only in memory: a checkpoint is due once an hour) and says it lost contact.
    context = mp.start_processes(distributed_runs.hung, args=(2, str(tmp_path), free_port(), TIMEOUT_S), nprocs=2,
                                 start_method="fork", join=False)
    rank0, rank1 = context.processes
    try:
        rank0.join(timeout=240)
        assert rank0.exitcode is not None, "rank 0 still waits for the hung rank"
    finally:
        for process in (rank0, rank1):
            if process.is_alive():
                process.kill()
                process.join()
    said = json.loads((tmp_path / "rank0.json").read_text())
    assert said["kind"] == "lost", said
    assert said["message"].startswith("lost contact with another training process ("), said
    assert TIMEOUT_S - 0.5 <= said["waited_s"] <= TIMEOUT_S + 20, said  # bounded by the timeout
    saved = torch.load(tmp_path / "resume" / RESUME_FILE, weights_only=True)
    assert saved["epoch"] == 1 and saved["best"]["epoch"] == 1 and len(saved["history"]) == 1


def test_a_rank_stopped_while_it_waits_on_a_hung_peer_writes_the_last_epoch_at_once(tmp_path):
    # Ctrl-C or SIGTERM while rank 0 waits in a collective on a peer that will not answer: its Python
    # handler cannot run until the wait ends (the timeout, here 120 s; torchrun kills it 30 s after
    # its SIGTERM), so the finished epoch is written from another thread, while the wait goes on.
    context = mp.start_processes(distributed_runs.hung, args=(2, str(tmp_path), free_port(), 120), nprocs=2,
                                 start_method="fork", join=False)
    rank0, rank1 = context.processes
    checkpoint = tmp_path / "resume" / RESUME_FILE
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "epoch2").exists():
            assert rank0.is_alive() and time.monotonic() < deadline, "rank 0 did not reach epoch 2"
            time.sleep(0.05)
        time.sleep(2)  # in the epoch's first gradient exchange, waiting for rank 1
        assert not checkpoint.exists()  # epoch 1 is in memory only
        os.kill(rank0.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not checkpoint.exists():
            assert time.monotonic() < deadline, "the last finished epoch was not written on SIGTERM"
            time.sleep(0.05)
        assert rank0.is_alive()  # still waiting: written by the signal's thread
    finally:
        for process in (rank0, rank1):
            if process.is_alive():
                process.kill()
                process.join()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] == 1 and len(saved["history"]) == 1
