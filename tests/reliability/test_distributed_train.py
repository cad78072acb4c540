"""The train stage as two gloo processes on the CPU (`train.processes: 2`), run as DVC runs it:
the stage starts itself under torchrun; killing one process ends it with one line and no model;
run again, it resumes from the last saved epoch, writes its outputs once (rank 0) and matches
one process with the same global batch. (That a resumed two-process run equals an uninterrupted
one to the bit, and that a stopped run keeps its last epoch, is shown in-process by
tests/lib/test_distributed.py, without two more launches.)"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stages import train
from stages.lib.trainer import RESUME_FILE
from tests.lib.test_distributed import TRANSLATION, WEIGHT_ATOL
from tests.reliability.conftest import error_line, prepare, reliability_params

EPOCHS = 3


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


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp")) if folder.exists() else []


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> dict:
    """A two-process triplet run whose rank 1 is SIGKILLed after the first checkpoint, then run
    again to the end (both as the stage's own subprocess)."""
    ws = prepare(tmp_path_factory.mktemp("ddp") / "ws", reliability_params(epochs=EPOCHS, cosine_t_max=EPOCHS,
                                                                           processes=2))
    proc = ws.popen_train("triplet", "run")
    checkpoint = ws.root / "resume/run" / RESUME_FILE
    deadline = time.monotonic() + 300
    pids = ranks(proc.pid, deadline)
    while not checkpoint.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint:\n{proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no resume checkpoint after 300 s"
        time.sleep(0.005)
    os.kill(pids[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    first = {"returncode": proc.returncode, "stderr": err, "pid": pids[1],
             "model": (ws.root / "run/model").exists(), "leftovers": leftovers(ws.root),
             "saved": torch.load(checkpoint, weights_only=True)}
    return {"ws": ws, "killed": first, "again": ws.run_train("triplet", "run")}


def test_killing_one_process_ends_the_stage_in_one_line_with_no_model(killed):
    ws, first = killed["ws"], killed["killed"]
    assert first["returncode"] == 1, first["stderr"]
    line = error_line(first["stderr"], strict=False)
    assert line.startswith(f"error: training process rank 1 of 2 (pid {first['pid']}) was killed by SIGKILL; ")
    assert line.endswith(f"re-run to continue from the last epoch saved in {ws.root / 'resume/run'}")
    assert not first["model"] and first["leftovers"] == []  # no model, no half-written file
    assert 1 <= first["saved"]["epoch"] < EPOCHS and len(first["saved"]["rng_ranks"]) == 2


def test_the_rerun_resumes_writes_once_and_matches_one_process(killed):
    ws, again, done = killed["ws"], killed["again"], killed["killed"]["saved"]["epoch"]
    assert again.returncode == 0, again.stderr
    said = again.stderr
    assert f"epochs 1-{done} done, continuing at epoch {done + 1}" in said and "epoch 1:" not in said
    assert "device cpu, 2 processes" in said
    assert said.count(f"epoch {EPOCHS}: train loss") == 1  # rank 1 is silent
    assert sorted(p.name for p in (ws.root / "run/model").iterdir()) == ["meta.json", "model.safetensors"]
    assert not (ws.root / "resume/run").exists() and leftovers(ws.root) == []

    one_params = ws.write_params(reliability_params(epochs=EPOCHS, cosine_t_max=EPOCHS, processes=1), "one.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes (and quicker on a busy machine)
    try:
        train.main(ws.train_args("triplet", "one", params=one_params, resume=False))
    finally:
        torch.set_num_threads(threads)
    one = load_file(ws.root / "one/model/model.safetensors")
    two = load_file(ws.root / "run/model/model.safetensors")
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one if k != TRANSLATION)
    assert worst <= WEIGHT_ATOL
    curves = [(ws.root / tag / "curve.csv").read_text().splitlines() for tag in ("one", "run")]
    assert curves[0][0] == curves[1][0] and len(curves[0]) == len(curves[1]) == EPOCHS + 1
    for a, b in zip(curves[0][1:], curves[1][1:], strict=True):
        assert [float(x) for x in b.split(",")] == pytest.approx([float(x) for x in a.split(",")], rel=1e-4)

