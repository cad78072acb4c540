"""Your own labelled images as a dataset, from `params.yaml` alone.

Two shapes of `sources.<name>` define one, under any name that is not registered:

- `{folder: PATH}`: one sub-folder per class (torchvision's `ImageFolder` layout), images at any
  depth below it; PNG, JPEG, WebP, BMP and TIFF by suffix, in any case. Hidden files and folders
  and archive debris (`__MACOSX/`, `Thumbs.db`, `desktop.ini`) are skipped.
- `{csv: FILE, root: FOLDER}`: a table with columns `path` (relative to `root`) and `label`,
  optionally `group` (images of one source or subject, kept on one side of every split) and
  `split` (`train`, `val` or `test`: your own split, used as given).

A relative PATH, FILE or FOLDER is relative to the folder of `params.yaml` (the repository).
The download stage copies the images into `data/raw/<name>/images/<class>/...`, the layout every
later stage reads; every check below runs before anything is written.
"""

from __future__ import annotations

import csv
import logging
import os
import posixpath
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.lib.errors import PipelineError
from stages.lib.files import IMAGE_SUFFIXES
from stages.lib.files import hidden as _hidden
from stages.lib.validate import require

if TYPE_CHECKING:
    from stages.lib.datasets import DatasetSpec

log = logging.getLogger(__name__)

FORMATS = "PNG, JPEG, WebP, BMP or TIFF"
COLUMNS = ("path", "label")
OPTIONAL_COLUMNS = ("group", "split")
SPLIT_NAMES = ("train", "val", "test")
GENERATED_MIN_GROUPS = 3  # a generated split gives each class at least one group in train, val and test


@dataclass(frozen=True)
class FolderSource:
    """`sources.<name>: {folder: PATH}`: a folder with one sub-folder per class."""

    folder: str

    def check(self, where: str) -> None:
        require(bool(self.folder.strip()), f"{where}.folder", "the path of a folder of class folders", self.folder)


@dataclass(frozen=True)
class TableSource:
    """`sources.<name>: {csv: FILE, root: FOLDER}`: a CSV of image paths (relative to root) and labels."""

    csv: str
    root: str

    def check(self, where: str) -> None:
        require(bool(self.csv.strip()), f"{where}.csv", "the path of a CSV file (columns path, label)", self.csv)
        require(bool(self.root.strip()), f"{where}.root", "the folder the CSV's paths are relative to", self.root)


OWN_SOURCES = (FolderSource, TableSource)
SHAPES = "{folder: PATH} or {csv: FILE, root: FOLDER}"


def own_source_type(value: Any) -> type | None:
    """The source class a `sources.<name>` mapping has the shape of (by its keys), or None."""
    if not isinstance(value, dict):
        return None
    if "folder" in value:
        return FolderSource
    if "csv" in value or "root" in value:
        return TableSource
    return None


def is_own(source: Any) -> bool:
    """Whether a converted `sources.<name>` section is a dataset of your own."""
    return isinstance(source, OWN_SOURCES)


def resolve(text: str, base: Path) -> Path:
    """`text` as an absolute path: `~` expanded, a relative one taken from `base` (the repository)."""
    return Path(os.path.abspath(Path(base) / os.path.expanduser(text)))


def origin(name: str, source: Any, base: Path) -> str:
    """Where the dataset's images come from, as a message names it."""
    if isinstance(source, FolderSource):
        return str(resolve(source.folder, base))
    return str(resolve(source.csv, base))


@dataclass(frozen=True)
class OwnImage:
    """One image of your dataset: where it is, its class, and where it goes under `images/`."""

    source: Path  # the file as you keep it
    cls: str
    rel: str  # its path below images/<cls>/ (posix)
    where: str  # how a message names it: the file, or "<csv>, line N"
    group: str = ""  # "" = its own group
    split: str = ""  # "" = generated from seed

    @property
    def path(self) -> str:
        """Its manifest path."""
        return f"images/{self.cls}/{self.rel}"


