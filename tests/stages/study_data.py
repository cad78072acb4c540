"""Tiny stand-ins for the study's downloads, in the real layouts, built in memory.

- `pets_images()`: `images.tar.gz` with `images/<Breed>_<n>.jpg` and a `.mat` file to skip.
- `pets_annotations()`: `annotations.tar.gz` with the official lists, an xml and a trimap.
- `defungi_zip()`: class folders nested one level, plus macOS debris to skip.
- `study_annotations()`: the study's lists for `pet` and `micro` (and `low_data_`), with the
  authors' absolute paths, CRLF, blank lines and trailing spaces, the label maps, triplet lists.
- `tiny_weights()`: a safetensors file for timm's `test_convnext`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zipfile

import numpy as np
from PIL import Image

BREEDS = ("Abyssinian", "american_bulldog", "pug")
PETS_PER_BREED = 6  # numbered 1..6: train 1-3, val 4, test 5-6 in the study's lists
DEFUNGI_CLASSES = ("H1", "H2", "H3", "H5", "H6")
RAW_IMAGES = ("1a", "2a", "3a")  # per class; two patches each
PETS_ROOT = "/home/someone/data/pets/images"
MICRO_ROOT = "/home/someone/data/micro/all"


def jpeg(seed: int, size: int = 12) -> bytes:
    """A small random RGB JPEG."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A .tar.gz of `files`, byte-identical on every call (no timestamps)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip of `files`, byte-identical on every call (fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def pet_files() -> list[str]:
    return [f"{breed}_{n}.jpg" for breed in BREEDS for n in range(1, PETS_PER_BREED + 1)]


def pets_images() -> bytes:
    files = {f"images/{name}": jpeg(i) for i, name in enumerate(pet_files())}
    files["images/Abyssinian_100.mat"] = b"MATLAB 5.0 MAT-file"  # the real archive has a few
    return tar_gz(files)


def pets_annotations() -> bytes:
    header = "#Image CLASS-ID SPECIES BREED ID\n"
    lines = [f"{name[:-4]} {BREEDS.index(name.rsplit('_', 1)[0]) + 1} 1 1" for name in pet_files()]
    return tar_gz({
        "annotations/list.txt": (header + "\n".join(lines) + "\n").encode(),
        "annotations/trainval.txt": ("\n".join(lines[::2]) + "\n").encode(),
        "annotations/test.txt": ("\n".join(lines[1::2]) + "\n").encode(),
        "annotations/README": b"readme\n",
        "annotations/xmls/Abyssinian_1.xml": b"<annotation/>",
        "annotations/trimaps/Abyssinian_1.png": b"\x89PNG",
    })


def defungi_files() -> list[str]:
    return [f"{c}/{c}_{raw}_{k}.jpg" for c in DEFUNGI_CLASSES for raw in RAW_IMAGES for k in (1, 2)]


def defungi_zip() -> bytes:
    files = {f"DeFungi/{name}": jpeg(100 + i) for i, name in enumerate(defungi_files())}
    files["__MACOSX/DeFungi/H1/._H1_1a_1.jpg"] = b"\x00\x05\x16\x07 apple double"
    files["DeFungi/README.txt"] = b"DeFungi\n"
    return zip_bytes(files)


def _pets_lists(low: bool) -> dict[str, str]:
    """The `pet_*` lists: train 1-3 (1-2 for low data), val 4, test 5-6; anchors of train twice for one breed."""
    train_numbers = (1, 2) if low else (1, 2, 3)

    def path(breed: str, n: int) -> str:
        return f"{PETS_ROOT}/{breed}/{breed}_{n}.jpg"

    def other(breed: str) -> str:
        return BREEDS[(BREEDS.index(breed) + 1) % len(BREEDS)]

    train = [path(b, n) for b in BREEDS for n in train_numbers]
    triplet_train = [f"{path(b, n)} {b} {other(b)}" for b in BREEDS for n in train_numbers]
    triplet_train.append(f"{path(BREEDS[0], 1)} {BREEDS[0]} {BREEDS[2]}")  # an anchor twice, another negative
    return {
        "train": "\r\n".join(train) + "\r\n",  # CRLF, as from Windows
        "val": "\n\n".join(path(b, 4) + "   " for b in BREEDS) + "\n\n",  # blank lines, trailing spaces
        "test": "\n".join(path(b, n) for b in BREEDS for n in (5, 6)),  # no final newline
        "triplet_train": "\n".join(triplet_train) + "\n",
        "triplet_val": "\n".join(f"{path(b, 4)} {b} {other(b)}" for b in BREEDS) + "\n",
    }


