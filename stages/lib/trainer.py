"""The training loop shared by every method: batches from the decoded cache, one forward each,
per-epoch validation, selection of the epoch with the lowest validation loss, and a resume
checkpoint after every epoch so a killed run continues where it stopped."""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import logging
import pickle
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from stages.lib import distributed, stopping
from stages.lib.atomic import atomic_path, write_text
from stages.lib.device import (
    MEAN,
    STD,
    Stats,
    autocast_dtype,
    host_to_device,
    normalise,
    prepare_model,
    rng_state,
    set_rng_state,
    to_device,
)
from stages.lib.errors import PipelineError
from stages.lib.methods.base import Method
from stages.lib.models import input_stats
from stages.lib.params import TrainParams
from stages.lib.schedule import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["epoch", "train_loss", "val_loss", "lr", "best"]  # best: 1 on the selected epoch
VAL_STREAM = 1_000_003  # the validation batches use one fixed random stream for every epoch
RESUME_FILE = "resume.pt"
RESUME_FORMAT = 1  # bump when the resume checkpoint's layout changes; older ones are discarded


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embeddings (the head is applied by the method's loss)."""
        return self.backbone(x)


@distributed.main_only
def write_curve(path: Path, history: list[dict], best_epoch: int | None = None) -> None:
    """The per-epoch losses as CSV, rewritten atomically after every epoch; `best` marks the epoch
    selected so far (the lowest validation loss), so a picture of the curve can mark it."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        row = {**row, "best": int(row["epoch"] == best_epoch)}
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
    stats: Stats = (MEAN, STD),
) -> float:
    """One pass over `batches`; trains when `optimizer` is given. Returns the mean loss per sample.

    Losses stay on the device until the end of the pass (no host sync per step); a non-finite
    one is then reported with its epoch and batch. With several processes each embeds its own
    slice of every batch (`distributed.shard`) and the pass's losses are the whole batches'.
    """
    losses, weights = [], []
    backbone = forward or model.backbone
    x = None  # the previous batch's input, refilled in place on the CPU once its step is done
    for index in batches:
        part = distributed.shard(len(index), method.indices_per_item)
        mine = index[part.positions]
        images = to_device(data.pixels[mine], device)
        flip = None
        if flip_rng is not None and hflip > 0:  # drawn for the whole batch, the same on every process
            flip = host_to_device((flip_rng.random(len(index)) < hflip)[part.positions], device)
        labels = host_to_device(data.labels[mine], device)
        whole = method.batch_wide and len(part.rows) > 1  # a batch-wide loss on several processes
        batch_labels = host_to_device(data.labels[index], device) if whole else None
        x = normalise(images, flip, out=x, stats=stats)
        with torch.set_grad_enabled(optimizer is not None), torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            loss, reported = distributed.batch_loss(
                lambda e, y: method.loss(e, y, model.head), backbone(x), labels, batch_labels, part
            )
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        losses.append(reported.float())
        weights.append(part.items)  # loss terms in this batch
    values = distributed.mean_over_ranks(torch.stack(losses)).cpu().double().numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        phase = "training" if optimizer is not None else "validation"
        raise PipelineError(
            f"{phase} loss is {values[bad[0]]} at epoch {epoch}, batch {bad[0] + 1}; lower train.lr or check the data"
        )
    return float(np.dot(values, weights) / max(sum(weights), 1))


# --- resume checkpoints --------------------------------------------------------------------


def _hash_tensor(digest: Any, name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(t.view(torch.uint8).numpy() if t.numel() else b"")


def run_fingerprint(
    model: nn.Module, method: Method, train: SplitData, val: SplitData, params: TrainParams, *,
    seed: int, device: torch.device, context: dict | None = None,
) -> str:
    """A hash of everything a run's trajectory depends on, so a resume checkpoint is only used by
    the same run: the params (seed, train, the method's section, the caller's `context`, e.g. the
    model section), the device, the starting weights (model name, pretrained file, initialisation),
    and the exact train and validation data (pixels, labels, prescribed negatives). Costs one pass
    over the data (about a second per GB)."""
    digest = hashlib.sha256()
    settings = {
        "format": RESUME_FORMAT,
        "seed": seed,
        "train": dataclasses.asdict(params),
        "method": method.name,
        "method_params": dataclasses.asdict(method.params) if dataclasses.is_dataclass(method.params) else None,
        "device": device.type,
        "context": context or {},
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        _hash_tensor(digest, name, tensor)
    for split, data in (("train", train), ("val", val)):
        for part in dataclasses.fields(data):  # pixels, labels and whatever else a split carries
            value = getattr(data, part.name)
            if value is not None:
                array = np.ascontiguousarray(value)
                digest.update(f"{split}.{part.name}|{array.dtype}|{array.shape}|".encode())
                digest.update(array)
    return digest.hexdigest()


def folder_digest(folder: Path) -> str:
    """sha256 over the names and bytes of every file in `folder` (e.g. the split tables)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}|{path.stat().st_size}|".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