@dataclass
class OwnListing:
    """Every image of the dataset, where they were listed (the folder or the CSV), and what was left out."""

    images: list[OwnImage]
    where: Path
    table: bool  # listed by a CSV (else found in a folder of class folders)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # what -> examples, for the log


def check_present(name: str, source: Any, base: Path) -> None:
    """The folder, or the CSV and its root, exist; else one line naming the path and the key."""
    if isinstance(source, FolderSource):
        _need(resolve(source.folder, base), f"sources.{name}.folder", "folder",
              "a folder with one sub-folder per class")
    else:
        _need(resolve(source.csv, base), f"sources.{name}.csv", "file", "a CSV file with columns path and label")
        _need(resolve(source.root, base), f"sources.{name}.root", "folder", "the folder the CSV's paths start from")


def _need(path: Path, key: str, kind: str, what: str) -> None:
    found = path.is_dir() if kind == "folder" else path.is_file()
    if not found:
        state = "is not a " + kind if path.exists() else "not found"
        raise PipelineError(
            f"{key}: {path} {state}; set it to {what} (a relative path is relative to the repository)"
        )


LINKED = "linked folders (DVC would not see changes inside them)"


def _walk_files(folder: Path) -> Iterator[tuple[Path, str]]:
    """(file, why skipped or "") below `folder`, sorted; hidden parts and debris pruned, folder links not followed.

    DVC does not look inside a linked folder below the one it watches either, so a change there
    would not rerun anything: such folders are skipped (and reported).
    """
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for d in list(dirs):
            if (here / d).is_symlink():
                dirs.remove(d)
                yield here / d, LINKED
        for name in sorted(files):
            if _hidden(name):
                continue
            path = here / name
            yield path, "" if path.suffix.lower() in IMAGE_SUFFIXES else f"files that are not {FORMATS} (by suffix)"


def folder_images(name: str, source: FolderSource, base: Path) -> OwnListing:
    """Every image of `folder/<class>/...`, classes and files sorted; one line for anything missing."""
    check_present(name, source, base)
    folder = resolve(source.folder, base)
    listing = OwnListing([], folder, table=False)
    classes = []
    for entry in sorted(folder.iterdir()):
        if _hidden(entry.name):
            continue
        if entry.is_symlink() and entry.is_dir():
            listing.skipped.setdefault(LINKED, []).append(entry.name)
        elif entry.is_dir():
            classes.append(entry)
        elif entry.is_file():
            listing.skipped.setdefault("files outside any class folder", []).append(entry.name)
    if len(classes) < 2:
        found = f" ({', '.join(c.name for c in classes)})" if classes else ""
        raise PipelineError(
            f"{folder} has {len(classes)} class folder(s){found}; the comparison needs at least 2: "
            "put each class's images in a sub-folder named after the class"
        )
    for class_dir in classes:
        count = 0
        for path, why in _walk_files(class_dir):
            rel = path.relative_to(folder).as_posix()
            if why:
                listing.skipped.setdefault(why, []).append(rel)
                continue
            listing.images.append(
                OwnImage(path, class_dir.name, path.relative_to(class_dir).as_posix(), str(path))
            )
            count += 1
        if count == 0:
            raise PipelineError(
                f"class folder {class_dir} holds no images ({FORMATS}); add some, or remove the folder"
            )
    return listing


