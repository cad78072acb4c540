"""`params.yaml` loaded once into frozen, validated dataclasses.

Every knob of the pipeline is here; nothing below reads `params["a"]["b"]`. Loading refuses
unknown keys, missing keys and wrong types with one line that names the key and what is accepted.
Dataset and method sections are typed by their registry entries (`sources.<dataset>`,
`<method>` at top level), so adding one is registering it, nothing else. A `sources.<name>` that
is not registered but has the shape of a folder or a CSV source defines a dataset of your own.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from stages.lib.errors import PipelineError

# The checks live in stages.lib.validate (which dataset and method sections use too); here they
# keep their module-private names.
from stages.lib.validate import MissingKey as _Missing
from stages.lib.validate import ParamError as _KeyError
from stages.lib.validate import UnknownKey as _UnknownKey
from stages.lib.validate import key_name as _key_name
from stages.lib.validate import one_of as _one_of
from stages.lib.validate import printable as _printable
from stages.lib.validate import require as _require

T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")
# train.optimizer -> its torch.optim class (stages/lib/schedule.py); named here so that checking params
# does not import torch
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW"}  # Adam: coupled L2 weight decay, as in the study
UMAP_METRICS = ("euclidean", "cosine", "manhattan", "correlation")
EVALUATE_DISTANCES = ("euclidean", "cosine")  # for the retrieval metrics (K-means is Euclidean)
MAX_SEED = 2**32 - 1  # what scikit-learn and umap-learn accept as random_state (torch and numpy take more)
SEED_RANGE = f"an integer in [0, {MAX_SEED}]"


@dataclass(frozen=True)
class SplitParams:
    """How `split` builds train/val/test: the study's own lists, or generated from `seed` and sizes.

    `test_per_class` (generated only) holds out that many test images per class instead of
    `test_fraction`; `study` means each dataset's test size in the study (pets 40, DeFungi 148;
    `test_fraction` for datasets the study did not use).
    """

    source: Literal["annotations", "generated"]
    test_fraction: float
    test_per_class: int | Literal["study"] | None
    val_fraction: float

    def check(self, where: str) -> None:
        if isinstance(self.test_per_class, int):
            _require(self.test_per_class >= 1, f"{where}.test_per_class", "an integer >= 1, study or null",
                     self.test_per_class)
        _require(0 < self.test_fraction < 1, f"{where}.test_fraction", "a number in (0, 1)", self.test_fraction)
        _require(0 < self.val_fraction < 1, f"{where}.val_fraction", "a number in (0, 1)", self.val_fraction)
        _require(
            self.test_fraction + self.val_fraction < 1,
            f"{where}.test_fraction + {where}.val_fraction",
            "a sum below 1 (something must be left to train on)",
            self.test_fraction + self.val_fraction,
        )


@dataclass(frozen=True)
class ModelParams:
    """The timm backbone; its pooled feature (`num_classes=0`) is the embedding."""

    name: str
    pretrained: bool
    image_size: int

    def check(self, where: str) -> None:
        _require(bool(self.name.strip()), f"{where}.name", "a timm model name", self.name)
        _require(self.image_size >= 16, f"{where}.image_size", "an integer >= 16", self.image_size)


@dataclass(frozen=True)
class TrainParams:
    """Optimiser, schedule and loop settings shared by every method that trains."""

    device: str
    epochs: int
    optimizer: str
    lr: float
    betas: list[float]
    weight_decay: float
    warmup_epochs: int
    warmup_start_factor: float
    cosine_t_max: int
    eta_min: float
    hflip: float
    precision: str
    compile: bool
    deterministic: bool
    resume_every_s: float
    processes: int

    def check(self, where: str) -> None:
        _require(  # cuda:N pins GPU N (queued runs, one per GPU)
            self.device in DEVICES or re.fullmatch(r"cuda:\d+", self.device) is not None, f"{where}.device",
            f"one of: {', '.join(DEVICES)}, cuda:N (N a GPU index)", self.device,
        )
        _one_of(self.precision, f"{where}.precision", PRECISIONS)
        _one_of(self.optimizer, f"{where}.optimizer", sorted(OPTIMIZERS))
        _require(self.epochs >= 1, f"{where}.epochs", "an integer >= 1", self.epochs)
        _require(self.lr > 0, f"{where}.lr", "a number > 0", self.lr)
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"{where}.betas", "two numbers in [0, 1)", self.betas,
        )
        _require(self.weight_decay >= 0, f"{where}.weight_decay", "a number >= 0", self.weight_decay)
        _require(self.warmup_epochs >= 0, f"{where}.warmup_epochs", "an integer >= 0", self.warmup_epochs)
        _require(
            0 < self.warmup_start_factor <= 1,
            f"{where}.warmup_start_factor", "a number in (0, 1]", self.warmup_start_factor,
        )
        _require(self.cosine_t_max >= 1, f"{where}.cosine_t_max", "an integer >= 1", self.cosine_t_max)
        _require(
            0 <= self.eta_min <= self.lr, f"{where}.eta_min", f"a number in [0, lr={self.lr}]", self.eta_min
        )
        _require(0 <= self.hflip <= 1, f"{where}.hflip", "a probability in [0, 1]", self.hflip)
        _require(
            self.resume_every_s >= 0, f"{where}.resume_every_s", "seconds >= 0 (0: every epoch)", self.resume_every_s
        )
        _require(
            self.processes >= 1, f"{where}.processes", "an integer >= 1 (processes, one per GPU, for one run)",
            self.processes,
        )


@dataclass(frozen=True)
class EmbedParams:
    """Batch size for embedding the test split (no augmentation)."""

    batch_size: int

    def check(self, where: str) -> None:
        _require(self.batch_size >= 1, f"{where}.batch_size", "an integer >= 1", self.batch_size)


@dataclass(frozen=True)
class EvaluateParams:
    """K-means settings (the study: 10 initialisations, random_state 0); how many single-
    initialisation runs `kmeans_init_std` is taken over; k of the k-NN accuracy; the retrieval
    metrics' distance; resamples and seed of the bootstrap intervals (here and in the report)."""

    kmeans_n_init: int
    kmeans_seed: int
    kmeans_repeats: int
    knn_k: int
    distance: str
    bootstrap_resamples: int
    bootstrap_seed: int

    def check(self, where: str) -> None:
        _require(self.kmeans_n_init >= 1, f"{where}.kmeans_n_init", "an integer >= 1", self.kmeans_n_init)
        _require(0 <= self.kmeans_seed <= MAX_SEED, f"{where}.kmeans_seed", SEED_RANGE, self.kmeans_seed)
        _require(
            1 <= self.kmeans_repeats <= MAX_SEED - self.kmeans_seed + 1, f"{where}.kmeans_repeats",
            f"an integer >= 1 with kmeans_seed + kmeans_repeats - 1 <= {MAX_SEED}", self.kmeans_repeats,
        )
        _require(self.knn_k >= 1, f"{where}.knn_k", "an integer >= 1", self.knn_k)
        _one_of(self.distance, f"{where}.distance", EVALUATE_DISTANCES)
        _require(self.bootstrap_resamples >= 1000, f"{where}.bootstrap_resamples",
                 "an integer >= 1000 (fewer make the 2.5% tails of a 95% interval unstable)", self.bootstrap_resamples)
        _require(0 <= self.bootstrap_seed <= MAX_SEED, f"{where}.bootstrap_seed", SEED_RANGE, self.bootstrap_seed)


