"""Trainable heads that need a module of their own: the methods' modules do not import torch, so
that checking params (every stage does) does not pay for it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    """Logits = cos(embedding, class weight) / temperature: both sides L2-normalised, no bias."""

    def __init__(self, embed_dim: int, n_classes: int, temperature: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, embed_dim))
        nn.init.normal_(self.weight)  # only the directions matter: uniform on the sphere
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T / self.temperature