def table_images(name: str, source: TableSource, base: Path) -> OwnListing:
    """Every row of the CSV as an image, in the table's order; one line naming the row for any bad one."""
    check_present(name, source, base)
    table, root = resolve(source.csv, base), resolve(source.root, base)
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{table} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise PipelineError(f"{table} is not a readable CSV ({exc}); fix the file") from None
    columns = [c.strip() for c in header or []]
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise PipelineError(
            f"{table} has no {' or '.join(missing)} column (its header: {', '.join(columns) or 'none'}); "
            "the first line must name the columns path and label (optional: group, split)"
        )
    repeated = [c for c, n in Counter(columns).items() if n > 1 and c in COLUMNS + OPTIONAL_COLUMNS]
    if repeated:
        raise PipelineError(f"{table} names the column {repeated[0]} twice; keep one")
    index = {c: columns.index(c) for c in COLUMNS + OPTIONAL_COLUMNS if c in columns}
    images, first_line = [], {}
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        at = f"{table}, line {line}"
        cells = {c: (row[i].strip() if i < len(row) else "") for c, i in index.items()}
        rel = _inside(cells["path"], root, at)
        label = cells["label"]
        if not label:
            raise PipelineError(f"{at}: the label is empty; give every row a label, or remove the row")
        if "/" in label or "\\" in label or label.startswith("."):
            raise PipelineError(
                f"{at}: label {label!r} cannot name a class folder (it has '/' or '\\' or starts with '.'); rename it"
            )
        split = cells.get("split", "")
        if "split" in index and split not in SPLIT_NAMES:
            raise PipelineError(
                f"{at}: split {split!r} is not one of train, val, test; fix it (with a split column every row "
                "needs one), or remove the column to have splits generated from seed"
            )
        if rel in first_line:
            raise PipelineError(
                f"{at}: {rel} is already listed on line {first_line[rel]}; list each image once"
            )
        first_line[rel] = line
        path = root / rel
        if not path.is_file():
            state = "is not a file" if path.exists() else "not found"
            raise PipelineError(
                f"{at}: {path} {state}; fix the path (relative to root {root}) or remove the row"
            )
        images.append(OwnImage(path, label, rel, at, group=cells.get("group", ""), split=split))
    if not images:
        raise PipelineError(f"{table} lists no images; add rows of path,label")
    labels = sorted({image.cls for image in images})
    if len(labels) < 2:
        raise PipelineError(
            f"{table} has {len(labels)} label(s) ({', '.join(labels)}); the comparison needs at least 2 classes: "
            "label the images of each class differently"
        )
    return OwnListing(images, table, table=True)


def _inside(text: str, root: Path, at: str) -> str:
    """A CSV path as a normalised posix path inside `root`; one line if it is empty or leads out."""
    if not text:
        raise PipelineError(f"{at}: the path is empty; give every row the image's path, or remove the row")
    path = text
    if posixpath.isabs(path):
        try:
            path = Path(path).relative_to(root).as_posix()
        except ValueError:
            raise PipelineError(
                f"{at}: {text} is outside root {root}; give paths relative to root, or move root up"
            ) from None
    rel = posixpath.normpath(path)
    if rel == ".." or rel.startswith("../"):
        raise PipelineError(f"{at}: {text} leads outside root {root}; give paths relative to root, or move root up")
    if rel == ".":
        raise PipelineError(f"{at}: the path {text!r} names root itself, not an image; fix it")
    hidden = [part for part in rel.split("/") if part.startswith(".")]
    if hidden:
        raise PipelineError(f"{at}: {text} has a hidden part ({hidden[0]}), which is skipped; rename it")
    return rel


def check_classes(listing: OwnListing) -> None:
    """The dataset can be split: with a split column, every class in every split and no group in
    two; without, at least 3 groups per class (the generated split's minimum) and no group in two classes."""
    images, where = listing.images, listing.where
    if any(image.split for image in images):
        seen: dict[str, set[str]] = defaultdict(set)
        for image in images:
            seen[image.cls].add(image.split)
        for cls in sorted(seen):
            for split in SPLIT_NAMES:
                if split not in seen[cls]:
                    raise PipelineError(
                        f"{where}: label {cls!r} has no {split} rows; every class needs train, val and test images: "
                        f"set the split of some of its rows to {split}, or remove the split column"
                    )
        _groups_in_one(images, lambda image: image.split, "split", "move the group's rows to one split")
        return
    _groups_in_one(images, lambda image: image.cls, "label",
                   "give the group one label, or leave its group empty to split freely")
    groups: dict[str, set[str]] = defaultdict(set)
    for image in images:
        groups[image.cls].add(image.group or image.path)
    for cls in sorted(groups):
        count = sum(image.cls == cls for image in images)
        if len(groups[cls]) < GENERATED_MIN_GROUPS:
            grouped = count != len(groups[cls])
            found = f"{count} image(s)" + (f" in {len(groups[cls])} group(s)" if grouped else "")
            place = f"{where}: label {cls!r}" if listing.table else f"class folder {where / cls}"
            raise PipelineError(
                f"{place} has {found}; a generated split needs at least {GENERATED_MIN_GROUPS} "
                f"{'groups' if grouped else 'images'} per class (one each for train, val and test): add images to "
                "that class, or remove it"
            )