@distributed.main_only
def _save_resume(folder: Path, state: dict) -> None:
    """Write the resume checkpoint atomically: a kill leaves the previous epoch's file whole."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / RESUME_FILE) as tmp:
        torch.save(state, tmp)


def _load_resume(folder: Path, fingerprint: str) -> dict | None:
    """The resume checkpoint in `folder` if it belongs to this run; otherwise None (and a stale or
    unreadable one is deleted, with a log line saying why). Loaded with `weights_only=True`."""
    path = folder / RESUME_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        log.warning("resume checkpoint %s is unreadable (it needs unrestricted unpickling, which is never done); "
                    "discarding it and starting from epoch 1", path)
        path.unlink(missing_ok=True)
        return None
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("resume checkpoint %s is unreadable (%s); discarding it and starting from epoch 1", path, first)
        path.unlink(missing_ok=True)
        return None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        log.warning("resume checkpoint %s has an unknown layout; discarding it and starting from epoch 1", path)
        path.unlink(missing_ok=True)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning(
            "resume checkpoint %s was made with other params or data (fingerprint %.12s, this run %.12s); "
            "discarding it and starting from epoch 1", path, str(state.get("fingerprint")), fingerprint,
        )
        path.unlink(missing_ok=True)
        return None
    return state


@distributed.main_only
def clear_resume(folder: Path | None) -> None:
    """Delete the resume checkpoint (after the final checkpoint is safely written)."""
    if folder is None:
        return
    (folder / RESUME_FILE).unlink(missing_ok=True)
    for stale in folder.glob(f".{RESUME_FILE}.*.tmp"):  # left by a kill mid-write
        stale.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


# --- the loop ------------------------------------------------------------------------------


@dataclass
class _Loop:
    """Everything one epoch needs and everything a resume checkpoint stores."""

    model: Model
    method: Method
    train: SplitData
    val: SplitData
    val_batches: list[np.ndarray]
    params: TrainParams
    optimizer: torch.optim.Optimizer
    scheduler: Any
    seed: int
    device: torch.device
    amp_dtype: torch.dtype | None
    forward: nn.Module
    stats: Stats
    curve_path: Path | None
    resume_dir: Path | None
    fingerprint: str | None
    history: list[dict] = field(default_factory=list)
    best: FitResult | None = None
    last_save: float = field(default_factory=time.monotonic)

    def resume_state(self, epoch: int) -> dict:
        """A weights_only-loadable dict: tensors, numbers, strings, lists and dicts only. Called on
        every process (it gathers each one's random state); rank 0 writes it."""
        best = self.best
        assert best is not None
        same = best.best_epoch == epoch  # the best weights are the current ones: store them once
        head = self.model.head
        return {
            "format": RESUME_FORMAT,
            "fingerprint": self.fingerprint,
            "epoch": epoch,
            "backbone": self.model.backbone.state_dict(),
            "head": head.state_dict() if head is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "rng_ranks": distributed.gather_objects(rng_state()),  # one per process, in rank order
            "history": self.history,
            "best": {
                "epoch": best.best_epoch,
                "val_loss": best.best_val_loss,
                "backbone": None if same else best.backbone_state,
                "head": None if same else best.head_state,
            },
        }

    def restore(self, state: dict) -> int:
        """Load a resume checkpoint into the model, optimiser, scheduler and RNGs; the next epoch."""
        try:
            self.model.backbone.load_state_dict(state["backbone"])
            if self.model.head is not None:
                self.model.head.load_state_dict(state["head"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            ranks = state.get("rng_ranks") or [state["rng"]]
            set_rng_state(ranks[distributed.world().rank] if len(ranks) > 1 else state["rng"])
            self.history = list(state["history"])
            b = state["best"]
            if b["backbone"] is None:  # the best epoch was the last one saved
                backbone_state = _cpu_copy(self.model.backbone.state_dict())
                head_state = _cpu_copy(self.model.head.state_dict()) if self.model.head is not None else None
            else:
                backbone_state, head_state = b["backbone"], b["head"]
            self.best = FitResult(backbone_state, head_state, int(b["epoch"]), float(b["val_loss"]))
            return int(state["epoch"]) + 1
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            path = self.resume_dir / RESUME_FILE if self.resume_dir else RESUME_FILE
            raise PipelineError(
                f"resume checkpoint {path} does not fit this run ({first}); delete it and re-run"
            ) from None


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
    resume_dir: Path | None = None,
    context: dict | None = None,
) -> FitResult:
    """Train `backbone` (and the method's head) for `params.epochs`; keep the lowest-val-loss epoch.

    With `resume_dir`, a checkpoint of the whole loop (weights, optimiser, scheduler, RNG states,
    history, best epoch) is written there atomically after every epoch, and a matching one found
    at the start is continued from; the result is the same as an uninterrupted run's. `context`
    adds the caller's settings (e.g. the model section) to the checkpoint's fingerprint. The
    caller deletes the checkpoint (`clear_resume`) once it has saved the result.
    """
    torch.manual_seed(seed)
    head = method.head()
    model = Model(backbone, head)
    fingerprint = None
    if resume_dir is not None:
        fingerprint = run_fingerprint(model, method, train, val, params, seed=seed, device=device, context=context)
    model = prepare_model(model, device)
    optimizer = build_optimizer(model.parameters(), params)
    net = distributed.wrap(model, device) if distributed.world().size > 1 else model.backbone
    loop = _Loop(
        model=model, method=method, train=train, val=val,
        val_batches=method.split_batches(val, np.random.default_rng([seed, VAL_STREAM])),
        params=params, optimizer=optimizer, scheduler=build_scheduler(optimizer, params), seed=seed,
        device=device, amp_dtype=autocast_dtype(params.precision, device),
        forward=torch.compile(net) if params.compile else net, stats=input_stats(backbone),
        curve_path=curve_path, resume_dir=resume_dir, fingerprint=fingerprint,
    )
    start = 1
    if resume_dir is not None and fingerprint is not None:
        state = distributed.from_main(lambda: _load_resume(resume_dir, fingerprint))  # rank 0 reads, all load
        if state is not None:
            start = loop.restore(state)
            log.info("resuming %s from %s: epochs 1-%d done, continuing at epoch %d",
                     method.name, resume_dir / RESUME_FILE, start - 1, start)
            if curve_path is not None:
                write_curve(curve_path, loop.history, loop.best.best_epoch if loop.best else None)
    with logging_redirect_tqdm():
        _epochs(loop, start)
    assert loop.best is not None
    loop.best.history = loop.history
    return loop.best


def _detached(value: Any) -> Any:
    """A CPU copy of every tensor in a (nested) state dict; other values as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(v) for v in value)
    return value


def _epochs(loop: _Loop, start: int) -> None:
    """Train epochs `start`..`params.epochs`. On Ctrl-C, SIGTERM or a failed epoch (or a lost peer
    process), the resume checkpoint of the last finished epoch is written at once (it is kept in
    memory, as CPU copies, whenever `train.resume_every_s` has not yet sent it to disk) and the
    error says what was kept. With several processes rank 0 writes, and every process stops."""
    params, model, method = loop.params, loop.model, loop.method
    bar = tqdm(range(start, params.epochs + 1), desc=f"train {method.name}", unit="epoch",
               initial=start - 1, total=params.epochs,
               disable=None if distributed.is_main() else True)  # no bar off a terminal, nor beside rank 0
    saved = start - 1 if start > 1 else None  # the epoch the resume checkpoint on disk holds
    unsaved: dict | None = None  # the last finished epoch's resume state, when newer than the one on disk
    try:
        for epoch in bar:
            rng = np.random.default_rng([loop.seed, epoch])
            lr = loop.optimizer.param_groups[0]["lr"]
            model.train()
            train_loss = _run_batches(
                model, method, loop.train, method.split_batches(loop.train, rng), loop.device,
                optimizer=loop.optimizer, flip_rng=rng, hflip=params.hflip, epoch=epoch,
                amp_dtype=loop.amp_dtype, forward=loop.forward, stats=loop.stats,
            )
            loop.scheduler.step()
            model.eval()
            val_loss = _run_batches(
                model, method, loop.val, loop.val_batches, loop.device, optimizer=None, flip_rng=None, hflip=0.0,
                epoch=epoch, amp_dtype=loop.amp_dtype, forward=loop.forward, stats=loop.stats,
            )
            loop.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr})
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if bar.disable:  # the bar shows the losses; a log line per epoch only where there is no bar
                log.info("epoch %d: train loss %.4f, val loss %.4f, lr %.3g", epoch, train_loss, val_loss, lr)
            # On equal validation losses the later epoch wins, as the study's `<=` (fixed validation
            # triplets can reach a loss of exactly 0 on several epochs).
            if loop.best is None or val_loss <= loop.best.best_val_loss:
                loop.best = FitResult(
                    backbone_state=copy.deepcopy(model.backbone.state_dict()),
                    head_state=copy.deepcopy(model.head.state_dict()) if model.head is not None else None,
                    best_epoch=epoch,
                    best_val_loss=val_loss,
                )
            if loop.resume_dir is not None:
                state = loop.resume_state(epoch)
                due = time.monotonic() - loop.last_save >= params.resume_every_s or epoch == params.epochs
                if distributed.same_as_main(due):  # rank 0's clock decides, for every process
                    _save_resume(loop.resume_dir, state)  # a checkpoint of a large model costs ~0.5 GB of writes
                    loop.last_save, saved, unsaved = time.monotonic(), epoch, None
                else:  # the best weights are never changed in place: only the live state is copied
                    unsaved = {**_detached({k: v for k, v in state.items() if k != "best"}), "best": state["best"]}
                stopping.keep(unsaved, lambda kept: _save_resume(loop.resume_dir, kept))  # written on a signal
            if loop.curve_path is not None:
                write_curve(loop.curve_path, loop.history, loop.best.best_epoch)
    except (KeyboardInterrupt, Exception) as exc:  # also a lost peer process: keep what is finished
        if unsaved is not None:  # written here, unless a signal's thread already did
            stopping.kept_now(unsaved, lambda kept: _save_resume(loop.resume_dir, kept))
            saved = unsaved["epoch"]
        ended = stopping.after_training(exc, saved, loop.resume_dir / RESUME_FILE if loop.resume_dir else None)
        if ended is exc:  # a bug or a lost process: as it is, with its traceback
            raise
        raise ended from None
