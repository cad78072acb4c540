"""One run on several processes (stages.lib.distributed, launcher, stopping): how a global batch is
cut into slices, two gloo processes on the CPU training exactly as one process with the same global
batch, and how a stopped or failed run ends."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from stages.lib import distributed, launcher, stopping
from stages.lib.distributed import World, shard
from stages.lib.errors import stage_main
from stages.lib.losses import training
from stages.lib.methods import METHODS
from stages.lib.params import params_from_dict
from tests.helpers import ROOT, default_params
from tests.lib import distributed_runs

NAMES = list(distributed_runs.METHOD_PARAMS)
GRADIENT_RTOL = 1e-5  # per step: max |g2 - g1| <= 1e-5 max |g1| (measured: <= 1.3e-6)
WEIGHT_ATOL = 1e-5  # weights after 2 epochs of Adam, |w| ~ 1 (measured: <= 1.6e-7)
# A triplet loss on Euclidean distances does not change when every embedding moves by the same
# vector, so the embedding's last bias (timm's final norm) has a true gradient of exactly zero:
# it receives float noise (checked below), which Adam turns into steps of +-lr, in one process as
# in two. Its weights are not compared.
TRANSLATION = "backbone.head.norm.bias"


def on(monkeypatch, rank: int, size: int) -> None:
    monkeypatch.setattr(distributed, "world", lambda: World(rank, size, rank))


def test_one_process_takes_the_whole_batch():
    part = shard(12, 3)
    assert part.positions == slice(None) and part.rows == (12,) and part.items == part.local_items == 4


def test_items_are_split_in_contiguous_runs_differing_by_at_most_one(monkeypatch):
    taken = []
    for rank in range(3):
        on(monkeypatch, rank, 3)
        part = shard(8, 1)
        taken.append(np.arange(8)[part.positions].tolist())
        assert part.rows == (2, 3, 3) and part.items == 8
        assert part.local_items == len(taken[-1])
    assert taken == [[0, 1], [2, 3, 4], [5, 6, 7]]


def test_a_triplet_stays_whole_on_one_process(monkeypatch):
    # Triplet batch of 5: anchors a0..a4, then positives p0..p4, then negatives n0..n4.
    index = np.array([f"{role}{i}" for role in "apn" for i in range(5)])
    on(monkeypatch, 0, 2)
    assert index[shard(15, 3).positions].tolist() == ["a0", "a1", "p0", "p1", "n0", "n1"]
    on(monkeypatch, 1, 2)
    part = shard(15, 3)
    assert index[part.positions].tolist() == ["a2", "a3", "a4", "p2", "p3", "p4", "n2", "n3", "n4"]
    assert part.rows == (6, 9) and part.items == 5 and part.local_items == 3


def test_a_process_without_an_item_embeds_a_stand_in_and_counts_none(monkeypatch):
    on(monkeypatch, 0, 2)
    assert shard(3, 3).local_items == 0  # one triplet, two processes: rank 0 gets none
    on(monkeypatch, 1, 2)
    part = shard(3, 3)
    assert part.local_items == 1 and part.rows == (0, 3) and part.positions.tolist() == [0, 1, 2]
    on(monkeypatch, 0, 2)
    assert shard(3, 3).positions.tolist() == [0, 1, 2]  # the stand-in: a real triplet, weighted 0


@pytest.mark.parametrize("name", [n for n in METHODS.names() if METHODS.get(n).batch_wide])
def test_batch_wide_methods_have_no_head(name):
    # Under DDP a batch-wide loss is computed on every process over the gathered batch; a head after
    # the gather would get the whole batch's gradient on every process (N times too much).
    method = training(name)(params_from_dict(default_params()).method_params(name), 3, 8)
    assert method.head() is None


def test_the_in_batch_losses_are_the_batch_wide_ones():
    assert sorted(n for n in METHODS.names() if METHODS.get(n).batch_wide) == ["supcon", "triplet_batch_hard"]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Every method of NAMES trained by two gloo processes, forked from this one (which spares them
    its imports; each sets one thread first, as a DataLoader worker does)."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.start_processes(distributed_runs.rank, args=(2, str(folder), NAMES), nprocs=2, start_method="fork")
    return torch.load(folder / "results.pt", weights_only=False)


@pytest.fixture(scope="module")
def one_process():
    """The same in this process, also on one thread: the gradients of one pass and a fit per method."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: {"gradients": distributed_runs.gradients(name), "fit": distributed_runs.run(name)}
                for name in NAMES}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", NAMES)
def test_two_processes_compute_the_gradient_of_the_global_batch(one_process, two_processes, name):
    one = one_process[name]["gradients"]
    two = two_processes[name]["gradients"]
    assert len(one["steps"]) == len(two["steps"]) >= 3
    for step, (a, b) in enumerate(zip(one["steps"], two["steps"], strict=True)):
        scale = max(g.abs().max().item() for g in a.values())
        assert scale > 0, f"step {step + 1} has no gradient: the test would prove nothing"
        worst = max((a[k] - b[k]).abs().max().item() for k in a)
        assert worst <= GRADIENT_RTOL * scale, f"{name} step {step + 1}: {worst:.3g} vs gradient scale {scale:.3g}"
        if name == "triplet":
            assert a[TRANSLATION].abs().max().item() <= 1e-6 * scale  # only float noise: see TRANSLATION
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_two_processes_train_the_same_weights_and_pick_the_same_epoch(one_process, two_processes, name):
    one = one_process[name]["fit"]
    two = two_processes[name]["fit"]
    assert two["best_epoch"] == one["best_epoch"]
    assert [r["epoch"] for r in two["history"]] == [r["epoch"] for r in one["history"]]
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
    compared = [k for k in one["weights"] if not (name == "triplet" and k == TRANSLATION)]
    assert len(compared) >= len(one["weights"]) - 1
    worst = max((one["weights"][k] - two["weights"][k]).abs().max().item() for k in compared)
    assert worst <= WEIGHT_ATOL, f"{name}: weights differ by {worst:.3g}"


