"""Choosing the device and moving batches to it: the one place that knows about CUDA."""

from __future__ import annotations

import numpy as np
import torch

from stages.lib.errors import PipelineError

MEAN = (0.485, 0.456, 0.406)  # ImageNet, as in the study
STD = (0.229, 0.224, 0.225)


def pick_device(requested: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU; `cuda` without a GPU is an error that says what to do."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise PipelineError("train.device is cuda but no CUDA GPU is visible; set train.device: auto or cpu")
    return torch.device("cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 on CUDA for `auto` or `bf16`, none (fp32) otherwise.

    `bf16` on the CPU is allowed (slow on most CPUs) for checking the mixed-precision path.
    """
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move `model` to `device`; channels-last memory format on CUDA, where convolutions gain."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def to_device(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N x H x W x 3 pixels -> uint8 N x 3 x H x W tensor on `device` (non-blocking on CUDA)."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def normalise(images: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images -> float, ImageNet-normalised; `flip` (bool per image) mirrors horizontally.

    Equal to the study's `ToTensor()` + `Normalize(mean, std)` after `RandomHorizontalFlip`.
    """
    x = images.float().div_(255.0)
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    if flip is not None and bool(flip.any()):
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
