"""Stratified, grouped train/val/test splits and the k-shot subset, as plain tables.

Groups (e.g. DeFungi patches of one raw image) never straddle two splits. Test and validation
are fixed by `seed` and the fractions alone, so full and k-shot runs score on the same test set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.annotations import LOW_DATA_SHOTS
from stages.lib.errors import PipelineError
from stages.lib.validate import ParamError, require

SPLITS = ("train", "val", "test")
COLUMNS = ["path", "label", "class", "group"]
PROTOCOL_FILE = "protocol.json"  # the split folder's record of `split.classes: unseen` (absent under seen)
MIN_UNSEEN_CLASSES = 4  # unseen: at least 2 classes to train on (triplets need two) and 2 to cluster
HALVES_STREAM = 0x5EE4  # the class halves' own random stream, [seed, HALVES_STREAM]: apart from the splits' draws


@dataclass(frozen=True)
class SplitTables:
    """The three tables and the class names (index = label)."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    classes: list[str]

    def table(self, name: str) -> pd.DataFrame:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def _take_groups(
    groups: list[str], sizes: dict[str, int], target: int, keep: int
) -> tuple[list[str], list[str]]:
    """Take groups from the front until at least `target` images, but leave at least `keep` groups
    (one for each split still to fill); return (taken, rest)."""
    taken, count = [], 0
    for index, group in enumerate(groups):
        if count >= target or len(groups) - index <= keep:
            return taken, groups[index:]
        taken.append(group)
        count += sizes[group]
    return taken, []


def build_splits(
    manifest: pd.DataFrame, *, test_fraction: float, val_fraction: float, seed: int,
    test_per_class: int | None = None,
) -> SplitTables:
    """Split a manifest (columns path, class, group) per class by whole groups.

    Each class gives round(n * fraction) images (at least one group) to test, then to val;
    the rest is train; every split gets at least one group of every class. `test_per_class`,
    when given, replaces round(n * test_fraction) (whole groups: the last one taken may overshoot
    it). Groups are shuffled with `seed`; rows keep the manifest's order.
    """

    def assign(name: str, n: int, sizes: dict[str, int], shuffled: Callable[[], list[str]]) -> Assigned:
        if len(sizes) < 3:
            raise PipelineError(
                f"class {name!r} has {n} images in {len(sizes)} source group(s); "
                "at least 3 are needed for train, val and test"
            )
        order = shuffled()
        if test_per_class is not None and test_per_class >= n - 1:
            raise PipelineError(
                f"class {name!r} has {n} images; split.test_per_class={test_per_class} leaves too few for val "
                "and train: lower it, or set it to null to use split.test_fraction"
            )
        test_size = test_per_class if test_per_class is not None else round(n * test_fraction)
        test, rest = _take_groups(order, sizes, max(1, test_size), keep=2)  # a group each for val and train
        val, rest = _take_groups(rest, sizes, max(1, round(n * val_fraction)), keep=1)
        return {"test": test, "val": val, "train": rest}

    return _by_groups(manifest, seed, assign)


Assigned = dict[str, list[str]]  # split name -> the groups of one class it gets


def _by_groups(
    manifest: pd.DataFrame, seed: int,
    assign: Callable[[str, int, dict[str, int], Callable[[], list[str]]], Assigned],
) -> SplitTables:
    """The split tables of a per-class rule. For each class in sorted order, `assign(name, n images,
    group sizes, shuffled)` says which of its groups go to which split; `shuffled()` gives the
    class's groups in a random order drawn from the one `seed` stream (a class that does not call
    it draws nothing from the stream)."""
    _check_manifest(manifest)
    classes = sorted(manifest["class"].unique())
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for name in classes:
        rows = manifest[manifest["class"] == name]
        sizes = rows.groupby("group").size().to_dict()
        groups = sorted(sizes)
        chosen = assign(name, len(rows), sizes, lambda groups=groups: [groups[i] for i in rng.permutation(len(groups))])
        for split, taken in chosen.items():
            assignment.update(dict.fromkeys(taken, split))
    return _split_tables(manifest, classes, assignment)


