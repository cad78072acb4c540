"""The raw dataset's manifest: every image file with its class, source group, size and checksum."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from stages.lib.errors import PipelineError
from stages.lib.files import visible
from stages.lib.tables import read_csv

MANIFEST = "manifest.csv"
IMAGES = "images"


def scan(root: Path, group_of: Callable[[str], str]) -> pd.DataFrame:
    """List `root/images/<class>/<file>` (files at any depth below the class folder; hidden ones
    and debris skipped) as a manifest sorted by path; empty classes are errors."""
    images = root / IMAGES
    folders = sorted(p for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
    if not folders:
        raise PipelineError(f"{images} holds no class folders; the dataset download produced nothing")
    rows = []
    for folder in folders:
        files = sorted(
            p for p in folder.rglob("*")
            if p.is_file() and visible(p, folder)
        )
        if not files:
            raise PipelineError(f"class folder {folder} is empty; every class needs images")
        for path in files:
            rel = path.relative_to(root).as_posix()
            data = path.read_bytes()
            rows.append(
                {
                    "path": rel,
                    "class": folder.name,
                    "group": f"{folder.name}/{group_of(path.relative_to(images).as_posix())}",
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
    return pd.DataFrame(rows, columns=["path", "class", "group", "bytes", "sha256"])


def read_manifest(root: Path) -> pd.DataFrame:
    """The manifest of a downloaded dataset, or a clear error if the download did not finish."""
    path = root / MANIFEST
    table = read_csv(path, "download", dtype={"path": str, "class": str, "group": str}, keep_default_na=False)
    if table.empty:
        raise PipelineError(f"{path} lists no images; re-run the download stage")
    return table