@dataclass(frozen=True)
class UmapParams:
    """umap-learn settings for the 2-D pictures of the test embeddings."""

    n_neighbors: int
    min_dist: float
    metric: str
    seed: int

    def check(self, where: str) -> None:
        _require(self.n_neighbors >= 2, f"{where}.n_neighbors", "an integer >= 2", self.n_neighbors)
        _require(0 <= self.min_dist <= 1, f"{where}.min_dist", "a number in [0, 1]", self.min_dist)
        _one_of(self.metric, f"{where}.metric", UMAP_METRICS)
        _require(0 <= self.seed <= MAX_SEED, f"{where}.seed", SEED_RANGE, self.seed)


@dataclass(frozen=True)
class PicturesParams:
    """The per-run pictures: how many test queries the retrieval picture shows (drawn with `seed`)
    and how many nearest neighbours each."""

    queries: int
    neighbours: int
    seed: int

    def check(self, where: str) -> None:
        _require(self.queries >= 1, f"{where}.queries", "an integer >= 1", self.queries)
        _require(self.neighbours >= 1, f"{where}.neighbours", "an integer >= 1", self.neighbours)
        _require(0 <= self.seed <= MAX_SEED, f"{where}.seed", SEED_RANGE, self.seed)


# The comparisons the report can make: K-means accuracy (the one metric with per-image results and a
# chance level) on either view of the embeddings.
REPORT_METRICS = ("kmeans_acc",)
REPORT_VIEWS = ("raw", "l2")


