"""DeFungi: 9,114 microscopic fungi patches in 5 classes (UCI dataset 773, CC BY 4.0)."""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from stages.lib.datasets import register_dataset
from stages.lib.errors import PipelineError
from stages.lib.params import _require

log = logging.getLogger(__name__)

CLASSES = ("H1", "H2", "H3", "H5", "H6")
COUNTS = {"H1": 4404, "H2": 2334, "H3": 819, "H5": 818, "H6": 739}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class DefungiSource:
    """`sources.defungi`: the archive and its sha256 (null: record on first download, then pin)."""

    url: str
    sha256: str | None

    def check(self, where: str) -> None:
        _require(self.url.startswith(("http://", "https://", "file://")), f"{where}.url", "an http(s) URL", self.url)
        _require(
            self.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", self.sha256) is not None,
            f"{where}.sha256", "64 lowercase hex digits or null", self.sha256,
        )


def patch_group(relpath: str) -> str:
    """Patches cut from one raw image share a prefix: `H1/H1_100a_1.jpg` -> `H1_100a`."""
    stem = Path(relpath).stem
    head, sep, tail = stem.rpartition("_")
    return head if sep and tail.isdigit() else stem


def _class_folders(root: Path) -> dict[str, Path]:
    """Find the H1..H6 folders wherever the archive put them (one level of nesting or more)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir() and path.name in CLASSES and path.name not in found:
            found[path.name] = path
    return found


@register_dataset(
    "defungi",
    DefungiSource,
    "DeFungi: 9,114 microscope patches, 5 classes (CC BY 4.0), from the UCI repository",
    smallest_class=lambda source: COUNTS["H6"],
    group_of=patch_group,
    needs_network=True,
    expected_classes=len(CLASSES),
    expected_total=sum(COUNTS.values()),
    expected_per_class=COUNTS,
)
def fetch_defungi(source: DefungiSource, images_dir: Path, cache_dir: Path) -> None:
    """Download and check the archive, then keep the images of each class folder."""
    from stages.lib.fetch import download, extract

    target = cache_dir / (Path(source.url.split("?")[0]).name or "defungi.zip")
    result = download(source.url, target, sha256=source.sha256)
    if source.sha256 is None:
        log.warning(
            "defungi: sources.defungi.sha256 is null; the archive downloaded has sha256 %s. "
            "Pin it in params.yaml to verify future downloads.",
            result["sha256"],
        )
    work = cache_dir / "extracted"
    if work.exists():
        shutil.rmtree(work)
    extract(target, work)
    folders = _class_folders(work)
    if not folders:
        # The UCI archive may wrap the data in an inner zip; open one level of nesting.
        inner = sorted(work.rglob("*.zip"))
        for index, archive in enumerate(inner):
            extract(archive, work / f"inner{index}")
        folders = _class_folders(work)
    if not folders:
        shutil.rmtree(work)
        raise PipelineError(
            f"defungi: {target} has no class folders {', '.join(CLASSES)}; "
            "is sources.defungi.url the DeFungi archive?"
        )
    for name, folder in folders.items():
        out = images_dir / name
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                shutil.move(str(path), out / path.name)
    shutil.rmtree(work)
