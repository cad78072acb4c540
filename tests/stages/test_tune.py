"""The tune stage (`tune.*`): the same seeded Optuna search for every dataset x method, its values in
the file the train stage trains with, never a test image embedded, and in the DVC graph only the
tune stage reads `tune.*`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from stages import train, tune
from stages.lib import embedding, trainer
from stages.lib.errors import PipelineError
from stages.lib.params import params_from_dict
from stages.lib.tuning import apply_values, given_values, space_of, trial_train_params
from tests.helpers import ROOT, prepare_synthetic, tiny_params, write_params
from tests.stages.test_data_path import decode_rows, encode_rows


def searched(**changes):
    raw = tiny_params()
    raw["tune"].update({"trials": 2, "epochs": 2, "prune": True, **changes})
    raw["triplet"]["pool"] = "study"  # the study's pool holds every test image: tuning must not draw it
    return raw


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny synthetic split whose decoded images each spell their own manifest row; the weights."""
    d = tmp_path_factory.mktemp("tune")
    prepare_synthetic(d, tiny_params(), decode=False)
    np.save(d / "decoded.npy", encode_rows(len(pd.read_csv(d / "raw/manifest.csv")), 32))
    return d


def run_tune(d, raw, method, out):
    p = str(write_params(out.parent / f"{out.stem}.params.yaml", raw))
    tune.main(["synthetic", method, "--params", p, "--splits", f"{d}/splits", "--decoded", f"{d}/decoded.npy",
               "--weights", f"{d}/pretrained", "--out", str(out)])
    return json.loads(out.read_text())


def test_no_trials_keeps_the_given_values_and_trains_as_without_tuning(tiny, tmp_path):
    raw = tiny_params()
    params = params_from_dict(raw)
    for method in ("classification", "triplet", "pretrained"):
        record = run_tune(tiny, raw, method, tmp_path / f"{method}.json")
        assert record == {"method": method, "trials": 0, "values": given_values(params, method)}
        assert train.with_tuned(params, method, tmp_path / f"{method}.json") == params  # nothing changes
    assert given_values(params, "triplet") == {"train.lr": 1e-3, "train.weight_decay": 1e-6, "triplet.margin": 1.0}


def test_a_seeded_search_is_reproducible_and_never_embeds_a_test_image(tiny, tmp_path, monkeypatch):
    test_rows = set(pd.read_csv(tiny / "splits/test.csv")["row"])
    val_rows = pd.read_csv(tiny / "splits/val.csv")["row"].tolist()
    trained, embedded = [], []  # the manifest rows of every image that reached a forward pass
    for module, seen in ((trainer, trained), (embedding, embedded)):
        real = module.to_device
        monkeypatch.setattr(module, "to_device", lambda x, dev, real=real, seen=seen: seen.append(decode_rows(x))
                            or real(x, dev))
    first = run_tune(tiny, searched(), "triplet", tmp_path / "first.json")
    reached = set(np.concatenate(trained + embedded).tolist())
    assert not reached & test_rows, f"test images {sorted(reached & test_rows)} were embedded while tuning"
    assert all(sorted(rows.tolist()) == sorted(val_rows) for rows in embedded)  # scoring: the validation images
    assert len(first["search"]) == 2 and first["trials"] == 2
    done = [t for t in first["search"] if t["state"] == "complete"]
    best = max(done, key=lambda t: t["score"])
    assert first["values"] == best["values"] and first["best"] == best["score"]
    assert first["worst"] == min(t["score"] for t in done)
    space = space_of(params_from_dict(searched()), "triplet")
    assert set(first["values"]) == set(space) == {"train.lr", "train.weight_decay", "triplet.margin"}
    for key, value in first["values"].items():
        assert space[key].low <= value <= space[key].high
    assert first["values"] != first["given"]  # the search, not the given values
    again = run_tune(tiny, searched(), "triplet", tmp_path / "again.json")
    assert again == first  # the same seed, the same trials, the same values
    other = run_tune(tiny, searched(seed=1, trials=1), "triplet", tmp_path / "other.json")  # another seed
    assert other["search"][0]["values"] != first["search"][0]["values"]


