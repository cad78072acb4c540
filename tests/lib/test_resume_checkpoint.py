"""The resume checkpoint (`stages.lib.resume`): an interrupted `fit` continues to the very same
result; a checkpoint of other params or data, an unreadable one or one that would need unrestricted
pickle is discarded, and training starts from epoch 1."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from stages.lib import resume, trainer
from stages.lib.resume import RESUME_FILE, clear_resume
from tests.lib.test_trainer import EPOCHS, VAL_LOSSES, data, run, train_params


class Interrupted(Exception):
    """Stands in for a kill right after an epoch's checkpoint is written."""


@pytest.fixture
def scripted_val(monkeypatch):
    """Validation losses from VAL_LOSSES (training runs for real), so best != last epoch."""
    real = trainer._run_batches

    def run_batches(*args, **kwargs):
        loss = real(*args, **kwargs)
        return loss if kwargs["optimizer"] is not None else VAL_LOSSES[kwargs["epoch"]]

    monkeypatch.setattr(trainer, "_run_batches", run_batches)


def interrupt_after(monkeypatch, epoch: int) -> None:
    real = trainer._save_resume

    def save(folder, state):
        real(folder, state)
        if state["epoch"] == epoch:
            raise Interrupted

    monkeypatch.setattr(trainer, "_save_resume", save)


def interrupted_after_epoch_2(tmp_path: Path, monkeypatch) -> Path:
    """A run killed right after epoch 2's checkpoint; the folder holding that checkpoint."""
    folder = tmp_path / "resume"
    with monkeypatch.context() as mp:
        interrupt_after(mp, 2)
        with pytest.raises(Interrupted):
            run(folder)
    return folder


def assert_same(a, b) -> None:
    assert (a.best_epoch, a.best_val_loss, a.history) == (b.best_epoch, b.best_val_loss, b.history)
    for one, two in ((a.backbone_state, b.backbone_state), (a.head_state, b.head_state)):
        assert one.keys() == two.keys()
        for key in one:
            assert torch.equal(one[key].cpu(), two[key].cpu()), key


@pytest.fixture(scope="module")
def uninterrupted():
    with pytest.MonkeyPatch.context() as mp:
        real = trainer._run_batches
        mp.setattr(trainer, "_run_batches", lambda *a, **k: real(*a, **k) if k["optimizer"] is not None
                   else VAL_LOSSES[k["epoch"]])
        return run(None)


@pytest.mark.parametrize("stop", [1, 2, EPOCHS])
def test_an_interrupted_fit_resumes_to_the_same_result(
    stop, tmp_path, monkeypatch, scripted_val, uninterrupted, caplog
):
    folder = tmp_path / "resume"
    with monkeypatch.context() as mp:
        interrupt_after(mp, stop)
        with pytest.raises(Interrupted):
            run(folder)
    saved = torch.load(folder / RESUME_FILE, weights_only=True)
    assert saved["epoch"] == stop
    assert saved["best"]["epoch"] == (1 if stop == 1 else 2)
    assert (saved["best"]["backbone"] is None) == (stop in (1, 2))  # stored once when best == current
    caplog.set_level(logging.INFO)
    resumed = run(folder)
    assert f"epochs 1-{stop} done, continuing at epoch {stop + 1}" in caplog.text
    assert resumed.best_epoch == 2
    assert_same(resumed, uninterrupted)
    assert (folder / RESUME_FILE).is_file()  # the caller clears it after saving the result
    clear_resume(folder)
    assert not folder.exists()


def test_a_checkpoint_of_other_params_is_discarded(tmp_path, monkeypatch, caplog):
    folder = interrupted_after_epoch_2(tmp_path, monkeypatch)
    caplog.set_level(logging.INFO)
    other = train_params(lr=2e-3)
    result = run(folder, params=other)
    assert "made with other params or data" in caplog.text and "discarding it" in caplog.text
    assert "continuing" not in caplog.text
    assert_same(result, run(None, params=other))


def test_a_checkpoint_of_other_data_is_discarded(tmp_path, monkeypatch, caplog):
    folder = interrupted_after_epoch_2(tmp_path, monkeypatch)
    train, val = data()
    train.pixels[0, 0, 0, 0] ^= 1  # one bit of one pixel
    caplog.set_level(logging.INFO)
    run(folder, split=(train, val))
    assert "made with other params or data" in caplog.text and "continuing" not in caplog.text


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04 truncated zip"])
def test_an_unreadable_checkpoint_is_discarded(content, tmp_path, caplog):
    folder = tmp_path / "resume"
    folder.mkdir()
    (folder / RESUME_FILE).write_bytes(content)
    caplog.set_level(logging.INFO)
    result = run(folder)
    assert "is unreadable" in caplog.text and "discarding it" in caplog.text
    assert result.history[0]["epoch"] == 1


class _Payload:
    """What a malicious checkpoint would carry: code that runs when unpickled."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_is_never_unpickled_unrestricted(tmp_path, caplog):
    folder = tmp_path / "resume"
    folder.mkdir()
    payload = _Payload()
    payload.marker = tmp_path / "code-ran"
    torch.save({"format": resume.RESUME_FORMAT, "payload": payload}, folder / RESUME_FILE)
    caplog.set_level(logging.INFO)
    run(folder)
    assert not payload.marker.exists()
    assert "needs unrestricted unpickling" in caplog.text and "discarding it" in caplog.text
