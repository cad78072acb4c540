"""Embedding images with a backbone: batched, no augmentation, no gradients."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from stages.lib.device import autocast_dtype, configure_tf32, normalise, prepare_model, to_device
from stages.lib.models import embedding_size, input_stats


def embed_pixels(
    backbone: nn.Module, pixels: np.ndarray, device: torch.device, batch_size: int, precision: str = "fp32"
) -> np.ndarray:
    """float32 embeddings (N x D) of uint8 pixels (N x H x W x 3), in order, normalised with the
    model's own mean and std (`input_stats`). The embed stage always uses `fp32` (the test images
    are embedded in full precision whatever `train.precision` trained with); fp32 on CUDA too, TF32
    off (`configure_tf32`)."""
    configure_tf32(precision, device)
    stats = input_stats(backbone)
    backbone = prepare_model(backbone, device).eval()
    amp_dtype = autocast_dtype(precision, device)
    out = []
    with torch.inference_mode(), torch.autocast(
        device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
    ):
        for start in tqdm(range(0, len(pixels), batch_size), desc="embed", unit="batch", leave=False, disable=None):
            images = to_device(pixels[start : start + batch_size], device)
            out.append(backbone(normalise(images, stats=stats)).float())  # stays on the device: no sync per batch
    if not out:
        return np.zeros((0, embedding_size(backbone)), dtype=np.float32)
    return torch.cat(out).cpu().numpy().astype(np.float32, copy=False)
