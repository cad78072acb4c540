"""The training loop (`stages.lib.trainer.fit`): the epoch with the lowest validation loss is kept
(the later one on a tie), inputs are normalised with the model's own statistics, and a non-finite
loss stops training with one line naming the epoch and batch while the last good epoch is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stages.lib import trainer
from stages.lib.errors import PipelineError
from stages.lib.losses import ClassificationTraining
from stages.lib.methods.classification import ClassificationParams
from stages.lib.models import build_backbone
from stages.lib.params import params_from_dict
from stages.lib.trainer import RESUME_FILE, SplitData, fit
from tests.helpers import poison_loss_from, tiny_params

EPOCHS = 3
VAL_LOSSES = {1: 1.0, 2: 0.5, 3: 0.7}  # scripted so the best epoch (2) is not the last


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
    method = ClassificationTraining(ClassificationParams(batch_size=8), 3, backbone.num_features)
    train, val = split or data()
    return fit(method, backbone, train, val, params or train_params(), seed=0, device=torch.device("cpu"),
               resume_dir=resume_dir, context={"model": "test_convnext"})


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


def test_a_non_finite_loss_names_its_epoch_and_batch_and_keeps_the_last_good_epoch(tmp_path, monkeypatch):
    folder = tmp_path / "resume"
    poison_loss_from(monkeypatch, 3, float("nan"))
    with pytest.raises(PipelineError) as info:
        run(folder)
    message = str(info.value)
    assert "training loss is nan at epoch 3, batch 1" in message
    assert f"epochs 1-2 and their best weights are kept in {folder / RESUME_FILE}" in message
    saved = torch.load(folder / RESUME_FILE, weights_only=True)
    assert saved["epoch"] == 2 and [row["epoch"] for row in saved["history"]] == [1, 2]
    assert all(torch.isfinite(v).all() for v in saved["backbone"].values() if v.is_floating_point())