def _check_manifest(manifest: pd.DataFrame) -> None:
    missing = {"path", "class", "group"} - set(manifest.columns)
    if missing:
        raise PipelineError(f"manifest lacks columns {sorted(missing)}; re-run the download stage")
    spread = manifest.groupby("group")["class"].nunique()
    if (spread > 1).any():
        bad = spread[spread > 1].index[0]
        raise PipelineError(f"group {bad!r} holds images of several classes; groups must lie within a class")


def _split_tables(manifest: pd.DataFrame, classes: list[str], assignment: dict[str, str]) -> SplitTables:
    """The tables of a group -> split assignment; labels index the sorted class names, rows keep their order."""
    label = {name: i for i, name in enumerate(classes)}
    table = manifest.assign(label=manifest["class"].map(label), split=manifest["group"].map(assignment))
    out = {s: table[table["split"] == s][COLUMNS].reset_index(drop=True) for s in SPLITS}
    return SplitTables(out["train"], out["val"], out["test"], classes)


# --- split.classes: unseen --------------------------------------------------------------------


def class_halves(classes: list[str], seed: int, first_half: bool = False) -> tuple[list[str], list[str]]:
    """(training classes, test classes) of `split.classes: unseen`, each sorted: the training half
    has ceil(C / 2) of the C classes, the test half the rest. `first_half`: the first ceil(C / 2) in
    sorted name order (a dataset's standard protocol, `DatasetSpec.unseen_first_half`); otherwise a
    random half, drawn from `seed` alone (its own stream, so the same seed gives the same halves
    whatever the fractions and shots)."""
    names = sorted(set(classes))
    if len(names) < MIN_UNSEEN_CLASSES:
        raise PipelineError(
            f"split.classes: unseen needs at least {MIN_UNSEEN_CLASSES} classes (2 to train on, 2 to test on), "
            f"the dataset has {len(names)}; set split.classes: seen"
        )
    n_train = len(names) - len(names) // 2
    if first_half:
        train = names[:n_train]
    else:
        order = np.random.default_rng([seed, HALVES_STREAM]).permutation(len(names))
        train = sorted(names[i] for i in order[:n_train])
    chosen = set(train)
    return train, [name for name in names if name not in chosen]


def unseen_splits(
    manifest: pd.DataFrame, *, val_fraction: float, seed: int, train_classes: list[str],
) -> SplitTables:
    """The generated split of `split.classes: unseen`: each training class gives round(n *
    val_fraction) images (at least one group, leaving one) to val and the rest to train, by whole
    groups shuffled with `seed`; test holds every image of the other classes. Labels index all
    the sorted class names, as under seen."""
    training = set(train_classes)

    def assign(name: str, n: int, sizes: dict[str, int], shuffled: Callable[[], list[str]]) -> Assigned:
        if name not in training:
            return {"test": sorted(sizes)}
        if len(sizes) < 2:
            raise PipelineError(
                f"class {name!r} has {n} images in {len(sizes)} source group(s); at least 2 are needed "
                "for train and val (split.classes: unseen)"
            )
        val, rest = _take_groups(shuffled(), sizes, max(1, round(n * val_fraction)), keep=1)
        return {"val": val, "train": rest}

    return _by_groups(manifest, seed, assign)


