"""The study's optimiser and schedule: Adam, linear warm-up, then cosine, stepped per epoch."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from stages.lib.params import OPTIMIZERS, TrainParams


def build_optimizer(parameters: Iterable[torch.nn.Parameter], p: TrainParams) -> torch.optim.Optimizer:
    """The optimiser named by `train.optimizer` with lr, betas and weight decay from params.

    On CUDA the fused implementation is used (same update, one kernel for all weights).
    """
    parameters = list(parameters)
    cls = getattr(torch.optim, OPTIMIZERS[p.optimizer])
    fused = bool(parameters) and all(q.is_cuda for q in parameters)
    return cls(parameters, lr=p.lr, betas=tuple(p.betas), weight_decay=p.weight_decay, fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, p: TrainParams) -> torch.optim.lr_scheduler.LRScheduler:
    """`LinearLR(start_factor, total_iters=warmup_epochs)` then `CosineAnnealingLR(T_max, eta_min)`."""
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=p.cosine_t_max, eta_min=p.eta_min)
    if p.warmup_epochs == 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=p.warmup_start_factor, end_factor=1.0, total_iters=p.warmup_epochs
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[p.warmup_epochs])
