"""The method interface: every method is registered by name, built from its params section, samples
its batches through the one signature the base class fixes, and (when it trains) has a training
class with a head and a loss. (That the declarations import no torch is
tests/stages/test_help.py::test_checking_params_imports_no_torch.)"""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest
import timm
import torch

from stages.lib.errors import PipelineError
from stages.lib.losses import TRAINING, Training, training
from stages.lib.methods import METHODS
from stages.lib.methods.balanced import check_balanced, images_per_class_range
from stages.lib.methods.normsoftmax import NormSoftmaxParams
from stages.lib.methods.supcon import SupConParams
from stages.lib.methods.triplet_batch_hard import TripletBatchHardParams
from stages.lib.params import params_from_dict
from stages.lib.trainer import SplitData, fit
from stages.lib.validate import ParamError
from tests.helpers import tiny_params

NEW = ["triplet_batch_hard", "supcon", "normsoftmax"]


def split(labels: np.ndarray) -> SplitData:
    return SplitData(np.zeros((len(labels), 2, 2, 3), dtype=np.uint8), labels)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_builds_from_its_params_section_and_samples_the_split(name):
    params = params_from_dict(tiny_params(methods=[name]))
    method = METHODS.get(name)(params.method_params(name), n_classes=3, embed_dim=8)
    assert method.name == name
    if method.trains:
        labels = np.array([0, 0, 1, 1, 2, 2])
        batches = method.split_batches(split(labels), np.random.default_rng(0))
        assert all(len(b) > 0 for b in batches)
        shown = np.concatenate(batches)
        assert set(shown) <= set(range(6)) and set(labels[shown]) == {0, 1, 2}


