"""The dataset registry: each dataset is one function that lays out images one folder per class.

`DATASETS.get(name)` returns a `DatasetSpec`; `register_dataset` adds one. A dataset's
`fetch(source, images_dir, cache_dir)` writes `images_dir/<class>/<file>` (any image format
Pillow reads; sub-folders below the class allowed), may keep downloaded archives in `cache_dir`
(which survives reruns, so a download resumes), and raises PipelineError on problems; it may
return manifest values to use instead of the defaults ({"group": {path: group}, "split": ...}).
The `download` stage does the rest (manifest, checks, atomicity). `dataset_spec` also gives the
spec of a dataset of your own (`own.py`: a folder or a CSV named in `params.yaml`, no code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.lib.registry import Registry

Fetch = Callable[[Any, Path, Path], "dict[str, dict[str, str]] | None"]


def file_stem_group(relpath: str) -> str:
    """Default group: every image is its own group (no two images share a source)."""
    return Path(relpath).stem


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset."""

    name: str
    params_type: type  # dataclass of its `sources.<name>` section
    fetch: Fetch
    description: str
    # Images per class known before the download, for a dataset whose every image is its own source
    # group: params validation then names the exact `shots` limit before anything runs.
    class_sizes: Callable[[Any], dict[str, int] | None] = lambda source: None
    group_of: Callable[[str], str] = file_stem_group  # "class/file" -> group id
    needs_network: bool = False
    expected_classes: int | None = None  # documented number of classes, checked after download
    expected_total: int | None = None  # documented number of images
    expected_per_class: dict[str, int] | None = None  # documented images per class
    annotation_prefix: str | None = None  # the study's split lists are `<prefix>_train.txt` etc.
    study_test_per_class: int | None = None  # test images per class in the study (split.test_per_class: study)
    origin: str | None = None  # a dataset of your own: the folder or CSV it comes from (for messages)
    # `split.classes: unseen`: the dataset's standard protocol trains on the first half of its classes in
    # sorted name order (CUB-200 and Cars196, whose class folders begin with the class id); False: a random
    # half drawn with `seed` (no registered dataset defines one: pets and DeFungi publish none)
    unseen_first_half: bool = False


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    name: str,
    params_type: type,
    description: str,
    *,
    class_sizes: Callable[[Any], dict[str, int] | None] | None = None,
    group_of: Callable[[str], str] | None = None,
    needs_network: bool = False,
    expected_classes: int | None = None,
    expected_total: int | None = None,
    expected_per_class: dict[str, int] | None = None,
    annotation_prefix: str | None = None,
    study_test_per_class: int | None = None,
    unseen_first_half: bool = False,
) -> Callable[[Fetch], Fetch]:
    """Decorator: register `fetch(source_params, images_dir, cache_dir)` as dataset `name`."""

    def add(fetch: Fetch) -> Fetch:
        spec = DatasetSpec(
            name=name,
            params_type=params_type,
            fetch=fetch,
            description=description,
            class_sizes=class_sizes or (lambda source: None),
            group_of=group_of or file_stem_group,
            needs_network=needs_network,
            expected_classes=expected_classes,
            expected_total=expected_total,
            expected_per_class=expected_per_class,
            annotation_prefix=annotation_prefix,
            study_test_per_class=study_test_per_class,
            unseen_first_half=unseen_first_half,
        )
        DATASETS.register(name)(spec)
        return fetch

    return add


def dataset_spec(name: str, sources: dict[str, Any], base: Path = Path(".")) -> DatasetSpec:
    """Dataset `name`: its registry entry, or one of your own defined by `sources[name]` (a folder,
    or a CSV and root; relative paths from `base`, the folder of params.yaml)."""
    from stages.lib.datasets.own import is_own, own_spec

    if name not in DATASETS and is_own(sources.get(name)):
        return own_spec(name, sources[name], base)
    return DATASETS.get(name)


# Importing the modules registers their datasets.
from stages.lib.datasets import defungi, digits, pets, synthetic  # noqa: E402,F401
