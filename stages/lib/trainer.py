"""The training loop shared by every method: batches from the decoded cache, one forward each,
per-epoch validation, selection of the epoch kept (`train.select`: the lowest validation loss, the
last epoch, or the best validation embedding metric, `stages.lib.validation`), and a resume
checkpoint (`stages.lib.resume`) after every epoch so a killed run continues where it stopped.
Under `train.budget` steps or images (`stages.lib.budget`) the epochs are passes over the method's
data until the budget is used, and the schedule steps by the budget used, not per pass."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from stages.lib import distributed, resume, stopping
from stages.lib.atomic import write_text
from stages.lib.budget import Budget
from stages.lib.device import MEAN, STD, Stats, autocast_dtype, host_to_device, normalise, prepare_model, to_device
from stages.lib.errors import PipelineError
from stages.lib.losses import Training
from stages.lib.models import input_stats
from stages.lib.params import TrainParams
from stages.lib.resume import RESUME_FILE, FitResult, Progress
from stages.lib.resume import save_resume as _save_resume  # the name the stop block below calls
from stages.lib.schedule import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

__all__ = ["RESUME_FILE", "FitResult", "Model", "SplitData", "fit", "write_curve"]

CURVE_COLUMNS = ["epoch", "train_loss", "val_loss", "lr", "best"]  # best: 1 on the selected epoch
SCORE_COLUMN = "val_score"  # after `lr` when the epoch is selected by a validation metric (`train.select`)
VAL_STREAM = 1_000_003  # the validation batches use one fixed random stream for every epoch


@dataclass
class SplitData:
    """A decoded split: pixels (N x H x W x 3 uint8) and integer labels, row for row.

    `anchors`: for the triplet method, the indices of the listed images (repeats allowed) when the
    rows are a larger sampling pool (`triplet.pool: study`); None: every row is listed once.
    `negative_labels`: each anchor's negative class, for the study's triplet lists (else None).
    `images`: each row's image id (its manifest row), so a sampler can tell two listings of one
    image apart from two images (None: every row is its own image).
    """

    pixels: np.ndarray
    labels: np.ndarray
    negative_labels: np.ndarray | None = None
    anchors: np.ndarray | None = None
    images: np.ndarray | None = None


class Model(nn.Module):
    """Backbone plus the method's head, so one module holds every trained weight."""

    def __init__(self, backbone: nn.Module, head: nn.Module | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embeddings (the head is applied by the method's loss)."""
        return self.backbone(x)


@distributed.main_only
def write_curve(path: Path, history: list[dict], best_epoch: int | None = None) -> None:
    """The per-epoch losses (and the validation score, where `train.select` names a metric) as CSV,
    rewritten atomically after every epoch; `best` marks the epoch selected so far, so a picture of
    the curve can mark it."""
    columns = CURVE_COLUMNS if not any(SCORE_COLUMN in row for row in history) else [*CURVE_COLUMNS[:4], SCORE_COLUMN,
                                                                                    "best"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        row = {**row, "best": int(row["epoch"] == best_epoch)}
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in columns})
    write_text(path, buffer.getvalue())


# --- one pass over a split ------------------------------------------------------------------


@dataclass
class Step:
    """How a batch of indices becomes a loss: the model (called as `forward`: itself, or wrapped in
    DistributedDataParallel and/or compiled), the method's loss, the device, the autocast dtype, the
    input normalisation and the training flip probability."""

    model: Model
    method: Training
    device: torch.device
    forward: nn.Module | None = None  # None: the backbone itself
    amp_dtype: torch.dtype | None = None
    stats: Stats = (MEAN, STD)
    hflip: float = 0.0

    def inputs(
        self, data: SplitData, index: np.ndarray, part: distributed.Shard, flip_rng: np.random.Generator | None,
        out: torch.Tensor | None,
    ) -> torch.Tensor:
        """This process's rows of the batch, normalised (into `out`, the previous batch's input, when
        it fits) and, drawn from `flip_rng` for the whole batch alike on every process, flipped."""
        images = to_device(data.pixels[index[part.positions]], self.device)
        flip = None
        if flip_rng is not None and self.hflip > 0:
            flip = host_to_device((flip_rng.random(len(index)) < self.hflip)[part.positions], self.device)
        return normalise(images, flip, out=out, stats=self.stats)

    def loss(
        self, x: torch.Tensor, data: SplitData, index: np.ndarray, part: distributed.Shard, training: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to differentiate, the whole batch's loss to report) of this process's input `x`."""
        labels = host_to_device(data.labels[index[part.positions]], self.device)
        whole = self.method.batch_wide and len(part.rows) > 1  # a batch-wide loss on several processes
        batch_labels = host_to_device(data.labels[index], self.device) if whole else None
        with torch.set_grad_enabled(training), torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            embeddings = (self.forward or self.model.backbone)(x)
            return distributed.batch_loss(self.criterion, embeddings, labels, batch_labels, part)

    def criterion(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.method.loss(embeddings, labels, self.model.head)


def _run_batches(
    step: Step, data: SplitData, batches: list[np.ndarray], *, epoch: int,
    optimizer: torch.optim.Optimizer | None = None, flip_rng: np.random.Generator | None = None,
    after_step: Callable[[np.ndarray], None] | None = None,
) -> float:
    """One pass over `batches`; trains when `optimizer` is given (calling `after_step(index)` after
    each optimiser step). Returns the mean loss per sample.

    Losses stay on the device until the end of the pass (no host sync per step); a non-finite
    one is then reported with its epoch and batch. With several processes each embeds its own
    slice of every batch (`distributed.shard`) and the pass's losses are the whole batches'.
    """
    losses, weights = [], []
    x = None  # the previous batch's input, refilled in place once its step is done
    for index in batches:
        part = distributed.shard(len(index), step.method.indices_per_item)
        x = step.inputs(data, index, part, flip_rng, out=x)
        loss, reported = step.loss(x, data, index, part, training=optimizer is not None)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(index)
        losses.append(reported.float())
        weights.append(part.items)  # loss terms in this batch
    return _mean_loss(losses, weights, epoch, "training" if optimizer is not None else "validation")


def _mean_loss(losses: list[torch.Tensor], weights: list[int], epoch: int, phase: str) -> float:
    """The pass's mean loss per sample over every process; a PipelineError naming the first
    non-finite batch."""
    values = distributed.mean_over_ranks(torch.stack(losses)).cpu().double().numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise PipelineError(
            f"{phase} loss is {values[bad[0]]} at epoch {epoch}, batch {bad[0] + 1}; lower train.lr or check the data"
        )
    return float(np.dot(values, weights) / max(sum(weights), 1))


# --- the loop ------------------------------------------------------------------------------


@dataclass
class _Loop:
    """Everything the epochs need: how a batch is run, the data, the settings, what changes from
    epoch to epoch (`progress`, what a resume checkpoint stores) and where the curve and the resume
    checkpoint go."""

    step: Step
    train: SplitData
    val: SplitData
    val_batches: list[np.ndarray]
    params: TrainParams
    seed: int
    progress: Progress
    curve_path: Path | None = None
    resume_dir: Path | None = None
    fingerprint: str | None = None
    scorer: Callable[[nn.Module], float] | None = None  # the validation metric of `train.select`
    last_save: float = field(default_factory=time.monotonic)
    budget: Budget | None = None  # None: `train.epochs` epochs, the schedule stepped per epoch
    steps: int = 0  # optimiser steps taken so far
    images: int = 0  # images passed forward in training so far (each image of a triplet counted)

    def epoch(self, epoch: int) -> dict:
        """Train one epoch (under a budget: a pass, cut where the budget ends), then validate; its row
        of the history, with the steps and images used so far."""
        model, method, progress = self.step.model, self.step.method, self.progress
        rng = np.random.default_rng([self.seed, epoch])
        lr = progress.optimizer.param_groups[0]["lr"]
        model.train()
        batches = method.split_batches(self.train, rng)
        if self.budget is not None:
            batches = self.budget.cut(batches, self.steps, self.images, method.indices_per_item)
        train_loss = _run_batches(self.step, self.train, batches, epoch=epoch, optimizer=progress.optimizer,
                                  flip_rng=rng, after_step=self._count)
        if self.budget is None:
            progress.scheduler.step()
        model.eval()
        val_loss = _run_batches(self.step, self.val, self.val_batches, epoch=epoch, optimizer=None)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr, "steps": self.steps,
               "images": self.images}
        if self.scorer is not None:  # rank 0 embeds the validation images; every rank keeps its score
            scorer, backbone = self.scorer, model.backbone
            row[SCORE_COLUMN] = float(distributed.from_main(lambda: scorer(backbone)))
        return row

    def _count(self, index: np.ndarray) -> None:
        """After an optimiser step: count it and its images; under a budget, step the schedule once per
        `amount / epochs` of the budget used."""
        self.steps += 1
        self.images += len(index)
        if self.budget is not None:
            scheduler = self.progress.scheduler
            while scheduler.last_epoch < self.budget.schedule_steps_due(self.steps, self.images):
                scheduler.step()

    def finished(self, epoch: int) -> bool:
        """Whether training is done after `epoch`."""
        if self.budget is None:
            return epoch >= self.params.epochs
        return self.budget.finished(self.steps, self.images, self.step.method.indices_per_item)

    def epochs(self, start: int) -> Iterator[int]:
        """The epochs still to train from `start`: up to `train.epochs`, or under a budget until it is used."""
        epoch = start
        while not self.finished(epoch - 1):
            yield epoch
            epoch += 1

    def select(self, row: dict) -> None:
        """Keep this epoch's weights if `train.select` prefers it to the best so far (`better`)."""
        best, model = self.progress.best, self.step.model
        if best is None or better(self.params.select, row, best):
            self.progress.best = FitResult(
                backbone_state=copy.deepcopy(model.backbone.state_dict()),
                head_state=copy.deepcopy(model.head.state_dict()) if model.head is not None else None,
                best_epoch=row["epoch"],
                best_val_loss=row["val_loss"],
                best_score=row.get(SCORE_COLUMN),
            )

    def checkpoint(self, epoch: int) -> dict | None:
        """After `epoch`: write the resume checkpoint when `train.resume_every_s` has passed (rank 0's
        clock decides for every process) or training is done, and return None; otherwise return it,
        as CPU copies, for the caller to keep in memory (a checkpoint of a large model costs about
        0.5 GB of writes)."""
        state = resume.snapshot(self.progress, epoch, self.fingerprint)  # on every process: it gathers their RNGs
        due = time.monotonic() - self.last_save >= self.params.resume_every_s or self.finished(epoch)
        if distributed.same_as_main(due):
            _save_resume(self.resume_dir, state)
            self.last_save = time.monotonic()
            return None
        return resume.in_memory(state)

    def curve(self) -> None:
        if self.curve_path is not None:
            write_curve(self.curve_path, self.progress.history,
                        self.progress.best.best_epoch if self.progress.best else None)


def better(select: str, row: dict, best: FitResult) -> bool:
    """Whether the epoch of `row` replaces `best` under the rule `select` (`train.select`): `loss`,
    a validation loss at most the best one (on equal losses the later epoch wins, as the study's `<=`:
    fixed validation triplets can reach a loss of exactly 0 on several epochs); `last`, always; a
    validation metric (`row["val_score"]`), a score at least the best one (the later epoch on a tie)."""
    if select == "loss":
        return row["val_loss"] <= best.best_val_loss
    if select == "last":
        return True
    assert best.best_score is not None, "a metric rule keeps each epoch's score"
    return row[SCORE_COLUMN] >= best.best_score


def fit(
    method: Training,
    backbone: nn.Module,
    train: SplitData,
    val: SplitData,
    params: TrainParams,
    *,
    seed: int,
    device: torch.device,
    curve_path: Path | None = None,
    resume_dir: Path | None = None,
    context: dict | None = None,
    scorer: Callable[[nn.Module], float] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    budget: Budget | None = None,
) -> FitResult:
    """Train `backbone` (and the method's head) for `params.epochs`, or under `budget` until its steps
    or images are used (`stages.lib.budget`); keep the epoch `params.select` chooses (`better`). The
    history's rows carry the steps and images used up to each epoch. `scorer` gives a backbone's
    validation score (`stages.lib.validation.Scorer`, needed when `params.select` names a metric; then
    each epoch's row has it as `val_score`); `on_epoch` is called with each finished epoch's row (e.g.
    to report it to a tuner, which may stop the run by raising).

    With `resume_dir`, a checkpoint of the whole loop (weights, optimiser, scheduler, RNG states,
    history, best epoch) is written there atomically after every epoch, and a matching one found
    at the start is continued from; the result is the same as an uninterrupted run's. `context`
    adds the caller's settings (e.g. the model section) to the checkpoint's fingerprint. The
    caller deletes the checkpoint (`stages.lib.resume.clear_resume`) once it has saved the result.
    """
    if params.select not in ("loss", "last") and scorer is None:
        raise ValueError(f"train.select {params.select} needs a scorer of the validation images")
    torch.manual_seed(seed)
    if budget is not None and budget.finished(0, 0, method.indices_per_item):
        raise PipelineError(f"train.budget_amount {budget.amount} {budget.kind} is less than one {method.name} item "
                            f"({method.indices_per_item} images); raise it")
    model = Model(backbone, method.head())
    fingerprint = None
    if budget is not None:
        context = {**(context or {}), "budget": dataclasses.asdict(budget)}
    if resume_dir is not None:
        fingerprint = resume.run_fingerprint(model, method, train, val, params, seed=seed, device=device,
                                             context=context)
    model = prepare_model(model, device)
    optimizer = build_optimizer(model.parameters(), params)
    net = distributed.wrap(model, device) if distributed.world().size > 1 else model.backbone
    step = Step(model, method, device, forward=torch.compile(net) if params.compile else net,
                amp_dtype=autocast_dtype(params.precision, device), stats=input_stats(backbone), hflip=params.hflip)
    loop = _Loop(
        step, train, val, validation_batches(method, val, params, seed), params, seed,
        Progress(model, optimizer, build_scheduler(optimizer, params)),
        curve_path=curve_path, resume_dir=resume_dir, fingerprint=fingerprint, budget=budget,
        scorer=scorer if params.select not in ("loss", "last") else None,
    )
    start = _resume(loop)
    with logging_redirect_tqdm():
        _epochs(loop, start, on_epoch)
    assert loop.progress.best is not None
    loop.progress.best.history = loop.progress.history
    return loop.progress.best


def validation_batches(method: Training, val: SplitData, params: TrainParams, seed: int) -> list[np.ndarray]:
    """The fixed validation batches: the method's own, with `train.val_batch_size` items each where set."""
    if params.val_batch_size is not None:
        method = copy.copy(method)
        method.params = dataclasses.replace(method.params, batch_size=params.val_batch_size)
    return method.split_batches(val, np.random.default_rng([seed, VAL_STREAM]))


def _resume(loop: _Loop) -> int:
    """The first epoch to train: 1, or the one after a matching resume checkpoint's (loaded)."""
    folder, fingerprint = loop.resume_dir, loop.fingerprint
    if folder is None or fingerprint is None:
        return 1
    state = distributed.from_main(lambda: resume.load_resume(folder, fingerprint))  # rank 0 reads, all load
    if state is None:
        return 1
    start = resume.restore(loop.progress, state, folder / RESUME_FILE)
    last = loop.progress.history[-1] if loop.progress.history else {}
    loop.steps, loop.images = int(last.get("steps", 0)), int(last.get("images", 0))
    log.info("resuming %s from %s: epochs 1-%d done, continuing at epoch %d",
             loop.step.method.name, folder / RESUME_FILE, start - 1, start)
    loop.curve()
    return start


def _epochs(loop: _Loop, start: int, on_epoch: Callable[[dict], None] | None = None) -> None:
    """Train epochs `start`..`params.epochs` (under a budget: until it is used). On Ctrl-C, SIGTERM
    or a failed epoch (or a lost peer process), the resume checkpoint of the last finished epoch is
    written at once (it is kept in memory, as CPU copies, whenever `train.resume_every_s` has not yet
    sent it to disk) and the error says what was kept. With several processes rank 0 writes, and
    every process stops."""
    params = loop.params
    bar = tqdm(loop.epochs(start), desc=f"train {loop.step.method.name}", unit="epoch",
               initial=start - 1, total=params.epochs if loop.budget is None else None,
               disable=None if distributed.is_main() else True)  # no bar off a terminal, nor beside rank 0
    saved = start - 1 if start > 1 else None  # the epoch the resume checkpoint on disk holds
    unsaved: dict | None = None  # the last finished epoch's resume state, when newer than the one on disk
    try:
        for epoch in bar:
            row = loop.epoch(epoch)
            loop.progress.history.append(row)
            _show(bar, row)
            loop.select(row)
            if loop.resume_dir is not None:
                unsaved = loop.checkpoint(epoch)
                saved = epoch if unsaved is None else saved
                stopping.keep(unsaved, lambda kept: _save_resume(loop.resume_dir, kept))  # written on a signal
            loop.curve()
            if on_epoch is not None:
                on_epoch(row)
    except (KeyboardInterrupt, Exception) as exc:  # also a lost peer process: keep what is finished
        if unsaved is not None:  # written here, unless a signal's thread already did
            stopping.kept_now(unsaved, lambda kept: _save_resume(loop.resume_dir, kept))
            saved = unsaved["epoch"]
        ended = stopping.after_training(exc, saved, loop.resume_dir / RESUME_FILE if loop.resume_dir else None)
        if ended is exc:  # a bug or a lost process: as it is, with its traceback
            raise
        raise ended from None


def _show(bar: Any, row: dict) -> None:
    """An epoch's losses on the progress bar, or as a log line where there is no bar."""
    score = {"score": f"{row[SCORE_COLUMN]:.4f}"} if SCORE_COLUMN in row else {}
    bar.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{row['val_loss']:.4f}", **score)
    if bar.disable:
        log.info("epoch %d: train loss %.4f, val loss %.4f, lr %.3g%s", row["epoch"], row["train_loss"],
                 row["val_loss"], row["lr"], f", val score {row[SCORE_COLUMN]:.4f}" if score else "")
