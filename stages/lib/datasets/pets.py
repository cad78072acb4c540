"""Oxford-IIIT Pet: 37 cat and dog breeds, 7,349 images, from the Oxford VGG server."""

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

_BREED = re.compile(r"^(?P<breed>.+)_(?P<number>\d+)$")


@dataclass(frozen=True)
class RemoteFile:
    """A file to download and the md5 it must have (null: not checked)."""

    url: str
    md5: str | None

    def check(self, where: str) -> None:
        _require(self.url.startswith(("http://", "https://", "file://")), f"{where}.url", "an http(s) URL", self.url)
        _require(
            self.md5 is None or re.fullmatch(r"[0-9a-f]{32}", self.md5) is not None,
            f"{where}.md5", "32 lowercase hex digits or null", self.md5,
        )


@dataclass(frozen=True)
class PetsSource:
    """`sources.pets`: the images and annotations archives."""

    images: RemoteFile
    annotations: RemoteFile

    def check(self, where: str) -> None:
        self.images.check(f"{where}.images")
        self.annotations.check(f"{where}.annotations")


def breed_of(file_name: str) -> str:
    """`Abyssinian_12.jpg` -> `Abyssinian`; `american_bulldog_3.jpg` -> `american_bulldog`."""
    match = _BREED.match(Path(file_name).stem)
    if not match:
        raise PipelineError(f"pets: cannot read a breed from file name {file_name!r} (expected <breed>_<number>.jpg)")
    return match.group("breed")


@register_dataset(
    "pets",
    PetsSource,
    "Oxford-IIIT Pet: 37 breeds, 7,349 images (CC BY-SA 4.0), downloaded from the VGG server",
    needs_network=True,
    expected_classes=37,
    expected_total=7349,
)
def fetch_pets(source: PetsSource, images_dir: Path, cache_dir: Path) -> None:
    """Download and check both archives, then lay the JPEGs out one folder per breed."""
    from stages.lib.fetch import download, extract

    archives = {}
    for key, remote in (("images", source.images), ("annotations", source.annotations)):
        target = cache_dir / Path(remote.url.split("?")[0]).name
        download(remote.url, target, md5=remote.md5)
        archives[key] = target
    work = cache_dir / "extracted"
    if work.exists():
        shutil.rmtree(work)
    extract(archives["images"], work / "images")
    extract(archives["annotations"], work / "annotations")
    jpgs = sorted(p for p in (work / "images").rglob("*") if p.is_file() and p.suffix.lower() == ".jpg")
    if not jpgs:
        raise PipelineError(f"pets: {archives['images']} holds no .jpg files; is sources.pets.images.url right?")
    for path in jpgs:
        folder = images_dir / breed_of(path.name)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), folder / path.name)
    official = images_dir.parent / "official"
    for name in ("trainval.txt", "test.txt", "list.txt"):
        found = sorted((work / "annotations").rglob(name))
        if found:
            official.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found[0], official / name)
    shutil.rmtree(work)
    log.info("pets: %d images in %d breeds", len(jpgs), len({breed_of(p.name) for p in jpgs}))