def _groups_in_one(images: list[OwnImage], key: Callable[[OwnImage], str], what: str, fix: str) -> None:
    """No named group spans two values of `key` (two labels, or two splits)."""
    first: dict[str, OwnImage] = {}
    for image in images:
        if not image.group:
            continue
        other = first.setdefault(image.group, image)
        if key(other) != key(image):
            raise PipelineError(
                f"{image.where}: group {image.group!r} is {what} {key(image)!r} here but {key(other)!r} on "
                f"{other.where.rpartition(', ')[2]}; a group must lie on one side of every split: {fix}"
            )


def copy_images(images: list[OwnImage], images_dir: Path, workers: int | None = None) -> None:
    """Copy every image to `images_dir/<class>/<rel>` and decode it once (as `decode` will), in threads;
    the first failure in listing order is raised, naming the file (and line)."""
    from stages.lib.images import load_rgb

    def one(image: OwnImage) -> None:
        target = images_dir / image.cls / image.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(image.source, target)
        except OSError as exc:
            raise PipelineError(
                f"{image.where}: cannot read {image.source} ({exc.strerror or exc}); make it readable, or remove it"
            ) from None
        try:
            load_rgb(image.source, draft=True)
        except PipelineError as exc:
            prefix = "" if image.where == str(image.source) else f"{image.where}: "
            raise PipelineError(f"{prefix}{exc}") from None

    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(one, images):
            pass


def log_skipped(name: str, listing: OwnListing) -> None:
    """One warning per kind of file left out, with the first few."""
    for what, examples in listing.skipped.items():
        shown = ", ".join(examples[:3]) + (", ..." if len(examples) > 3 else "")
        log.warning("%s: skipped %d %s: %s", name, len(examples), what, shown)


def list_images(name: str, source: Any, base: Path) -> OwnListing:
    """Every image of dataset `name`, checked (paths, labels, groups, splits), in a fixed order."""
    listing = folder_images(name, source, base) if isinstance(source, FolderSource) else \
        table_images(name, source, base)
    check_classes(listing)
    return listing


def fetch_own(name: str, source: Any, base: Path, images_dir: Path) -> dict[str, dict[str, str]]:
    """Check and copy dataset `name` into `images_dir`; return the manifest's group (and split) per path."""
    listing = list_images(name, source, base)
    log_skipped(name, listing)
    copy_images(listing.images, images_dir)
    images = listing.images
    extra = {"group": {image.path: image.group or f"{image.cls}/{image.rel}" for image in images}}
    if any(image.split for image in images):
        extra["split"] = {image.path: image.split for image in images}
    log.info("%s: %d images in %d classes from %s", name, len(images), len({i.cls for i in images}), listing.where)
    return extra


def own_spec(name: str, source: Any, base: Path) -> DatasetSpec:
    """The spec of a dataset of your own: not registered, made from its `sources.<name>` section."""
    from stages.lib.datasets import DatasetSpec

    kind = "a folder of class folders" if isinstance(source, FolderSource) else "a CSV of paths and labels"
    return DatasetSpec(
        name=name,
        params_type=type(source),
        fetch=lambda src, images_dir, cache_dir: fetch_own(name, src, base, images_dir),
        description=f"your own: {kind}, {origin(name, source, base)}",
        group_of=lambda rel: rel.partition("/")[2],  # "class/a/b.png" -> group "class/a/b.png" (its own)
        origin=origin(name, source, base),
    )
