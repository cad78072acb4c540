"""The split's params rules (`splits.check_params`), checked with params.yaml before anything runs,
against a dataset registry of the test's own: datasets whose class sizes are known before the
download, one with the study's lists, one whose standard `unseen` protocol trains on the first half
of its classes, and datasets of your own (known only once downloaded). The rules as params.yaml
states them, on the registered datasets: tests/lib/test_params_rules.py."""

from __future__ import annotations

import dataclasses

from stages.lib.datasets import DatasetSpec
from stages.lib.params import Params, params_from_dict
from stages.lib.registry import Registry
from stages.lib.splits import check_params, class_halves
from stages.lib.validate import ParamError
from tests.helpers import tiny_params


def registry(**datasets: dict) -> Registry[DatasetSpec]:
    """Datasets `name=dict(sizes=..., **DatasetSpec fields)`: `sizes` the class sizes known before the download."""
    out: Registry[DatasetSpec] = Registry("dataset")
    for name, fields in datasets.items():
        sizes = fields.pop("sizes")
        out.register(name)(DatasetSpec(name, object, lambda *_: None, name, class_sizes=lambda _, s=sizes: s,
                                       **fields))
    return out


def params(datasets: list[str], *, shots: int = 0, **split) -> Params:
    """The tiny test params (split fractions 0.25 and 0.25, seed 0) on `datasets`, with `shots` and `split.<key>`."""
    p = params_from_dict(tiny_params())
    return dataclasses.replace(
        p, datasets=datasets, shots=shots, sources=dict.fromkeys(datasets), split=dataclasses.replace(p.split, **split)
    )


def refusal(p: Params, datasets: Registry, own: tuple[str, ...] = ()) -> str | None:
    """check_params's one line for `p`, or None where it accepts it."""
    try:
        check_params(p, datasets, list(own))
    except ParamError as exc:
        return str(exc)
    return None


# --- shots: the limit the smallest class sets, named before anything runs ------------------------


def test_the_shots_limit_names_the_class_with_the_fewest_training_images_not_the_first_name():
    # zebra keeps 12 - 3 - 3 = 6 training images (test and val a quarter each), the other classes 14
    shelf = registry(shelf={"sizes": {"apple": 20, "kiwi": 20, "zebra": 12}})
    assert refusal(params(["shelf"], shots=6), shelf) is None
    assert refusal(params(["shelf"], shots=7), shelf) == (
        "shots must be at most 6 for shelf (the training images of its class 'zebra' once test and val are held "
        "out; 0 = every image), got 7")


def test_a_dataset_of_your_own_is_left_to_the_split_stage_and_the_next_dataset_still_checked():
    shelf = registry(shelf={"sizes": {"apple": 20, "kiwi": 20, "zebra": 12}})
    p = params(["mine", "shelf"], shots=7)
    assert refusal(p, shelf, own=("mine",)).startswith("shots must be at most 6 for shelf ")
    assert refusal(params(["mine"], shots=7), shelf, own=("mine",)) is None


# --- split.source: annotations: the study's lists, not the generated split's limit -----------------


def test_the_study_lists_take_every_image_or_fifteen_and_no_generated_limit_applies():
    # 10 images a class leave 6 to train on in a generated split; the study's lists of 15 are its own
    listed = registry(listed={"sizes": dict.fromkeys(["a", "b", "c"], 10), "annotation_prefix": "listed"})
    for shots in (0, 15):
        assert refusal(params(["listed"], shots=shots, source="annotations"), listed) is None
    assert refusal(params(["listed"], shots=5, source="annotations"), listed) == (
        "shots must be 0 or 15 with split.source: annotations (the study's lists cover only those); set "
        "split.source: generated for other values, got 5")
    assert refusal(params(["listed"], shots=15), listed) == (
        "shots must be at most 6 for listed (the training images of its class 'a' once test and val are held out; "
        "0 = every image), got 15")


# --- split.classes: unseen ----------------------------------------------------------------------


def test_unseen_counts_the_classes_known_before_the_download_and_four_are_enough():
    three = {"sizes": dict.fromkeys(["a", "b", "c"], 10)}
    four = {"sizes": dict.fromkeys(["a", "b", "c", "d"], 10)}
    datasets = registry(three=three, four=four)
    assert refusal(params(["four"], classes="unseen"), datasets) is None
    message = ("split.classes must be seen for three: it has 3 classes, and unseen needs at least 4 (2 to train on, "
               "2 to test on), got 'unseen'")
    assert refusal(params(["three"], classes="unseen"), datasets) == message
    # a dataset of your own before it is not a reason to stop looking
    assert refusal(params(["mine", "three"], classes="unseen"), datasets, own=("mine",)) == message


def test_unseen_limits_shots_by_the_training_half_the_dataset_trains_on():
    # The standard protocol trains on 001-003, where 003 keeps 8 - 2 = 6 (val a quarter, no test share);
    # a random half of seed 0 trains on 003-005, where 004 keeps 4 - 1 = 3.
    sizes = {"001": 20, "002": 20, "003": 8, "004": 4, "005": 20, "006": 20}
    assert class_halves(list(sizes), 0)[0] == ["003", "004", "005"]
    birds = registry(birds={"sizes": sizes, "unseen_first_half": True})
    assert refusal(params(["birds"], shots=6, classes="unseen"), birds) is None
    assert refusal(params(["birds"], shots=7, classes="unseen"), birds) == (
        "shots must be at most 6 for birds (the training images of its class '003' once val is held out; "
        "0 = every image), got 7")
    random_half = registry(birds={"sizes": sizes})
    assert refusal(params(["birds"], shots=4, classes="unseen"), random_half) == (
        "shots must be at most 3 for birds (the training images of its class '004' once val is held out; "
        "0 = every image), got 4")
