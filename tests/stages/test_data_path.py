"""What reaches training: the pixels `fit` receives are exactly the images the split tables name,
with their labels, and no test image reaches training or validation (which picks the epoch), for
every registered method, from generated splits and from the study's lists.

The decoded array is written by hand so that every image is one flat colour spelling its own
manifest row (base 256 over the three channels): whatever `fit` receives can be read back to the
manifest rows, and so to paths, classes and splits. `fit` itself is replaced by a spy, so this
checks the data path, not training, and every method costs a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages import annotations, download, split, train, weights
from stages.lib import trainer
from stages.lib.methods import METHODS
from stages.lib.methods.triplet import TripletParams
from stages.lib.trainer import FitResult, SplitData
from tests.helpers import tiny_params, write_params
from tests.stages import study_data as sd

# `triplet.pool` (where positives and negatives come from) once the params have it: `split` keeps
# them inside the split; a pool that reaches test images on purpose needs its own expectations.
POOLS = ["split"] if "pool" in {f.name for f in dataclasses.fields(TripletParams)} else [None]


def encode_rows(n: int, size: int) -> np.ndarray:
    """n flat images, image i the colour (i % 256, i // 256 % 256, i // 65536): its own row."""
    rows = np.arange(n)
    colours = np.stack([rows % 256, rows // 256 % 256, rows // 65536], axis=1).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(colours[:, None, None, :], (n, size, size, 3)))


def decode_rows(pixels: np.ndarray) -> np.ndarray:
    """The manifest rows that `encode_rows` images spell; fails on anything that is not one of them."""
    pixels = np.asarray(pixels)
    assert pixels.ndim == 4 and pixels.dtype == np.uint8, (pixels.dtype, pixels.shape)
    corner = pixels[:, :1, :1, :]
    assert (pixels == corner).all(), "an image reaching fit is not one whole decoded image"
    c = corner[:, 0, 0, :].astype(np.int64)
    return c[:, 0] + 256 * c[:, 1] + 65536 * c[:, 2]


def image_arrays(data: SplitData) -> dict[str, np.ndarray]:
    """Every image array a split carries (pixels, and any pool of images a method draws from)."""
    found = {}
    for f in dataclasses.fields(data):
        value = getattr(data, f.name)
        if isinstance(value, np.ndarray) and value.ndim == 4:
            found[f.name] = value
    return found


def spy_on_fit(monkeypatch) -> dict[str, tuple[SplitData, SplitData]]:
    """Replace `stages.lib.trainer.fit`: record the train and validation data each method is given and
    return the starting weights, so the stage finishes without training."""
    seen: dict[str, tuple[SplitData, SplitData]] = {}

    def fake_fit(method, backbone, train_data, val_data, params, **kwargs):
        seen[method.name] = (train_data, val_data)
        return FitResult({k: v.clone() for k, v in backbone.state_dict().items()}, None, 1, 0.0)

    monkeypatch.setattr(trainer, "fit", fake_fit)  # the train stage imports it from there
    return seen


def run_split_and_train(d: Path, params: dict, dataset: str, monkeypatch) -> dict[str, tuple[SplitData, SplitData]]:
    """download, (annotations), split, a hand-made decoded array, weights, then train for every method."""
    p = str(write_params(d / "params.yaml", params))
    raw, splits, decoded = d / "raw" / dataset, d / "splits" / dataset, d / "decoded.npy"
    download.main([dataset, "--params", p, "--out", str(raw), "--cache", f"{d}/cache/{dataset}"])
    annotations.main(["--params", p, "--out", f"{d}/raw/annotations", "--cache", f"{d}/cache/a"])
    split.main([dataset, "--params", p, "--raw", str(raw), "--annotations", f"{d}/raw/annotations",
                "--out", str(splits)])
    manifest = pd.read_csv(raw / "manifest.csv")
    np.save(decoded, encode_rows(len(manifest), params["model"]["image_size"]))
    weights.main(["--params", p, "--out", f"{d}/pretrained", "--cache", f"{d}/cache/w"])
    seen = spy_on_fit(monkeypatch)
    for method in METHODS.names():
        train.main([dataset, method, "--seed", str(params["seeds"][0]), "--params", p, "--splits", str(splits),
                    "--decoded", str(decoded), "--weights", f"{d}/pretrained", "--out", f"{d}/models/{method}",
                    "--curve", f"{d}/curves/{method}.csv"])
    return seen


def check_what_reached_fit(d: Path, dataset: str, seen: dict[str, tuple[SplitData, SplitData]]) -> None:
    """For every method that trains: the images it trains and validates on (its anchors, where a
    split names them) are the rows its tables name, in order, each the manifest row of the table's
    path, with the table's label, which is the class of that path; every image it was given is one
    of its split's own (`pool: split`); and no image of `test.csv` is among them."""
    splits = d / "splits" / dataset
    manifest = pd.read_csv(d / "raw" / dataset / "manifest.csv")
    classes = json.loads((splits / "classes.json").read_text())
    test = pd.read_csv(splits / "test.csv")
    test_rows = set(manifest.index[manifest["path"].isin(test["path"])])
    assert test_rows == set(test["row"])  # test.csv's rows are its images' manifest rows
    for name in METHODS.names():
        method = METHODS.get(name)
        if not method.trains:
            assert name not in seen
            continue
        assert name in seen, f"{name} never reached fit"
        for part, data in zip(("train", "val"), seen[name], strict=True):
            table_name = method.study_tables.get(part, part)
            if not (splits / f"{table_name}.csv").is_file():
                table_name = part
            table = pd.read_csv(splits / f"{table_name}.csv")
            where = f"{name} {part} ({table_name}.csv)"
            rows = decode_rows(data.pixels)
            anchors = getattr(data, "anchors", None)  # indices of the named images among the pixels
            named = rows if anchors is None else rows[anchors]
            labels = data.labels if anchors is None else data.labels[anchors]
            np.testing.assert_array_equal(named, table["row"].to_numpy(), err_msg=f"{where}: rows")
            np.testing.assert_array_equal(manifest.loc[named, "path"].to_numpy(), table["path"].to_numpy(),
                                          err_msg=f"{where}: the pixels are not the images the table names")
            np.testing.assert_array_equal(labels, table["label"].to_numpy(), err_msg=f"{where}: labels")
            np.testing.assert_array_equal(data.labels, manifest.loc[rows, "class"].map(classes.index).to_numpy(),
                                          err_msg=f"{where}: a label is not its image's class")
            images = getattr(data, "images", None)  # an id per pixel row: equal ids, the same image
            if images is not None:
                same = np.asarray(images)[:, None] == np.asarray(images)[None, :]
                np.testing.assert_array_equal(same, rows[:, None] == rows[None, :], err_msg=f"{where}: images")
            own = set(table["row"]) | set(pd.read_csv(splits / f"{part}.csv")["row"])
            for field, array in image_arrays(data).items():
                reached = set(decode_rows(array).tolist())
                leaked = sorted(reached & test_rows)
                assert not leaked, f"{where}: {field} holds test images (manifest rows {leaked})"
                assert reached <= own, f"{where}: {field} holds images from outside the split: {sorted(reached - own)}"


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: f"pool={p}")
@pytest.mark.parametrize("shots", [0, 4])
def test_generated_splits_reach_fit_as_their_tables_name_them(tmp_path, monkeypatch, shots, pool):
    params = tiny_params(methods=METHODS.names(), shots=shots)
    if pool is not None:
        params["triplet"]["pool"] = pool
    seen = run_split_and_train(tmp_path, params, "synthetic", monkeypatch)
    check_what_reached_fit(tmp_path, "synthetic", seen)
    train_table = pd.read_csv(tmp_path / "splits" / "synthetic" / "train.csv")
    assert len(train_table) == (3 * shots if shots else 18)  # the k-shot subset is what trains


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: f"pool={p}")
@pytest.mark.parametrize("shots", [0, 15])
def test_the_study_lists_reach_fit_as_they_name_them(http_files, tmp_path, monkeypatch, shots, pool):
    params = sd.serve_study(http_files)
    params.update(methods=METHODS.names(), shots=shots)
    if pool is not None:
        params["triplet"]["pool"] = pool
    seen = run_split_and_train(tmp_path, params, "pets", monkeypatch)
    check_what_reached_fit(tmp_path, "pets", seen)
    triplet_train = pd.read_csv(tmp_path / "splits" / "pets" / "triplet_train.csv")
    assert len(seen["triplet"][0].labels) == len(triplet_train) == (7 if shots else 10)  # the triplet lists train


def test_the_row_code_reads_back():
    pixels = encode_rows(70000, 2)[[0, 255, 256, 65535, 65536, 69999]]
    assert decode_rows(pixels).tolist() == [0, 255, 256, 65535, 65536, 69999]
