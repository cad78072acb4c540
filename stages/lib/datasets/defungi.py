"""DeFungi: 9,114 microscopic fungi patches in 5 classes (UCI dataset 773, CC BY 4.0)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stages.lib.datasets import register_dataset
from stages.lib.errors import PipelineError
from stages.lib.fetch.checksums import is_hex_digest
from stages.lib.files import IMAGE_SUFFIXES, visible
from stages.lib.validate import require

log = logging.getLogger(__name__)

CLASSES = ("H1", "H2", "H3", "H5", "H6")
COUNTS = {"H1": 4404, "H2": 2334, "H3": 819, "H5": 818, "H6": 739}


@dataclass(frozen=True)
class DefungiSource:
    """`sources.defungi`: the archive and its sha256 (null: record on first download, then pin)."""

    url: str
    sha256: str | None

    def check(self, where: str) -> None:
        require(self.url.startswith(("http://", "https://", "file://")), f"{where}.url", "an http(s) URL", self.url)
        require(
            self.sha256 is None or is_hex_digest(self.sha256),
            f"{where}.sha256", "64 lowercase hex digits or null", self.sha256,
        )


def patch_group(relpath: str) -> str:
    """Patches cut from one raw image share a prefix: `H1/H1_100a_1.jpg` -> `H1_100a`."""
    stem = Path(relpath).stem
    head, sep, tail = stem.rpartition("_")
    return head if sep and tail.isdigit() else stem


def _class_images(root: Path) -> dict[str, list[Path]]:
    """The image files of each H1..H6 folder, wherever the archive put them (any nesting).

    A class folder inside another of the same name (`H1/H1/`) is read once, through the outer.
    """
    folders: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir() and path.name in CLASSES and visible(path, root):
            if not any(outer in path.parents for outer in folders.get(path.name, [])):
                folders.setdefault(path.name, []).append(path)
    return {
        name: sorted(
            p for folder in found for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and visible(p, root)
        )
        for name, found in folders.items()
    }


@register_dataset(
    "defungi",
    DefungiSource,
    "DeFungi: 9,114 microscope patches, 5 classes (CC BY 4.0), from the UCI repository",
    group_of=patch_group,
    needs_network=True,
    expected_classes=len(CLASSES),
    expected_total=sum(COUNTS.values()),
    expected_per_class=COUNTS,
    annotation_prefix="micro",
    study_test_per_class=148,
)
def fetch_defungi(source: DefungiSource, images_dir: Path, cache_dir: Path) -> None:
    """Download and check the archive, then keep the images of each class folder.

    The class folders H1, H2, H3, H5, H6 may sit at the top or nested, possibly inside an inner
    zip (one per class, or one for all); macOS debris (`__MACOSX/`, `._*`) is skipped.
    """
    from stages.lib.fetch.archives import extract
    from stages.lib.fetch.downloads import download

    target = cache_dir / "defungi.zip"  # a mirror's file name may differ; the format is read from the bytes
    download(source.url, target, sha256=source.sha256, pin_as="sources.defungi.sha256")
    with tempfile.TemporaryDirectory(prefix=".extract.", dir=cache_dir) as tmp:
        work = Path(tmp)
        extract(target, work / "outer")
        images = _class_images(work / "outer")
        if not images:  # the data may be wrapped in inner zips; open one level of them
            inner = sorted(p for p in (work / "outer").rglob("*.zip") if visible(p, work / "outer"))
            for index, archive in enumerate(inner):
                extract(archive, work / f"inner{index}" / archive.stem)
            images = _class_images(work)
        if not any(images.values()):
            raise PipelineError(
                f"defungi: {target} has no images in class folders {', '.join(CLASSES)}; "
                "is sources.defungi.url the DeFungi archive?"
            )
        for name, paths in images.items():
            out = images_dir / name
            out.mkdir(parents=True, exist_ok=True)
            for path in paths:
                if (out / path.name).exists():
                    if (out / path.name).read_bytes() == path.read_bytes():
                        continue  # the same patch twice in the archive
                    raise PipelineError(
                        f"defungi: {target} holds two different {name}/{path.name}; is sources.defungi.url the "
                        "DeFungi archive?"
                    )
                shutil.move(str(path), out / path.name)
    log.info("defungi: %d images in %d classes", sum(map(len, images.values())), len(images))
