"""Datasets: the registry, and the local datasets write real image files one folder per class."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from stages.lib.datasets import DATASETS
from stages.lib.datasets.defungi import patch_group
from stages.lib.datasets.pets import breed_of
from stages.lib.datasets.synthetic import SyntheticSource, class_names, fetch_synthetic
from stages.lib.errors import PipelineError
from stages.lib.params import params_from_dict
from tests.helpers import tiny_params

LOCAL = [name for name in DATASETS.names() if not DATASETS.get(name).needs_network]


def test_registry_lists_the_study_datasets_and_the_local_ones():
    assert {"pets", "defungi", "digits", "synthetic"} <= set(DATASETS.names())
    assert set(LOCAL) == {"digits", "synthetic"}
    with pytest.raises(PipelineError, match="unknown dataset 'cifar'; accepted: "):
        DATASETS.get("cifar")


@pytest.mark.parametrize("name", LOCAL)
def test_local_datasets_write_image_folders(name, tmp_path):
    params = params_from_dict(tiny_params(datasets=[name]))
    spec = DATASETS.get(name)
    spec.fetch(params.source(name), tmp_path / "images", tmp_path / "cache")
    folders = sorted(p for p in (tmp_path / "images").iterdir())
    assert len(folders) >= 2
    for folder in folders:
        files = sorted(folder.iterdir())
        assert files
        with Image.open(files[0]) as image:
            image.load()
            assert image.size[0] >= 8


def test_digits_has_ten_classes_and_1797_images(tmp_path):
    params = params_from_dict(tiny_params(datasets=["digits"]))
    DATASETS.get("digits").fetch(params.source("digits"), tmp_path, tmp_path / "cache")
    counts = {p.name: len(list(p.iterdir())) for p in tmp_path.iterdir()}
    assert sorted(counts) == [str(d) for d in range(10)]
    assert sum(counts.values()) == 1797 and min(counts.values()) == 174
    with Image.open(next((tmp_path / "3").iterdir())) as image:
        assert image.size == (params.source("digits").image_size,) * 2


def test_synthetic_is_reproducible_and_sized_by_params(tmp_path):
    source = SyntheticSource(n_classes=5, per_class=4, image_size=40, seed=3)
    for run in ("a", "b"):
        fetch_synthetic(source, tmp_path / run, tmp_path)
    files_a = sorted((tmp_path / "a").rglob("*.jpg"))
    files_b = sorted((tmp_path / "b").rglob("*.jpg"))
    assert len(files_a) == 20 and [p.name for p in files_a] == [p.name for p in files_b]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files_a, files_b, strict=True))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(class_names(5))
    with Image.open(files_a[0]) as image:
        assert image.size == (40, 40) and image.mode == "RGB"


def test_pets_breed_and_defungi_group_rules():
    assert breed_of("Abyssinian_12.jpg") == "Abyssinian"
    assert breed_of("american_bulldog_3.jpg") == "american_bulldog"
    with pytest.raises(PipelineError):
        breed_of("noNumber.jpg")
    assert patch_group("H1/H1_100a_1.jpg") == "H1_100a"
    assert patch_group("H6/H6_7b_12.jpg") == "H6_7b"
    assert patch_group(str(Path("H2") / "odd.jpg")) == "odd"


def test_a_downloaded_archive_keeps_every_image_format_and_drops_hidden_files_and_debris(tmp_path):
    """DeFungi reads what an own folder reads: WebP too, and no `._x.jpg`, `__MACOSX/` or `.x/`."""
    from stages.lib.datasets.defungi import _class_images

    for name in ("H1/a.webp", "H1/b.JPG", "H1/._a.jpg", "H1/Thumbs.db", "H1/notes.txt", "__MACOSX/H1/c.jpg",
                 "H2/.cache/d.png", "H2/e.tiff"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = {k: [p.relative_to(tmp_path).as_posix() for p in v] for k, v in _class_images(tmp_path).items()}
    assert found == {"H1": ["H1/a.webp", "H1/b.JPG"], "H2": ["H2/e.tiff"]}
