"""The train stage on tiny synthetic data: `runs` reaches the run it names; `train.budget: images` gives
every method the same images (counted as a naive count would), recorded from meta.json to the metrics
file and the report; `steps` the same steps; `epochs` writes nothing new."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import prepare_synthetic, tiny_params, write_params

N_TRAIN = 18  # synthetic, 3 classes x 12, test and val fractions 0.25: 6 training images per class


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The synthetic dataset split, decoded and with (random) weights, once for the module."""
    d = tmp_path_factory.mktemp("budget")
    prepare_synthetic(d, tiny_params())
    assert len(pd.read_csv(d / "splits/train.csv")) == N_TRAIN
    return d


def train(d: Path, out: Path, raw: dict, method: str, monkeypatch=None) -> tuple[dict, pd.DataFrame, list]:
    """Run the train stage for `method` with params `raw`; its meta.json, its curve and what `fit` was given."""
    from stages import train as stage
    from stages.lib import trainer

    out.mkdir(parents=True, exist_ok=True)
    p = str(write_params(out / "params.yaml", raw))
    calls: list = []
    if monkeypatch is not None:
        real = trainer.fit

        def spy(method_obj, *args, **kwargs):
            calls.append((method_obj.params, args[3], kwargs.get("budget")))
            return real(method_obj, *args, **kwargs)

        monkeypatch.setattr(trainer, "fit", spy)
    stage.main(["synthetic", method, "--seed", "0", "--params", p, "--splits", f"{d}/splits",
                "--decoded", f"{d}/decoded.npy", "--weights", f"{d}/pretrained", "--out", f"{out}/model/{method}",
                "--curve", f"{out}/curves/{method}.csv"])
    meta = json.loads((out / f"model/{method}/meta.json").read_text())
    return meta, pd.read_csv(out / f"curves/{method}.csv"), calls


def test_a_per_run_entry_reaches_its_run_and_no_other(prepared, tmp_path, monkeypatch):
    raw = tiny_params(runs=[{"dataset": "synthetic", "method": "classification", "shots": 0,
                             "set": {"batch_size": 5, "epochs": 1, "val_batch_size": 2}},
                            {"dataset": "digits", "method": "triplet", "set": {"epochs": 3}}])
    meta, curve, calls = train(prepared, tmp_path, raw, "classification", monkeypatch)
    (section, params, budget), = calls
    assert (section.batch_size, params.epochs, params.val_batch_size, budget) == (5, 1, 2, None)
    assert meta["epochs"] == 1 and len(curve) == 1
    assert "budget" not in meta and list(curve.columns) == ["epoch", "train_loss", "val_loss", "lr", "best"]  # epochs
    meta, curve, calls = train(prepared, tmp_path, raw, "triplet", monkeypatch)
    (section, params, _), = calls[-1:]
    assert (section.batch_size, params.epochs, params.val_batch_size) == (4, 2, None)  # tiny_params' general values
    assert meta["epochs"] == 2 and len(curve) == 2


