"""The trainer's resume checkpoint: an interrupted `fit` continues to the very same result; a
checkpoint of another run, an unreadable one or one that would need unrestricted pickle is
discarded; a non-finite loss keeps the last good epoch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.lib import trainer
from stages.lib.errors import PipelineError
from stages.lib.methods.classification import Classification, ClassificationParams
from stages.lib.models import build_backbone
from stages.lib.params import params_from_dict
from stages.lib.trainer import RESUME_FILE, SplitData, clear_resume, fit
from tests.helpers import tiny_params

EPOCHS = 3
VAL_LOSSES = {1: 1.0, 2: 0.5, 3: 0.7}  # scripted so the best epoch (2) is not the last


class Interrupted(Exception):
    """Stands in for a kill right after an epoch's checkpoint is written."""


def train_params(**changes):
    raw = tiny_params()
    raw["train"].update({"epochs": EPOCHS, "cosine_t_max": EPOCHS, **changes})
    return params_from_dict(raw).train


def data(seed: int = 0) -> tuple[SplitData, SplitData]:
    rng = np.random.default_rng(seed)
    make = lambda n: SplitData(  # noqa: E731
        rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), np.arange(n, dtype=np.int64) % 3
    )
    return make(12), make(6)


def run(resume_dir: Path | None, params=None, split=None):
    torch.manual_seed(0)
    backbone = build_backbone("test_convnext")
    method = Classification(ClassificationParams(batch_size=8), 3, backbone.num_features)
    train, val = split or data()
    return fit(method, backbone, train, val, params or train_params(), seed=0, device=torch.device("cpu"),
               resume_dir=resume_dir, context={"model": "test_convnext"})


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
    folder = tmp_path / "resume"
    with monkeypatch.context() as mp:
        interrupt_after(mp, 2)
        with pytest.raises(Interrupted):
            run(folder)
    caplog.set_level(logging.INFO)
    other = train_params(lr=2e-3)
    result = run(folder, params=other)
    assert "made with other params or data" in caplog.text and "discarding it" in caplog.text
    assert "continuing" not in caplog.text
    assert_same(result, run(None, params=other))


def test_a_checkpoint_of_other_data_is_discarded(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "resume"
    with monkeypatch.context() as mp:
        interrupt_after(mp, 2)
        with pytest.raises(Interrupted):
            run(folder)
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
    torch.save({"format": trainer.RESUME_FORMAT, "payload": payload}, folder / RESUME_FILE)
    caplog.set_level(logging.INFO)
    run(folder)
    assert not payload.marker.exists()
    assert "needs unrestricted unpickling" in caplog.text and "discarding it" in caplog.text


def test_a_non_finite_loss_names_epoch_and_batch_and_keeps_the_last_good_epoch(tmp_path, monkeypatch):
    folder = tmp_path / "resume"
    real = trainer._run_batches

    def run_batches(model, method, *args, **kwargs):
        if kwargs["epoch"] == 3 and kwargs["optimizer"] is not None:
            loss = method.loss
            monkeypatch.setattr(method, "loss", lambda *a: loss(*a) * float("nan"))
        return real(model, method, *args, **kwargs)

    monkeypatch.setattr(trainer, "_run_batches", run_batches)
    with pytest.raises(PipelineError) as info:
        run(folder)
    message = str(info.value)
    assert "training loss is nan at epoch 3, batch 1" in message
    assert f"epochs 1-2 and their best weights are kept in {folder / RESUME_FILE}" in message
    saved = torch.load(folder / RESUME_FILE, weights_only=True)
    assert saved["epoch"] == 2 and [row["epoch"] for row in saved["history"]] == [1, 2]
    assert all(torch.isfinite(v).all() for v in saved["backbone"].values() if v.is_floating_point())


def test_equal_validation_losses_select_the_later_epoch(monkeypatch):
    # The study's `<=`: with fixed validation triplets the loss can be exactly 0 on several epochs.
    real = trainer._run_batches
    losses = {1: 0.5, 2: 0.0, 3: 0.0}
    monkeypatch.setattr(trainer, "_run_batches", lambda *a, **k: real(*a, **k) if k["optimizer"] is not None
                        else losses[k["epoch"]])
    result = run(None)
    assert result.best_epoch == 3 and result.best_val_loss == 0.0


def test_inputs_are_normalised_with_the_models_own_mean_and_std(monkeypatch):
    seen = []
    real = trainer.normalise

    def spy(*args, **kwargs):
        seen.append(kwargs["stats"])
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "normalise", spy)
    run(None, params=train_params(epochs=1, cosine_t_max=1))
    assert set(seen) == {((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}  # timm's config of test_convnext, not ImageNet's
