"""What reaches training: the pixels `fit` receives are exactly the images the split tables name,
with their labels (and the study's negative classes), and no test image reaches training or
validation (which picks the epoch), for every registered method, from generated splits and from
the study's lists; with `triplet.pool: study`, the pool is the whole download and the listed images
are anchors into it. The leak counts the split (`checks.json`) and each run (`meta.json`) report
are the ones these tables give.

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
from stages.lib import trainer, training_data
from stages.lib.errors import PipelineError
from stages.lib.leaks import no_leak
from stages.lib.methods import METHODS
from stages.lib.methods.triplet import Triplet, TripletParams
from stages.lib.trainer import FitResult, SplitData
from tests.helpers import tiny_params, write_params
from tests.stages import study_data as sd

# `triplet.pool`: `split` draws positives and negatives inside the split, `study` (the study's
# sampling) from every downloaded image, test images included.
POOLS = ["split", "study"]


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


def check_what_reached_fit(
    d: Path, dataset: str, seen: dict[str, tuple[SplitData, SplitData]], leaks: dict[str, dict[str, int]]
) -> None:
    """For every method that trains: the images it trains and validates on (its anchors, where a
    split names them) are the rows its tables name, in order, each the manifest row of the table's
    path, with the table's label, which is the class of that path, and the table's negative class
    where it has one; every image it was given is one of its split's own (`pool: split`; always for
    validation), or, to train on, the whole download in manifest order (`pool: study`); no image of
    `test.csv` is among them (among the anchors, with the study's pool); and the run's `meta.json`
    reports `leaks[method]`."""
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
        meta = json.loads((d / "models" / name / "meta.json").read_text())
        assert meta["leak"] == leaks[name], f"{name}: the leak counts in meta.json"
        study_pool = meta.get("triplet_pool") == "study"
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
            if "negative_label" in table.columns:  # the study's triplet lists: each anchor's negative class
                np.testing.assert_array_equal(data.negative_labels, table["negative_label"].to_numpy(),
                                              err_msg=f"{where}: negative classes")
            else:
                assert data.negative_labels is None, where
            if study_pool and part == "train":  # every downloaded image once, in manifest order; the anchors
                # are the listed ones (validation never draws from the pool: checked as `pool: split` below)
                np.testing.assert_array_equal(rows, np.arange(len(manifest)), err_msg=f"{where}: the study's pool")
                assert not set(named.tolist()) & test_rows, f"{where}: a test image among the anchors"
                continue
            # Equal ids, the same image: a sampler never draws an anchor's own image as its positive.
            np.testing.assert_array_equal(data.images, rows, err_msg=f"{where}: images are the manifest rows")
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
    splits = tmp_path / "splits" / "synthetic"
    n_test = len(pd.read_csv(splits / "test.csv"))
    # A generated split keeps every source group on one side: nothing leaks, except the study's
    # pool, which holds every test image.
    leaks = {name: no_leak() for name in METHODS.names()}
    leaks["triplet"] = {**no_leak(), "test_in_pool": n_test if pool == "study" else 0}
    check_what_reached_fit(tmp_path, "synthetic", seen, leaks)
    assert json.loads((splits / "checks.json").read_text()) == {"classification": no_leak()}
    train_table = pd.read_csv(splits / "train.csv")
    assert len(train_table) == (3 * shots if shots else 18)  # the k-shot subset is what trains


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: f"pool={p}")
@pytest.mark.parametrize("shots", [0, 15])
def test_the_study_lists_reach_fit_as_they_name_them(http_files, tmp_path, monkeypatch, shots, pool):
    # The triplet list gains an anchor its train list lacks: image 4 (a val image) of the first breed
    # in the full lists, image 3 (in neither low-data list) in the 15-shot ones.
    low = "low_data_" if shots else ""
    breed, n = sd.BREEDS[0], (3 if shots else 4)
    extra = f"{sd.PETS_ROOT}/{breed}/{breed}_{n}.jpg {breed} {sd.BREEDS[1]}\n"
    listed = sd.study_files()[f"{low}pet_triplet_train.txt"].decode()
    params = sd.serve_study(http_files, sd.study_annotations({f"{low}pet_triplet_train.txt": listed + extra}))
    params.update(methods=METHODS.names(), shots=shots)
    params["triplet"]["pool"] = pool
    seen = run_split_and_train(tmp_path, params, "pets", monkeypatch)
    splits = tmp_path / "splits" / "pets"
    # Outside the train list: the extra anchor; a val image too in the full lists. The study's pool
    # holds all 6 test images. The classification tables are clean.
    triplet = {**no_leak(), "anchors_outside_train": 1, "val_in_train": 0 if shots else 1}
    leaks = {name: no_leak() for name in METHODS.names()}
    leaks["triplet"] = {**triplet, "test_in_pool": 6 if pool == "study" else 0}
    check_what_reached_fit(tmp_path, "pets", seen, leaks)
    assert json.loads((splits / "checks.json").read_text()) == {
        "classification": no_leak(),
        "triplet": {**triplet, "repeated_anchors_train": 1, "repeated_anchors_val": 0},  # one anchor listed twice
    }
    triplet_train = pd.read_csv(splits / "triplet_train.csv")
    assert len(seen["triplet"][0].labels if pool == "split" else seen["triplet"][0].anchors) == len(triplet_train)
    assert len(triplet_train) == (8 if shots else 11)  # the triplet lists train


def test_the_row_code_reads_back():
    pixels = encode_rows(70000, 2)[[0, 255, 256, 65535, 65536, 69999]]
    assert decode_rows(pixels).tolist() == [0, 255, 256, 65535, 65536, 69999]


# --- the train stage's refusals of decoded data that does not fit its split ---------------------


def small_split(d: Path, size: int = 4) -> Path:
    """A split folder by hand (rows 0-3 train, 4-5 val, 6-7 test; classes alternate) and its decoded
    array of 8 images at `size` pixels; returns the split folder."""
    splits = d / "splits"
    splits.mkdir()
    pool = pd.DataFrame({"row": range(8), "path": [f"im{i}" for i in range(8)], "label": [i % 2 for i in range(8)],
                         "class": [f"c{i % 2}" for i in range(8)], "group": [f"g{i}" for i in range(8)]})
    for name, part in (("train", pool[:4]), ("val", pool[4:6]), ("test", pool[6:]), ("pool", pool)):
        part.to_csv(splits / f"{name}.csv", index=False)
    np.save(d / "decoded.npy", encode_rows(8, size))
    return splits


def triplet(pool: str) -> Triplet:
    return Triplet(TripletParams(batch_size=4, margin=1.0, pool=pool), n_classes=2, embed_dim=4)


@pytest.mark.parametrize("pool", POOLS)
def test_decoded_images_of_another_size_are_refused(tmp_path, pool):
    splits = small_split(tmp_path, size=4)
    with pytest.raises(PipelineError) as error:
        training_data.training_data(triplet(pool), splits, tmp_path / "decoded.npy", 8)
    assert str(error.value) == f"{tmp_path / 'decoded.npy'} holds 4x4 images but model.image_size is 8; re-run decode"
    if pool == "study":  # the pool's pixels are checked too, not only through the val table's
        tables = {"train": pd.read_csv(splits / "train.csv")}
        with pytest.raises(PipelineError, match="holds 4x4 images but model.image_size is 8"):
            training_data.decoded_splits(tmp_path / "decoded.npy", tables, pd.read_csv(splits / "pool.csv"), 8)


def test_a_pool_out_of_manifest_order_is_refused(tmp_path):
    splits = small_split(tmp_path)
    pool = pd.read_csv(splits / "pool.csv")
    pool.iloc[::-1].to_csv(splits / "pool.csv", index=False)  # the same images and labels, another order
    with pytest.raises(PipelineError) as error:
        training_data.training_data(triplet("study"), splits, tmp_path / "decoded.npy", 4)
    assert str(error.value) == "pool.csv does not list the download in manifest order; re-run the split stage"


def test_a_pool_that_disagrees_on_labels_is_refused(tmp_path):
    splits = small_split(tmp_path)
    table = pd.read_csv(splits / "train.csv")
    table.assign(label=1 - table["label"]).to_csv(splits / "train.csv", index=False)
    with pytest.raises(PipelineError) as error:
        training_data.training_data(triplet("study"), splits, tmp_path / "decoded.npy", 4)
    assert str(error.value) == "train and pool.csv disagree on labels; re-run the split stage"


def test_a_study_list_for_train_alone_is_checked_against_the_splits_own_train_list(tmp_path):
    splits = small_split(tmp_path)
    listed = pd.read_csv(splits / "train.csv").iloc[[0, 1, 1]]  # the study's triplet list: anchors, one twice
    listed.to_csv(splits / "triplet_train.csv", index=False)
    tables, pool, listed_train = training_data.training_tables(splits, triplet("split"))
    assert tables["train"]["path"].tolist() == ["im0", "im1", "im1"] and pool is None
    assert tables["val"]["path"].tolist() == ["im4", "im5"]  # no study list for val: the split's own
    assert listed_train["path"].tolist() == ["im0", "im1", "im2", "im3"]


def test_an_unseen_split_whose_protocol_names_an_unknown_class_is_refused_naming_the_table(tmp_path):
    splits = small_split(tmp_path)
    (splits / "classes.json").write_text(json.dumps(["c0", "c1"]))
    (splits / "protocol.json").write_text(json.dumps({"classes": "unseen", "train_classes": ["c0", "c9"],
                                                      "test_classes": ["c1"]}))
    with pytest.raises(PipelineError) as error:
        training_data.training_tables(splits, triplet("split"))
    assert str(error.value) == (f"{splits}/train.csv: protocol.json names classes that classes.json lacks; "
                                "re-run the split stage")