def keep_halves(
    train: pd.DataFrame, val: pd.DataFrame, everything: pd.DataFrame, train_classes: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A given split (the study's lists, a CSV's own split column) under `split.classes: unseen`:
    its train and val images of the training classes, and as test every image of the other classes
    (`everything`: every image, with the tables' columns), rows in their tables' order."""
    training = set(train_classes)

    def own(table: pd.DataFrame) -> pd.DataFrame:
        return table[table["class"].isin(training)].reset_index(drop=True)

    test = everything[~everything["class"].isin(training)].reset_index(drop=True)
    return own(train), own(val), test


def protocol_record(train_classes: list[str], test_classes: list[str], seed: int, first_half: bool) -> dict:
    """What `protocol.json` (and each run's meta data and metrics) records of `split.classes: unseen`."""
    return {
        "classes": "unseen",
        "halves": "first_half" if first_half else "random",  # first_half: the dataset's standard protocol
        "seed": seed,
        "train_classes": list(train_classes),
        "test_classes": list(test_classes),
    }


def few_shot(train: pd.DataFrame, shots: int, seed: int, dataset: str = "") -> pd.DataFrame:
    """Keep `shots` training images per class (0 = all), chosen with `seed`; rows keep their order.

    The images of a class come from `shots` different source groups where the class has that many
    (DeFungi: patches of `shots` different raw images, not several patches of one): groups are
    shuffled and dealt one image each, round after round, until `shots` images are taken.
    """
    if shots == 0:
        return train
    counts = train.groupby("class").size()
    if (counts < shots).any():
        small = counts.idxmin()
        raise PipelineError(
            f"shots={shots} is larger than the training images of class {small!r}"
            f"{' of ' + dataset if dataset else ''} ({counts.min()} after holding out test and val); "
            f"set shots to at most {counts.min()}, or 0 for every image"
        )
    rng = np.random.default_rng([seed, shots])
    groups = train["group"] if "group" in train.columns else pd.Series(train.index.astype(str), index=train.index)
    keep = []
    for name in sorted(counts.index):
        index = train.index[train["class"] == name].to_numpy()
        index = index[rng.permutation(len(index))]  # a random image of each group first
        by_group: dict[str, list] = {}
        for i in index:
            by_group.setdefault(groups[i], []).append(i)
        decks = [by_group[g] for g in sorted(by_group)]
        decks = [decks[j] for j in rng.permutation(len(decks))]
        taken: list = []
        depth = 0
        while len(taken) < shots:
            taken.extend(deck[depth] for deck in decks if depth < len(deck))
            depth += 1
        keep.extend(taken[:shots])
    return train.loc[sorted(keep)].reset_index(drop=True)


def train_sizes(
    class_sizes: dict[str, int], *, test_fraction: float, val_fraction: float, seed: int,
    test_per_class: int | None = None, classes: str = "seen", first_half: bool = False,
) -> dict[str, int]:
    """Training images per class that `build_splits` (`unseen_splits` with `classes` unseen: the
    training half only) leaves when every image is its own group: the exact upper limit of
    `shots`, known before anything is downloaded or split."""
    if classes not in ("seen", "unseen"):
        raise ValueError(f"classes must be 'seen' or 'unseen' (split.classes), got {classes!r}")
    manifest = pd.DataFrame(
        [(f"{name}/{i}", name, f"{name}/{i}") for name, n in class_sizes.items() for i in range(n)],
        columns=["path", "class", "group"],
    )
    if classes == "unseen":
        train, _ = class_halves(list(class_sizes), seed, first_half)
        tables = unseen_splits(manifest, val_fraction=val_fraction, seed=seed, train_classes=train)
    else:
        tables = build_splits(
            manifest, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed, test_per_class=test_per_class
        )
    return tables.train.groupby("class").size().to_dict()


def given_splits(manifest: pd.DataFrame) -> SplitTables:
    """The split a dataset brings with it (the manifest's `split` column: a CSV source's own), as given.

    Labels are the index of the class in the sorted class names, as for generated splits.
    """
    unknown = set(manifest["split"]) - set(SPLITS)
    if unknown:
        raise PipelineError(f"manifest names split {sorted(unknown)[0]!r}, not train, val or test; re-run download")
    classes = sorted(manifest["class"].unique())
    label = {name: i for i, name in enumerate(classes)}
    table = manifest.assign(label=manifest["class"].map(label))
    out = {s: table[table["split"] == s][COLUMNS].reset_index(drop=True) for s in SPLITS}
    return SplitTables(out["train"], out["val"], out["test"], classes)


# --- the split's params rules, checked with params.yaml before anything runs ------------------


def check_params(p: Any, datasets: Any, own: list[str]) -> None:
    """Refuse (ParamError) a `split` and `shots` that the datasets cannot give: the study's lists
    exist only for some datasets and shots; `shots` at most the training images the smallest class
    keeps once test and val are held out, where the class sizes are known before the download.

    `p` is the loaded Params, `datasets` the dataset registry, `own` the datasets of your own.
    """
    if p.split.classes == "unseen":
        _check_unseen(p, datasets, own)
    if p.split.source == "annotations":
        published = [n for n in datasets.names() if datasets.get(n).annotation_prefix]
        for name in p.datasets:
            if name in own or not datasets.get(name).annotation_prefix:
                mine = "; a split column in your CSV is used as given" if name in own else ""
                raise ParamError(
                    "split.source",
                    f"generated when datasets include {name} (the study published split lists only for "
                    f"{', '.join(published)}{mine})",
                    p.split.source,
                )
        require(
            p.shots in (0, LOW_DATA_SHOTS), "shots",
            f"0 or {LOW_DATA_SHOTS} with split.source: annotations (the study's lists cover only those); "
            "set split.source: generated for other values",
            p.shots,
        )
    if not p.shots or p.split.source != "generated":
        return
    for name in p.datasets:
        if name in own:
            continue  # known once downloaded: the split stage checks it
        spec = datasets.get(name)
        sizes = spec.class_sizes(p.sources[name])
        if sizes is None:
            continue  # known only after the download: the split stage names the limit
        per_class = spec.study_test_per_class if p.split.test_per_class == "study" else p.split.test_per_class
        try:
            train = train_sizes(
                sizes, test_fraction=p.split.test_fraction, val_fraction=p.split.val_fraction, seed=p.seed,
                test_per_class=per_class, classes=p.split.classes, first_half=spec.unseen_first_half,
            )
        except PipelineError as exc:
            raise ParamError("split", f"a split that {name} allows ({exc})", dataclasses.asdict(p.split)) from None
        smallest = min(train, key=lambda c: (train[c], c))
        if p.shots > train[smallest]:
            held = "val is" if p.split.classes == "unseen" else "test and val are"
            raise ParamError(
                "shots",
                f"at most {train[smallest]} for {name} (the training images of its class {smallest!r} once {held} "
                "held out; 0 = every image)",
                p.shots,
            )


def _check_unseen(p: Any, datasets: Any, own: list[str]) -> None:
    """`split.classes: unseen` refuses the study's sampling pool (it would draw the test classes'
    images into training) and, where the classes are known before the download, a dataset of fewer
    than MIN_UNSEEN_CLASSES classes."""
    for method in p.methods:
        if getattr(p.method.get(method), "pool", None) == "study":
            raise ParamError(
                f"{method}.pool",
                "split with split.classes: unseen (the study's pool draws from every downloaded image, which would "
                "put the unseen test classes into training)",
                "study",
            )
    if p.evaluate.labels == "study":
        raise ParamError(
            "evaluate.labels",
            "true with split.classes: unseen (the study's batch-of-four labels follow the order of its own test list, "
            "which an unseen test set is not)",
            "study",
        )
    for name in p.datasets:
        if name in own:
            continue  # known once downloaded: the split stage checks it
        sizes = datasets.get(name).class_sizes(p.sources[name])
        if sizes is not None and len(sizes) < MIN_UNSEEN_CLASSES:
            raise ParamError(
                "split.classes",
                f"seen for {name}: it has {len(sizes)} classes, and unseen needs at least {MIN_UNSEEN_CLASSES} "
                "(2 to train on, 2 to test on)",
                "unseen",
            )
