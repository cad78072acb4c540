"""Choosing the device and moving batches to it: the one place that knows about CUDA."""

from __future__ import annotations

import functools
import logging
import os

import numpy as np
import torch

from stages.lib.errors import PipelineError

MEAN = (0.485, 0.456, 0.406)  # ImageNet, as in the study; a timm model's own config overrides them
STD = (0.229, 0.224, 0.225)  # (`stages.lib.models.input_stats`)

log = logging.getLogger("stages.device")


def pick_device(requested: str, local_rank: int | None = None, processes: int = 1) -> torch.device:
    """The device for `train.device`: `auto` -> CUDA when present, else CPU; `cuda:N` -> GPU N, so
    queued runs can be pinned to GPUs; `cuda` without a GPU is an error that says what to do. A GPU
    it names becomes this process's current device (`torch.cuda.set_device`), so that what uses the
    current device (pinned memory, cuDNN and cuBLAS handles, compiled kernels) uses it, not GPU 0.

    `local_rank` (a rank of a `train.processes` run): rank i on its machine takes GPU i, and the
    machine must have a GPU for each of its `processes` (the ranks torchrun started on this
    machine, LOCAL_WORLD_SIZE: with several machines, fewer than `train.processes`).
    """
    if requested == "cpu":
        return torch.device("cpu")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested.startswith("cuda:"):
        index = int(requested.split(":", 1)[1])
        if processes > 1:
            raise PipelineError(
                f"train.device {requested} pins one GPU, but train.processes is {processes} (one GPU per process); "
                "set train.device: cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES"
            )
        if index >= available:
            visible = f"GPUs cuda:0 to cuda:{available - 1} are visible" if available else "no CUDA GPU is visible"
            raise PipelineError(f"train.device is {requested} but {visible}; set train.device: auto, cpu or cuda:N")
        return _current(torch.device("cuda", index))
    if not available:
        if requested == "cuda":
            raise PipelineError("train.device is cuda but no CUDA GPU is visible; set train.device: auto or cpu")
        return torch.device("cpu")
    if local_rank is None:
        return torch.device("cuda")
    if processes > available:
        raise PipelineError(
            f"{processes} training processes run on this machine but {available} CUDA GPU(s) are visible (one GPU "
            f"per process); set train.processes: {available} or less (with torchrun on several machines: "
            f"--nproc-per-node={available} or less), or train.device: cpu"
        )
    return _current(torch.device("cuda", local_rank))


def _current(device: torch.device) -> torch.device:
    torch.cuda.set_device(device)
    return device


def compute_device(requested: str = "auto", need_bytes: int = 0) -> torch.device:
    """Where array work (the evaluate stage's neighbour search and K-means) runs: the device of
    `train.device` (`pick_device`: `auto` the GPU when there is one, `cuda:N` GPU N, `cpu`), so a
    run pinned to a GPU, or to the CPU, evaluates there too. On a GPU with less than `need_bytes`
    free (another run training beside it), the CPU instead, saying so in one log line."""
    device = pick_device(requested)
    if device.type == "cuda" and need_bytes > 0:
        free, _ = torch.cuda.mem_get_info(device)
        if free < need_bytes:
            log.warning("%s has %.1f GiB free, %.1f GiB needed: computing on the CPU instead (slower)",
                        _name(device), free / 2**30, need_bytes / 2**30)
            return torch.device("cpu")
    return device


def _name(device: torch.device) -> str:
    return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"


def configure_tf32(precision: str, device: torch.device) -> bool:
    """Where `precision` means fp32 (`autocast_dtype` is None: `fp32`, or `auto` off CUDA), TF32 off
    for cuDNN convolutions and cuBLAS matrix products, which PyTorch otherwise lets run in TF32 on
    CUDA (10-bit mantissas: `fp32` would not be fp32); elsewhere PyTorch's defaults (cuDNN may use
    TF32, cuBLAS products stay fp32). Process-wide: the embed stage calls it (always fp32) and so
    must training, at device set-up. Returns whether fp32 is meant."""
    fp32 = autocast_dtype(precision, device) is None
    torch.backends.cudnn.allow_tf32 = not fp32
    torch.backends.cuda.matmul.allow_tf32 = False
    return fp32