def test_two_processes_stopped_keep_the_last_epoch_and_resume_to_the_same_result(two_processes):
    # Ctrl-C (or the launcher's SIGTERM) in every process at the start of epoch 2, with epoch 1 in
    # memory only: rank 0 writes it, every process says so; the rerun equals the uninterrupted run.
    stopped = two_processes["stopped"]
    assert stopped["said"].startswith("epochs 1-1 are saved in ") and stopped["said"].endswith(
        "the next `dvc repro` resumes from epoch 2")
    assert stopped["saved_epoch"] == 1
    resumed, uninterrupted = stopped["resumed"], two_processes[distributed_runs.RESUMED]["fit"]
    assert resumed["best_epoch"] == uninterrupted["best_epoch"] and resumed["history"] == uninterrupted["history"]
    assert resumed["weights"].keys() == uninterrupted["weights"].keys()
    for key, value in uninterrupted["weights"].items():
        assert torch.equal(resumed["weights"][key], value), key


def test_a_signal_stops_a_process_once():
    # The launcher passes Ctrl-C on to processes that got it from the terminal too: the second
    # must not cut short the saving of the last epoch.
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            stopping._raise_stopped(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_a_stopped_run_ends_with_one_line_saying_what_was_kept(monkeypatch, capsys):
    import torch.distributed.run as elastic
    from torch.distributed.elastic.multiprocessing.api import SignalException

    def stopped_by_sigterm(args):
        raise SignalException("got SIGTERM", sigval=signal.SIGTERM)

    monkeypatch.setattr(elastic, "run", stopped_by_sigterm)

    @stage_main
    def stage():
        launcher.launch("stages.train", [], 2, hint="re-run", stopped="every finished epoch is kept in R")

    with pytest.raises(SystemExit) as info:
        stage()
    assert info.value.code == 128 + signal.SIGTERM
    said = capsys.readouterr().err
    assert said == "terminated: its 2 training processes stopped; every finished epoch is kept in R\n"


def test_a_process_dies_with_its_launcher(tmp_path):
    # A stage killed outright (the OOM killer, SIGKILL) takes its training processes with it.
    child = ("from stages.lib import launcher; launcher._die_with_parent(); import time; "
             "print('ready', flush=True); time.sleep(120)")
    parent = (f"import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', {child!r}], "
              "stdout=subprocess.PIPE, text=True); print(c.pid, c.stdout.readline().strip(), flush=True); "
              "time.sleep(120)")
    parent_process = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pid, ready = parent_process.stdout.readline().split()
        assert ready == "ready"
        parent_process.kill()
        parent_process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            assert time.monotonic() < deadline, "the training process outlived its launcher"
            time.sleep(0.05)
    finally:
        parent_process.kill()
        parent_process.stdout.close()


def failure(tmp_path, rank: int, exitcode: int, kind: str | None = None, message: str = ""):
    """A torchrun ProcessFailure of local rank `rank`, with an error file as a rank would write it."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    error_file = tmp_path / f"error{rank}.json"
    if kind is not None:
        stopping._record(str(error_file), kind, message)
    return ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=exitcode, error_file=str(error_file))


def root_cause(tmp_path, *failures) -> str:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    error = ChildFailedError("stages.train", {f.local_rank: f for f in failures})
    return stopping.root_cause(error, 2, "re-run to resume")


def test_the_launcher_names_a_killed_process_not_the_one_that_lost_it(tmp_path):
    lost = failure(tmp_path, 0, 1, "lost", "lost contact with another training process (Connection closed by peer)")
    line = root_cause(tmp_path, lost, failure(tmp_path, 1, -9))
    assert line == ("training process rank 1 of 2 (pid 1001) was killed by SIGKILL; the other processes were "
                    "stopped and no model was written; re-run to resume")
    assert root_cause(tmp_path, lost, failure(tmp_path, 1, -15)).startswith(
        "training process rank 0 of 2: lost contact with another training process"
    )  # a SIGTERM is the launcher stopping a process: not a cause


def test_a_process_own_error_is_the_line_as_it_is(tmp_path):
    said = "training loss is nan at epoch 2, batch 1; lower train.lr or check the data"
    line = root_cause(tmp_path, failure(tmp_path, 0, 1, "error", said), failure(tmp_path, 1, 1, "lost", "lost"))
    assert line == said
    bug = root_cause(tmp_path, failure(tmp_path, 1, 1, "bug", "ValueError: bad shape"))
    assert bug == ("training process rank 1 of 2 failed: ValueError: bad shape (its traceback is above); "
                   "re-run to resume")


def test_only_rank_0_writes(monkeypatch, tmp_path):
    from stages.lib import resume, trainer

    on(monkeypatch, 1, 2)
    trainer.write_curve(tmp_path / "curve.csv", [])
    resume.save_resume(tmp_path / "resume", {"epoch": 1})
    assert list(tmp_path.iterdir()) == []
    on(monkeypatch, 0, 2)
    trainer.write_curve(tmp_path / "curve.csv", [])
    resume.save_resume(tmp_path / "resume", {"epoch": 1})
    assert (tmp_path / "curve.csv").read_text() == "epoch,train_loss,val_loss,lr,best\n"
    assert torch.load(tmp_path / "resume" / resume.RESUME_FILE)["epoch"] == 1
    on(monkeypatch, 1, 2)
    resume.clear_resume(tmp_path / "resume")
    assert (tmp_path / "resume" / resume.RESUME_FILE).exists()
