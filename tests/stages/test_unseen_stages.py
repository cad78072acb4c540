"""`split.classes: unseen` through the stages: the split folder records the halves, the heads are
sized by the training classes, evaluation clusters the test classes, the metrics and the report
say so, and the report never mixes the two protocols (the pure functions: tests/lib/test_unseen_classes.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

from stages import decode, download, embed, evaluate, pictures, report, split, train, weights
from stages.lib.errors import PipelineError
from stages.lib.splits import class_halves
from tests.helpers import tiny_params, write_params
from tests.stages import study_data as sd
from tests.stages.test_report import params as report_params
from tests.stages.test_report import summarise, write_run

METHODS = ["pretrained", "classification", "normsoftmax", "triplet"]


def _split(tmp_path, classes: str, **changes) -> str:
    raw = tiny_params(methods=METHODS, **changes)
    raw["sources"]["synthetic"] = {"n_classes": 5, "per_class": 8, "image_size": 32, "seed": 0}
    raw["split"]["classes"] = classes
    p = str(write_params(tmp_path / "params.yaml", raw))
    d = tmp_path
    download.main(["synthetic", "--params", p, "--out", f"{d}/raw", "--cache", f"{d}/cache"])
    split.main(["synthetic", "--params", p, "--raw", f"{d}/raw", "--annotations", f"{d}/none", "--out", f"{d}/splits"])
    return p


@pytest.mark.parametrize(("seed", "val_fraction"), [(0, 0.25), (3, 0.5)])
def test_the_split_stage_writes_the_unseen_split_of_the_seed_and_val_fraction_given(tmp_path, seed, val_fraction):
    # The stage's tables are `unseen_splits` of the manifest with the params' seed, validation share
    # and training half (the split itself: tests/lib/test_unseen_classes.py).
    from stages.lib.splits import unseen_splits

    d = tmp_path
    _split(d, "unseen", seed=seed, split={**tiny_params()["split"], "val_fraction": val_fraction})
    manifest = pd.read_csv(d / "raw/manifest.csv", keep_default_na=False)
    train_classes, _ = class_halves(sorted(manifest["class"].unique()), seed)
    want = unseen_splits(manifest, val_fraction=val_fraction, seed=seed, train_classes=train_classes)
    for name in ("train", "val", "test"):
        got = pd.read_csv(d / f"splits/{name}.csv", keep_default_na=False)
        assert got["path"].tolist() == getattr(want, name)["path"].tolist(), name
    assert len(want.val) == round(8 * val_fraction) * len(train_classes)  # the share reached the split
    assert json.loads((d / "splits/protocol.json").read_text()) == {
        "classes": "unseen", "halves": "random", "seed": seed, "train_classes": train_classes,
        "test_classes": sorted(set(manifest["class"]) - set(train_classes))}


def test_the_training_tables_number_the_training_classes_and_refuse_the_study_pool(tmp_path):
    # What `fit` gets under unseen: the split's train and val rows, labelled 0 .. 2 over the training
    # half in protocol.json's order (the split's labels index all 5 classes); the study's pool, which
    # holds the test classes, refused in one line.
    import dataclasses

    from stages.lib.methods import METHODS
    from stages.lib.params import load_params
    from stages.lib.training_data import training_tables

    p = _split(tmp_path, "unseen")
    splits, params = tmp_path / "splits", load_params(p)
    train_classes = json.loads((splits / "protocol.json").read_text())["train_classes"]
    for name in ("classification", "triplet"):
        method = METHODS.get(name)(params.method.get(name), len(train_classes), 0)
        tables, pool, listed = training_tables(splits, method)
        assert pool is None and listed is None
        for split_name in ("train", "val"):
            written = pd.read_csv(splits / f"{split_name}.csv")
            assert tables[split_name]["path"].tolist() == written["path"].tolist()
            assert tables[split_name]["label"].tolist() == [train_classes.index(c) for c in written["class"]]
    study = dataclasses.replace(params.method.get("triplet"), pool="study")
    with pytest.raises(PipelineError) as refused:
        training_tables(splits, METHODS.get("triplet")(study, len(train_classes), 0))
    assert str(refused.value) == (f"{splits} is a split.classes: unseen split, and triplet.pool: study would draw its "
                                  "test classes into training; set triplet.pool: split")


def test_the_unseen_chain_trains_on_one_half_and_scores_the_other(tmp_path):
    p, d = _split(tmp_path, "unseen", shots=3), tmp_path
    manifest = pd.read_csv(d / "raw/manifest.csv")
    classes = sorted(manifest["class"].unique())
    train_classes, test_classes = class_halves(classes, 0)
    protocol = json.loads((d / "splits/protocol.json").read_text())
    assert protocol == {"classes": "unseen", "halves": "random", "seed": 0, "train_classes": train_classes,
                        "test_classes": test_classes}
    assert json.loads((d / "splits/classes.json").read_text()) == classes  # labels still index every class
    tables = {s: pd.read_csv(d / f"splits/{s}.csv") for s in ("train", "val", "test")}
    assert tables["train"].groupby("class").size().to_dict() == dict.fromkeys(train_classes, 3)  # shots: train half
    assert set(tables["val"]["class"]) == set(train_classes)
    assert tables["test"]["path"].tolist() == manifest[manifest["class"].isin(test_classes)]["path"].tolist()
    decode.main(["--params", p, "--raw", f"{d}/raw", "--out", f"{d}/decoded.npy"])
    weights.main(["--params", p, "--out", f"{d}/pretrained", "--cache", f"{d}/cache/w"])
    for method in METHODS:
        run = f"{method}/seed0"
        train.main(["synthetic", method, "--seed", "0", "--params", p, "--splits", f"{d}/splits",
                    "--decoded", f"{d}/decoded.npy", "--weights", f"{d}/pretrained", "--out", f"{d}/models/{run}",
                    "--curve", f"{d}/curves/synthetic/{run}.csv"])
        meta = json.loads((d / f"models/{run}/meta.json").read_text())
        assert meta["protocol"] == protocol and meta["classes"] == classes
        with safe_open(f"{d}/models/{run}/model.safetensors", "pt") as saved:
            heads = {k: saved.get_tensor(k).shape for k in saved.keys() if k.startswith("head.")}
        if method in ("classification", "normsoftmax"):  # one output per training class, not per class
            assert heads["head.weight"][0] == 3
        embed.main(["--params", p, "--model", f"{d}/models/{run}", "--splits", f"{d}/splits",
                    "--decoded", f"{d}/decoded.npy", "--out", f"{d}/emb/{run}.npz"])
        evaluate.main(["--params", p, "--embeddings", f"{d}/emb/{run}.npz",
                       "--out", f"{d}/metrics/synthetic/{run}.json", "--predictions", f"{d}/pred/synthetic/{run}.csv"])
        metrics = json.loads((d / f"metrics/synthetic/{run}.json").read_text())
        assert metrics["protocol"] == protocol
        assert (metrics["n_test"], metrics["n_classes"]) == (16, 2)
        predictions = pd.read_csv(d / f"pred/synthetic/{run}.csv")
        assert predictions["cluster"].nunique() == 2  # k = the test classes
        assert set(predictions["label"]) == {classes.index(c) for c in test_classes}
    pictures.main(["synthetic", "triplet", "--seed", "0", "--params", p, "--embeddings", f"{d}/emb/triplet/seed0.npz",
                   "--splits", f"{d}/splits", "--decoded", f"{d}/decoded.npy",
                   "--predictions", f"{d}/pred/synthetic/triplet/seed0.csv",
                   "--retrieval", f"{d}/retrieval.png", "--confusion", f"{d}/confusion.png"])
    assert (d / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_a_seen_split_writes_what_it_always_wrote(tmp_path):
    _split(tmp_path, "seen")
    assert sorted(f.name for f in (tmp_path / "splits").iterdir()) == [
        "checks.json", "classes.json", "pool.csv", "test.csv", "train.csv", "val.csv"]
    test = pd.read_csv(tmp_path / "splits/test.csv")
    assert test["class"].nunique() == 5


def test_the_study_pool_is_refused_by_the_train_stage_under_unseen(tmp_path, capsys):
    """params refuse it first (tests/lib/test_unseen_classes.py); a split made unseen and params
    changed since (no dvc repro) are refused by the train stage too, in one line."""
    p, d = _split(tmp_path, "unseen"), tmp_path
    raw = tiny_params(methods=METHODS)
    raw["sources"]["synthetic"] = {"n_classes": 5, "per_class": 8, "image_size": 32, "seed": 0}
    raw["triplet"]["pool"] = "study"
    p = str(write_params(tmp_path / "params.yaml", raw))
    decode.main(["--params", p, "--raw", f"{d}/raw", "--out", f"{d}/decoded.npy"])
    weights.main(["--params", p, "--out", f"{d}/pretrained", "--cache", f"{d}/cache/w"])
    with pytest.raises(SystemExit):
        train.main(["synthetic", "triplet", "--seed", "0", "--params", p, "--splits", f"{d}/splits",
                    "--decoded", f"{d}/decoded.npy", "--weights", f"{d}/pretrained", "--out", f"{d}/model",
                    "--curve", f"{d}/curve.csv"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "triplet.pool: study would draw its test classes into training" in errors[0]


def test_the_study_lists_under_unseen_keep_their_training_half_and_test_every_image_of_the_other(
        http_files, tmp_path):
    raw = sd.serve_study(http_files)
    raw["split"]["classes"] = "unseen"
    p, d = str(write_params(tmp_path / "params.yaml", raw)), tmp_path
    from stages import annotations

    download.main(["defungi", "--params", p, "--out", f"{d}/raw/defungi", "--cache", f"{d}/cache/defungi"])
    annotations.main(["--params", p, "--out", f"{d}/raw/annotations", "--cache", f"{d}/cache/a"])
    split.main(["defungi", "--params", p, "--raw", f"{d}/raw/defungi", "--annotations", f"{d}/raw/annotations",
                "--out", f"{d}/splits/defungi"])
    out = d / "splits/defungi"
    train_classes, test_classes = class_halves(list(sd.DEFUNGI_CLASSES), 0)
    assert json.loads((out / "protocol.json").read_text())["train_classes"] == train_classes
    assert not (out / "triplet_train.csv").exists()  # the study's triplets name negatives of every class
    manifest = pd.read_csv(d / "raw/defungi/manifest.csv")
    test = pd.read_csv(out / "test.csv")
    assert test["path"].tolist() == manifest[manifest["class"].isin(test_classes)]["path"].tolist()
    seen_raw = {**raw, "split": {**raw["split"], "classes": "seen"}}
    seen_p = str(write_params(tmp_path / "seen.yaml", seen_raw))
    split.main(["defungi", "--params", seen_p, "--raw", f"{d}/raw/defungi", "--annotations", f"{d}/raw/annotations",
                "--out", f"{d}/splits/seen"])
    for name in ("train", "val"):  # the study's own lists, without the test classes
        listed = pd.read_csv(d / f"splits/seen/{name}.csv")
        assert pd.read_csv(out / f"{name}.csv")["path"].tolist() == \
            listed[listed["class"].isin(train_classes)]["path"].tolist()


# --- the report ---------------------------------------------------------------------------------


def unseen_run(tmp_path, method, correct, halves=(["a", "b", "c"], ["d", "e"])):
    write_run(tmp_path, "pets", method, 0, correct)
    path = tmp_path / "metrics/pets" / method / "seed0.json"
    metrics = json.loads(path.read_text())
    metrics["protocol"] = {"classes": "unseen", "halves": "random", "seed": 0, "train_classes": list(halves[0]),
                           "test_classes": list(halves[1])}
    path.write_text(json.dumps(metrics))


def test_the_report_states_the_unseen_protocol_and_sets_no_study_number_beside_it(tmp_path):
    unseen_run(tmp_path, "classification", [1, 0] * 4)
    unseen_run(tmp_path, "triplet", [1, 1, 1, 0] * 2)
    p = report_params(shots=15)
    summary = summarise(tmp_path, p)
    entry = summary["pets"].methods["classification"]
    assert entry.published is None and "split.classes: unseen" in entry.published_note
    assert entry.to_json()["protocol"]["test_classes"] == ["d", "e"]
    text = report.markdown(summary, p)
    assert text.startswith("# Results (15 training images per class, unseen classes)")
    assert "**Protocol: unseen classes**" in text
    assert "trained and validated on 3 (a, b, c); tested on 2 (d, e)" in text


def test_the_report_refuses_to_mix_seen_and_unseen_runs(tmp_path):
    write_run(tmp_path, "pets", "classification", 0, [1, 0] * 4)  # seen
    unseen_run(tmp_path, "triplet", [1, 1, 1, 0] * 2)
    with pytest.raises(PipelineError, match="the runs mix seen and unseen classes .*pets classification seed 0: seen"):
        summarise(tmp_path, report_params())
    unseen_run(tmp_path, "classification", [1, 0] * 4, halves=(["a", "b", "d"], ["c", "e"]))
    with pytest.raises(PipelineError, match="trained on other classes than the dataset's other runs"):
        summarise(tmp_path, report_params())


def test_a_seen_report_states_its_protocol_and_nothing_of_unseen(tmp_path):
    write_run(tmp_path, "pets", "classification", 0, [1, 0] * 4)
    write_run(tmp_path, "pets", "triplet", 0, [1, 1, 1, 0] * 2, pool="split")
    p = report_params()
    summary = summarise(tmp_path, p)
    text = report.markdown(summary, p)
    assert "**Protocol: seen classes**" in text and "**Protocol: unseen classes**" not in text
    assert "Unseen classes (" not in text and "protocol" not in json.dumps({m: e.to_json() for m, e in
                                                                            summary["pets"].methods.items()})
    assert np.isclose(summary["pets"].methods["triplet"].views["raw"].mean["kmeans_acc"], 0.75)
