"""The study's schedule: linear warm-up from lr/3, then cosine to eta_min, stepped per epoch."""

from __future__ import annotations

import math

import pytest
import torch

from stages.lib.params import params_from_dict
from stages.lib.schedule import build_optimizer, build_scheduler
from tests.helpers import default_params


def lrs(train_overrides: dict, epochs: int) -> list[float]:
    raw = default_params()
    raw["train"].update(train_overrides)
    p = params_from_dict(raw).train
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], p)
    scheduler = build_scheduler(optimizer, p)
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_study_schedule():
    values = lrs({}, 100)
    lr, eta = 5e-5, 5e-6
    for epoch in range(10):  # LinearLR: factor from 1/3 to 1 over 10 epochs
        factor = 1 / 3 + (1 - 1 / 3) * epoch / 10
        assert values[epoch] == pytest.approx(lr * factor)
    for epoch in range(10, 100):  # CosineAnnealingLR(T_max=100) restarted at the milestone
        t = epoch - 10
        assert values[epoch] == pytest.approx(eta + (lr - eta) * (1 + math.cos(math.pi * t / 100)) / 2)


def test_no_warmup_is_plain_cosine():
    values = lrs({"warmup_epochs": 0, "cosine_t_max": 4, "eta_min": 0.0}, 5)
    assert values[0] == pytest.approx(5e-5) and values[4] == pytest.approx(0.0, abs=1e-12)


def test_adam_with_coupled_weight_decay_by_default():
    p = params_from_dict(default_params()).train
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], p)
    assert type(optimizer) is torch.optim.Adam
    group = optimizer.param_groups[0]
    assert group["betas"] == (0.9, 0.999) and group["weight_decay"] == 1e-6
