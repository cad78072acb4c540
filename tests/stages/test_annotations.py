"""The annotations stage, `split` with the study's lists, `train` on its triplet lists, and the real
`dvc repro` of the study's pipeline on tiny stand-ins served from a loopback server."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages import annotations, decode, download, split, train, weights
from stages.lib import trainer
from tests.helpers import project_copy, run, write_params
from tests.stages import study_data as sd


def _fails(capsys, func, argv) -> str:
    with pytest.raises(SystemExit) as info:
        func(argv)
    assert info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1
    return lines[0]


def _annotations(tmp_path, params: dict) -> list[str]:
    p = write_params(tmp_path / "params.yaml", params)
    out, cache = tmp_path / "raw" / "annotations", tmp_path / "cache" / "a"
    return ["--params", str(p), "--out", str(out), "--cache", str(cache)]


def test_annotations_from_an_archive_url(http_files, tmp_path):
    params = sd.serve_study(http_files)
    annotations.main(_annotations(tmp_path, params))
    out = tmp_path / "raw" / "annotations"
    expected = sorted(sd.study_files())
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, "source.json"])
    source = json.loads((out / "source.json").read_text())
    assert source["url"] == http_files.url("/drive/annotations.zip")
    assert source["files"]["pet_train.txt"] == sd.sha256(sd.study_files()["pet_train.txt"])
    assert (out / "pet_train.txt").read_bytes() == sd.study_files()["pet_train.txt"]  # byte for byte (CRLF kept)
    assert [p.name for p in (tmp_path / "cache" / "a").iterdir()] == ["annotations.zip"]


def test_annotations_from_the_drive_folder(http_files, tmp_path, monkeypatch):
    params = sd.serve_study(http_files)
    params["sources"]["annotations"]["url"] = None
    calls = []

    def download_folder(id, output, quiet):  # noqa: A002 -- gdown's keyword
        calls.append(id)
        folder = Path(output) / "contrastive-annotations"
        folder.mkdir(parents=True)
        for name, data in sd.study_files().items():
            (folder / name).write_bytes(data)
        (folder / "notebook.ipynb").write_text("{}")
        return [str(p) for p in folder.iterdir()]

    gdown = types.ModuleType("gdown")
    gdown.download_folder = download_folder
    monkeypatch.setitem(sys.modules, "gdown", gdown)
    annotations.main(_annotations(tmp_path, params))
    assert calls == ["1a-zzC2Gyu-7nwQ6KanNKCFcw099U6E6w"]
    out = tmp_path / "raw" / "annotations"
    assert sorted(p.name for p in out.iterdir()) == sorted([*sd.study_files(), "source.json"])
    assert json.loads((out / "source.json").read_text())["drive_folder"] == "1a-zzC2Gyu-7nwQ6KanNKCFcw099U6E6w"


def test_generated_needs_no_network(tmp_path):
    from tests.helpers import tiny_params

    p = tiny_params()
    p["sources"]["annotations"]["url"] = "http://127.0.0.1:9/never-fetched.zip"
    annotations.main(_annotations(tmp_path, p))
    out = tmp_path / "raw" / "annotations"
    assert [x.name for x in out.iterdir()] == ["unused.json"]
    assert json.loads((out / "unused.json").read_text()) == {"split.source": "generated", "used": False}


def test_wrong_checksum_leaves_nothing(http_files, tmp_path, capsys):
    params = sd.serve_study(http_files)
    params["sources"]["annotations"]["sha256"] = "a" * 64
    message = _fails(capsys, annotations.main, _annotations(tmp_path, params))
    assert "checksum mismatch" in message and http_files.url("/drive/annotations.zip") in message
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []
    assert list((tmp_path / "cache" / "a").iterdir()) == []


def test_archive_without_lists_is_refused(http_files, tmp_path, capsys):
    params = sd.serve_study(http_files, annotations=sd.zip_bytes({"folder/readme.txt": b"hello"}))
    params["sources"]["annotations"]["sha256"] = None
    message = _fails(capsys, annotations.main, _annotations(tmp_path, params))
    assert "holds none of the study's split lists" in message and "sources.annotations" in message
    assert list((tmp_path / "raw").iterdir()) == []
    cached = sorted(p.name for p in (tmp_path / "cache" / "a").iterdir())
    assert cached == ["annotations.zip", "annotations.zip.sha256"]  # the archive and its recorded checksum only


# --------------------------------------------------------------------------- split and train


def _prepare(tmp_path, params: dict, dataset: str) -> str:
    """download, annotations and split for `dataset`; returns the params file."""
    p = str(write_params(tmp_path / "params.yaml", params))
    d = tmp_path
    download.main([dataset, "--params", p, "--out", f"{d}/raw/{dataset}", "--cache", f"{d}/cache/{dataset}"])
    if not (d / "raw" / "annotations").exists():
        annotations.main(["--params", p, "--out", f"{d}/raw/annotations", "--cache", f"{d}/cache/a"])
    split.main([dataset, "--params", p, "--raw", f"{d}/raw/{dataset}", "--annotations", f"{d}/raw/annotations",
                "--out", f"{d}/splits/{dataset}"])
    return p


def _table(tmp_path, dataset, name) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "splits" / dataset / f"{name}.csv")


def test_split_uses_the_study_lists(http_files, tmp_path, caplog):
    params = sd.serve_study(http_files)
    _prepare(tmp_path, params, "pets")
    assert sorted(p.name for p in (tmp_path / "splits" / "pets").iterdir()) == [
        "checks.json", "classes.json", "pool.csv", "test.csv", "train.csv", "triplet_train.csv", "triplet_val.csv",
        "val.csv",
    ]
    train_table = _table(tmp_path, "pets", "train")
    assert list(train_table.columns) == ["row", "path", "label", "class", "group"]
    assert sorted(train_table["path"]) == sorted(
        f"images/{b}/{b}_{n}.jpg" for b in sd.BREEDS for n in (1, 2, 3)
    )
    assert len(_table(tmp_path, "pets", "test")) == 6 and len(_table(tmp_path, "pets", "val")) == 3
    triplets = _table(tmp_path, "pets", "triplet_train")
    assert list(triplets.columns) == ["row", "path", "label", "class", "group", "negative_label"]
    assert len(triplets) == 10  # 9 anchors and one of them again with another negative class
    manifest = pd.read_csv(tmp_path / "raw" / "pets" / "manifest.csv")
    assert (manifest.loc[triplets["row"], "path"].to_numpy() == triplets["path"].to_numpy()).all()
    assert json.loads((tmp_path / "splits" / "pets" / "classes.json").read_text()) == sorted(sd.BREEDS)

    checks = json.loads((tmp_path / "splits" / "pets" / "checks.json").read_text())
    assert checks["triplet"]["repeated_anchors_train"] == 1 and checks["triplet"]["anchors_outside_train"] == 0
    assert checks["classification"]["test_in_train"] == 0 and "repeated_anchors_train: 1" not in caplog.text
    assert "repeated_anchors_train 1" in caplog.text  # counted in the split log
    pool = _table(tmp_path, "pets", "pool")
    assert list(pool["row"]) == list(range(len(manifest))) and (pool["path"] == manifest["path"]).all()

    _prepare(tmp_path, params, "defungi")  # its lists put patches of raw image 2a in train and test
    assert "source groups" in caplog.text and "split.source: generated never does this" in caplog.text
    assert len(_table(tmp_path, "defungi", "test")) == 10
    checks = json.loads((tmp_path / "splits" / "defungi" / "checks.json").read_text())
    # Raw image 2a of each class has patches in train and test, 3a in val and test.
    assert checks["classification"]["groups_across"] == 10


def test_split_with_15_shots_uses_the_low_data_lists(http_files, tmp_path):
    params = sd.serve_study(http_files)
    params["shots"] = 15
    _prepare(tmp_path, params, "pets")
    assert sorted(_table(tmp_path, "pets", "train")["path"]) == sorted(
        f"images/{b}/{b}_{n}.jpg" for b in sd.BREEDS for n in (1, 2)
    )
    assert len(_table(tmp_path, "pets", "triplet_train")) == 7


def test_the_test_table_keeps_the_study_list_order(http_files, tmp_path):
    """The study scored its test list in its file's order (batches of four, docs/study-scoring.md):
    test.csv keeps that order line by line; the other tables stay sorted by manifest row."""
    order = [("pug", 6), ("Abyssinian", 5), ("american_bulldog", 6), ("pug", 5), ("Abyssinian", 6),
             ("american_bulldog", 5)]
    listed = "\n".join(f"{sd.PETS_ROOT}/{b}/{b}_{n}.jpg" for b, n in order) + "\n"
    params = sd.serve_study(http_files, annotations=sd.study_annotations({"pet_test.txt": listed}))
    _prepare(tmp_path, params, "pets")
    test = _table(tmp_path, "pets", "test")
    assert list(test["path"]) == [f"images/{b}/{b}_{n}.jpg" for b, n in order]
    manifest = pd.read_csv(tmp_path / "raw" / "pets" / "manifest.csv")
    assert list(manifest.loc[test["row"], "path"]) == list(test["path"])  # rows still index the manifest
    assert list(test["label"]) == [sorted(sd.BREEDS).index(b) for b, _ in order]
    for name in ("train", "val", "triplet_train"):
        rows = list(_table(tmp_path, "pets", name)["row"])
        assert rows == sorted(rows)
    _prepare(tmp_path, params, "defungi")  # its list: every class's 2a patch (Windows paths), then every 3a
    expected = [f"images/{c}/{c}_{raw}_2.jpg" for raw in ("2a", "3a") for c in sd.DEFUNGI_CLASSES]
    assert list(_table(tmp_path, "defungi", "test")["path"]) == expected


def test_line_whose_image_does_not_exist(http_files, tmp_path, capsys):
    bad = "/home/someone/data/pets/images/pug/pug_1.jpg\n\n/home/someone/data/pets/images/pug/pug_77.jpg\n"
    params = sd.serve_study(http_files, annotations=sd.study_annotations({"pet_test.txt": bad}))
    p = write_params(tmp_path / "params.yaml", params)
    d = tmp_path
    download.main(["pets", "--params", str(p), "--out", f"{d}/raw/pets", "--cache", f"{d}/cache/pets"])
    annotations.main(["--params", str(p), "--out", f"{d}/raw/annotations", "--cache", f"{d}/cache/a"])
    capsys.readouterr()
    message = _fails(capsys, split.main, ["pets", "--params", str(p), "--raw", f"{d}/raw/pets",
                                          "--annotations", f"{d}/raw/annotations", "--out", f"{d}/splits/pets"])
    assert f"{d}/raw/annotations/pet_test.txt, line 3:" in message
    assert "'/home/someone/data/pets/images/pug/pug_77.jpg'" in message and "images/pug/pug_77.jpg" in message
    assert not (d / "splits").exists() or list((d / "splits").iterdir()) == []


def test_generated_split_sizes_test_like_the_study(http_files, tmp_path):
    params = sd.serve_study(http_files)
    params["split"].update(source="generated", test_per_class=2, val_fraction=0.2)
    _prepare(tmp_path, params, "defungi")
    test = _table(tmp_path, "defungi", "test")
    assert test.groupby("class").size().to_dict() == {c: 2 for c in sd.DEFUNGI_CLASSES}
    rest = pd.concat([_table(tmp_path, "defungi", "train"), _table(tmp_path, "defungi", "val")])
    assert not set(test["group"]) & set(rest["group"])  # no raw image on two sides
    assert not (tmp_path / "splits" / "defungi" / "triplet_train.csv").exists()


def test_train_uses_the_triplet_lists(http_files, tmp_path, monkeypatch):
    params = sd.serve_study(http_files)
    p = _prepare(tmp_path, params, "pets")
    d = tmp_path
    decode.main(["--params", p, "--raw", f"{d}/raw/pets", "--out", f"{d}/decoded.npy"])
    weights.main(["--params", p, "--out", f"{d}/pretrained", "--cache", f"{d}/cache/w"])
    seen = {}
    real_fit = trainer.fit  # the train stage imports it when it runs

    def spy(method, backbone, train_data, val_data, *args, **kwargs):
        seen[method.name] = (train_data, val_data)
        return real_fit(method, backbone, train_data, val_data, *args, **kwargs)

    monkeypatch.setattr(trainer, "fit", spy)
    for method in ("triplet", "classification"):
        train.main(["pets", method, "--seed", "0",
                    "--params", p, "--splits", f"{d}/splits/pets", "--decoded", f"{d}/decoded.npy",
                    "--weights", f"{d}/pretrained", "--out", f"{d}/models/{method}", "--curve", f"{d}/{method}.csv"])
    triplets = _table(tmp_path, "pets", "triplet_train")
    train_data, val_data = seen["triplet"]
    assert (train_data.labels == triplets["label"].to_numpy()).all()
    assert (train_data.negative_labels == triplets["negative_label"].to_numpy()).all()
    assert len(val_data.labels) == 3 and val_data.negative_labels is not None
    train_data, _ = seen["classification"]
    assert len(train_data.labels) == 9 and train_data.negative_labels is None
    assert (d / "models" / "triplet" / "model.safetensors").exists()
    meta = json.loads((d / "models" / "triplet" / "meta.json").read_text())
    assert meta["triplet_pool"] == "split" and meta["leak"]["test_in_pool"] == 0
    assert meta["leak"]["anchors_outside_train"] == 0 and meta["leak"]["test_in_train"] == 0

    # The study's sampling: the anchors of its list, drawn against every downloaded image, test included.
    study = yaml.safe_load(Path(p).read_text())
    study["triplet"]["pool"] = "study"
    p = str(write_params(tmp_path / "study.yaml", study))
    train.main(["pets", "triplet", "--seed", "0", "--params", p, "--splits", f"{d}/splits/pets",
                "--decoded", f"{d}/decoded.npy", "--weights", f"{d}/pretrained", "--out", f"{d}/models/study",
                "--curve", f"{d}/study.csv"])
    train_data, val_data = seen["triplet"]
    manifest = pd.read_csv(d / "raw" / "pets" / "manifest.csv")
    assert len(train_data.pixels) == len(manifest)
    # Validation is drawn from the validation images only, never from the pool (which holds the test images).
    assert val_data.pixels is not train_data.pixels and len(val_data.pixels) < len(manifest)
    assert (train_data.anchors == triplets["row"].to_numpy()).all()
    meta = json.loads((d / "models" / "study" / "meta.json").read_text())
    assert meta["triplet_pool"] == "study" and meta["leak"]["test_in_pool"] == 6  # every test image


# --------------------------------------------------------------------------- dvc repro


def test_dvc_repro_of_the_study_on_tiny_stand_ins(http_files, tmp_path):
    params = sd.serve_study(http_files)
    repo = project_copy(tmp_path / "repo", params)
    targets = ["train@pets-triplet-0", "train@defungi-classification-0"]  # both datasets, both methods
    run(["dvc", "repro", *targets], repo, timeout=600)
    assert (repo / "data" / "raw" / "annotations" / "micro_triplet_train.txt").exists()
    for dataset in ("pets", "defungi"):
        assert (repo / "data" / "splits" / dataset / "triplet_train.csv").exists()
    for target in ("pets/triplet/seed0", "defungi/classification/seed0"):
        meta = json.loads((repo / "models" / target / "meta.json").read_text())
        assert meta["pretrained"] is True and meta["model"] == "test_convnext"
    info = json.loads((repo / "models" / "pretrained" / "info.json").read_text())
    assert info["sha256"] == sd.sha256(http_files.files["/hub/model.safetensors"])
    downloads = http_files.hits("/pets/images.tar.gz")
    status = run(["dvc", "status", *targets], repo)
    assert "up to date" in status.stdout  # a second repro would do nothing
    assert http_files.hits("/pets/images.tar.gz") == downloads
