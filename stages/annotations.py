"""annotations: the study's own split lists into `data/raw/annotations/`, from Google Drive or a mirror.

With `split.source: annotations` the files of the study's public Google Drive folder
(`sources.annotations.drive_folder`, fetched with gdown), or of the archive at
`sources.annotations.url`, are kept flat in the output folder with `source.json` (where they came
from, their sha256). With `split.source: generated` nothing is downloaded: the folder holds only
`unused.json`. The folder appears whole or not at all.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from stages.lib import cli
from stages.lib.atomic import atomic_dir, write_json
from stages.lib.errors import PipelineError, stage_main
from stages.lib.files import visible
from stages.lib.params import AnnotationsSource

log = logging.getLogger("stages.annotations")


def collect(root: Path, origin: str) -> dict[str, Path]:
    """The study's files anywhere under `root` (Drive and archives may nest them), by file name.

    Skips hidden files and macOS `__MACOSX` folders; the same name twice with different content
    is an error, since the split could not know which one is meant.
    """
    from stages.lib.annotations import is_annotation_file

    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or not visible(path, root):
            continue
        if not is_annotation_file(path.name):
            continue
        if path.name in found and found[path.name].read_bytes() != path.read_bytes():
            raise PipelineError(
                f"{origin} holds two different files named {path.name} ({found[path.name].relative_to(root)} and "
                f"{path.relative_to(root)}); keep one in the mirror, or point sources.annotations elsewhere"
            )
        found.setdefault(path.name, path)
    if not any(name.endswith("_train.txt") for name in found):
        raise PipelineError(
            f"{origin} holds none of the study's split lists (e.g. pet_train.txt, micro_train.txt); check "
            "sources.annotations in params.yaml, or set split.source: generated"
        )
    return found


def fetch(source: AnnotationsSource, work: Path, cache: Path) -> tuple[Path, dict]:
    """Download the annotation files under `work`; returns (their folder, a description of the source)."""
    from stages.lib.fetch.archives import extract
    from stages.lib.fetch.downloads import download
    from stages.lib.fetch.drive import download_drive_folder

    if source.url is None:
        download_drive_folder(source.drive_folder, work / "drive")
        return work / "drive", {"drive_folder": source.drive_folder}
    name = Path(source.url.split("?")[0].rstrip("/")).name or "annotations.zip"
    archive = cache / name
    result = download(source.url, archive, sha256=source.sha256, pin_as="sources.annotations.sha256")
    extract(archive, work / "archive")
    return work / "archive", {"url": source.url, "sha256": result["sha256"]}


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("annotations", __doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (data/raw/annotations)")
    p.add_argument("--cache", type=Path, required=True, help="folder kept between runs for the archive")
    args = p.parse_args(argv)
    from stages.lib.annotations import SOURCE_FILE, UNUSED_FILE  # imported only now: `--help` answers at once
    from stages.lib.fetch.checksums import file_digest

    params = cli.params_of(args)
    with atomic_dir(args.out) as tmp:
        if params.split.source != "annotations":
            write_json(tmp / UNUSED_FILE, {"split.source": params.split.source, "used": False})
            log.info("split.source is %s: the study's annotation files are not used", params.split.source)
            return
        source = params.sources["annotations"]
        args.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".work.", dir=args.cache) as work:
            folder, origin = fetch(source, Path(work), args.cache)
            files = collect(folder, source.url or f"Google Drive folder {source.drive_folder}")
            for name, path in files.items():
                shutil.copyfile(path, tmp / name)
        checksums = {name: file_digest(tmp / name, "sha256") for name in sorted(files)}
        write_json(tmp / SOURCE_FILE, {**origin, "files": checksums})
    log.info("annotations: %d files -> %s", len(files), args.out)


if __name__ == "__main__":
    main()
