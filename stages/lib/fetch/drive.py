"""A public Google Drive folder, downloaded with gdown into a folder whole or not at all."""

from __future__ import annotations

import logging
from pathlib import Path

from stages.lib.atomic import atomic_dir
from stages.lib.errors import PipelineError
from stages.lib.fetch.archives import list_files, reason

log = logging.getLogger(__name__)


def download_drive_folder(folder_id: str, dest_dir: Path) -> list[str]:
    """Download a public Google Drive folder into `dest_dir` (whole or not at all) with gdown.

    Returns the sorted posix paths of the downloaded files, relative to `dest_dir`.
    """
    dest_dir = Path(dest_dir)
    hint = (
        "`sources.annotations.url` in params.yaml can point at an archive (zip or tar) of the "
        "same files instead"
    )
    try:
        import gdown
    except ImportError:
        raise PipelineError(
            f"could not fetch Google Drive folder {folder_id}: the gdown package is not "
            f"installed (pip install gdown); {hint}"
        ) from None
    with atomic_dir(dest_dir) as tmp:
        try:
            result = gdown.download_folder(id=folder_id, output=str(tmp), quiet=False)
        except Exception as exc:  # noqa: BLE001 -- gdown raises many types (HTTP, quota...)
            raise PipelineError(
                f"could not fetch Google Drive folder {folder_id} ({reason(exc)}); the folder "
                f"may be private, moved or over its download quota; {hint}"
            ) from None
        files = list_files(tmp)
        if result is None or not files:
            raise PipelineError(
                f"could not fetch Google Drive folder {folder_id} (gdown downloaded nothing); "
                f"the folder may be private, empty, moved or over its download quota; {hint}"
            )
    log.info(
        "downloaded %d files from Google Drive folder %s to %s", len(files), folder_id, dest_dir
    )
    return files
