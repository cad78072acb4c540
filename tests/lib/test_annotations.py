"""The study's annotation lists: defensive parsing, re-rooting, checks; and the params around them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages.lib.annotations import LOW_DATA_SHOTS, is_annotation_file, list_name, read_lines, reroot, study_splits
from stages.lib.errors import PipelineError
from stages.lib.methods import METHODS
from stages.lib.params import params_from_dict
from stages.lib.splits import build_splits
from stages.lib.trainer import SplitData
from tests.helpers import tiny_params

CLASSES = ("cat", "dog")


def manifest(per_class: int = 4) -> pd.DataFrame:
    rows = [
        {"path": f"images/{c}/{c}_{i}.jpg", "class": c, "group": f"{c}/{c}_{i}"}
        for c in CLASSES for i in range(1, per_class + 1)
    ]
    return pd.DataFrame(rows)


def write_lists(folder, prefix="pet", low=False, **texts) -> None:
    """Lists for `prefix`: defaults put 1-2 in train, 3 in val, 4 in test; `texts` overrides by table."""
    root = "/home/someone/data/images"
    defaults = {
        "train": "\n".join(f"{root}/{c}/{c}_{i}.jpg" for c in CLASSES for i in (1, 2)),
        "val": "\n".join(f"{root}/{c}/{c}_3.jpg" for c in CLASSES),
        "test": "\n".join(f"{root}/{c}/{c}_4.jpg" for c in CLASSES),
        "triplet_train": "\n".join(f"{root}/{c}/{c}_{i}.jpg {c} {other}" for c, other in (CLASSES, CLASSES[::-1])
                                   for i in (1, 2)),
        "triplet_val": "\n".join(f"{root}/{c}/{c}_3.jpg {c} {other}" for c, other in (CLASSES, CLASSES[::-1])),
    }
    defaults.update(texts)
    folder.mkdir(parents=True, exist_ok=True)
    for table, text in defaults.items():
        (folder / list_name(prefix, table, LOW_DATA_SHOTS if low else 0)).write_bytes(text.encode())


def error(func, *args) -> str:
    with pytest.raises(PipelineError) as info:
        func(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/home/a/data/pets/images/Abyssinian/Abyssinian_1.jpg", "images/Abyssinian/Abyssinian_1.jpg"),
        ("C:\\Users\\a\\micro\\H1\\H1_10a_3.jpg", "images/H1/H1_10a_3.jpg"),
        ("relative/H2/H2_1a_1.jpg  ", "images/H2/H2_1a_1.jpg"),
        ("//double//slashes//pug//pug_3.jpg", "images/pug/pug_3.jpg"),
        ("H1/x.jpg", "images/H1/x.jpg"),
        ("alone.jpg", None),
        ("/a/../x.jpg", None),
    ],
)
def test_reroot_keeps_the_last_two_components(raw, expected):
    assert reroot(raw) == expected


def test_read_lines_tolerates_crlf_blank_lines_bom_and_trailing_spaces(tmp_path):
    path = tmp_path / "pet_train.txt"
    path.write_bytes(b"\xef\xbb\xbf/a/cat/cat_1.jpg\r\n\r\n  \n/a/cat/cat_2.jpg   \r\n\t/a/dog/dog_1.jpg\n")
    assert read_lines(path) == [(1, "/a/cat/cat_1.jpg"), (4, "/a/cat/cat_2.jpg"), (5, "/a/dog/dog_1.jpg")]


def test_read_lines_errors_name_the_file(tmp_path):
    assert str(tmp_path / "none.txt") in error(read_lines, tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("\n \n")
    assert "empty.txt lists no images" in error(read_lines, tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    assert "bin.txt is not UTF-8" in error(read_lines, tmp_path / "bin.txt")


def test_annotation_file_names():
    for name in ("pet_train.txt", "low_data_micro_triplet_val.txt", "micro_labels.json", "pet_test.txt"):
        assert is_annotation_file(name), name
    for name in ("README.md", "pet_train.csv", "notes.txt", "pet_labels.txt"):
        assert not is_annotation_file(name), name
    assert list_name("micro", "triplet_train", 15) == "low_data_micro_triplet_train.txt"
    assert list_name("pet", "test", 0) == "pet_test.txt"


# --------------------------------------------------------------------------- study_splits


def test_study_splits_builds_every_table(tmp_path):
    write_lists(tmp_path)
    (tmp_path / "pet_labels.json").write_text(json.dumps({"dog": 0, "cat": 1}))  # the study's own numbering
    split = study_splits(manifest(), tmp_path, "pet", 0)
    assert split.classes == ["cat", "dog"]
    t = split.tables
    assert list(t["train"].columns) == ["row", "path", "label", "class", "group"]
    assert list(t["triplet_train"].columns) == ["row", "path", "label", "class", "group", "negative_label"]
    assert list(t["train"]["path"]) == ["images/cat/cat_1.jpg", "images/cat/cat_2.jpg",
                                        "images/dog/dog_1.jpg", "images/dog/dog_2.jpg"]
    assert list(t["train"]["row"]) == [0, 1, 4, 5] and list(t["train"]["label"]) == [0, 0, 1, 1]
    assert list(t["test"]["row"]) == [3, 7]
    assert list(t["triplet_train"]["negative_label"]) == [1, 1, 0, 0]
    assert list(t["triplet_val"]["row"]) == [2, 6]
    assert split.warnings == []


def test_low_data_lists_are_used_for_15_shots(tmp_path):
    write_lists(tmp_path)
    root = "/x/images"
    write_lists(tmp_path, low=True, train=f"{root}/cat/cat_1.jpg\n{root}/dog/dog_2.jpg",
                triplet_train=f"{root}/cat/cat_1.jpg cat dog\n{root}/dog/dog_2.jpg dog cat")
    split = study_splits(manifest(), tmp_path, "pet", LOW_DATA_SHOTS)
    assert list(split.tables["train"]["row"]) == [0, 5]
    assert list(split.tables["triplet_train"]["row"]) == [0, 5]
    assert any("low-data train list has 1 images" in w for w in split.warnings)


def test_missing_image_names_file_line_and_path(tmp_path):
    write_lists(tmp_path, val="/a/images/cat/cat_3.jpg\n\n/a/images/dog/dog_99.jpg\n")
    message = error(study_splits, manifest(), tmp_path, "pet", 0, "data/raw/pets/manifest.csv")
    assert f"{tmp_path / 'pet_val.txt'}, line 3:" in message
    assert "'/a/images/dog/dog_99.jpg'" in message and "images/dog/dog_99.jpg" in message
    assert "data/raw/pets/manifest.csv" in message and "split.source: generated" in message


def test_line_without_class_folder(tmp_path):
    write_lists(tmp_path, test="/a/images/cat/cat_4.jpg\ncat_4.jpg")
    message = error(study_splits, manifest(), tmp_path, "pet", 0)
    assert "pet_test.txt, line 2: 'cat_4.jpg' does not end in <class>/<file>" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/a/images/cat/cat_1.jpg cat", "expected 'anchor_path positive_class negative_class'"),
        ("/a/images/cat/cat_1.jpg cat bird", "negative class 'bird' is not a class"),
        ("/a/images/cat/cat_1.jpg dog cat", "positive class 'dog' differs from the anchor's class 'cat'"),
        ("/a/images/cat/cat_1.jpg cat cat", "negative class 'cat' is the anchor's own class"),
        ("/a/images/cat/cat_9.jpg cat dog", "image '/a/images/cat/cat_9.jpg'"),
    ],
)
def test_bad_triplet_lines(tmp_path, line, expected):
    write_lists(tmp_path, triplet_train=f"/a/images/dog/dog_1.jpg dog cat\n{line}\n")
    message = error(study_splits, manifest(), tmp_path, "pet", 0)
    assert f"{tmp_path / 'pet_triplet_train.txt'}, line 2:" in message and expected in message


def test_triplet_classes_may_be_the_labels_json_integers(tmp_path):
    write_lists(tmp_path, triplet_train="/a/images/cat/cat_1.jpg 1 0\n/a/images/dog/dog_1.jpg 0 1\n")
    (tmp_path / "pet_labels.json").write_text(json.dumps({"dog": 0, "cat": 1}))
    split = study_splits(manifest(), tmp_path, "pet", 0)
    assert list(split.tables["triplet_train"]["negative_label"]) == [1, 0]  # cat's negative is dog (our label 1)


def test_negative_class_without_anchors_is_refused(tmp_path):
    write_lists(tmp_path, triplet_val="/a/images/cat/cat_3.jpg cat dog\n/a/images/cat/cat_4.jpg cat dog\n")
    message = error(study_splits, manifest(), tmp_path, "pet", 0)
    assert "pet_triplet_val.txt, line 1: negative class 'dog' has no anchor" in message


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"cat": 0}, "missing ['dog']"),
        ({"cat": 0, "dog": 1, "cow": 2}, "unknown ['cow']"),
        ({"cat": 0, "dog": 0}, "the same integer"),
        ({"cat": "0", "dog": 1}, "must map class names to integers"),
        (["cat", "dog"], "must map class names to integers"),
    ],
)
def test_labels_json_is_checked_against_the_classes(tmp_path, labels, expected):
    write_lists(tmp_path)
    (tmp_path / "pet_labels.json").write_text(json.dumps(labels))
    message = error(study_splits, manifest(), tmp_path, "pet", 0)
    assert str(tmp_path / "pet_labels.json") in message and expected in message


def test_missing_list_file_and_generated_marker(tmp_path):
    write_lists(tmp_path)
    (tmp_path / "pet_triplet_val.txt").unlink()
    assert "pet_triplet_val.txt not found" in error(study_splits, manifest(), tmp_path, "pet", 0)
    marker = tmp_path / "other"
    marker.mkdir()
    (marker / "unused.json").write_text("{}")
    assert "split.source: generated" in error(study_splits, manifest(), marker, "pet", 0)


def test_overlaps_and_leaks_are_warned_not_refused(tmp_path):
    m = manifest()
    m["group"] = m["class"] + "/one_raw_image"  # every patch of a class cut from one raw image
    write_lists(tmp_path, test="/a/images/cat/cat_1.jpg\n/a/images/cat/cat_4.jpg\n/a/images/dog/dog_4.jpg")
    split = study_splits(m, tmp_path, "pet", 0)
    text = " | ".join(split.warnings)
    assert "1 images of train are also in the test list" in text
    assert "source groups" in text and "split.source: generated never does this" in text


# --------------------------------------------------------------------------- params


def params(**split):
    p = tiny_params()
    p["split"].update(split)
    return p


def test_defaults_reproduce_the_study_split():
    from tests.helpers import default_params

    p = params_from_dict(default_params())
    assert p.split.source == "annotations" and p.split.test_per_class == "study"
    assert p.sources["annotations"].drive_folder == "1a-zzC2Gyu-7nwQ6KanNKCFcw099U6E6w"
    assert p.sources["annotations"].url is None


def test_annotations_need_a_dataset_with_study_lists():
    with pytest.raises(PipelineError) as info:
        params_from_dict(params(source="annotations"))
    message = str(info.value)
    assert "split.source must be generated when datasets include synthetic" in message
    assert "pets" in message and "defungi" in message


@pytest.mark.parametrize("shots", [1, 5, 16])
def test_annotations_only_for_full_and_15_shots(shots):
    p = params(source="annotations")
    p["datasets"] = ["pets"]
    p["shots"] = shots
    with pytest.raises(PipelineError, match=r"shots must be 0 or 15 .*split.source: generated"):
        params_from_dict(p)
    p["shots"] = 15
    assert params_from_dict(p).shots == 15


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (3, 3), ("study", "study")],
)
def test_test_per_class_values(value, expected):
    assert params_from_dict(params(test_per_class=value)).split.test_per_class == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "an integer >= 1"), ("all", "an integer or study or null"), (2.5, "an integer or study or null"),
     (True, "an integer or study or null")],
)
def test_test_per_class_errors(value, expected):
    with pytest.raises(PipelineError) as info:
        params_from_dict(params(test_per_class=value))
    assert "split.test_per_class" in str(info.value) and expected in str(info.value)


def test_split_source_values():
    with pytest.raises(PipelineError, match="split.source must be one of: annotations, generated"):
        params_from_dict(params(source="drive"))


def test_annotations_source_checks():
    p = tiny_params()
    p["sources"]["annotations"]["url"] = "ftp://mirror/x.zip"
    with pytest.raises(PipelineError, match=r"sources.annotations.url must be an http\(s\) URL"):
        params_from_dict(p)
    p = tiny_params()
    p["sources"]["annotations"]["drive_folder"] = "no spaces allowed"
    with pytest.raises(PipelineError, match="sources.annotations.drive_folder"):
        params_from_dict(p)
    p = tiny_params()
    del p["sources"]["annotations"]
    with pytest.raises(PipelineError, match="missing key sources.annotations"):
        params_from_dict(p)


# --------------------------------------------------------------------------- generated test size


def test_test_per_class_sizes_the_generated_test_set():
    m = pd.DataFrame([{"path": f"{c}/{i}.jpg", "class": c, "group": f"{c}/{i // 2}"}
                      for c in ("a", "b") for i in range(40)])
    s = build_splits(m, test_fraction=0.5, val_fraction=0.1, seed=0, test_per_class=6)
    assert s.test.groupby("class").size().to_dict() == {"a": 6, "b": 6}  # whole groups of 2: exactly 6
    assert not set(s.test["group"]) & (set(s.train["group"]) | set(s.val["group"]))
    with pytest.raises(PipelineError, match="split.test_per_class=39 leaves too few"):
        build_splits(m, test_fraction=0.5, val_fraction=0.1, seed=0, test_per_class=39)


# --------------------------------------------------------------------------- the triplet method


def test_triplet_method_draws_the_listed_negative_class():
    method = METHODS.get("triplet")(params_from_dict(tiny_params()).method_params("triplet"), 3, 8)
    assert method.study_tables == {"train": "triplet_train", "val": "triplet_val"}
    labels = np.array([0, 0, 1, 1, 2, 2])
    negatives = np.array([2, 2, 0, 0, 1, 1])

    data = SplitData(np.zeros((len(labels), 2, 2, 3), dtype=np.uint8), labels, negatives)
    for seed in range(5):
        batches = method.split_batches(data, np.random.default_rng(seed))
        for batch in batches:
            anchor, positive, negative = batch.reshape(3, -1)
            assert (labels[positive] == labels[anchor]).all()
            assert (labels[negative] == negatives[anchor]).all()
    assert METHODS.get("classification").study_tables == {}
