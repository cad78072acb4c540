"""One run on several processes: PyTorch's elastic launcher (torchrun) and DistributedDataParallel.

The one place that knows about process groups. With `train.processes: N > 1` the train stage
starts itself N times under `torch.distributed.run` (what `torchrun --standalone
--nproc-per-node=N` does) and each process, a rank, joins the group (NCCL on CUDA, gloo on the
CPU; `device.process_group_backend`). Every rank draws the same seeded global batches and takes
its own slice (`shard`), so the experiment is the same whatever N is:

- losses that are a mean over the batch's items (classification, triplets) are scaled by the
  rank's share of the items, so DDP's gradient average is the gradient of the global mean, also
  for a last batch that does not split evenly;
- losses that compare across the batch (`Method.batch_wide`: batch-hard triplets, SupCon) see
  the whole global batch, in the same order as one process: the other ranks' embeddings arrive
  by `all_gather` (no gradient) and this rank's own rows are its live tensor; the loss times N,
  averaged by DDP, gives exactly the gradient of the global loss (pytorch-metric-learning's
  `DistributedLossWrapper` does the same, but needs equal slices and puts the own rows first);
- reported losses are averaged over the ranks, so every rank sees the same validation loss and
  picks the same best epoch; only rank 0 writes files (`main_only`) and logs.

A rank that fails tells the launcher through torchrun's error file; the launcher turns the
root cause into one `PipelineError` line. Ctrl-C or SIGTERM stops every rank as it stops one
process (the trainer keeps the last finished epoch, written by rank 0) and the stage ends with
one `Interrupted` line. A rank dies with its launcher, so a killed stage leaves no orphans that
keep writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from stages.lib.device import process_group_backend
from stages.lib.errors import Interrupted, PipelineError

log = logging.getLogger(__name__)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

STOPPED_EXIT = 143  # a rank stopped by the launcher (SIGTERM) after another one failed


@dataclass(frozen=True)
class World:
    """This process's place in the run: its rank, the number of ranks, its rank on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0


def world() -> World:
    """The current world: one process unless a process group has been started (`init`)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return World()


def is_main() -> bool:
    """Rank 0, the one process that writes files and logs (true when there is one process)."""
    return world().rank == 0


def main_only(func: F) -> F:
    """Decorate a function that writes: it runs on rank 0 only (elsewhere it does nothing, returns None)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs) if is_main() else None

    return wrapper  # type: ignore[return-value]


def progress_options() -> dict[str, Any]:
    """tqdm options: the progress bar on rank 0 only."""
    return {} if is_main() else {"disable": True}


# --- the launcher ---------------------------------------------------------------------------


