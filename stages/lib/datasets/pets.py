"""Oxford-IIIT Pet: 37 cat and dog breeds, 7,349 images, from the Oxford VGG server."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stages.lib.datasets import register_dataset
from stages.lib.errors import PipelineError
from stages.lib.fetch.checksums import is_hex_digest
from stages.lib.files import visible
from stages.lib.validate import require

log = logging.getLogger(__name__)

_BREED = re.compile(r"^(?P<breed>.+)_(?P<number>\d+)$")


@dataclass(frozen=True)
class RemoteFile:
    """A file to download and the md5 it must have (null: not checked)."""

    url: str
    md5: str | None

    def check(self, where: str) -> None:
        require(self.url.startswith(("http://", "https://", "file://")), f"{where}.url", "an http(s) URL", self.url)
        require(
            self.md5 is None or is_hex_digest(self.md5, "md5"),
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


IMAGES_IN_ARCHIVE = 7390  # JPEGs in images.tar.gz; the official lists (list.txt) name 7,349 of them


@register_dataset(
    "pets",
    PetsSource,
    "Oxford-IIIT Pet: 37 breeds, 7,390 images (CC BY-SA 4.0), downloaded from the VGG server",
    needs_network=True,
    expected_classes=37,
    expected_total=IMAGES_IN_ARCHIVE,
    annotation_prefix="pet",
    study_test_per_class=40,
)
def fetch_pets(source: PetsSource, images_dir: Path, cache_dir: Path) -> None:
    """Download and check both archives, then lay the JPEGs out one folder per breed.

    `images.tar.gz` holds `images/<Breed>_<n>.jpg` (and a few .mat files, skipped); every JPEG is
    kept, so that lists naming any of them resolve. `annotations.tar.gz` gives the official
    `trainval.txt`, `test.txt` and `list.txt`, kept beside the images in `official/`.
    """
    from stages.lib.fetch.archives import extract
    from stages.lib.fetch.downloads import download

    archives = {}
    for key, remote in (("images", source.images), ("annotations", source.annotations)):
        archives[key] = cache_dir / f"{key}.tar.gz"  # the server's names; a mirror's may differ
        download(remote.url, archives[key], md5=remote.md5)
    with tempfile.TemporaryDirectory(prefix=".extract.", dir=cache_dir) as tmp:
        work = Path(tmp)
        extract(archives["images"], work / "images")
        jpgs = sorted(
            p for p in (work / "images").rglob("*")
            if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg") and visible(p, work / "images")
        )
        if not jpgs:
            raise PipelineError(
                f"pets: {archives['images']} holds no .jpg files; is sources.pets.images.url the Pet images archive?"
            )
        for path in jpgs:
            folder = images_dir / breed_of(path.name)
            folder.mkdir(parents=True, exist_ok=True)
            if (folder / path.name).exists():
                raise PipelineError(
                    f"pets: {archives['images']} holds {path.name} twice; is sources.pets.images.url the Pet images "
                    "archive?"
                )
            shutil.move(str(path), folder / path.name)
        extract(archives["annotations"], work / "annotations")
        official = images_dir.parent / "official"
        for name in ("trainval.txt", "test.txt", "list.txt"):
            found = sorted(p for p in (work / "annotations").rglob(name) if visible(p, work / "annotations"))
            if not found:
                raise PipelineError(
                    f"pets: {archives['annotations']} has no {name}; is sources.pets.annotations.url the Pet "
                    "annotations archive?"
                )
            official.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found[0], official / name)
        listed = sum(1 for line in (official / "list.txt").read_text().splitlines() if line and line[0] != "#")
    log.info(
        "pets: %d images in %d breeds (the official lists name %d of them)",
        len(jpgs), len({breed_of(p.name) for p in jpgs}), listed,
    )