def block_bytes(device: torch.device) -> int:
    """Working memory for one block of a blocked computation on `device`: 256 MiB on the CPU (the
    block stays in a fraction of a small machine's memory), a quarter of what is free on a GPU (at
    most 8 GiB: larger blocks gain nothing)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(min(free // 4, 8 * 2**30))
    return 256 * 2**20


def process_group_backend(device: torch.device) -> str:
    """The collective backend for DistributedDataParallel on `device`: NCCL on CUDA, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def rng_state() -> dict:
    """This process's torch random states: the CPU's, and, once CUDA has started, its own GPU's
    (the current device, `pick_device`; the only GPU a process draws on). Not every visible GPU's:
    a resumed run may see fewer."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_initialized() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned: its GPU state into this process's GPU. A state of several
    GPUs (saved by an earlier version, one per visible GPU) is restored only where as many are
    visible; else ValueError (the resume checkpoint does not fit this run)."""
    torch.set_rng_state(state["torch"])
    cuda = state["cuda"]
    if not cuda or not torch.cuda.is_available():
        return
    if len(cuda) == 1:
        torch.cuda.set_rng_state(cuda[0])
        return
    visible = torch.cuda.device_count()
    if len(cuda) != visible:
        raise ValueError(f"it holds the random states of {len(cuda)} GPUs but {visible} are visible")
    torch.cuda.set_rng_state_all(cuda)


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic kernels: always on the CPU (which costs nothing there); on CUDA when
    `train.deterministic` is true (cuDNN deterministic and not benchmarking, cuBLAS with a fixed
    workspace, `torch.use_deterministic_algorithms`). Call before the first CUDA operation.

    An op without a deterministic kernel warns (`warn_only=True`) instead of failing, and the
    warning is shown on every rank (`launcher.speak_for_the_run`). Not an error, because the
    study's model cannot train under the error: ConvNeXt's (and most timm models') global average
    pool is `nn.AdaptiveAvgPool2d`, whose CUDA backward torch refuses in strict mode, although with
    one output per channel each gradient element is written once (no order of additions to vary).
    So `deterministic: true` trains, and any op that could break byte-identical reruns is named on
    stderr whichever process meets it.
    """
    strict = deterministic or device.type != "cuda"
    if device.type == "cuda" and deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
        torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(strict, warn_only=True)


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


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A small host array (labels, flip flags) on `device`; pinned and non-blocking on CUDA, so the
    copy does not wait for the GPU to finish the previous step."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def to_device(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N x H x W x 3 pixels -> uint8 N x 3 x H x W tensor on `device` (non-blocking on CUDA)."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per channel


def normalise(
    images: torch.Tensor, flip: torch.Tensor | None = None, out: torch.Tensor | None = None,
    stats: Stats = (MEAN, STD),
) -> torch.Tensor:
    """uint8 images -> float, normalised with `stats` (mean, std per channel; the model's own, see
    `stages.lib.models.input_stats`); `flip` (bool per image) mirrors horizontally.

    Equal to the study's `ToTensor()` + `Normalize(mean, std)` after `RandomHorizontalFlip`:
    the same float operations in the same order, so the same bits, on the CPU and on CUDA (where
    every divisor is a tensor, see `_mean_std`). On the CPU, `out` (a float32
    tensor of the same shape, e.g. the previous batch's, no longer needed) is filled instead of a
    fresh tensor: a new 100 MB batch costs tens of thousands of page faults.
    """
    stats = (tuple(map(float, stats[0])), tuple(map(float, stats[1])))
    if images.device.type == "cpu":
        return _normalise_cpu(images, flip, out, stats)
    return _normalise_torch(images, flip, stats)


def _normalise_torch(images: torch.Tensor, flip: torch.Tensor | None, stats: Stats) -> torch.Tensor:
    """`normalise` in torch operations, for accelerators: channels-last, as the model there."""
    if flip is not None:  # on uint8, and without asking the host whether any image flips (no sync)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    x = torch.empty(images.shape, dtype=torch.float32, device=images.device, memory_format=torch.channels_last)
    x.copy_(images)
    scale, mean, std = _mean_std(x.device, stats)
    return x.div_(scale).sub_(mean).div_(std)


@functools.cache
def _mean_std(device: torch.device, stats: Stats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """255, the mean and the std as tensors on `device`, made once: `torch.tensor(..., device="cuda")`
    copies from pageable host memory, which waits for the GPU to finish all queued work. 255 too:
    CUDA divides by a Python number as a multiplication by its float32 reciprocal, which puts about
    half the pixel values 1 ulp off the division torchvision's `ToTensor` does; by a tensor, it divides."""
    mean, std = stats
    return (torch.full((1, 1, 1, 1), 255.0, device=device), torch.tensor(mean, device=device).view(1, 3, 1, 1),
            torch.tensor(std, device=device).view(1, 3, 1, 1))


@functools.cache
def _mean_std_cpu(stats: Stats) -> tuple[np.ndarray, np.ndarray]:
    mean, std = stats
    return np.array(mean, dtype=np.float32).reshape(3, 1, 1), np.array(std, dtype=np.float32).reshape(3, 1, 1)


def _normalise_cpu(
    images: torch.Tensor, flip: torch.Tensor | None, out: torch.Tensor | None, stats: Stats
) -> torch.Tensor:
    """`normalise` on the CPU, memory-bound there: one float buffer, filled image by image while
    the image is in cache (flipped through a negative-stride view, no flipped copies), instead of
    four passes over the whole batch and two more buffers for the flip. Bit-identical."""
    reusable = out is not None and out.shape == images.shape and out.dtype == torch.float32 and out.is_contiguous()
    x = out if reusable else torch.empty(images.shape, dtype=torch.float32)
    source, target = images.numpy(), x.numpy()
    mean, std = _mean_std_cpu(stats)
    mirrored = flip.tolist() if flip is not None else [False] * len(target)
    for row, out in enumerate(target):
        np.copyto(out, source[row, :, :, ::-1] if mirrored[row] else source[row], casting="unsafe")
        np.divide(out, np.float32(255.0), out=out)
        np.subtract(out, mean, out=out)
        np.divide(out, std, out=out)
    return x
