"""`train.select` through the stages: the train stage keeps the epoch of the best validation score
(scored on the split's `val.csv` images, never a test image), records the rule and the score in
meta.json, and the evaluate stage carries the rule into the metrics the report reads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages import embed, evaluate, train
from stages.lib import embedding
from tests.helpers import prepare_synthetic, tiny_params, write_params


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    """A tiny synthetic split, decoded, and untrained weights: (folder, params file)."""
    d = tmp_path_factory.mktemp("select")
    prepare_synthetic(d, tiny_params())
    return d


def test_the_train_stage_keeps_the_best_validation_score_and_records_its_rule(tiny_split, tmp_path, monkeypatch):
    d = tiny_split
    raw = tiny_params()
    raw["train"].update(select="val_kmeans", epochs=3, cosine_t_max=3)
    p = str(write_params(tmp_path / "params.yaml", raw))
    pixels = np.load(d / "decoded.npy")
    embedded = []
    real = embedding.embed_pixels
    monkeypatch.setattr(embedding, "embed_pixels", lambda b, x, *a: embedded.append(np.asarray(x)) or real(b, x, *a))
    out, curve = tmp_path / "model", tmp_path / "curve.csv"
    train.main(["synthetic", "classification", "--seed", "0", "--params", p, "--splits", f"{d}/splits",
                "--decoded", f"{d}/decoded.npy", "--weights", f"{d}/pretrained", "--out", str(out),
                "--curve", str(curve)])
    val, test = (pd.read_csv(d / f"splits/{name}.csv") for name in ("val", "test"))
    assert len(embedded) == 3  # once per epoch, exactly the validation images
    assert all(np.array_equal(x, pixels[val["row"].to_numpy()]) for x in embedded)
    table = pd.read_csv(curve)
    meta = json.loads((out / "meta.json").read_text())
    kept = table[table["val_score"] == table["val_score"].max()]["epoch"].max()  # the later on a tie
    assert (meta["select"], meta["best_epoch"]) == ("val_kmeans", kept)
    assert meta["best_val_score"] == pytest.approx(table["val_score"].max(), abs=1e-6)
    assert table.loc[table["best"] == 1, "epoch"].tolist() == [kept]
    assert not set(test["row"]) & set(val["row"])
    embed.main(["--params", p, "--model", str(out), "--splits", f"{d}/splits", "--decoded", f"{d}/decoded.npy",
                "--out", f"{tmp_path}/emb.npz"])
    evaluate.main(["--params", p, "--embeddings", f"{tmp_path}/emb.npz", "--out", f"{tmp_path}/m.json",
                   "--predictions", f"{tmp_path}/pred.csv"])
    assert json.loads((tmp_path / "m.json").read_text())["select"] == "val_kmeans"
