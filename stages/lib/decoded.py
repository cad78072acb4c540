"""The decode-once cache: every image of a split, RGB, resized, as one uint8 array on disk.

Training and embedding read these memory-mapped arrays instead of decoding JPEGs on every read;
flip and normalisation happen later, in batches, on the device.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from stages.lib.atomic import atomic_path
from stages.lib.errors import PipelineError
from stages.lib.images import load_resized


def decode_to_file(paths: Sequence[Path], size: int, out: Path, desc: str = "decode") -> None:
    """Decode `paths` into `out` (.npy, uint8, N x size x size x 3), atomically."""
    with atomic_path(out) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        workers = max(1, min(8, os.cpu_count() or 1))
        # load_rgb refuses images above Pillow's limit itself; keep Pillow's warning about them
        # quiet (set once here, in this thread: warning filters are process-wide, not thread-safe).
        with warnings.catch_warnings(), ThreadPoolExecutor(workers) as pool:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            results = pool.map(lambda p: load_resized(p, size), paths)
            bar = tqdm(results, total=len(paths), desc=desc, unit="img", leave=False, disable=None)  # terminal only
            for index, pixels in enumerate(bar):
                array[index] = pixels
        array.flush()
        del array


def open_decoded(path: Path, expected_rows: int | None = None, size: int | None = None) -> np.ndarray:
    """Memory-map a decoded split, checking its shape against the table it came from."""
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the decode stage first (dvc repro)") from None
    except ValueError as exc:
        raise PipelineError(f"{path} is not a decoded image array ({exc}); re-run the decode stage") from None
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3:
        raise PipelineError(f"{path} holds {array.dtype} {array.shape}, not N x H x W x 3 uint8; re-run decode")
    if expected_rows is not None and array.shape[0] != expected_rows:
        raise PipelineError(
            f"{path} has {array.shape[0]} images but its split table has {expected_rows}; re-run decode"
        )
    if size is not None and array.shape[1:3] != (size, size):
        raise PipelineError(
            f"{path} holds {array.shape[1]}x{array.shape[2]} images but model.image_size is {size}; re-run decode"
        )
    return array
