"""The resume checkpoint: what a killed training run needs to continue where it stopped.

One file per run (`resume.pt` in the run's resume folder), written atomically by rank 0 after an
epoch: the weights, optimiser, scheduler, every process's RNG state, the per-epoch history and the
best epoch so far. It carries a fingerprint of everything the run's trajectory depends on, so only
the same run ever continues from it; anything else (other params or data, an unknown layout, an
unreadable file) is discarded with a log line and training starts from epoch 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from stages.lib import distributed
from stages.lib.atomic import atomic_path
from stages.lib.device import rng_state, set_rng_state
from stages.lib.errors import PipelineError

if TYPE_CHECKING:
    from stages.lib.methods.base import Method
    from stages.lib.params import TrainParams
    from stages.lib.trainer import SplitData

log = logging.getLogger(__name__)

RESUME_FILE = "resume.pt"
RESUME_FORMAT = 1  # bump when the resume checkpoint's layout changes; older ones are discarded


@dataclass
class FitResult:
    """The selected weights (the epoch `train.select` keeps), that epoch's validation loss and score
    (None: no validation metric was computed) and the per-epoch history."""

    backbone_state: dict
    head_state: dict | None
    best_epoch: int
    best_val_loss: float
    best_score: float | None = None
    history: list[dict] = field(default_factory=list)


@dataclass
class Progress:
    """What training changes from epoch to epoch, and so what a resume checkpoint stores: the model
    (`backbone` and `head`), the optimiser and scheduler, the finished epochs' history and the best
    epoch so far."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    history: list[dict] = field(default_factory=list)
    best: FitResult | None = None


# --- which run a checkpoint belongs to ------------------------------------------------------


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


# --- the checkpoint's contents ----------------------------------------------------------------


def cpu_copy(state: dict) -> dict:
    """A CPU copy of every tensor in a flat state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def detached(value: Any) -> Any:
    """A CPU copy of every tensor in a (nested) state dict; other values as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: detached(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(detached(v) for v in value)
    return value


def snapshot(progress: Progress, epoch: int, fingerprint: str | None) -> dict:
    """The resume checkpoint after `epoch`: a weights_only-loadable dict (tensors, numbers, strings,
    lists and dicts only). Called on every process (it gathers each one's random state); rank 0
    writes it."""
    best = progress.best
    assert best is not None
    same = best.best_epoch == epoch  # the best weights are the current ones: store them once
    head = progress.model.head
    return {
        "format": RESUME_FORMAT,
        "fingerprint": fingerprint,
        "epoch": epoch,
        "backbone": progress.model.backbone.state_dict(),
        "head": head.state_dict() if head is not None else None,
        "optimizer": progress.optimizer.state_dict(),
        "scheduler": progress.scheduler.state_dict(),
        "rng": rng_state(),
        "rng_ranks": distributed.gather_objects(rng_state()),  # one per process, in rank order
        "history": progress.history,
        "best": {
            "epoch": best.best_epoch,
            "val_loss": best.best_val_loss,
            "score": best.best_score,
            "backbone": None if same else best.backbone_state,
            "head": None if same else best.head_state,
        },
    }


def in_memory(state: dict) -> dict:
    """A `snapshot` kept in memory until it is written: CPU copies of the live state (the best
    weights are never changed in place, so they are not copied)."""
    return {**detached({k: v for k, v in state.items() if k != "best"}), "best": state["best"]}


def restore(progress: Progress, state: dict, path: Path | str) -> int:
    """Load a resume checkpoint (read from `path`) into `progress` and this process's RNGs; the
    next epoch to train."""
    model = progress.model
    try:
        model.backbone.load_state_dict(state["backbone"])
        if model.head is not None:
            model.head.load_state_dict(state["head"])
        progress.optimizer.load_state_dict(state["optimizer"])
        progress.scheduler.load_state_dict(state["scheduler"])
        ranks = state.get("rng_ranks") or [state["rng"]]
        set_rng_state(ranks[distributed.world().rank] if len(ranks) > 1 else state["rng"])
        progress.history = list(state["history"])
        b = state["best"]
        if b["backbone"] is None:  # the best epoch was the last one saved
            backbone_state = cpu_copy(model.backbone.state_dict())
            head_state = cpu_copy(model.head.state_dict()) if model.head is not None else None
        else:
            backbone_state, head_state = b["backbone"], b["head"]
        score = b.get("score")
        progress.best = FitResult(backbone_state, head_state, int(b["epoch"]), float(b["val_loss"]),
                                  None if score is None else float(score))
        return int(state["epoch"]) + 1
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"resume checkpoint {path} does not fit this run ({first}); delete it and re-run") from None


# --- the file -----------------------------------------------------------------------------------


@distributed.main_only
def save_resume(folder: Path, state: dict) -> None:
    """Write the resume checkpoint atomically: a kill leaves the previous epoch's file whole."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / RESUME_FILE) as tmp:
        torch.save(state, tmp)


def load_resume(folder: Path, fingerprint: str) -> dict | None:
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