def test_the_train_stage_trains_with_the_tuned_values(tiny, tmp_path):
    params = params_from_dict(tiny_params())
    path = tmp_path / "triplet.json"
    values = {"train.lr": 2e-4, "train.weight_decay": 1e-5, "triplet.margin": 0.3}
    path.write_text(json.dumps({"method": "triplet", "trials": 4, "values": values}))
    tuned = train.with_tuned(params, "triplet", path)
    assert (tuned.train.lr, tuned.train.weight_decay, tuned.method_params("triplet").margin) == (2e-4, 1e-5, 0.3)
    assert tuned.train.eta_min == pytest.approx(params.train.eta_min * 2e-4 / params.train.lr)  # same ratio
    assert tuned.method_params("classification") == params.method_params("classification")
    path.write_text(json.dumps({"method": "triplet", "trials": 4, "values": {"train.lr": 2e-4}}))
    with pytest.raises(PipelineError, match="does not hold the tuned values of triplet"):
        train.with_tuned(params, "triplet", path)


def test_every_method_declares_a_space_a_trial_can_train_with():
    params = params_from_dict(tiny_params(methods=["classification", "triplet", "triplet_batch_hard", "supcon",
                                                   "normsoftmax", "pretrained"]))
    extra = {"classification": set(), "triplet": {"margin"}, "triplet_batch_hard": {"margin", "images_per_class"},
             "supcon": {"temperature", "images_per_class"}, "normsoftmax": {"temperature"}}
    for method, own in extra.items():
        space = space_of(params, method)
        assert set(space) == {"train.lr", "train.weight_decay"} | {f"{method}.{k}" for k in own}
        highest = {k: (r.high if not r.integer else int(r.high)) for k, r in space.items()}
        trained, section = apply_values(params, method, highest)
        trained.check("train")
        section.check(method)  # the edge of the space is a valid setting
    assert space_of(params, "pretrained") == {}
    one = trial_train_params(params.train, params_from_dict(searched(epochs=1)).tune)
    assert (one.epochs, one.select, one.processes) == (1, "val_kmeans", 1)


def test_only_the_tune_stage_reads_tune_and_train_reads_its_file():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    readers = {name for name, stage in stages.items()
               for p in (stage.get("params") or stage.get("do", {}).get("params") or [])
               if isinstance(p, str) and (p == "tune" or p.startswith("tune."))}
    assert readers == {"tune"}
    assert "data/tuned/${item.dataset}/${item.method}.json" in stages["train"]["deps"]
    assert "--tuned data/tuned/${item.dataset}/${item.method}.json" in stages["train"]["cmd"]
    assert stages["tune"]["outs"] == ["data/tuned/${item.dataset}/${item.method}.json"]
    assert not any("test.csv" in str(dep) for dep in stages["tune"]["deps"])


def test_pruning_starts_at_the_third_trial_and_the_second_epoch():
    """`tune.prune` as documented: two trials always finish; a later trial far below their median
    runs its first epoch whatever it scores, and is stopped after its second."""
    import optuna

    from stages.lib.tuning import pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner(True))
    stopped_after = []

    def objective(trial):
        score = 0.9 if trial.number < 2 else 0.1
        for epoch in (1, 2, 3):  # as the trainer reports: epochs from 1
            trial.report(score, epoch)
            if trial.should_prune():
                stopped_after.append((trial.number, epoch))
                raise optuna.TrialPruned()
        return score

    study.optimize(objective, n_trials=4)
    assert stopped_after == [(2, 2), (3, 2)]
    none = optuna.create_study(direction="maximize", pruner=pruner(False))
    stopped_after.clear()
    none.optimize(objective, n_trials=4)
    assert stopped_after == []
