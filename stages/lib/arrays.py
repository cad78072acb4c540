"""Byte-reproducible `.npz` files (numpy's own stamp the current time into the zip)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from stages.lib.atomic import atomic_path
from stages.lib.errors import PipelineError

_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like `np.savez` (uncompressed), but with fixed zip timestamps and sorted members, atomically."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read the named arrays of an `.npz`, with a clear error if it is missing or incomplete."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise PipelineError(f"{path} lacks {', '.join(missing)}; re-run the stage that writes it")
            return {k: data[k] for k in keys}
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the stage that writes it first (dvc repro)") from None
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise PipelineError(f"{path} is corrupt ({exc}); re-run the stage that writes it") from None