@dataclass(frozen=True)
class PrimaryParams:
    """`primary`: the report's primary question, per dataset (issue 20): `better` minus `than` on
    `metric` of the `view` embeddings; every other comparison is secondary (Holm-adjusted)."""

    better: str
    than: str
    metric: str
    view: str

    def check(self, where: str) -> None:
        from stages.lib.methods import METHODS

        for key in ("better", "than"):
            _one_of(getattr(self, key), f"{where}.{key}", METHODS.names())
        _require(self.better != self.than, f"{where}.than", f"a method other than better ({self.better})",
                 self.than)
        _one_of(self.metric, f"{where}.metric", REPORT_METRICS)
        _one_of(self.view, f"{where}.view", REPORT_VIEWS)


@dataclass(frozen=True)
class WeightsSource:
    """`sources.weights`: where the pretrained weights come from (null url: the timm hub file)."""

    url: str | None
    sha256: str | None

    def check(self, where: str) -> None:
        import re

        _require(
            self.url is None or self.url.startswith(("http://", "https://")),
            f"{where}.url", "an http(s) URL or null", self.url,
        )
        _require(
            self.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", self.sha256) is not None,
            f"{where}.sha256", "64 lowercase hex digits or null", self.sha256,
        )


@dataclass(frozen=True)
class AnnotationsSource:
    """`sources.annotations`: the study's split lists, from its public Google Drive folder, or
    from an archive (zip or tar) of the same files at `url` (a mirror; replaces Drive when set)."""

    drive_folder: str
    url: str | None = None
    sha256: str | None = None

    def check(self, where: str) -> None:
        import re

        _require(
            re.fullmatch(r"[A-Za-z0-9_-]{10,}", self.drive_folder) is not None,
            f"{where}.drive_folder", "a Google Drive folder id (letters, digits, - and _)", self.drive_folder,
        )
        _require(
            self.url is None or self.url.startswith(("http://", "https://", "file://")),
            f"{where}.url", "an http(s) URL of a zip or tar archive, or null (use drive_folder)", self.url,
        )
        _require(
            self.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", self.sha256) is not None,
            f"{where}.sha256", "64 lowercase hex digits or null", self.sha256,
        )


# Entries of `sources` that are not datasets.
FIXED_SOURCES: dict[str, type] = {"weights": WeightsSource, "annotations": AnnotationsSource}


@dataclass(frozen=True)
class Params:
    """The whole of `params.yaml`."""

    seed: int
    seeds: list[int]
    datasets: list[str]
    methods: list[str]
    shots: int
    sources: dict[str, Any]  # dataset name (or "weights") -> its source dataclass
    split: SplitParams
    model: ModelParams
    train: TrainParams
    method: dict[str, Any]  # method name -> that method's dataclass (top-level sections)
    embed: EmbedParams
    evaluate: EvaluateParams
    umap: UmapParams
    pictures: PicturesParams
    primary: PrimaryParams

    def source(self, dataset: str) -> Any:
        """The `sources.<dataset>` section."""
        return self.sources[dataset]

    def method_params(self, method: str) -> Any:
        """The `<method>` section."""
        return self.method[method]


_FIXED_TOP = {
    "seed": int,
    "seeds": list[int],
    "datasets": list[str],
    "methods": list[str],
    "shots": int,
    "split": SplitParams,
    "model": ModelParams,
    "train": TrainParams,
    "embed": EmbedParams,
    "evaluate": EvaluateParams,
    "umap": UmapParams,
    "pictures": PicturesParams,
    "primary": PrimaryParams,
}


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, type-check and validate `path`; raise PipelineError naming the first bad key."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run from the project folder, or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PipelineError(f"{path} is not valid YAML{where}: {problem}; fix the file") from None
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path} is not UTF-8 text (byte {exc.start}); fix the file") from None
    return params_from_dict(raw, str(path))