def launched() -> bool:
    """Whether this process is a rank started by torchrun (the stage's own launch or the user's)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "WORLD_SIZE" in os.environ


def launched_size() -> int:
    """The number of ranks torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This rank's index on its machine (its GPU), as torchrun set it."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launch(module: str, argv: list[str], processes: int, *, hint: str = "", stopped: str = "") -> None:
    """Run `python -m module argv` as `processes` ranks on this machine under PyTorch's elastic
    launcher (torchrun --standalone, no restarts); return when all have finished.

    Each rank gets OMP_NUM_THREADS = the stage's threads (OMP_NUM_THREADS, else the cores) divided
    by `processes`, and this `stages` package on its path. A failed run raises one `PipelineError`
    naming the root cause (a rank killed by a signal, or a rank's own error), with `hint` added
    where a rank was lost. Ctrl-C or SIGTERM (the launcher passes it to the ranks, which stop as one
    process does) raises `Interrupted` saying `stopped` (what was kept).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = os.environ.get("OMP_NUM_THREADS", "")
    budget = int(threads) if threads.isdigit() and int(threads) > 0 else cores  # the stage's threads, shared out
    package_root = str(Path(__file__).resolve().parents[2])
    args = parse_args(["--standalone", f"--nproc-per-node={processes}", "--max-restarts=0", "--module", module, *argv])
    env = {
        "OMP_NUM_THREADS": str(max(1, budget // processes)),
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p),
    }
    with _environment(env), _quiet_elastic_logs():
        try:
            run(args)
        except ChildFailedError as exc:
            raise PipelineError(_root_cause(exc, processes, hint)) from None
        except SignalException as exc:
            error = Interrupted(f"its {processes} training processes stopped" + (f"; {stopped}" if stopped else ""))
            error.signal = signal.Signals(exc.sigval)  # the launcher's handler took it; stage_main names it
            raise error from None


def _root_cause(exc: Any, processes: int, hint: str) -> str:
    """One line for a failed run: a rank killed by a signal (other than the launcher's own SIGTERM)
    comes first, then a rank's own error, then anything else; a lost peer is a consequence."""
    failures = sorted(exc.failures.items())
    order = {"signal": 0, "error": 1, "bug": 2, "lost": 3}

    def kind(failure: Any) -> str:
        if failure.exitcode < 0:
            return "stopped" if failure.signal_name() in ("SIGTERM", "SIGINT") else "signal"
        data = failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
        return str(data.get("kind", "bug"))

    ranked = sorted(failures, key=lambda item: (order.get(kind(item[1]), 4), item[0]))
    rank, failure = ranked[0]
    what = kind(failure)
    if what == "signal":
        line = (f"training process rank {rank} of {processes} (pid {failure.pid}) was killed by "
                f"{failure.signal_name()}; the other processes were stopped and no model was written")
        return f"{line}; {hint}" if hint else line
    message = str(failure.message) if failure.message else f"exit code {failure.exitcode}"
    if what == "error":
        return message
    if what == "lost":
        return f"training process rank {rank} of {processes}: {message}" + (f"; {hint}" if hint else "")
    if what == "stopped":  # only stopped ranks: one was stopped from outside the launcher
        return f"training process rank {rank} of {processes} was stopped ({message})" + (f"; {hint}" if hint else "")
    return (f"training process rank {rank} of {processes} failed: {message} (its traceback is above)"
            + (f"; {hint}" if hint else ""))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_elastic_logs() -> Iterator[None]:
    """The launcher's own log records (rendezvous, "closing signal", its failure table) off: a
    failure is reported once, as the stage's one error line."""
    loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
               if name.startswith("torch.distributed")]
    loggers.append(logging.getLogger("torch.distributed"))
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# --- a rank ---------------------------------------------------------------------------------


class Stopped(KeyboardInterrupt):
    """SIGTERM in a rank (from the launcher: the run was stopped, or another rank failed): the rank
    stops as one process does on Ctrl-C (the trainer keeps the last finished epoch)."""


def init(device: torch.device) -> World:
    """Join the launcher's process group on `device` (a rank's entry). Ranks other than 0 log
    warnings only; every rank dies with its launcher and unwinds (atomic writes clean up) on SIGTERM."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, _raise_stopped)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(process_group_backend(device))
    w = world()
    if w.rank != 0:  # rank 0 speaks for the run
        logging.getLogger().setLevel(logging.WARNING)
        warnings.simplefilter("ignore")
    return w


def finish() -> None:
    """Leave the process group (end of a rank)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _raise_stopped(signum: int, frame: Any) -> None:
    """Stop once: Ctrl-C reaches a rank twice (from the terminal, then passed on by the launcher),
    and a second interruption must not cut short the saving of the last epoch."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its launcher dies (PR_SET_PDEATHSIG), so a killed stage
    leaves no ranks training on as orphans; elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher is already gone
        os._exit(1)


@contextlib.contextmanager
def reporting_to_launcher() -> Iterator[None]:
    """In a rank: an error is written to torchrun's error file instead of stderr, and the launcher
    prints one line for the whole run. A `PipelineError` is the user's error; a broken connection
    to another rank is a consequence of that rank's failure; anything else is a bug and keeps its
    traceback."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not launched() or not error_file:
        yield
        return
    try:
        yield
    except PipelineError as exc:
        _record(error_file, "error", " ".join(str(exc).splitlines()))
        raise SystemExit(1) from None
    except KeyboardInterrupt as exc:  # stopped (the trainer kept what it could): not a cause
        _record(error_file, "stopped", " ".join(str(exc).splitlines()))
        raise SystemExit(STOPPED_EXIT) from None
    except Exception as exc:
        if _lost_peer(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _record(error_file, "lost", f"lost contact with another training process ({first})")
            raise SystemExit(1) from None
        _record(error_file, "bug", f"{type(exc).__name__}: {exc}")
        raise
    finally:  # leaving (done, or failed and reported): the launcher's SIGTERM now ends the process quietly
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _lost_peer(exc: BaseException) -> bool:
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("Connection closed by peer", "Connection reset by peer", "gloo", "NCCL")
    )


