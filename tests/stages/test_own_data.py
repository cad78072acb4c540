"""Datasets of your own (`sources.<name>: {folder: ...}` or `{csv: ..., root: ...}`) through the
source, download and split stages, in-process: what is found and skipped, what the manifest and
splits hold, and every bad input as one line naming the file (and CSV line) and the fix, with
nothing written."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import download, source, split
from stages.lib.params import params_from_dict
from tests.helpers import tiny_params, write_params
from tests.reliability.conftest import error_line

FORMATS = [("PNG", ".png"), ("JPEG", ".JPG"), ("WEBP", ".webp"), ("BMP", ".Bmp"), ("TIFF", ".tiff"), ("JPEG", ".jpeg")]


def image_bytes(value: int, fmt: str = "PNG", size: int = 12) -> bytes:
    """A small image whose pixels depend on `value` (so no two files are equal)."""
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def flower_folder(root: Path, classes=("daisy", "rose", "tulip"), per_class: int = 4) -> Path:
    """`root/<class>/...`: every format, upper-case suffixes, a nested folder, debris and a note."""
    files = {}
    for c, name in enumerate(classes):
        for i in range(per_class):
            fmt, suffix = FORMATS[(c + i) % len(FORMATS)]
            sub = "2024/" if i % 2 else ""
            files[f"{name}/{sub}{name}_{i}{suffix}"] = image_bytes(10 * c + i, fmt)
    files.update({
        ".DS_Store": b"debris", "__MACOSX/rose/._rose_0.png": b"debris", f"{classes[0]}/Thumbs.db": b"debris",
        f"{classes[0]}/.hidden.png": image_bytes(99), f"{classes[1]}/notes.txt": b"not an image",
        f"{classes[1]}/.cache/x.png": image_bytes(98), "README.txt": b"outside the classes",
    })
    return write_files(root, files)


def table(root: Path, rows: list[tuple], header: str = "path,label") -> Path:
    """`root/labels.csv` from rows of cells; images under `root/images` are written for every existing path."""
    text = header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows)
    (root / "labels.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text(text)
    return root / "labels.csv"


def table_images(root: Path, labels=("cat", "dog"), per_label: int = 4, split=False, group=None) -> list[tuple]:
    """Images under `root/images/<n>.png` and rows for them: (path, label[, group][, split]).

    `group(i)`: the group of the label's i-th image (prefixed with the label; "" stays empty).
    Splits go train, train, val, test, ..."""
    rows = []
    for li, label in enumerate(labels):
        for i in range(per_label):
            rel = f"{'sub/' if i % 2 else ''}{label}{i}.png"
            write_files(root / "images", {rel: image_bytes(100 + 10 * li + i)})
            row = [rel, label]
            if group:
                row.append(group(i) and f"{label}-{group(i)}")
            if split:
                row.append(("train", "train", "val", "test")[i % 4])
            rows.append(tuple(row))
    return rows


def params_file(tmp_path: Path, name: str, spec: dict, **overrides) -> Path:
    p = tiny_params(datasets=[name], **overrides)
    p["sources"][name] = spec
    return write_params(tmp_path / "params.yaml", p)


def run(main, args: list[str]) -> None:
    main(args)


def fails(capsys, main, args: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 1
    return error_line(capsys.readouterr().err, strict=False)


def download_args(tmp_path: Path, name: str, params: Path) -> list[str]:
    return [name, "--params", str(params), "--out", str(tmp_path / "raw" / name), "--cache",
            str(tmp_path / "cache" / name)]


def split_args(tmp_path: Path, name: str, params: Path) -> list[str]:
    return [name, "--params", str(params), "--raw", str(tmp_path / "raw" / name), "--out",
            str(tmp_path / "splits" / name)]


# --- a folder of class folders --------------------------------------------------------------


def test_folder_download_copies_every_image_and_skips_debris(tmp_path, caplog):
    folder = flower_folder(tmp_path / "flowers")
    params = params_file(tmp_path, "flowers", {"folder": str(folder)})
    run(download.main, download_args(tmp_path, "flowers", params))
    raw = tmp_path / "raw" / "flowers"
    manifest = pd.read_csv(raw / "manifest.csv", keep_default_na=False)
    assert list(manifest.columns) == ["path", "class", "group", "bytes", "sha256"]
    expected = sorted(
        f"images/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*")
        if p.is_file() and p.parts[-2] != "__MACOSX" and not any(s.startswith(".") for s in p.relative_to(folder).parts)
        and p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tiff"} and "__MACOSX" not in p.parts
    )
    assert len(expected) == 12 and manifest["path"].tolist() == expected
    assert manifest["class"].tolist() == [p.split("/")[1] for p in expected]
    assert manifest["group"].tolist() == [p.removeprefix("images/") for p in expected]  # each image its own
    for row in manifest.itertuples():
        original = (folder / row.path.removeprefix("images/")).read_bytes()
        assert (raw / row.path).read_bytes() == original
        assert row.bytes == len(original) and row.sha256 == hashlib.sha256(original).hexdigest()
    assert sorted(p.name for p in (raw / "images").iterdir()) == ["daisy", "rose", "tulip"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "rose/notes.txt" in warned and "README.txt" in warned and "Thumbs.db" not in warned


def test_folder_generated_split_and_decode_order(tmp_path):
    folder = flower_folder(tmp_path / "flowers")
    params = params_file(tmp_path, "flowers", {"folder": str(folder)})
    run(download.main, download_args(tmp_path, "flowers", params))
    run(split.main, split_args(tmp_path, "flowers", params))
    out = tmp_path / "splits" / "flowers"
    tables = {s: pd.read_csv(out / f"{s}.csv") for s in ("train", "val", "test")}
    assert json.loads((out / "classes.json").read_text()) == ["daisy", "rose", "tulip"]
    every = pd.concat(tables.values())
    assert sorted(every["row"]) == list(range(12))
    for t in tables.values():
        assert sorted(t["class"].unique()) == ["daisy", "rose", "tulip"]


def test_relative_folder_is_relative_to_the_params_file(tmp_path, monkeypatch):
    flower_folder(tmp_path / "data" / "own")
    params = params_file(tmp_path, "flowers", {"folder": "data/own"})
    monkeypatch.chdir(tmp_path.parent)
    run(source.main, ["flowers", "--params", str(params), "--out", str(tmp_path / "src")])
    assert os.readlink(tmp_path / "src" / "images") == str(tmp_path / "data" / "own")
    run(download.main, download_args(tmp_path, "flowers", params))
    assert (tmp_path / "raw" / "flowers" / "manifest.csv").is_file()


# --- the source stage -----------------------------------------------------------------------


def test_source_links_a_folder_a_table_and_notes_a_registered_dataset(tmp_path):
    folder = flower_folder(tmp_path / "flowers")
    p = tiny_params(datasets=["flowers", "pets_table", "synthetic"])
    p["sources"]["flowers"] = {"folder": str(folder)}
    csv_file = table(tmp_path / "t", table_images(tmp_path / "t"))
    p["sources"]["pets_table"] = {"csv": str(csv_file), "root": str(tmp_path / "t" / "images")}
    params = write_params(tmp_path / "params.yaml", p)
    for name in ("flowers", "pets_table", "synthetic"):
        run(source.main, [name, "--params", str(params), "--out", str(tmp_path / "src" / name)])
    flowers, pets_table, synthetic = (tmp_path / "src" / n for n in ("flowers", "pets_table", "synthetic"))
    assert (flowers / "images").is_symlink() and os.readlink(flowers / "images") == str(folder)
    assert sorted(p.name for p in flowers.iterdir()) == ["images", "source.json"]
    assert json.loads((flowers / "source.json").read_text()) == {
        "dataset": "flowers", "kind": "folder", "folder": str(folder)}
    assert os.readlink(pets_table / "images") == str(tmp_path / "t" / "images")
    assert os.readlink(pets_table / "labels.csv") == str(csv_file)
    assert not (synthetic / "images").is_symlink() and (synthetic / "images" / "README").is_file()
    # replacing the folder removes the links, never what they point to
    run(source.main, ["flowers", "--params", str(params), "--out", str(flowers)])
    assert len(list(folder.rglob("*.png"))) > 0 and os.readlink(flowers / "images") == str(folder)


def test_source_missing_folder_is_one_line_and_writes_nothing(tmp_path, capsys):
    params = params_file(tmp_path, "flowers", {"folder": str(tmp_path / "nowhere")})
    line = fails(capsys, source.main, ["flowers", "--params", str(params), "--out", str(tmp_path / "src" / "flowers")])
    assert line == (f"error: sources.flowers.folder: {tmp_path / 'nowhere'} not found; set it to a folder with one "
                    "sub-folder per class (a relative path is relative to the repository)")
    assert not (tmp_path / "src").exists() or list((tmp_path / "src").iterdir()) == []


# --- a CSV of paths and labels ---------------------------------------------------------------


def test_table_download_keeps_groups_and_given_split(tmp_path):
    root = tmp_path / "t"
    rows = table_images(root, split=True, group=lambda i: "subject0" if i < 2 else "")  # both train
    csv_file = table(root, rows, header="\ufeffpath, label ,group,split,notes")  # BOM, spaces, an extra column
    params = params_file(tmp_path, "mine", {"csv": str(csv_file), "root": str(root / "images")})
    run(download.main, download_args(tmp_path, "mine", params))
    manifest = pd.read_csv(tmp_path / "raw" / "mine" / "manifest.csv", keep_default_na=False)
    assert list(manifest.columns) == ["path", "class", "group", "bytes", "sha256", "split"]
    by_path = manifest.set_index("path")
    for rel, label, group, split_name in rows:
        row = by_path.loc[f"images/{label}/{rel}"]
        assert (row["class"], row["group"], row["split"]) == (label, group or f"{label}/{rel}", split_name)
        assert row["sha256"] == hashlib.sha256((root / "images" / rel).read_bytes()).hexdigest()
    run(split.main, split_args(tmp_path, "mine", params))
    for name in ("train", "val", "test"):
        got = pd.read_csv(tmp_path / "splits" / "mine" / f"{name}.csv")
        want = sorted(f"images/{r[1]}/{r[0]}" for r in rows if r[3] == name)
        assert sorted(got["path"]) == want
        assert (got["label"] == got["class"].map({"cat": 0, "dog": 1})).all()


def test_table_shots_apply_to_the_given_train_split(tmp_path):
    root = tmp_path / "t"
    rows = [(f"{label}{i}.png", label, "train" if i < 5 else ("val", "test")[i % 2]) for label in ("a", "b")
            for i in range(7)]
    for rel, *_ in rows:
        write_files(root, {rel: image_bytes(hash(rel) % 1000)})
    params = params_file(tmp_path, "mine", {"csv": str(table(root, rows, "path,label,split")), "root": str(root)},
                         shots=2)
    run(download.main, download_args(tmp_path, "mine", params))
    run(split.main, split_args(tmp_path, "mine", params))
    train = pd.read_csv(tmp_path / "splits" / "mine" / "train.csv")
    assert train.groupby("class").size().to_dict() == {"a": 2, "b": 2}
    assert set(train["path"]) <= {f"images/{r[1]}/{r[0]}" for r in rows if r[2] == "train"}


def test_a_given_split_under_unseen_trains_on_one_half_and_tests_on_every_image_of_the_other(tmp_path):
    # A CSV's own split column with `split.classes: unseen`: train and val keep the rows the CSV gives
    # them, of the training half only; test is every image of the other half, whatever its column
    # says; labels number the classes of the whole table.
    from stages.lib.splits import class_halves

    root = tmp_path / "t"
    labels = ("a", "b", "c", "d")
    rows = [(f"{label}{i}.png", label, ("train", "train", "val", "test")[i % 4]) for label in labels for i in range(8)]
    for rel, *_ in rows:
        write_files(root, {rel: image_bytes(hash(rel) % 1000)})
    raw = tiny_params(datasets=["mine"])
    raw["sources"]["mine"] = {"csv": str(table(root, rows, "path,label,split")), "root": str(root)}
    raw["split"]["classes"] = "unseen"
    params = write_params(tmp_path / "params.yaml", raw)
    run(download.main, download_args(tmp_path, "mine", params))
    run(split.main, split_args(tmp_path, "mine", params))
    train_half, test_half = class_halves(list(labels), seed=raw["seed"])
    assert len(train_half) == len(test_half) == 2
    got = {name: pd.read_csv(tmp_path / "splits" / "mine" / f"{name}.csv") for name in ("train", "val", "test")}
    for name in ("train", "val"):
        want = sorted(f"images/{label}/{rel}" for rel, label, given in rows if given == name and label in train_half)
        assert sorted(got[name]["path"]) == want, name
    tested = sorted(f"images/{label}/{rel}" for rel, label, _ in rows if label in test_half)
    assert sorted(got["test"]["path"]) == tested
    for table_ in got.values():
        assert (table_["label"] == table_["class"].map(labels.index)).all()


def test_table_groups_stay_on_one_side_of_a_generated_split(tmp_path):
    root = tmp_path / "t"
    rows = table_images(root, per_label=8, group=lambda i: f"subject{i // 2}")  # 4 groups of 2 per label
    params = params_file(tmp_path, "mine", {"csv": str(table(root, rows, "path,label,group")),
                                            "root": str(root / "images")})
    run(download.main, download_args(tmp_path, "mine", params))
    run(split.main, split_args(tmp_path, "mine", params))
    where = {}
    for name in ("train", "val", "test"):
        for group in pd.read_csv(tmp_path / "splits" / "mine" / f"{name}.csv")["group"]:
            assert where.setdefault(group, name) == name
    assert len(where) == 8


# --- every bad input: one line, naming the file (and line) and the fix, nothing written ---------


def _folder_case(tmp_path: Path, case: str) -> tuple[dict, str]:
    folder = tmp_path / "flowers"
    if case == "missing folder":
        return {"folder": str(folder)}, f"sources.flowers.folder: {folder} not found; set it to a folder"
    if case == "one class":
        write_files(folder, {"rose/a.png": image_bytes(1), "rose/b.png": image_bytes(2), "x.png": image_bytes(3)})
        return {"folder": str(folder)}, f"{folder} has 1 class folder(s) (rose); the comparison needs at least 2"
    if case == "empty class":
        flower_folder(folder)
        write_files(folder, {"lily/notes.txt": b"no images"})
        return {"folder": str(folder)}, f"class folder {folder / 'lily'} holds no images (PNG, JPEG, WebP, BMP or " \
                                        "TIFF); add some, or remove the folder"
    if case == "class too small":
        flower_folder(folder)
        write_files(folder, {"lily/a.png": image_bytes(1), "lily/b.png": image_bytes(2)})
        return {"folder": str(folder)}, f"class folder {folder / 'lily'} has 2 image(s); a generated split needs at " \
                                        "least 3 images per class (one each for train, val and test): add images " \
                                        "to that class, or remove it"
    if case == "unreadable image":
        flower_folder(folder)
        good = image_bytes(7, "JPEG", size=64)
        write_files(folder, {"rose/zz_truncated.jpg": good[: len(good) // 2]})
        return {"folder": str(folder)}, f"image {folder / 'rose' / 'zz_truncated.jpg'} is corrupt or truncated"
    if case == "not an image":
        flower_folder(folder)
        write_files(folder, {"tulip/page.png": b"<html>not found</html>"})
        return {"folder": str(folder)}, f"{folder / 'tulip' / 'page.png'} is not an image Pillow can read; remove " \
                                        "or replace it"
    raise AssertionError(case)


FOLDER_CASES = ["missing folder", "one class", "empty class", "class too small", "unreadable image", "not an image"]


@pytest.mark.parametrize("case", FOLDER_CASES)
def test_bad_folder(tmp_path, capsys, case):
    spec, expected = _folder_case(tmp_path, case)
    params = params_file(tmp_path, "flowers", spec)
    line = fails(capsys, download.main, download_args(tmp_path, "flowers", params))
    assert line.startswith("error: " + expected), line
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def _table_case(tmp_path: Path, case: str) -> tuple[dict, str]:
    root = tmp_path / "t"
    images = root / "images"
    csv_file = root / "labels.csv"
    rows = table_images(root, split=case.startswith("split"),
                        group=(lambda i: f"subject{i // 2}") if case.startswith("group") else None)
    header = "path,label" + (",group" if case.startswith("group") else "") + (",split" if case.startswith("split")
                                                                                 else "")
    spec = {"csv": str(csv_file), "root": str(images)}
    at = f"{csv_file}, line"
    if case == "missing csv":
        return spec, f"sources.mine.csv: {csv_file} not found; set it to a CSV file with columns path and label"
    if case == "missing root":
        table(root, rows)
        return {"csv": str(csv_file), "root": str(root / "nope")}, f"sources.mine.root: {root / 'nope'} not found"
    if case == "missing column":
        table(root, rows, header="file,label")
        return spec, f"{csv_file} has no path column (its header: file, label); the first line must name the columns"
    if case == "one label":
        table(root, [(r[0], "cat") for r in rows])
        return spec, f"{csv_file} has 1 label(s) (cat); the comparison needs at least 2 classes: label the images"
    if case == "missing file":
        table(root, rows[:3] + [("gone.png", "dog")] + rows[3:])
        return spec, f"{at} 5: {images / 'gone.png'} not found; fix the path (relative to root {images}) or remove"
    if case == "escapes root":
        write_files(root, {"outside.png": image_bytes(5)})
        table(root, [*rows, ("../outside.png", "dog")])
        return spec, f"{at} 10: ../outside.png leads outside root {images}; give paths relative to root"
    if case == "absolute outside root":
        table(root, [*rows, (str(root / "outside.png"), "dog")])
        return spec, f"{at} 10: {root / 'outside.png'} is outside root {images}; give paths relative to root"
    if case == "duplicate path":
        table(root, [*rows, ("./" + rows[1][0], "dog")])
        return spec, f"{at} 10: {rows[1][0]} is already listed on line 3; list each image once"
    if case == "empty label":
        table(root, [rows[0], (rows[1][0], " "), *rows[2:]])
        return spec, f"{at} 3: the label is empty; give every row a label, or remove the row"
    if case == "empty path":
        table(root, [*rows[:2], ("", "dog"), *rows[2:]])
        return spec, f"{at} 4: the path is empty; give every row the image's path, or remove the row"
    if case == "label with a slash":
        table(root, [(rows[0][0], "cat/big"), *rows[1:]])
        return spec, f"{at} 2: label 'cat/big' cannot name a class folder"
    if case == "unreadable image":
        write_files(images, {rows[5][0]: b"\x89PNG\r\n\x1a\n truncated"})
        table(root, rows)
        return spec, f"{at} 7: image {images / rows[5][0]} is corrupt or truncated"
    if case == "class too small":
        table(root, [*rows[:6], *rows[7:]][:6])
        return spec, f"{csv_file}: label 'dog' has 2 image(s); a generated split needs at least 3 images per class"
    if case == "group too few groups":
        table(root, [(r[0], r[1], f"{r[1]}-{int(r[0][-5]) // 2}") for r in rows], header)  # 2 groups of 2 per label
        return spec, f"{csv_file}: label 'cat' has 4 image(s) in 2 group(s); a generated split needs at least 3 " \
                     "groups per class"
    if case == "group across labels":
        table(root, [*rows[:5], (rows[5][0], rows[5][1], "cat-subject0"), *rows[6:]], header)  # dog's 2nd image
        return spec, f"{at} 7: group 'cat-subject0' is label 'dog' here but 'cat' on line 2; a group must lie on " \
                     "one side of every split"
    if case == "split value":
        table(root, [*rows[:2], (rows[2][0], rows[2][1], "valid"), *rows[3:]], header)
        return spec, f"{at} 4: split 'valid' is not one of train, val, test; fix it"
    if case == "split missing a class":
        table(root, [r if r[1] == "cat" or r[2] != "val" else (r[0], r[1], "train") for r in rows], header)
        return spec, f"{csv_file}: label 'dog' has no val rows; every class needs train, val and test images"
    if case == "split cuts a group":
        header = "path,label,group,split"
        table(root, [(r[0], r[1], f"{r[1]}-g", r[2]) for r in rows], header)
        return spec, f"{at} 4: group 'cat-g' is split 'val' here but 'train' on line 2; a group must lie on one side"
    raise AssertionError(case)


TABLE_CASES = [
    "missing csv", "missing root", "missing column", "one label", "missing file", "escapes root",
    "absolute outside root", "duplicate path", "empty label", "empty path", "label with a slash",
    "unreadable image", "class too small", "group too few groups", "group across labels", "split value",
    "split missing a class", "split cuts a group",
]


@pytest.mark.parametrize("case", TABLE_CASES)
def test_bad_table(tmp_path, capsys, case):
    spec, expected = _table_case(tmp_path, case)
    params = params_file(tmp_path, "mine", spec)
    line = fails(capsys, download.main, download_args(tmp_path, "mine", params))
    assert line.startswith("error: " + expected), line
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_class_too_small_for_shots_names_the_folder(tmp_path, capsys):
    folder = flower_folder(tmp_path / "flowers", per_class=4)
    params = params_file(tmp_path, "flowers", {"folder": str(folder)}, shots=3)
    run(download.main, download_args(tmp_path, "flowers", params))
    line = fails(capsys, split.main, split_args(tmp_path, "flowers", params))
    assert line == (  # the folder, then the dataset's name (issue 12: both were dropped by mutants unseen)
        f"error: {folder}: shots=3 is larger than the training images of class 'daisy' of flowers (2 after holding "
        "out test and val); set shots to at most 2, or 0 for every image"
    ), line
    assert not (tmp_path / "splits").exists() or list((tmp_path / "splits").iterdir()) == []


# --- params -------------------------------------------------------------------------------------


def test_params_recognise_both_shapes_and_name_the_accepted_ones_on_a_typo():
    p = tiny_params(datasets=["flowers", "mine", "synthetic"])
    p["sources"]["flowers"] = {"folder": "/data/flowers"}
    p["sources"]["mine"] = {"csv": "labels.csv", "root": "/data/images"}
    params = params_from_dict(p)
    assert params.source("flowers").folder == "/data/flowers"
    assert (params.source("mine").csv, params.source("mine").root) == ("labels.csv", "/data/images")

    def error(mutate) -> str:
        q = tiny_params()
        mutate(q)
        with pytest.raises(Exception) as info:
            params_from_dict(q)
        return str(info.value)

    assert error(lambda q: q["sources"].update(pest={"images": {}})) == (
        "params.yaml: unknown key sources.pest; accepted: annotations, defungi, digits, pets, synthetic, weights, or "
        "a dataset of your own, <name>: {folder: PATH} or {csv: FILE, root: FOLDER}")
    assert error(lambda q: q["sources"].update(flowers={"folder": "x", "recursive": True})) == (
        "params.yaml: unknown key sources.flowers.recursive; accepted: folder")
    assert error(lambda q: q["sources"].update(mine={"csv": "x.csv"})) == (
        "params.yaml: missing key sources.mine.root; add it (see docs/params.md)")
    assert error(lambda q: q.update(datasets=["flower"]) or q["sources"].update(flowers={"folder": "x"})) == (
        "params.yaml: datasets must be names from: defungi, digits, flowers, pets, synthetic, or a dataset of your "
        "own defined as sources.<name>: {folder: PATH} or {csv: FILE, root: FOLDER}, got 'flower'")
    assert error(lambda q: q["sources"].update({"my.data": {"folder": "x"}})).startswith(
        "params.yaml: sources.my.data must be named with a letter, then letters, digits, _ or -")


def test_default_split_source_with_your_own_dataset_says_to_generate():
    p = tiny_params(datasets=["flowers"])
    p["sources"]["flowers"] = {"folder": "/data/flowers"}
    p["split"]["source"] = "annotations"
    with pytest.raises(Exception) as info:
        params_from_dict(p)
    assert str(info.value) == (
        "params.yaml: split.source must be generated when datasets include flowers (the study published split lists "
        "only for defungi, pets; a split column in your CSV is used as given), got 'annotations'")
