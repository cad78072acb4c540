"""The training loop shared by every method: batches from the decoded cache, one forward each,
per-epoch validation, and selection of the epoch with the lowest validation loss."""

from __future__ import annotations

import copy
import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from stages.lib.atomic import write_text
from stages.lib.device import autocast_dtype, normalise, prepare_model, to_device
from stages.lib.errors import PipelineError
from stages.lib.methods.base import Method
from stages.lib.params import TrainParams
from stages.lib.schedule import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["epoch", "train_loss", "val_loss", "lr"]
VAL_STREAM = 1_000_003  # the validation batches use one fixed random stream for every epoch


@dataclass
class SplitData:
    """A decoded split: pixels (N x H x W x 3 uint8) and integer labels, row for row."""

    pixels: np.ndarray
    labels: np.ndarray


@dataclass
class FitResult:
    """The selected weights and the per-epoch history."""

    backbone_state: dict
    head_state: dict | None
    best_epoch: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)


class Model(nn.Module):
    """Backbone plus the method's head, so one module holds every trained weight."""

    def __init__(self, backbone: nn.Module, head: nn.Module | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head


def write_curve(path: Path, history: list[dict]) -> None:
    """The per-epoch losses as CSV (a DVC plot), rewritten atomically after every epoch."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in CURVE_COLUMNS})
    write_text(path, buffer.getvalue())


def _run_batches(
    model: Model,
    method: Method,
    data: SplitData,
    batches: list[np.ndarray],
    device: torch.device,
    *,
    optimizer: torch.optim.Optimizer | None,
    flip_rng: np.random.Generator | None,
    hflip: float,
    epoch: int,
    amp_dtype: torch.dtype | None = None,
    forward: nn.Module | None = None,
) -> float:
    """One pass over `batches`; trains when `optimizer` is given. Returns the mean loss per sample.

    Losses stay on the device until the end of the pass (no host sync per step); a non-finite
    one is then reported with its epoch and batch.
    """
    losses, weights = [], []
    backbone = forward or model.backbone
    for index in batches:
        images = to_device(data.pixels[index], device)
        flip = None
        if flip_rng is not None and hflip > 0:
            flip = torch.from_numpy(flip_rng.random(len(index)) < hflip).to(device)
        labels = torch.from_numpy(data.labels[index]).to(device)
        x = normalise(images, flip)
        with torch.set_grad_enabled(optimizer is not None), torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            loss = method.loss(backbone(x), labels, model.head)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        losses.append(loss.detach().float())
        weights.append(len(index) // method.indices_per_item)  # loss terms in this batch
    values = torch.stack(losses).cpu().double().numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        phase = "training" if optimizer is not None else "validation"
        raise PipelineError(
            f"{phase} loss is {values[bad[0]]} at epoch {epoch}, batch {bad[0] + 1}; lower train.lr "
            "or check the data; the last good checkpoint is kept"
        )
    return float(np.dot(values, weights) / max(sum(weights), 1))


def fit(
    method: Method,
    backbone: nn.Module,
    train: SplitData,
    val: SplitData,
    params: TrainParams,
    *,
    seed: int,
    device: torch.device,
    curve_path: Path | None = None,
) -> FitResult:
    """Train `backbone` (and the method's head) for `params.epochs`; keep the lowest-val-loss epoch."""
    torch.manual_seed(seed)
    head = method.head()
    model = prepare_model(Model(backbone, head), device)
    amp_dtype = autocast_dtype(params.precision, device)
    forward = torch.compile(model.backbone) if params.compile else model.backbone
    optimizer = build_optimizer(model.parameters(), params)
    scheduler = build_scheduler(optimizer, params)
    val_batches = method.epoch_batches(val.labels, np.random.default_rng([seed, VAL_STREAM]))
    with logging_redirect_tqdm():
        best = _epochs(model, method, train, val, val_batches, params, optimizer, scheduler,
                       seed=seed, device=device, amp_dtype=amp_dtype, forward=forward, curve_path=curve_path)
    return best


def _epochs(model, method, train, val, val_batches, params, optimizer, scheduler, *, seed, device, amp_dtype,
            forward, curve_path) -> FitResult:
    best: FitResult | None = None
    history: list[dict] = []
    bar = tqdm(range(1, params.epochs + 1), desc=f"train {method.name}", unit="epoch")
    for epoch in bar:
        rng = np.random.default_rng([seed, epoch])
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        train_loss = _run_batches(
            model, method, train, method.epoch_batches(train.labels, rng), device,
            optimizer=optimizer, flip_rng=rng, hflip=params.hflip, epoch=epoch,
            amp_dtype=amp_dtype, forward=forward,
        )
        scheduler.step()
        model.eval()
        val_loss = _run_batches(
            model, method, val, val_batches, device, optimizer=None, flip_rng=None, hflip=0.0, epoch=epoch,
            amp_dtype=amp_dtype, forward=forward,
        )
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr})
        if curve_path is not None:
            write_curve(curve_path, history)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        log.info("epoch %d: train loss %.4f, val loss %.4f, lr %.3g", epoch, train_loss, val_loss, lr)
        if best is None or val_loss < best.best_val_loss:
            best = FitResult(
                backbone_state=copy.deepcopy(model.backbone.state_dict()),
                head_state=copy.deepcopy(model.head.state_dict()) if model.head is not None else None,
                best_epoch=epoch,
                best_val_loss=val_loss,
            )
    assert best is not None
    best.history = history
    return best
