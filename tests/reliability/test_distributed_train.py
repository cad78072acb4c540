"""The train stage as two gloo processes on the CPU (`train.processes: 2`), run as DVC runs it:
the stage starts itself under torchrun, matches one process with the same global batch, writes its
outputs once (rank 0), fails in one line when a process is killed and then resumes to the bytes of
an uninterrupted run, and takes its processes with it when it is killed itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stages import train
from stages.lib.trainer import RESUME_FILE
from tests.lib.test_distributed import TRANSLATION, WEIGHT_ATOL
from tests.reliability.conftest import Workspace, error_line, prepare, reliability_params

EPOCHS = 4


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    """A prepared workspace whose params.yaml says `train.processes: 2`, with one uninterrupted
    two-process triplet run in `two/` (its stderr in `two/stderr.txt`)."""
    ws = prepare(tmp_path_factory.mktemp("ddp") / "ws", reliability_params(epochs=EPOCHS, cosine_t_max=EPOCHS,
                                                                           processes=2))
    result = ws.run_train("triplet", "two")
    assert result.returncode == 0, result.stderr
    (ws.root / "two/stderr.txt").write_text(result.stderr)
    return ws


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    values = dict(item.split(b"=", 1) for item in environ if b"=" in item)
    return int(values[b"RANK"]) if b"RANK" in values else None


def ranks(launcher: int, deadline: float) -> dict[int, int]:
    """rank -> pid of the two training processes the stage started."""
    while time.monotonic() < deadline:
        found = {rank_of(pid): pid for pid in children(launcher)}
        if {0, 1} <= found.keys():
            return {r: found[r] for r in (0, 1)}
        time.sleep(0.05)
    raise AssertionError("the stage did not start two training processes")


def start_and_wait_for_checkpoint(ws: Workspace, tag: str) -> tuple[subprocess.Popen, dict[int, int], Path]:
    proc = ws.popen_train("triplet", tag)
    checkpoint = ws.root / "resume" / tag / RESUME_FILE
    deadline = time.monotonic() + 300
    pids = ranks(proc.pid, deadline)
    while not checkpoint.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint:\n{proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no resume checkpoint after 300 s"
        time.sleep(0.005)
    return proc, pids, checkpoint


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp")) if folder.exists() else []


def test_two_processes_train_as_one_and_only_rank_0_writes(ws, monkeypatch):
    said = (ws.root / "two/stderr.txt").read_text()
    assert "device cpu, 2 processes" in said
    assert said.count("epoch 1: train loss") == 1  # rank 1 is silent
    assert sorted(p.name for p in (ws.root / "two/model").iterdir()) == ["meta.json", "model.safetensors"]
    assert not (ws.root / "resume/two").exists() and leftovers(ws.root / "two") == []
    one_params = ws.write_params(reliability_params(epochs=EPOCHS, cosine_t_max=EPOCHS, processes=1), "one.yaml")
    train.main(ws.train_args("triplet", "one", params=one_params, resume=False))
    one = load_file(ws.root / "one/model/model.safetensors")
    two = load_file(ws.root / "two/model/model.safetensors")
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one if k != TRANSLATION)
    assert worst <= WEIGHT_ATOL
    curves = [(ws.root / tag / "curve.csv").read_text().splitlines() for tag in ("one", "two")]
    assert len(curves[0]) == len(curves[1]) == EPOCHS + 1
    for a, b in zip(curves[0][1:], curves[1][1:], strict=True):
        assert [float(x) for x in b.split(",")] == pytest.approx([float(x) for x in a.split(",")], rel=1e-4)


def test_killing_one_process_fails_in_one_line_and_the_rerun_resumes_to_the_same_bytes(ws):
    proc, pids, checkpoint = start_and_wait_for_checkpoint(ws, "killed")
    os.kill(pids[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    line = error_line(err, strict=False)
    assert line.startswith(f"error: training process rank 1 of 2 (pid {pids[1]}) was killed by SIGKILL; ")
    assert line.endswith(f"re-run to continue from the last epoch saved in {ws.root / 'resume/killed'}")
    assert not (ws.root / "killed/model").exists(), "no model from a failed run"
    assert leftovers(ws.root / "killed") == [] and leftovers(ws.root / "resume") == []
    saved = torch.load(checkpoint, weights_only=True)
    assert 1 <= saved["epoch"] < EPOCHS and len(saved["rng_ranks"]) == 2

    again = ws.run_train("triplet", "killed")
    assert again.returncode == 0, again.stderr
    done = saved["epoch"]
    assert f"epochs 1-{done} done, continuing at epoch {done + 1}" in again.stderr
    assert "epoch 1:" not in again.stderr
    for name in ("model/model.safetensors", "model/meta.json", "curve.csv"):
        assert (ws.root / "killed" / name).read_bytes() == (ws.root / "two" / name).read_bytes(), name


def test_a_killed_stage_takes_its_training_processes_with_it(ws):
    proc, pids, checkpoint = start_and_wait_for_checkpoint(ws, "orphans")
    try:
        proc.send_signal(signal.SIGKILL)  # the launcher only, as an OOM kill would
        proc.wait(timeout=60)  # (its output pipes stay open while any training process lives)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() and rank_of(pid) is not None for pid in pids.values()):
            assert time.monotonic() < deadline, "training processes outlived their killed stage"
            time.sleep(0.05)
    finally:
        for pid in pids.values():
            if rank_of(pid) is not None:
                os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert checkpoint.exists() and not (ws.root / "orphans/model").exists()
