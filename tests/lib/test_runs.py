"""`runs`: the study's per-run settings reach the run they name and no other; a bad entry is one line."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.params import load_params, params_from_dict
from stages.lib.runs import settings_for
from tests.helpers import ROOT, params_error, tiny_params


def with_runs(entries, **changes):
    raw = tiny_params(**changes)
    raw["runs"] = entries
    return raw


# The study's eight configs (muditha11/contra_classi, configs/): (dataset, method, shots) ->
# (train batch, validation batch); epochs 100, lr 5e-5, warm-up 10, T_max 100, eta_min 5e-6 in all.
STUDY = {
    ("pets", "classification", 0): (32, 16), ("pets", "triplet", 0): (64, 4),
    ("pets", "classification", 15): (128, 16), ("pets", "triplet", 15): (64, 4),
    ("defungi", "classification", 0): (128, 16), ("defungi", "triplet", 0): (64, 8),
    ("defungi", "classification", 15): (32, 16), ("defungi", "triplet", 15): (64, 8),
}


@pytest.mark.parametrize("shots", [0, 15])
def test_the_shipped_params_give_each_study_run_its_own_config(shots):
    p = params_from_dict({**_raw_yaml(), "shots": shots})
    assert load_params(ROOT / "params.yaml").runs == p.runs
    for (dataset, method, at), (batch, val_batch) in STUDY.items():
        if at != shots:
            continue
        train, section = settings_for(p, dataset, method)
        assert (section.batch_size, train.val_batch_size) == (batch, val_batch), (dataset, method, shots)
        assert (train.epochs, train.lr, train.warmup_epochs, train.cosine_t_max, train.eta_min) == (
            100, 5e-5, 10, 100, 5e-6)


def _raw_yaml():
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_the_demo_and_other_datasets_keep_the_general_values():
    raw = _raw_yaml()
    raw["classification"]["batch_size"], raw["triplet"]["batch_size"] = 64, 32  # the demo's OVERRIDES
    p = params_from_dict(raw)
    for dataset in ("digits", "synthetic"):
        for method, batch in (("classification", 64), ("triplet", 32)):
            train, section = settings_for(p, dataset, method)
            assert section.batch_size == batch and train == p.train  # nothing set: the very same train params


def test_an_entry_sets_only_the_runs_it_matches_and_a_later_entry_wins():
    p = params_from_dict(with_runs([
        {"dataset": "synthetic", "method": "classification", "shots": 0, "set": {"batch_size": 5, "epochs": 7}},
        {"method": "triplet", "set": {"lr": 0.004, "margin": 0.5}},
        {"dataset": "synthetic", "method": "triplet", "set": {"lr": 0.003}},
        {"dataset": "synthetic", "shots": 4, "set": {"epochs": 9}},  # other shots: not this run
    ]))
    train, section = settings_for(p, "synthetic", "classification")
    assert (section.batch_size, train.epochs, train.lr) == (5, 7, p.train.lr)
    train, section = settings_for(p, "synthetic", "triplet")
    assert (section.batch_size, section.margin, train.epochs, train.lr) == (4, 0.5, 2, 0.003)
    train, section = settings_for(p, "digits", "triplet")
    assert (section.margin, train.lr) == (0.5, 0.004)
    shots4 = params_from_dict({**with_runs([{"dataset": "synthetic", "shots": 4, "set": {"epochs": 9}}]), "shots": 4})
    assert settings_for(shots4, "synthetic", "classification")[0].epochs == 9
    assert p.train.epochs == 2 and p.method_params("classification").batch_size == 8  # the general values stay


def test_an_unknown_key_is_refused_in_one_line_naming_the_entry_and_the_accepted_keys():
    message = params_error(with_runs([{"dataset": "synthetic", "method": "classification", "set": {"batch_sise": 8}}]))
    assert message.startswith("params.yaml: unknown key runs[0].set.batch_sise; accepted: epochs, optimizer, lr, ")
    assert message.endswith("val_batch_size, batch_size")
    message = params_error(with_runs([{"dataset": "synthetic", "set": {"margin": 0.5}}]))  # a method key, no method
    assert message.startswith("params.yaml: unknown key runs[0].set.margin; accepted: epochs, ")
    assert message.endswith("val_batch_size (a method's keys need method named)")
    message = params_error(with_runs([{"dataset": "synthetic", "set": {"device": "cuda"}}]))  # the machine: not per run
    assert message.startswith("params.yaml: unknown key runs[0].set.device; accepted: epochs, ")
    assert params_error(with_runs([{"dataset": "synthetic", "sets": {}}])) == (
        "params.yaml: unknown key runs[0].sets; accepted: dataset, method, shots, set")


def test_bad_entries_are_one_line_naming_the_key():
    cases = [
        ([{"dataset": "pet", "set": {"epochs": 1}}],
         "runs[0].dataset must be one of: defungi, digits, pets, synthetic (or omitted: any), got 'pet'"),
        ([{"method": "arcface", "set": {"epochs": 1}}], "runs[0].method must be one of: "),
        ([{"method": ["triplet"], "set": {"epochs": 1}}], "runs[0].method must be one of: "),  # not a name: no lookup
        ([{"dataset": {"pets": 1}, "set": {"epochs": 1}}], "runs[0].dataset must be one of: "),
        ([{"shots": -1, "set": {"epochs": 1}}], "runs[0].shots must be an integer >= 0"),
        ([{"dataset": "pets"}], "missing key runs[0].set"),
        ([{"dataset": "pets", "set": {}}], "runs[0].set must be a non-empty mapping"),
        ({"pets": {}}, "runs must be a list of {dataset, method, shots, set} entries"),
        ([{"method": "classification", "set": {"batch_size": 0}}],
         "runs[0].set.batch_size must be an integer >= 1, got 0"),
        ([{"set": {"epochs": "many"}}], "runs[0].set.epochs must be an integer, got 'many'"),
        ([{"set": {"eta_min": 0.5}}], "runs[0].set.eta_min must be a number in [0, lr=0.001], got 0.5"),
        ([{"set": {"val_batch_size": 0}}], "runs[0].set.val_batch_size must be an integer >= 1 or null, got 0"),
    ]
    for entries, start in cases:
        assert params_error(with_runs(entries)).startswith(f"params.yaml: {start}"), entries


def test_no_runs_key_means_no_entries():
    raw = tiny_params()
    del raw["runs"]
    assert params_from_dict(raw).runs == []


def test_the_validation_batch_size_cuts_the_validation_batches():
    from stages.lib.losses import ClassificationTraining, TripletTraining
    from stages.lib.methods.classification import ClassificationParams
    from stages.lib.methods.triplet import TripletParams
    from stages.lib.trainer import SplitData, validation_batches

    p = params_from_dict(tiny_params())
    val = SplitData(np.zeros((10, 4, 4, 3), np.uint8), np.arange(10) % 3)
    classification = ClassificationTraining(ClassificationParams(batch_size=8), 3, 4)
    triplet = TripletTraining(TripletParams(batch_size=8, margin=1.0), 3, 4)
    assert [len(b) for b in validation_batches(classification, val, p.train, 0)] == [8, 2]  # null: batch_size
    with_val = params_from_dict(tiny_params(train={**tiny_params()["train"], "val_batch_size": 3})).train
    assert [len(b) for b in validation_batches(classification, val, with_val, 0)] == [3, 3, 3, 1]
    assert [len(b) for b in validation_batches(triplet, val, with_val, 0)] == [9, 9, 9, 3]  # 3 triplets each
    assert classification.params.batch_size == 8  # the training batches keep theirs
    same = validation_batches(classification, val, p.train, 0)
    assert np.array_equal(np.concatenate(same), np.concatenate(validation_batches(classification, val, with_val, 0)))


def test_the_tune_stage_searches_at_the_settings_the_run_trains_with():
    """`with_run_settings` (the tune stage's params): the run's own batch sizes, the other sections as given."""
    from stages.lib.runs import with_run_settings

    p = params_from_dict({**_raw_yaml(), "shots": 15})
    tuned = with_run_settings(p, "defungi", "classification")
    assert (tuned.method["classification"].batch_size, tuned.train.val_batch_size) == (32, 16)  # the study's config
    assert tuned.method["triplet"] == p.method["triplet"] and tuned.tune == p.tune
    assert with_run_settings(p, "digits", "classification").method["classification"].batch_size == 128  # general
