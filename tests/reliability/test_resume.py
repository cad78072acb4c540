"""Resume after a kill, at the stage level: `python -m stages.train` killed with SIGKILL mid-epoch
and run again continues from its last complete epoch, and everything it and the later stages
write is byte-identical to an uninterrupted run's. A checkpoint of other params is discarded."""

from __future__ import annotations

import logging
import signal
import time

import pytest
import torch

from stages import embed, evaluate, train
from stages.lib import resume
from stages.lib.trainer import RESUME_FILE
from tests.helpers import poison_loss_from
from tests.reliability.conftest import error_line, reliability_params

OUTPUTS = ("model/model.safetensors", "model/meta.json", "curve.csv")


def downstream(ws, tag: str) -> dict[str, bytes]:
    """Embed and evaluate the model of run `tag`; the bytes of every file the run led to."""
    d, p = ws.root, str(ws.params)
    embed.main(["--params", p, "--model", f"{d}/{tag}/model", "--splits", f"{d}/splits",
                "--decoded", f"{d}/decoded.npy", "--out", f"{d}/{tag}/embeddings.npz"])
    evaluate.main(["--params", p, "--embeddings", f"{d}/{tag}/embeddings.npz", "--out", f"{d}/{tag}/metrics.json",
                   "--predictions", f"{d}/{tag}/predictions.csv"])
    names = (*OUTPUTS, "embeddings.npz", "metrics.json", "predictions.csv")
    return {name: (d / tag / name).read_bytes() for name in names}


def test_sigkill_mid_epoch_then_rerun_gives_the_uninterrupted_bytes(workspace):
    ws = workspace
    whole = ws.run_train("triplet", "whole")
    assert whole.returncode == 0, whole.stderr
    assert not (ws.root / "resume/whole").exists(), "the resume checkpoint is removed after a successful run"

    proc = ws.popen_train("triplet", "killed")
    checkpoint = ws.root / "resume/killed" / RESUME_FILE
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint:\n{proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no resume checkpoint after 300 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # the first epoch is saved; the second is under way
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed; raise train.epochs"
    saved = torch.load(checkpoint, weights_only=True)
    assert 1 <= saved["epoch"] < 4
    assert not (ws.root / "killed/model").exists(), "a killed run leaves no final checkpoint"

    again = ws.run_train("triplet", "killed")
    assert again.returncode == 0, again.stderr
    done = saved["epoch"]
    assert f"epochs 1-{done} done, continuing at epoch {done + 1}" in again.stderr
    assert "epoch 1:" not in again.stderr  # the finished epochs are not trained again
    assert not (ws.root / "resume/killed").exists()
    assert downstream(ws, "killed") == downstream(ws, "whole")


def test_a_checkpoint_from_other_params_is_discarded_by_the_stage(workspace, monkeypatch, caplog):
    ws = workspace
    with monkeypatch.context() as mp:  # leave the finished run's checkpoint behind, as a kill would
        mp.setattr(resume, "clear_resume", lambda folder: None)  # the stage imports it when it runs
        train.main(ws.train_args("classification", "old"))
    stale = ws.root / "resume/old" / RESUME_FILE
    assert torch.load(stale, weights_only=True)["epoch"] == 4
    other = ws.write_params(reliability_params(epochs=4, cosine_t_max=4, lr=3e-3), "other.yaml")
    caplog.set_level(logging.INFO)
    train.main(ws.train_args("classification", "old", params=other))
    assert "made with other params or data" in caplog.text and "discarding it and starting from epoch 1" in caplog.text
    assert "continuing at epoch" not in caplog.text
    assert not stale.parent.exists()
    train.main(ws.train_args("classification", "fresh", params=other, resume=False))
    for name in OUTPUTS:
        assert (ws.root / "old" / name).read_bytes() == (ws.root / "fresh" / name).read_bytes(), name


def test_a_non_finite_loss_fails_the_stage_in_one_line_and_keeps_the_last_good_epoch(workspace, monkeypatch, capsys):
    ws = workspace
    poison_loss_from(monkeypatch, 2, float("inf"))
    with pytest.raises(SystemExit) as info:
        train.main(ws.train_args("classification", "nan"))
    assert info.value.code == 1
    line = error_line(capsys.readouterr().err, strict=False)
    checkpoint = ws.root / "resume/nan" / RESUME_FILE
    assert line.startswith("error: training loss is inf at epoch 2, batch 1; lower train.lr")
    assert line.endswith(f"epochs 1-1 and their best weights are kept in {checkpoint}")
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] == 1 and saved["best"]["epoch"] == 1
    assert not (ws.root / "nan/model").exists(), "no final checkpoint from a failed run"


def wait_for_epochs(proc, curve, epochs: int) -> None:
    """Until the run's curve lists `epochs` finished epochs (it is rewritten after each one)."""
    deadline = time.monotonic() + 300
    while not curve.is_file() or len(curve.read_text().strip().splitlines()) < 1 + epochs:
        assert proc.poll() is None, f"training ended early:\n{proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no finished epoch after 300 s"
        time.sleep(0.005)


def test_ctrl_c_saves_the_last_finished_epoch_at_once_and_the_rerun_gives_the_uninterrupted_bytes(workspace):
    """resume_every_s is an hour, so no periodic checkpoint exists: Ctrl-C itself writes the last
    finished epoch (kept in memory), says where the next run resumes, and that run ends in the bytes
    of an uninterrupted one."""
    ws = workspace
    # 24 epochs: under load, a short run can finish before the signal lands (seen with 4 on CI)
    ws.params = ws.write_params(reliability_params(epochs=24, cosine_t_max=24, resume_every_s=3600), "hourly.yaml")
    whole = ws.run_train("triplet", "whole")
    assert whole.returncode == 0, whole.stderr

    proc = ws.popen_train("triplet", "stopped")
    wait_for_epochs(proc, ws.root / "stopped/curve.csv", 1)
    checkpoint = ws.root / "resume/stopped" / RESUME_FILE
    assert not checkpoint.exists()  # nothing periodic was written
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, f"training finished before Ctrl-C; raise train.epochs:\n{err}"
    assert "Traceback" not in err
    done = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= done < 24
    last = err.strip().splitlines()[-1]
    assert last == (f"interrupted: epochs 1-{done} are saved in {checkpoint}; the next `dvc repro` resumes "
                    f"from epoch {done + 1}"), err
    assert not (ws.root / "stopped/model").exists()

    again = ws.run_train("triplet", "stopped")
    assert again.returncode == 0, again.stderr
    assert f"epochs 1-{done} done, continuing at epoch {done + 1}" in again.stderr
    assert downstream(ws, "stopped") == downstream(ws, "whole")


def test_sigterm_is_handled_as_ctrl_c(workspace):
    ws = workspace
    # 24 epochs: under load, a short run can finish before the signal lands (seen with 4 on CI)
    ws.params = ws.write_params(reliability_params(epochs=24, cosine_t_max=24, resume_every_s=3600), "hourly.yaml")
    proc = ws.popen_train("classification", "term")
    wait_for_epochs(proc, ws.root / "term/curve.csv", 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    checkpoint = ws.root / "resume/term" / RESUME_FILE
    done = torch.load(checkpoint, weights_only=True)["epoch"]
    assert err.strip().splitlines()[-1].startswith(f"terminated: epochs 1-{done} are saved in {checkpoint}")