def _record(path: str, kind: str, message: str) -> None:
    """torchrun's error-file format with a plain message (read back as `ProcessFailure.message`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"message": message, "timestamp": int(time.time()), "kind": kind}))


# --- collectives the trainer uses -----------------------------------------------------------


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module to call for the embeddings: `model` under DistributedDataParallel when there are
    several ranks, else as is. On CUDA a model's batch norm is synchronised (its statistics are the
    global batch's); PyTorch's SyncBatchNorm does not run on the CPU, where each rank normalises
    over its own slice (ConvNeXt, the study's model, has layer norm only)."""
    if world().size == 1:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # A depthwise kernel's gradient (C x 1 x k x k) may have another stride on its size-1 axis than
    # DDP's bucket; PyTorch warns although nothing is wrong or slower (the axis has one element).
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def from_main(make: Callable[[], T]) -> T:
    """`make()` on rank 0, the same object on every rank (e.g. the resume checkpoint rank 0 read)."""
    if world().size == 1:
        return make()
    box = [make() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def same_as_main(value: T) -> T:
    """Rank 0's `value` on every rank (e.g. a decision taken on rank 0's clock)."""
    return from_main(lambda: value)


def gather_objects(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    if world().size == 1:
        return [value]
    out: list[Any] = [None] * world().size
    dist.all_gather_object(out, value)
    return out


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of `values` over the ranks (itself with one rank)."""
    if world().size == 1:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / world().size


@dataclass(frozen=True)
class Shard:
    """This rank's slice of one global batch.

    `positions`: the rows of the batch's index array this rank embeds (every row with one rank);
    `rows`: how many rows each rank holds; `items`: loss terms in the global batch; `local_items`:
    this rank's (0 when the batch has fewer items than ranks: the rank then embeds one stand-in row
    and adds nothing, so that it still takes part in the gradient exchange).
    """

    positions: np.ndarray | slice
    rows: tuple[int, ...]
    items: int
    local_items: int


def shard(n_rows: int, rows_per_item: int) -> Shard:
    """Split a batch of `n_rows` rows, laid out as `rows_per_item` blocks of items (a triplet batch:
    anchors, positives, negatives), into contiguous runs of items, one per rank, sizes differing by
    at most one; a triplet stays whole on one rank."""
    w = world()
    items = n_rows // rows_per_item
    if w.size == 1:
        return Shard(slice(None), (n_rows,), items, items)
    bounds = [items * r // w.size for r in range(w.size + 1)]
    lo, hi = bounds[w.rank], bounds[w.rank + 1]
    columns = np.arange(lo, hi) if hi > lo else np.zeros(1, dtype=np.int64)
    positions = (np.arange(rows_per_item)[:, None] * items + columns[None, :]).reshape(-1)
    rows = tuple((bounds[r + 1] - bounds[r]) * rows_per_item for r in range(w.size))
    return Shard(positions, rows, items, hi - lo)


def batch_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    batch_labels: torch.Tensor | None,
    part: Shard,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(what this rank backpropagates, its share of the batch's mean loss for reporting).

    `loss_fn(embeddings, labels)` is the method's mean loss. `batch_labels`: the whole global
    batch's labels for a batch-wide loss (None: a mean over items, computed on this rank's slice).
    Averaged over the ranks (DDP for the gradients, `mean_over_ranks` for the report), both give
    the global batch's mean loss.
    """
    size = world().size
    if size == 1:
        loss = loss_fn(embeddings, labels)
        return loss, loss.detach()
    if batch_labels is not None:
        whole = _gather_rows(embeddings, part)
        loss = loss_fn(whole, batch_labels)
        if part.local_items == 0:  # the stand-in row: no part in the loss, but in the graph for DDP
            loss = loss + embeddings.sum() * 0.0
        return loss * size, loss.detach()
    loss = loss_fn(embeddings, labels)
    share = loss * (part.local_items * size / part.items)
    return share, share.detach()


def _gather_rows(local: torch.Tensor, part: Shard) -> torch.Tensor:
    """The global batch's embeddings (float32, the batch's own order) on every rank: the other ranks'
    rows gathered without gradient, this rank's rows its own tensor (the gradient's only path)."""
    w = world()
    mine = local.float()[: part.rows[w.rank]]
    width = max(part.rows)
    padded = mine.detach().new_zeros((width, *mine.shape[1:]))
    padded[: len(mine)] = mine.detach()
    parts = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    return torch.cat([mine if r == w.rank else parts[r][:n] for r, n in enumerate(part.rows)])