def params_from_dict(raw: Any, origin: str = "params.yaml") -> Params:
    """Build and validate Params from an already-parsed mapping."""
    from stages.lib.datasets import DATASETS
    from stages.lib.datasets.own import SHAPES as OWN_SHAPES
    from stages.lib.datasets.own import own_source_type
    from stages.lib.methods import METHODS

    try:
        if not isinstance(raw, dict):
            raise _KeyError("(top level)", "a mapping of sections", raw)
        accepted = set(_FIXED_TOP) | {"sources"} | set(METHODS.names())
        for key in raw:
            if key not in accepted:
                raise _UnknownKey(_key_name(key), sorted(accepted))
        values: dict[str, Any] = {}
        for key, typ in _FIXED_TOP.items():
            if key not in raw:
                raise _Missing(key)
            values[key] = _convert(raw[key], typ, key)

        sources_raw = raw.get("sources")
        if not isinstance(sources_raw, dict):
            raise _KeyError("sources", "a mapping with one section per dataset", sources_raw)
        for key in sources_raw:
            if key not in DATASETS and key not in FIXED_SOURCES and own_source_type(sources_raw[key]) is None:
                raise _UnknownKey(
                    f"sources.{_key_name(key)}",
                    [*sorted([*DATASETS.names(), *FIXED_SOURCES]), f"or a dataset of your own, <name>: {OWN_SHAPES}"],
                )
        sources = {}
        for name, typ in FIXED_SOURCES.items():
            if name not in sources_raw:
                raise _Missing(f"sources.{name}")
            sources[name] = _convert(sources_raw[name], typ, f"sources.{name}")
        for name in DATASETS.names():
            spec = DATASETS.get(name)
            if name in sources_raw:
                sources[name] = _convert(sources_raw[name], spec.params_type, f"sources.{name}")
            elif name in values["datasets"]:
                raise _Missing(f"sources.{name}")
        for name, value in sources_raw.items():  # datasets of your own: recognised by their shape
            if name not in DATASETS and name not in FIXED_SOURCES:
                sources[name] = _own_source(name, value)
        method_sections = {}
        for name in METHODS.names():
            spec = METHODS.get(name)
            if name in raw:
                method_sections[name] = _convert(raw[name], spec.params_type, name)
            elif name in values["methods"]:
                raise _Missing(name)
        params = Params(sources=sources, method=method_sections, **values)
        _check(params, DATASETS, METHODS)
    except _KeyError as exc:
        raise PipelineError(_printable(f"{origin}: {exc}")) from None
    return params


def _check(p: Params, datasets, methods) -> None:
    _require(0 <= p.seed <= MAX_SEED, "seed", SEED_RANGE, p.seed)
    _require(len(p.seeds) > 0, "seeds", "a non-empty list of training seeds", p.seeds)
    for index, value in enumerate(p.seeds):
        _require(0 <= value <= MAX_SEED, f"seeds[{index}]", SEED_RANGE, value)
    _require(len(set(p.seeds)) == len(p.seeds), "seeds", "a list without repeats", p.seeds)
    _require(p.shots >= 0, "shots", "an integer >= 0 (0 = every training image)", p.shots)
    from stages.lib.datasets.own import SHAPES as OWN_SHAPES
    from stages.lib.datasets.own import is_own

    own = [name for name, source in p.sources.items() if is_own(source)]
    for key, names, accepted, more in (
        ("datasets", p.datasets, sorted([*datasets.names(), *own]),
         f", or a dataset of your own defined as sources.<name>: {OWN_SHAPES}"),
        ("methods", p.methods, methods.names(), ""),
    ):
        _require(len(names) > 0, key, f"a non-empty list of: {', '.join(accepted)}", names)
        for name in names:
            if name not in accepted:
                raise _KeyError(key, f"names from: {', '.join(accepted)}{more}", name)
        _require(len(set(names)) == len(names), key, "a list without repeats", names)
    for section in (p.split, p.model, p.train, p.embed, p.evaluate, p.umap, p.pictures, p.primary):
        section.check(_section_name(section))
    for name, section in p.sources.items():
        if hasattr(section, "check"):
            section.check(f"sources.{name}")
    for name, section in p.method.items():
        if hasattr(section, "check"):
            section.check(name)
    if p.split.source == "annotations":
        from stages.lib.annotations import LOW_DATA_SHOTS

        published = [n for n in datasets.names() if datasets.get(n).annotation_prefix]
        for name in p.datasets:
            if name in own or not datasets.get(name).annotation_prefix:
                mine = "; a split column in your CSV is used as given" if name in own else ""
                raise _KeyError(
                    "split.source",
                    f"generated when datasets include {name} (the study published split lists only for "
                    f"{', '.join(published)}{mine})",
                    p.split.source,
                )
        _require(
            p.shots in (0, LOW_DATA_SHOTS), "shots",
            f"0 or {LOW_DATA_SHOTS} with split.source: annotations (the study's lists cover only those); "
            "set split.source: generated for other values",
            p.shots,
        )
    if p.shots and p.split.source == "generated":
        from stages.lib.splits import train_sizes

        for name in p.datasets:
            if name in own:
                continue  # known once downloaded: the split stage checks it
            spec = datasets.get(name)
            sizes = spec.class_sizes(p.sources[name])
            if sizes is None:
                continue  # known only after the download: the split stage names the limit
            per_class = spec.study_test_per_class if p.split.test_per_class == "study" else p.split.test_per_class
            try:
                train = train_sizes(
                    sizes, test_fraction=p.split.test_fraction, val_fraction=p.split.val_fraction, seed=p.seed,
                    test_per_class=per_class,
                )
            except PipelineError as exc:
                raise _KeyError("split", f"a split that {name} allows ({exc})", dataclasses.asdict(p.split)) from None
            smallest = min(train, key=lambda c: (train[c], c))
            if p.shots > train[smallest]:
                raise _KeyError(
                    "shots",
                    f"at most {train[smallest]} for {name} (the training images of its class {smallest!r} once test "
                    "and val are held out; 0 = every image)",
                    p.shots,
                )