def parameters(function) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def test_every_method_shares_the_signature_the_base_class_fixes():
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert parameters(cls.split_batches) == [("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
            (n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("data", "rng")
        ], name
        assert set(vars(cls)) & {"epoch_batches", "head", "loss"} == set(), name  # torch is the training class's
    for name in TRAINING.names():
        cls = training(name)
        for hook in ("split_batches", "head", "loss"):
            assert parameters(getattr(cls, hook)) == parameters(getattr(Training, hook)), (name, hook)


def test_every_method_that_trains_has_a_training_class_and_only_those():
    assert TRAINING.names() == [n for n in METHODS.names() if METHODS.get(n).trains]
    for name in TRAINING.names():
        assert issubclass(training(name), METHODS.get(name)) and training(name).name == name


def test_each_method_searches_the_space_its_documentation_states():
    # docs/methods.md: lr a decade either side of train.lr, weight decay 1e-8 to 1e-2 (both log-uniform),
    # margins 0.05 to 2, temperatures 0.02 to 0.5 (supcon) and 0.01 to 0.2 (normsoftmax), K 2 to 16
    raw = tiny_params(methods=METHODS.names())
    raw["train"]["lr"] = 2e-3
    raw["triplet_batch_hard"]["batch_size"], raw["supcon"]["batch_size"] = 12, 64
    params = params_from_dict(raw)
    shared = {"train.lr": (2e-4, 2e-2, True, False), "train.weight_decay": (1e-8, 1e-2, True, False)}
    expected = {
        "pretrained": {},
        "classification": shared,
        "triplet": {**shared, "triplet.margin": (0.05, 2.0, True, False)},
        "triplet_batch_hard": {**shared, "triplet_batch_hard.margin": (0.05, 2.0, True, False),
                               "triplet_batch_hard.images_per_class": (2, 6, False, True)},  # at most half of 12
        "supcon": {**shared, "supcon.temperature": (0.02, 0.5, True, False),
                   "supcon.images_per_class": (2, 16, False, True)},
        "normsoftmax": {**shared, "normsoftmax.temperature": (0.01, 0.2, True, False)},
    }
    assert sorted(expected) == METHODS.names()
    for name, space in expected.items():
        got = METHODS.get(name).search_space(params.method.get(name), params.train)
        assert {k: (pytest.approx(r.low), pytest.approx(r.high), r.log, r.integer) for k, r in got.items()} == space


@pytest.mark.parametrize(("batch_size", "highest"), [(4, 2), (5, 2), (12, 6), (13, 6), (32, 16), (100, 16)])
def test_the_searched_images_per_class_reach_the_largest_a_batch_allows_up_to_sixteen(batch_size, highest):
    space = images_per_class_range(batch_size)
    assert (space.low, space.high, space.log, space.integer) == (2, highest, False, True)
    check_balanced("supcon", batch_size, highest)
    if highest < 16:
        with pytest.raises(ParamError, match="a batch needs two classes"):
            check_balanced("supcon", batch_size, highest + 1)


def test_an_unknown_method_lists_the_registered_ones():
    with pytest.raises(PipelineError, match=re.escape(", ".join(METHODS.names()))):
        METHODS.get("nope")
    with pytest.raises(PipelineError, match="unknown method 'nope'"):
        training("nope")
    assert {"classification", "pretrained", "triplet"} <= set(METHODS.names())


@pytest.mark.parametrize("name", NEW)
def test_the_defaults_of_the_in_batch_and_cosine_methods_are_valid(name):
    params = params_from_dict(tiny_params(methods=[name]))
    method = training(name)(params.method_params(name), n_classes=3, embed_dim=8)
    assert method.name == name and method.indices_per_item == 1


@pytest.mark.parametrize(
    ("name", "section", "key"),
    [
        ("triplet_batch_hard", {"batch_size": 8, "images_per_class": 1, "margin": 1.0}, "images_per_class"),
        ("triplet_batch_hard", {"batch_size": 6, "images_per_class": 4, "margin": 1.0}, "batch_size"),
        ("triplet_batch_hard", {"batch_size": 8, "images_per_class": 2, "margin": 0.0}, "margin"),
        ("supcon", {"batch_size": 8, "images_per_class": 2, "temperature": 0}, "temperature"),
        ("normsoftmax", {"batch_size": 0, "temperature": 0.05}, "batch_size"),
        ("normsoftmax", {"batch_size": 8, "temperature": -1}, "temperature"),
    ],
)
def test_a_bad_setting_names_its_key(name, section, key):
    with pytest.raises(PipelineError, match=f"{name}.{key}"):
        params_from_dict(tiny_params(methods=[name], **{name: section}))


SMALL = {
    "triplet_batch_hard": TripletBatchHardParams(batch_size=6, images_per_class=2, margin=1.0),
    "supcon": SupConParams(batch_size=6, images_per_class=2, temperature=0.1),
    "normsoftmax": NormSoftmaxParams(batch_size=6, temperature=0.05),
}


@pytest.mark.parametrize("name", NEW)
def test_one_epoch_of_fit_moves_the_weights_and_keeps_a_trained_head(name):
    rng = np.random.default_rng(0)
    make = lambda n, per: SplitData(  # noqa: E731
        rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), np.arange(n, dtype=np.int64) // per
    )
    train, val = make(12, 4), make(6, 2)  # 3 classes: 4 training images each, 2 validation images each
    raw = tiny_params()
    raw["train"].update(epochs=1, warmup_epochs=0, cosine_t_max=1)
    params = params_from_dict(raw).train
    torch.manual_seed(0)
    backbone = timm.create_model("test_convnext", pretrained=False, num_classes=0)
    start = {k: v.clone() for k, v in backbone.state_dict().items()}
    method = training(name)(SMALL[name], 3, backbone.num_features)
    result = fit(method, backbone, train, val, params, seed=0, device=torch.device("cpu"))
    assert result.best_epoch == 1 and math.isfinite(result.best_val_loss) and result.best_val_loss > 0
    assert any(not torch.equal(start[k], v) for k, v in result.backbone_state.items())
    if name == "normsoftmax":  # the class weights are trained and kept with the checkpoint
        assert result.head_state is not None and result.head_state["weight"].shape == (3, backbone.num_features)
    else:
        assert result.head_state is None
