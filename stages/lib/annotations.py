"""The study's own split lists: read defensively, re-rooted onto the downloaded images.

Per dataset prefix `p` (`pet`, `micro`), and with `low_data_` in front for the 15-shot runs:
`<p>_train.txt`, `<p>_val.txt`, `<p>_test.txt` hold one image path per line;
`<p>_triplet_train.txt`, `<p>_triplet_val.txt` hold `anchor_path positive_class negative_class`;
`<p>_labels.json` maps class name -> integer. Paths are absolute on the authors' machine: their
last two components, `<class>/<file>`, name the image `images/<class>/<file>` of the manifest.
Every problem is a PipelineError naming the file and line.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stages.lib.errors import PipelineError
from stages.lib.manifest import IMAGES

log = logging.getLogger(__name__)

LOW_DATA_SHOTS = 15  # the study's low-data runs: its `low_data_` lists
UNUSED_FILE = "unused.json"  # what the annotations stage writes with split.source: generated
SOURCE_FILE = "source.json"  # where the annotation files came from, and their checksums
CLASSIFICATION_LISTS = ("train", "val", "test")
TRIPLET_LISTS = ("triplet_train", "triplet_val")
COLUMNS = ["row", "path", "label", "class", "group"]
TRIPLET_COLUMNS = [*COLUMNS, "negative_label"]
_HINT = "or set split.source: generated"


def list_name(prefix: str, table: str, shots: int) -> str:
    """`pet_train.txt`, or `low_data_pet_train.txt` for the 15-shot runs."""
    return f"{'low_data_' if shots == LOW_DATA_SHOTS else ''}{prefix}_{table}.txt"


def is_annotation_file(name: str) -> bool:
    """Whether a file name looks like one of the study's lists or label maps."""
    return re.fullmatch(r"(low_data_)?[a-z0-9]+_(train|val|test|triplet_train|triplet_val)\.txt", name) is not None \
        or re.fullmatch(r"(low_data_)?[a-z0-9]+_labels\.json", name) is not None


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line, stripped; tolerates CRLF, a BOM, trailing spaces."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise PipelineError(
            f"{path} not found: the study's annotation files lack it; check sources.annotations in "
            f"params.yaml and re-run the annotations stage, {_HINT}"
        ) from None
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path} is not UTF-8 text ({exc}); check sources.annotations, {_HINT}") from None
    lines = [(number, line.strip()) for number, line in enumerate(text.split("\n"), start=1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        raise PipelineError(f"{path} lists no images; check sources.annotations, {_HINT}")
    return lines


def reroot(raw: str) -> str | None:
    """`/home/x/data/pets/images/Abyssinian/Abyssinian_1.jpg` -> `images/Abyssinian/Abyssinian_1.jpg`.

    Accepts `/` and `\\` separators; None when the path has no `<class>/<file>` ending.
    """
    parts = [part for part in re.split(r"[\\/]+", raw.strip()) if part]
    if len(parts) < 2 or parts[-1] in (".", "..") or parts[-2] in (".", ".."):
        return None
    return f"{IMAGES}/{parts[-2]}/{parts[-1]}"


@dataclass(frozen=True)
class Lookup:
    """The manifest as the parser needs it: path -> row, and the class names (index = label)."""

    rows: dict[str, int]
    classes: list[str]
    class_of: dict[str, str]
    group_of: dict[str, str]
    manifest_file: str  # for messages
    aliases: dict[str, str] = field(default_factory=dict)  # other spellings of a class (labels JSON ints)

    @property
    def class_set(self) -> set[str]:
        return set(self.classes)

    @classmethod
    def of(cls, manifest: pd.DataFrame, manifest_file: str) -> Lookup:
        return cls(
            rows={path: i for i, path in enumerate(manifest["path"])},
            classes=sorted(manifest["class"].unique()),
            class_of=dict(zip(manifest["path"], manifest["class"], strict=True)),
            group_of=dict(zip(manifest["path"], manifest["group"], strict=True)),
            manifest_file=manifest_file,
        )

    def image(self, path: Path, number: int, raw: str) -> str:
        """The manifest path an entry names, or an error with file, line and path."""
        rel = reroot(raw)
        if rel is None:
            raise PipelineError(
                f"{path}, line {number}: {raw!r} does not end in <class>/<file>; fix the line, {_HINT}"
            )
        if rel not in self.rows:
            raise PipelineError(
                f"{path}, line {number}: image {raw!r} ({rel}) is not in the download "
                f"({self.manifest_file}); re-run the download stage, check that the lists belong to this "
                f"dataset, {_HINT}"
            )
        return rel

    def class_name(self, path: Path, number: int, token: str, what: str) -> str:
        """A class named in a triplet line (a name, or an integer from the labels JSON)."""
        if token in self.class_set:
            return token
        if token in self.aliases:
            return self.aliases[token]
        raise PipelineError(
            f"{path}, line {number}: {what} {token!r} is not a class of the download "
            f"({', '.join(self.classes[:5])}{', ...' if len(self.classes) > 5 else ''}); fix the line, {_HINT}"
        )


def read_labels(path: Path, classes: list[str]) -> dict[str, int]:
    """The study's `<p>_labels.json`, checked to name exactly the classes found, with distinct integers."""
    try:
        labels = json.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; check sources.annotations, {_HINT}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PipelineError(f"{path} is not valid JSON ({exc}); check sources.annotations, {_HINT}") from None
    if not isinstance(labels, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in labels.values()
    ):
        raise PipelineError(f"{path} must map class names to integers; check sources.annotations, {_HINT}")
    missing = sorted(set(classes) - set(labels))
    extra = sorted(set(labels) - set(classes))
    if missing or extra:
        raise PipelineError(
            f"{path} does not match the downloaded classes: missing {missing[:5]}, unknown {extra[:5]}; "
            f"check that data/raw and the annotation files belong together, {_HINT}"
        )
    if len(set(labels.values())) != len(labels):
        raise PipelineError(f"{path} gives two classes the same integer; check sources.annotations, {_HINT}")
    return {str(k): int(v) for k, v in labels.items()}


@dataclass
class StudySplit:
    """The study's tables (`train`, `val`, `test`, `triplet_train`, `triplet_val`) and class names."""

    tables: dict[str, pd.DataFrame]
    classes: list[str]
    warnings: list[str] = field(default_factory=list)


def study_splits(manifest: pd.DataFrame, folder: Path, prefix: str, shots: int, manifest_file: str = "manifest.csv"
                 ) -> StudySplit:
    """Build the split tables from the study's lists in `folder` for dataset prefix `prefix`.

    `manifest` has columns path, class, group in manifest order (`row` = position). Labels are
    the index of the class in the sorted class names, as for generated splits. The test table keeps
    its list's order, line by line: the study scored its test list in that order, in batches of
    four (`stages.lib.study_scoring`, `evaluate.labels: study`); the other tables are sorted by
    manifest row (their order changes nothing: training shuffles, and their checks count sets).
    """
    if (folder / UNUSED_FILE).exists():
        raise PipelineError(
            f"{folder} was made with split.source: generated and holds no annotation files; "
            "run `dvc repro` so that the annotations stage downloads them"
        )
    lookup = Lookup.of(manifest, manifest_file)
    labels_file = folder / f"low_data_{prefix}_labels.json"
    if shots != LOW_DATA_SHOTS or not labels_file.exists():
        labels_file = folder / f"{prefix}_labels.json"
    if labels_file.exists():
        study_labels = read_labels(labels_file, lookup.classes)
        lookup.aliases.update({str(v): k for k, v in study_labels.items()})
    else:
        log.warning("%s not found; the class names are not checked against the study's labels", labels_file)
    label = {name: i for i, name in enumerate(lookup.classes)}

    def row_of(rel: str) -> dict:
        cls = lookup.class_of[rel]
        return {"row": lookup.rows[rel], "path": rel, "label": label[cls], "class": cls, "group": lookup.group_of[rel]}

    tables: dict[str, pd.DataFrame] = {}
    for name in CLASSIFICATION_LISTS:
        path = folder / list_name(prefix, name, shots)
        rows = [row_of(lookup.image(path, number, line)) for number, line in read_lines(path)]
        tables[name] = _table(rows, COLUMNS, keep_order=name == "test")
    for name in TRIPLET_LISTS:
        path = folder / list_name(prefix, name, shots)
        rows = []
        for number, line in read_lines(path):
            parts = line.rsplit(None, 2)
            if len(parts) != 3:
                raise PipelineError(
                    f"{path}, line {number}: expected 'anchor_path positive_class negative_class', got {line!r}; "
                    f"fix the line, {_HINT}"
                )
            anchor, positive, negative = parts
            row = row_of(lookup.image(path, number, anchor))
            positive = lookup.class_name(path, number, positive, "positive class")
            negative = lookup.class_name(path, number, negative, "negative class")
            if positive != row["class"]:
                raise PipelineError(
                    f"{path}, line {number}: positive class {positive!r} differs from the anchor's class "
                    f"{row['class']!r}; fix the line, {_HINT}"
                )
            if negative == row["class"]:
                raise PipelineError(
                    f"{path}, line {number}: negative class {negative!r} is the anchor's own class; "
                    f"fix the line, {_HINT}"
                )
            rows.append({**row, "negative_label": label[negative], "_line": number})
        table = _table(rows, [*TRIPLET_COLUMNS, "_line"])
        present = set(table["label"])
        absent = table[~table["negative_label"].isin(present)]
        if len(absent):
            first = absent.iloc[0]
            raise PipelineError(
                f"{path}, line {first['_line']}: negative class {lookup.classes[first['negative_label']]!r} has no "
                f"anchor in {path.name}, so no negative image can be drawn from it; fix the file, {_HINT}"
            )
        if len(present) < 2:
            raise PipelineError(f"{path} has anchors of fewer than 2 classes; triplets need two, {_HINT}")
        tables[name] = table[TRIPLET_COLUMNS]
    split = StudySplit(tables, lookup.classes)
    split.warnings = _check_study_split(split, prefix, shots)
    return split


def _table(rows: list[dict], columns: list[str], keep_order: bool = False) -> pd.DataFrame:
    """Rows in their list's order (`keep_order`: the test list, whose order the study's scoring
    depends on), else sorted by manifest row (stably: list order among repeats)."""
    table = pd.DataFrame(rows, columns=columns)
    if keep_order:
        return table
    return table.sort_values("row", kind="stable").reset_index(drop=True)


def _check_study_split(split: StudySplit, prefix: str, shots: int) -> list[str]:
    """Warnings (not errors: the lists are the study's) where they overlap, leak or look odd."""
    t = split.tables
    warnings = []
    test_paths, test_groups = set(t["test"]["path"]), set(t["test"]["group"])
    for name in ("train", "val", *TRIPLET_LISTS):
        same = len(set(t[name]["path"]) & test_paths)
        if same:
            warnings.append(f"{prefix}: {same} images of {name} are also in the test list")
        shared = len(set(t[name]["group"]) & test_groups)
        if shared > same and name in ("train", "triplet_train"):
            warnings.append(
                f"{prefix}: {shared} source groups (e.g. patches of one raw image) have images in both "
                f"{name} and test; split.source: generated never does this"
            )
    for name in CLASSIFICATION_LISTS:
        repeats = int(t[name]["path"].duplicated().sum())
        if repeats:
            warnings.append(f"{prefix}: {repeats} images are listed twice in {name}")
        missing = sorted(set(split.classes) - set(t[name]["class"]))
        if missing:
            warnings.append(f"{prefix}: {name} has no image of {len(missing)} classes (e.g. {missing[0]})")
    if shots:
        counts = t["train"].groupby("class").size()
        off = counts[counts != shots]
        if len(off):
            warnings.append(
                f"{prefix}: the low-data train list has {off.iloc[0]} images of {off.index[0]}, not {shots} "
                f"({len(off)} classes differ)"
            )
    return warnings