def _own_source(name: Any, value: dict) -> Any:
    """`sources.<name>` of a dataset of your own: a folder of class folders, or a CSV and its root."""
    from stages.lib.datasets.own import SHAPES, FolderSource, own_source_type

    key = f"sources.{_key_name(name)}"
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name)):
        raise _KeyError(
            key, "named with a letter, then letters, digits, _ or - (the name becomes folder and stage names)", name
        )
    typ = own_source_type(value)
    if typ is FolderSource and ("csv" in value or "root" in value):
        raise _KeyError(key, f"one of {SHAPES}, not both", value)
    return _convert(value, typ, key)


def _section_name(section: Any) -> str:
    for key, typ in _FIXED_TOP.items():
        if typ is type(section):
            return key
    return type(section).__name__


# --- conversion ----------------------------------------------------------------------------


def _type_words(typ: Any) -> str:
    """How an error message names a type: `int` -> "an integer", `Literal["a"]` -> "a"."""
    if typing.get_origin(typ) is Literal:
        return " or ".join(map(str, typing.get_args(typ)))
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    return words.get(typ, getattr(typ, "__name__", str(typ)))


def _convert(value: Any, typ: Any, key: str) -> Any:
    """Convert a parsed YAML value to `typ`, or raise _KeyError naming `key`."""
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        return _to_dataclass(value, typ, key)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise _KeyError(key, "true or false", value)
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _KeyError(key, "an integer", value)
    if typ is float:
        # DVC writes floats like 5e-05, which PyYAML (YAML 1.1) reads as a string.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise _KeyError(key, "a number", value) from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)  # an int beyond the float range overflows
            except OverflowError:
                number = math.inf
            if math.isfinite(number):
                return number
        raise _KeyError(key, "a finite number", value)
    if typ is str:
        if isinstance(value, str):
            return value
        raise _KeyError(key, "a string", value)
    if origin is list:
        (item_type,) = typing.get_args(typ)
        if not isinstance(value, list):
            raise _KeyError(key, "a list", value)
        return [_convert(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is Literal:
        choices = typing.get_args(typ)
        if value in choices:
            return value
        raise _KeyError(key, f"one of: {', '.join(map(str, choices))}", value)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], key)
        for option in inner:  # e.g. `int | Literal["study"] | None`: the first that fits
            try:
                return _convert(value, option, key)
            except _KeyError:
                continue
        raise _KeyError(key, " or ".join(_type_words(a) for a in args), value)
    if typ is Any:
        return value
    raise TypeError(f"unsupported params type {typ!r} for {key}")


def _to_dataclass(value: Any, cls: type[T], key: str) -> T:
    if value is None and not fields(cls):
        value = {}
    if not isinstance(value, dict):
        raise _KeyError(key, "a mapping", value)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for k in value:
        if k not in names:
            raise _UnknownKey(f"{key}.{_key_name(k)}", names)
    kwargs = {}
    for f in fields(cls):
        if f.name in value:
            kwargs[f.name] = _convert(value[f.name], hints[f.name], f"{key}.{f.name}")
        elif f.default is not dataclasses.MISSING:
            kwargs[f.name] = f.default
        else:
            raise _Missing(f"{key}.{f.name}")
    return cls(**kwargs)
