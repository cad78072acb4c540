"""One run on several processes, what the ranks compute together: DistributedDataParallel and the
collectives the trainer uses (how the ranks are started and stopped: `stages.lib.launcher`,
`stages.lib.stopping`).

Every rank draws the same seeded global batches and takes its own slice (`shard`), so the
experiment is the same whatever the number of ranks N is:

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
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class World:
    """This process's place in the run: its rank, the number of ranks, its rank on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0


def world() -> World:
    """The current world: one process unless a process group has been started (`launcher.init`)."""
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

    return cast(F, wrapper)


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
    return cast(T, box[0])


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