def _micro_lists(low: bool) -> dict[str, str]:
    """The `micro_*` lists: raw image 2a has patches in train and test, as the study's lists may."""

    def path(c: str, raw: str, k: int) -> str:
        return f"{MICRO_ROOT}/{c}/{c}_{raw}_{k}.jpg"

    train = [("1a", 1), ("1a", 2)] + ([] if low else [("2a", 1)])
    nxt = {c: DEFUNGI_CLASSES[(i + 1) % len(DEFUNGI_CLASSES)] for i, c in enumerate(DEFUNGI_CLASSES)}
    test = [f"C:\\Users\\someone\\micro\\{c}\\{c}_2a_2.jpg" for c in DEFUNGI_CLASSES]  # a Windows path
    test += [path(c, "3a", 2) for c in DEFUNGI_CLASSES]
    return {
        "train": "\n".join(path(c, r, k) for c in DEFUNGI_CLASSES for r, k in train) + "\n",
        "val": "\n".join(path(c, "3a", 1) for c in DEFUNGI_CLASSES) + "\n",
        "test": "\n".join(test) + "\n",
        "triplet_train": "\n".join(f"{path(c, r, k)} {c} {nxt[c]}" for c in DEFUNGI_CLASSES for r, k in train) + "\n",
        "triplet_val": "\n".join(f"{path(c, '3a', 1)} {c} {nxt[c]}" for c in DEFUNGI_CLASSES) + "\n",
    }


def study_files(overrides: dict[str, str] | None = None) -> dict[str, bytes]:
    """The study's annotation files by name; `overrides` replaces (or adds) some by name."""
    files: dict[str, str] = {}
    for prefix, lists in (("pet", _pets_lists), ("micro", _micro_lists)):
        for low in (False, True):
            for table, text in lists(low).items():
                files[f"{'low_data_' if low else ''}{prefix}_{table}.txt"] = text
    files["pet_labels.json"] = json.dumps({b: i for i, b in enumerate(BREEDS)})
    files["micro_labels.json"] = json.dumps({c: i for i, c in enumerate(DEFUNGI_CLASSES)})
    files.update(overrides or {})
    return {name: text.encode() for name, text in files.items()}


def study_annotations(overrides: dict[str, str] | None = None) -> bytes:
    """A zip of the study's files inside one folder, as a mirror of the Drive folder would be."""
    return zip_bytes({f"contrastive_annotations/{name}": data for name, data in study_files(overrides).items()})


def tiny_weights() -> bytes:
    """timm's `test_convnext` without its classifier, as safetensors bytes (seeded)."""
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(7)
    model = timm.create_model("test_convnext", pretrained=False, num_classes=0)
    return save({k: v.contiguous() for k, v in model.state_dict().items()})


def serve_study(server, annotations: bytes | None = None) -> dict:
    """Publish every download on the loopback `server`; returns params that fetch them from it.

    The params are the tiny test ones (timm's `test_convnext` at 32 px, one epoch, CPU) for
    `datasets: [pets, defungi]`, with `split.source: annotations` and pretrained weights.
    """
    from tests.helpers import tiny_params

    files = {
        "/pets/images.tar.gz": pets_images(),
        "/pets/annotations.tar.gz": pets_annotations(),
        "/uci/defungi.zip": defungi_zip(),
        "/drive/annotations.zip": annotations if annotations is not None else study_annotations(),
        "/hub/model.safetensors": tiny_weights(),
    }
    server.files.update(files)
    p = tiny_params(datasets=["pets", "defungi"], methods=["classification", "triplet"])
    p["sources"]["pets"] = {
        "images": {"url": server.url("/pets/images.tar.gz"), "md5": md5(files["/pets/images.tar.gz"])},
        "annotations": {"url": server.url("/pets/annotations.tar.gz"), "md5": md5(files["/pets/annotations.tar.gz"])},
    }
    p["sources"]["defungi"] = {"url": server.url("/uci/defungi.zip"), "sha256": sha256(files["/uci/defungi.zip"])}
    p["sources"]["annotations"] = {
        "drive_folder": "1a-zzC2Gyu-7nwQ6KanNKCFcw099U6E6w",
        "url": server.url("/drive/annotations.zip"),
        "sha256": sha256(files["/drive/annotations.zip"]),
    }
    weights = files["/hub/model.safetensors"]
    p["sources"]["weights"] = {"url": server.url("/hub/model.safetensors"), "sha256": sha256(weights)}
    p["split"]["source"] = "annotations"
    p["model"]["pretrained"] = True
    p["train"].update(epochs=1, warmup_epochs=0, cosine_t_max=1)
    p["classification"]["batch_size"] = 4
    p["triplet"]["batch_size"] = 4
    return p