def naive_images(method: str, budget: int, batch: int, n: int) -> tuple[int, int]:
    """(steps, images) a method gets from `budget` images, counted by hand: passes of n items, each
    item 1 image (classification, supcon) or 3 (triplet), batches of `batch` items, the last item that
    does not fit whole not taken."""
    per_item = 3 if method == "triplet" else 1
    items = budget // per_item
    steps = (items // n) * math.ceil(n / batch) + math.ceil((items % n) / batch)
    return steps, items * per_item


@pytest.mark.parametrize("amount", [None, 40])
def test_images_give_every_method_the_same_images_recorded_to_the_metrics(prepared, tmp_path, amount):
    from stages import embed, evaluate

    raw = tiny_params(methods=["classification", "triplet"])
    raw["train"].update(budget="images", budget_amount=amount, epochs=2)
    raw["triplet"]["batch_size"] = 5
    budget = amount or 2 * N_TRAIN  # null: classification's images at its settings, epochs x N
    used = {}
    for method, batch in (("classification", 8), ("triplet", 5)):
        meta, curve, _ = train(prepared, tmp_path, raw, method)
        steps, images = naive_images(method, budget, batch, N_TRAIN)
        assert meta["budget"] == {"kind": "images", "amount": budget, "steps": steps, "images": images}, method
        used[method] = images
        assert meta["epochs"] == len(curve)  # passes over the data, each validated
        if amount is not None:
            continue
        p = str(tmp_path / "params.yaml")
        embed.main(["--params", p, "--model", f"{tmp_path}/model/{method}", "--splits", f"{prepared}/splits",
                    "--decoded", f"{prepared}/decoded.npy", "--out", f"{tmp_path}/emb/{method}.npz"])
        evaluate.main(["--params", p, "--embeddings", f"{tmp_path}/emb/{method}.npz", "--out",
                       f"{tmp_path}/m/{method}.json", "--predictions", f"{tmp_path}/pred/{method}.csv"])
        assert json.loads((tmp_path / f"m/{method}.json").read_text())["budget"] == meta["budget"]
    assert used["classification"] == budget and budget - 3 < used["triplet"] <= budget  # whole triplets only
    if amount is None:
        assert used["triplet"] == used["classification"] == 36


def test_supcon_and_classification_get_exactly_the_same_images(prepared, tmp_path):
    raw = tiny_params(methods=["classification", "supcon"])
    raw["train"].update(budget="images", budget_amount=50)
    raw["supcon"].update(batch_size=6, images_per_class=2)
    images = {m: train(prepared, tmp_path, raw, m)[0]["budget"]["images"] for m in ("classification", "supcon")}
    assert images == {"classification": 50, "supcon": 50}


def test_steps_give_every_method_classifications_steps(prepared, tmp_path):
    raw = tiny_params(methods=["classification", "triplet"])
    raw["train"].update(budget="steps", epochs=2)
    steps = 2 * math.ceil(N_TRAIN / 8)  # classification: epochs x ceil(N / batch)
    # triplet, 4 triplets a step: a pass of 18 anchors is 5 steps (4, 4, 4, 4, 2), then one of the next pass
    images = {"classification": 2 * N_TRAIN, "triplet": 3 * (4 + 4 + 4 + 4 + 2 + 4)}
    for method in ("classification", "triplet"):
        meta, curve, _ = train(prepared, tmp_path, raw, method)
        assert (meta["budget"]["steps"], meta["budget"]["images"]) == (steps, images[method]), method
        assert len(curve) == 2  # triplet: the second pass cut after one step


def test_classification_under_its_own_budget_trains_exactly_as_by_epochs(prepared, tmp_path):
    # the schedule counts epochs of the budget: at the default amount classification's are its epochs
    by_epochs = train(prepared, tmp_path / "a", tiny_params(), "classification")
    raw = tiny_params()
    raw["train"]["budget"] = "images"
    by_images = train(prepared, tmp_path / "b", raw, "classification")
    weights = [(tmp_path / f"{run}/model/classification/model.safetensors").read_bytes() for run in ("a", "b")]
    assert weights[0] == weights[1]
    assert by_epochs[1].equals(by_images[1])  # the same curve: losses and learning rates
    assert by_images[0]["budget"]["images"] == 2 * N_TRAIN


def test_the_report_states_the_budget_each_method_used():
    from types import SimpleNamespace

    from stages.report import _budget_lines

    entries = {"classification": SimpleNamespace(budget={"kind": "images", "amount": 36, "steps": [6, 6],
                                                        "images": [36, 36]}),
               "triplet": SimpleNamespace(budget={"kind": "images", "amount": 36, "steps": [3, 4],
                                                  "images": [36, 36]}),
               "pretrained": SimpleNamespace(budget=None)}
    label = {m: m for m in entries}
    (line, blank) = _budget_lines(entries, list(entries), label)
    assert line == ("**Budget** (`train.budget: images`, 36 images per run; images passed forward in training, each "
                    "image of a triplet counted): classification 6 steps, 36 images; triplet 3-4 steps, 36 images.")
    assert _budget_lines({"pretrained": entries["pretrained"]}, ["pretrained"], label) == []
