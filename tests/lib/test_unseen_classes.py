"""`split.classes: unseen`: the class halves, the splits built on them, the shots and params rules,
the training labels, K-means with k = the test classes, the confusion matrix's classes, and the
report's refusal to mix protocols (the stage chain: tests/stages/test_unseen_stages.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.errors import PipelineError
from stages.lib.params import params_from_dict
from stages.lib.splits import (
    build_splits,
    class_halves,
    few_shot,
    keep_halves,
    protocol_record,
    train_sizes,
    unseen_splits,
)
from tests.helpers import tiny_params, with_changes

CLASSES = [f"class{i:02d}" for i in range(9)]


def manifest(sizes: dict[str, int], per_group: int = 1) -> pd.DataFrame:
    """`sizes[c]` images of each class, `per_group` images per source group (DeFungi: patches of one image)."""
    rows = [(f"{c}/{i}.png", c, f"{c}/g{i // per_group}") for c, n in sizes.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "class", "group"])


# --- the halves ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [4, 5, 9])
def test_halves_are_disjoint_cover_every_class_and_give_training_the_larger_half(n):
    names = CLASSES[:n]
    for seed in range(5):
        train, test = class_halves(list(reversed(names)), seed)  # the order given does not matter
        assert set(train).isdisjoint(test) and sorted(train + test) == names
        assert (len(train), len(test)) == ((n + 1) // 2, n // 2)
        assert train == sorted(train) and test == sorted(test)


def test_halves_are_fixed_by_the_seed_and_differ_between_seeds():
    assert class_halves(CLASSES, 3) == class_halves(CLASSES, 3)
    halves = {tuple(class_halves(CLASSES, seed)[0]) for seed in range(20)}
    assert len(halves) >= 10  # C(9, 5) = 126 possible halves: 20 seeds give many different ones


def test_the_standard_protocol_trains_on_the_first_half_by_class_id():
    cub = [f"{i:03d}.bird{i}" for i in range(1, 11)]
    train, test = class_halves(cub[::-1], seed=7, first_half=True)
    assert train == cub[:5] and test == cub[5:]


def test_fewer_than_four_classes_are_refused_in_one_line():
    with pytest.raises(PipelineError, match="at least 4 classes .* the dataset has 3; set split.classes: seen"):
        class_halves(CLASSES[:3], 0)


# --- the generated split ------------------------------------------------------------------------


def test_unseen_split_trains_on_one_half_and_tests_on_every_image_of_the_other():
    sizes = {c: 8 + 2 * i for i, c in enumerate(CLASSES[:7])}
    table = manifest(sizes, per_group=2)
    train_classes, test_classes = class_halves(CLASSES[:7], seed=1)
    split = unseen_splits(table, val_fraction=0.25, seed=1, train_classes=train_classes)
    assert split.classes == CLASSES[:7]  # labels index every class, as under seen
    for t in (split.train, split.val, split.test):
        assert (t["label"] == t["class"].map(CLASSES.index)).all()
    # naive: every image of a test class, in manifest order, and no other
    naive_test = [path for path, c in zip(table["path"], table["class"], strict=True) if c in test_classes]
    assert split.test["path"].tolist() == naive_test
    assert set(split.train["class"]) == set(split.val["class"]) == set(train_classes)
    # every image of a training class is in train or val, once; groups never straddle the two
    naive_train = sorted(path for path, c in zip(table["path"], table["class"], strict=True) if c in train_classes)
    assert sorted([*split.train["path"], *split.val["path"]]) == naive_train
    assert set(split.train["group"]).isdisjoint(split.val["group"])
    val = split.val.groupby("class").size()
    for c in train_classes:  # round(n * 0.25) images, in whole groups of 2 (the last may overshoot by one)
        assert round(sizes[c] * 0.25) <= val[c] <= round(sizes[c] * 0.25) + 1


def test_a_training_class_of_two_groups_gives_one_to_val_and_one_to_train():
    table = manifest({"a": 6, "b": 6, "c": 6, "d": 6}, per_group=3)  # two groups of 3 a class
    split = unseen_splits(table, val_fraction=0.25, seed=0, train_classes=["a", "b"])
    for c in ("a", "b"):
        assert split.train[split.train["class"] == c]["group"].nunique() == 1
        assert split.val[split.val["class"] == c]["group"].nunique() == 1
    assert len(split.test) == 12


def test_a_training_class_of_one_group_is_refused_in_one_line():
    table = manifest({"a": 4, "b": 6, "c": 6, "d": 6}, per_group=4)  # a: a single group
    with pytest.raises(PipelineError) as refused:
        unseen_splits(table, val_fraction=0.25, seed=0, train_classes=["a", "b"])
    assert str(refused.value) == ("class 'a' has 4 images in 1 source group(s); at least 2 are needed for train and "
                                  "val (split.classes: unseen)")
    unseen_splits(table, val_fraction=0.25, seed=0, train_classes=["b", "c"])  # a is only tested on: no limit


def test_val_gets_one_image_of_each_training_class_where_its_share_rounds_to_none():
    table = manifest(dict.fromkeys(CLASSES[:4], 5))  # round(5 * 0.05) = 0
    split = unseen_splits(table, val_fraction=0.05, seed=0, train_classes=CLASSES[:2])
    assert split.val.groupby("class").size().to_dict() == dict.fromkeys(CLASSES[:2], 1)
    assert split.train.groupby("class").size().to_dict() == dict.fromkeys(CLASSES[:2], 4)


def test_the_shots_limit_under_unseen_follows_the_seed_or_the_first_half():
    sizes = {c: 8 + 4 * i for i, c in enumerate(CLASSES[:6])}  # val a quarter: 6, 9, 12, ... to train on
    halves = {seed: class_halves(CLASSES[:6], seed)[0] for seed in (0, 3)}
    assert len({tuple(h) for h in (*halves.values(), CLASSES[:3])}) == 3  # three different halves
    for seed, train in halves.items():
        got = train_sizes(sizes, test_fraction=0.25, val_fraction=0.25, seed=seed, classes="unseen")
        assert got == {c: sizes[c] - round(sizes[c] * 0.25) for c in train}
    first = train_sizes(sizes, test_fraction=0.25, val_fraction=0.25, seed=3, classes="unseen", first_half=True)
    assert first == {"class00": 6, "class01": 9, "class02": 12}
    with pytest.raises(ValueError, match="classes must be 'seen' or 'unseen' .*, got 'unsen'"):
        train_sizes(sizes, test_fraction=0.25, val_fraction=0.25, seed=3, classes="unsen")


def test_protocol_json_records_the_halves_and_how_they_were_drawn():
    assert protocol_record(["a", "c"], ["b", "d"], 4, first_half=False) == {
        "classes": "unseen", "halves": "random", "seed": 4, "train_classes": ["a", "c"], "test_classes": ["b", "d"]}
    assert protocol_record(["a", "b"], ["c", "d"], 4, first_half=True) == {
        "classes": "unseen", "halves": "first_half", "seed": 4, "train_classes": ["a", "b"], "test_classes": ["c", "d"]}


def test_a_given_split_keeps_its_train_and_val_of_the_training_half_and_tests_on_all_of_the_other():
    table = manifest(dict.fromkeys(CLASSES[:4], 10))
    seen = build_splits(table, test_fraction=0.2, val_fraction=0.2, seed=0)
    everything = table.assign(label=table["class"].map(CLASSES.index))
    train, val, test = keep_halves(seen.train, seen.val, everything, ["class00", "class02"])
    assert set(train["class"]) == set(val["class"]) == {"class00", "class02"}
    assert train["path"].tolist() == seen.train[seen.train["class"].isin(["class00", "class02"])]["path"].tolist()
    assert test["path"].tolist() == [p for p in table["path"] if p.split("/")[0] in ("class01", "class03")]
    assert len(test) == 20  # every image of the test classes, not only the given split's test images
    for got, like in ((train, seen.train), (val, seen.val), (test, everything)):  # the same columns, rows 0 .. n-1
        assert list(got.columns) == list(like.columns) and got.index.tolist() == list(range(len(got)))


def test_shots_count_only_the_training_classes():
    table = manifest(dict.fromkeys(CLASSES[:6], 12))
    train_classes, _ = class_halves(CLASSES[:6], seed=0)
    split = unseen_splits(table, val_fraction=0.25, seed=0, train_classes=train_classes)
    shot = few_shot(split.train, 5, seed=0)
    assert shot.groupby("class").size().to_dict() == dict.fromkeys(train_classes, 5)
    assert len(shot) == 5 * 3  # three training classes, not six
    # the limit of shots: 12 - round(12 * 0.25) = 9 under unseen (no test share of a training class), 6 under seen
    sizes = dict.fromkeys(CLASSES[:6], 12)
    unseen = train_sizes(sizes, test_fraction=0.25, val_fraction=0.25, seed=0, classes="unseen")
    assert unseen == dict.fromkeys(train_classes, 9)
    assert set(train_sizes(sizes, test_fraction=0.25, val_fraction=0.25, seed=0).values()) == {6}


# --- params -------------------------------------------------------------------------------------


def unseen_params(**changes):
    raw = tiny_params()
    raw["split"]["classes"] = "unseen"
    raw["sources"]["synthetic"]["n_classes"] = 6
    return with_changes(raw, **changes)


def test_unseen_params_load_and_seen_is_the_default():
    assert params_from_dict(unseen_params()).split.classes == "unseen"
    assert params_from_dict(tiny_params()).split.classes == "seen"


@pytest.mark.parametrize(("changes", "message"), [
    ({"triplet.pool": "study"}, "triplet.pool must be split with split.classes: unseen (the study's pool draws from "
     "every downloaded image, which would put the unseen test classes into training), got 'study'"),
    ({"sources": {**tiny_params()["sources"], "synthetic": {"n_classes": 3, "per_class": 12, "image_size": 32,
                                                             "seed": 0}}},
     "split.classes must be seen for synthetic: it has 3 classes, and unseen needs at least 4 (2 to train on, 2 to "
     "test on), got 'unseen'"),
    ({"shots": 10}, "shots must be at most 9 for synthetic (the training images of its class 'cross_c0_plain' once "
     "val is held out; 0 = every image), got 10"),
    ({"split.classes": "both"}, "split.classes must be one of: seen, unseen, got 'both'"),
    ({"evaluate.labels": "study"}, "evaluate.labels must be true with split.classes: unseen (the study's batch-of-four "
     "labels follow the order of its own test list, which an unseen test set is not), got 'study'"),
])
def test_what_unseen_cannot_do_is_refused_in_one_line(changes, message):
    with pytest.raises(PipelineError) as caught:
        params_from_dict(unseen_params(**changes))
    assert str(caught.value) == f"params.yaml: {message}"  # the whole line: what, why and the value


def test_shots_up_to_the_training_halfs_limit_are_accepted():
    assert params_from_dict(unseen_params(shots=9)).shots == 9  # under seen the limit is 6
    with pytest.raises(PipelineError, match="at most 6"):
        params_from_dict(unseen_params(shots=9, **{"split.classes": "seen"}))


# --- training labels ----------------------------------------------------------------------------


def test_training_labels_are_renumbered_over_the_training_classes():
    from stages.lib.splitdata import training_labels

    table = pd.DataFrame({"row": [0, 1, 2, 3], "label": [4, 1, 4, 6], "negative_label": [1, 6, 6, 4]})
    out = training_labels(table, CLASSES, ["class01", "class04", "class06"], "train.csv")
    assert out["label"].tolist() == [1, 0, 1, 2] and out["negative_label"].tolist() == [0, 2, 2, 1]
    assert table["label"].tolist() == [4, 1, 4, 6]  # the split's own table is left as it was
    with pytest.raises(PipelineError, match="train.csv holds class 'class06', not a training class"):
        training_labels(table, CLASSES, ["class01", "class04"], "train.csv")


# --- evaluation and pictures --------------------------------------------------------------------


def test_kmeans_uses_k_equal_to_the_test_classes_not_the_datasets():
    """Test labels of an unseen split are the test half's own label ids (2, 5, 7 of 9 classes): K-means
    makes 3 clusters, so separated classes score 100%, and so does the chance level's matching."""
    import torch

    from stages.lib.chance_fields import chance_fields
    from stages.lib.metrics import evaluate_embeddings

    rng = np.random.default_rng(0)
    labels = np.repeat([2, 5, 7], 10)
    centres = {2: (0, 0), 5: (10, 0), 7: (0, 10)}
    x = np.array([centres[c] for c in labels], dtype=np.float32) + rng.normal(0, 0.3, (30, 2)).astype(np.float32)
    scores, per_image = evaluate_embeddings(x, labels, n_init=2, seed=0, bootstrap_resamples=100,
                                            device=torch.device("cpu"))
    assert len(np.unique(per_image["cluster"])) == 3 and len(np.unique(per_image["cluster_l2"])) == 3
    assert scores["kmeans_acc"] == 1.0 and scores["precision_at_1"] == 1.0
    assert set(per_image["predicted"]) == {2, 5, 7}  # matched to the test classes' own ids
    chance = chance_fields(labels, per_image, seed=0)["raw"]
    assert 1 / 3 <= chance["mean"] < 0.6  # three classes of ten: far below 1


def test_the_confusion_matrix_shows_the_test_classes_only_under_unseen():
    from stages.pictures import confusion_classes

    labels, predicted = np.array([2, 2, 5, 7]), np.array([2, 5, 5, -1])
    shown, guessed, names = confusion_classes(labels, predicted, CLASSES, ["class02", "class05", "class07"])
    assert names == ["class02", "class05", "class07"]
    assert shown.tolist() == [0, 0, 1, 2] and guessed.tolist() == [0, 1, 1, -1]
    same = confusion_classes(labels, predicted, CLASSES, None)  # seen: every class, as given
    assert same[2] == CLASSES and same[0] is labels and same[1] is predicted
    with pytest.raises(PipelineError, match="class 'class02' is not of the run's test classes"):
        confusion_classes(labels, predicted, CLASSES, ["class05", "class07"])
