"""`train.select`: which epoch the training loop keeps. `loss` (the lowest validation loss, the later
on a tie), `last`, or a validation embedding metric (the highest score, the later on a tie), with the
kept weights those of that very epoch, and a resumed run keeping the best score so far."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.lib import trainer, validation
from stages.lib.resume import RESUME_FILE
from stages.lib.trainer import write_curve
from tests.lib.test_resume_checkpoint import Interrupted, interrupt_after
from tests.lib.test_trainer import EPOCHS, data, run, train_params

VAL_LOSSES = {1: 1.0, 2: 0.5, 3: 0.7}  # the loss rule keeps epoch 2
SCORES = [0.8, 0.5, 0.6]  # a metric rule keeps epoch 1; `last` keeps epoch 3


class FakeScorer:
    """Scripted validation scores, one per call; keeps a copy of the weights it was shown."""

    def __init__(self, scores):
        self.scores, self.seen = list(scores), []

    def __call__(self, backbone):
        self.seen.append({k: v.detach().clone() for k, v in backbone.state_dict().items()})
        return self.scores[len(self.seen) - 1]


@pytest.fixture
def scripted_losses(monkeypatch):
    real = trainer._run_batches
    monkeypatch.setattr(trainer, "_run_batches", lambda *a, **k: real(*a, **k) if k["optimizer"] is not None
                        else VAL_LOSSES[k["epoch"]])


def fit_with(select: str, scores=SCORES, resume_dir=None):
    scorer = FakeScorer(scores)
    torch.manual_seed(0)
    from stages.lib.losses import ClassificationTraining
    from stages.lib.methods.classification import ClassificationParams
    from stages.lib.models import build_backbone

    backbone = build_backbone("test_convnext")
    method = ClassificationTraining(ClassificationParams(batch_size=8), 3, backbone.num_features)
    train, val = data()
    result = trainer.fit(method, backbone, train, val, train_params(select=select), seed=0,
                         device=torch.device("cpu"), resume_dir=resume_dir, context={"model": "test_convnext"},
                         scorer=scorer)
    return result, scorer


@pytest.mark.parametrize(("select", "kept"), [("loss", 2), ("last", 3), ("val_kmeans", 1), ("val_map_at_r", 1)])
def test_each_rule_keeps_its_epoch_and_that_epochs_weights(select, kept, scripted_losses):
    result, scorer = fit_with(select)
    assert result.best_epoch == kept
    assert result.best_val_loss == VAL_LOSSES[kept]
    if select.startswith("val_"):
        assert len(scorer.seen) == EPOCHS  # scored once per epoch
        assert result.best_score == SCORES[kept - 1]
        assert [row["val_score"] for row in result.history] == SCORES
        weights = scorer.seen[kept - 1]  # what the scorer was shown at the kept epoch
        assert all(torch.equal(weights[k], result.backbone_state[k]) for k in weights)
    else:
        assert scorer.seen == [] and result.best_score is None  # no embedding of the validation images
        assert all("val_score" not in row for row in result.history)


def test_equal_scores_keep_the_later_epoch(scripted_losses):
    result, _ = fit_with("val_kmeans", scores=[0.5, 0.9, 0.9])
    assert result.best_epoch == 3 and result.best_score == 0.9


def test_a_metric_rule_without_a_scorer_is_refused():
    with pytest.raises(ValueError, match="needs a scorer"):
        run(None, params=train_params(select="val_kmeans"))


@pytest.mark.parametrize("stop", [2, EPOCHS])
def test_a_resumed_run_keeps_the_best_score_so_far(stop, tmp_path, monkeypatch, scripted_losses):
    uninterrupted, _ = fit_with("val_kmeans")
    folder = tmp_path / "resume"
    with monkeypatch.context() as mp:
        interrupt_after(mp, stop)
        with pytest.raises(Interrupted):
            fit_with("val_kmeans", resume_dir=folder)
    saved = torch.load(folder / RESUME_FILE, weights_only=True)
    assert saved["best"]["epoch"] == 1 and saved["best"]["score"] == SCORES[0]
    resumed, scorer = fit_with("val_kmeans", scores=SCORES[stop:], resume_dir=folder)  # only new epochs scored
    assert len(scorer.seen) == EPOCHS - stop
    assert (resumed.best_epoch, resumed.best_score, resumed.history) == (1, SCORES[0], uninterrupted.history)
    for key, value in uninterrupted.backbone_state.items():
        assert torch.equal(value, resumed.backbone_state[key]), key


def test_the_curve_has_the_score_column_only_when_a_metric_selects(tmp_path):
    rows = [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.5, "lr": 0.1},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.6, "lr": 0.1}]
    write_curve(tmp_path / "loss.csv", rows, best_epoch=1)
    assert (tmp_path / "loss.csv").read_text().splitlines()[0] == "epoch,train_loss,val_loss,lr,best"
    scored = [{**r, "val_score": s} for r, s in zip(rows, (0.25, 0.75), strict=True)]
    write_curve(tmp_path / "score.csv", scored, best_epoch=2)
    assert (tmp_path / "score.csv").read_text().splitlines() == [
        "epoch,train_loss,val_loss,lr,val_score,best", "1,1,0.5,0.1,0.25,0", "2,0.5,0.6,0.1,0.75,1"]


# --- the validation score itself ----------------------------------------------------------------


def test_the_validation_metrics_score_embeddings_as_the_evaluate_stage_does():
    labels = np.repeat([0, 1, 2], 4)
    separated = np.eye(3)[labels] * 10 + np.random.default_rng(0).normal(0, 0.1, (12, 3))
    for metric in validation.METRICS:
        assert validation.score_embeddings(separated, labels, metric) == pytest.approx(1.0)
    mixed = np.random.default_rng(1).normal(size=(12, 3))
    from stages.lib.metrics import kmeans_clusters, matched_accuracy, retrieval_scores

    expected = matched_accuracy(labels, kmeans_clusters(mixed, 3, n_init=10, seed=0))
    assert validation.score_embeddings(mixed, labels, "val_kmeans") == pytest.approx(expected)
    assert validation.score_embeddings(mixed, labels, "val_map_at_r") == pytest.approx(
        retrieval_scores(mixed, labels, knn_k=1)["map_at_r"])
    assert validation.score_embeddings(mixed, labels, "val_kmeans") < 1.0


def test_the_scorer_embeds_exactly_its_images_and_leaves_the_model_in_training_mode(monkeypatch):
    from stages.lib import embedding
    from stages.lib.models import build_backbone

    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 0, 1, 1, 2, 2])
    seen = []
    real = embedding.embed_pixels
    monkeypatch.setattr(embedding, "embed_pixels", lambda b, p, *a: seen.append(np.asarray(p)) or real(b, p, *a))
    backbone = build_backbone("test_convnext").train()
    score = validation.Scorer("val_kmeans", pixels, labels, torch.device("cpu"), batch_size=4)(backbone)
    assert 0 < score <= 1 and backbone.training
    assert len(seen) == 1 and np.array_equal(seen[0], pixels)
