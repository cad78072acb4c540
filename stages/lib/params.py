"""`params.yaml` loaded once into frozen, validated dataclasses.

Every knob of the pipeline is here; nothing below reads `params["a"]["b"]`. The sections are in
stages/lib/sections.py; this module holds the top-level settings, assembles the whole and loads it.
Each setting is stated once, as a `setting(default, doc, rule)` field (stages/lib/schema.py): params.yaml ships the
defaults (a test holds them equal), docs/params.md is generated from the docs
(`python -m stages.lib.params_doc > docs/params.md`; a test holds it current), and the rule words
the one-line error. Loading refuses unknown keys, missing keys and wrong types with one line that
names the key and what is accepted. Dataset and method sections are typed by their registry
entries (`sources.<dataset>`, `<method>` at top level), so adding one is registering it, nothing
else. A `sources.<name>` that is not registered but has the shape of a folder or a CSV source
defines a dataset of your own. Rules that need another module's knowledge live with it: the
split's (`split.source`, `shots` against the class sizes) in stages/lib/splits.py, and the model
name's (timm's registry, which needs torch) in stages/lib/model_names.py, which only the check
stage and `make demo` run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stages.lib.datasets import DATASETS
from stages.lib.datasets.own import SHAPES as OWN_SHAPES
from stages.lib.datasets.own import FolderSource, is_own, own_source_type
from stages.lib.errors import PipelineError
from stages.lib.methods import METHODS
from stages.lib.runs import RunSettings, check_runs, parse_runs
from stages.lib.schema import at_least, check_settings, convert, setting
from stages.lib.sections import (  # noqa: F401  (the sections are imported from here too)
    EVALUATE_DISTANCES,
    FIXED_SOURCES,
    MAX_SEED,
    OPTIMIZERS,
    PRECISIONS,
    REPORT_METRICS,
    REPORT_VIEWS,
    SEED,
    SEED_RANGE,
    UMAP_METRICS,
    AnnotationsSource,
    EmbedParams,
    EvaluateParams,
    ModelParams,
    PicturesParams,
    PrimaryParams,
    SplitParams,
    TrainParams,
    TuneParams,
    UmapParams,
    WeightsSource,
)

# The checks live in stages.lib.validate (which dataset and method sections use too); here they
# keep their module-private names.
from stages.lib.validate import MissingKey as _Missing
from stages.lib.validate import ParamError as _KeyError
from stages.lib.validate import UnknownKey as _UnknownKey
from stages.lib.validate import key_name as _key_name
from stages.lib.validate import printable as _printable
from stages.lib.validate import require as _require


@dataclass(frozen=True)
class Params:
    """The whole of `params.yaml`."""

    seed: int = setting(0, "the generated splits and the k-shot subsets", SEED)
    seeds: list[int] = setting(
        [0],
        "training seeds (a non-empty list without repeats): every dataset x method is trained once per seed "
        "(initialisation, batch order, flips); more than one gives means, spreads and paired tests in the report",
    )
    datasets: list[str] = setting(
        ["pets", "defungi"],
        f"registered datasets ({', '.join(DATASETS.names())}) or your own, defined as `sources.<name>`: "
        f"{OWN_SHAPES}",
    )
    methods: list[str] = setting(["classification", "triplet"], f"any of: {', '.join(METHODS.names())}")
    shots: int = setting(
        0,
        "training images per class; 0 = all. Val and test stay as they are. At most what the smallest class keeps "
        "once test and val are held out (checked here where the class sizes are known before the download: "
        "digits, synthetic; elsewhere by the `split` stage)",
        at_least(0, note="0 = every training image"),
    )
    sources: dict[str, Any]  # dataset name (or weights, annotations) -> its source dataclass
    split: SplitParams
    model: ModelParams
    train: TrainParams
    tune: TuneParams
    method: dict[str, Any]  # method name -> that method's dataclass (top-level sections)
    embed: EmbedParams
    evaluate: EvaluateParams
    umap: UmapParams
    pictures: PicturesParams
    primary: PrimaryParams
    runs: list[RunSettings]  # per-run settings (stages/lib/runs.py), in list order

    def source(self, dataset: str) -> Any:
        """The `sources.<dataset>` section."""
        return self.sources[dataset]

    def method_params(self, method: str) -> Any:
        """The `<method>` section."""
        return self.method[method]


# Top-level keys of params.yaml with a fixed type (besides `sources` and one section per method).
FIXED_TOP = {
    "seed": int,
    "seeds": list[int],
    "datasets": list[str],
    "methods": list[str],
    "shots": int,
    "split": SplitParams,
    "model": ModelParams,
    "train": TrainParams,
    "tune": TuneParams,
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
    try:
        if not isinstance(raw, dict):
            raise _KeyError("(top level)", "a mapping of sections", raw)
        accepted = set(FIXED_TOP) | {"sources", "runs"} | set(METHODS.names())
        for key in raw:
            if key not in accepted:
                raise _UnknownKey(_key_name(key), sorted(accepted))
        values: dict[str, Any] = {}
        for key, typ in FIXED_TOP.items():
            if key not in raw:
                raise _Missing(key)
            values[key] = convert(raw[key], typ, key)

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
            sources[name] = convert(sources_raw[name], typ, f"sources.{name}")
        for name in DATASETS.names():
            spec = DATASETS.get(name)
            if name in sources_raw:
                sources[name] = convert(sources_raw[name], spec.params_type, f"sources.{name}")
            elif name in values["datasets"]:
                raise _Missing(f"sources.{name}")
        for name, value in sources_raw.items():  # datasets of your own: recognised by their shape
            if name not in DATASETS and name not in FIXED_SOURCES:
                sources[name] = _own_source(name, value)
        method_sections = {}
        for name in METHODS.names():
            spec = METHODS.get(name)
            if name in raw:
                method_sections[name] = convert(raw[name], spec.params_type, name)
            elif name in values["methods"]:
                raise _Missing(name)
        runs = parse_runs(raw.get("runs"), TrainParams, sorted([*DATASETS.names(), *(
            name for name, source in sources.items() if is_own(source))]),
            {name: METHODS.get(name).params_type for name in METHODS.names()})
        params = Params(sources=sources, method=method_sections, runs=runs, **values)
        _check(params)
        # the split's rules live with the split (pandas): imported here, so that `--help` stays light
        from stages.lib import splits

        splits.check_params(params, DATASETS, own_datasets(params))
    except _KeyError as exc:
        raise PipelineError(_printable(f"{origin}: {exc}")) from None
    return params


def own_datasets(p: Params) -> list[str]:
    """The names in `sources` that define a dataset of your own."""
    return [name for name, source in p.sources.items() if is_own(source)]


def _check(p: Params) -> None:
    """The rules of the whole file: the top-level settings, then each section's own."""
    check_settings(p)
    _require(len(p.seeds) > 0, "seeds", "a non-empty list of training seeds", p.seeds)
    for index, value in enumerate(p.seeds):
        _require(SEED.ok(value), f"seeds[{index}]", SEED_RANGE, value)
    _require(len(set(p.seeds)) == len(p.seeds), "seeds", "a list without repeats", p.seeds)
    own = own_datasets(p)
    for key, names, accepted, more in (
        ("datasets", p.datasets, sorted([*DATASETS.names(), *own]),
         f", or a dataset of your own defined as sources.<name>: {OWN_SHAPES}"),
        ("methods", p.methods, METHODS.names(), ""),
    ):
        _require(len(names) > 0, key, f"a non-empty list of: {', '.join(accepted)}", names)
        for name in names:
            if name not in accepted:
                raise _KeyError(key, f"names from: {', '.join(accepted)}{more}", name)
        _require(len(set(names)) == len(names), key, "a list without repeats", names)
    for key, typ in FIXED_TOP.items():
        if hasattr(typ, "check"):
            getattr(p, key).check(key)
    for name, section in p.sources.items():
        if hasattr(section, "check"):
            section.check(f"sources.{name}")
    for name, section in p.method.items():
        if hasattr(section, "check"):
            section.check(name)
    check_runs(p)
    _require(p.train.budget == "epochs" or p.train.budget_amount is not None or "classification" in p.method,
             "train.budget_amount", f"an integer >= 1 with train.budget {p.train.budget} and no classification "
             "section (null takes the amount from the classification run)", None)  # refused only when null


def _own_source(name: Any, value: dict) -> Any:
    """`sources.<name>` of a dataset of your own: a folder of class folders, or a CSV and its root."""
    key = f"sources.{_key_name(name)}"
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name)):
        raise _KeyError(
            key, "named with a letter, then letters, digits, _ or - (the name becomes folder and stage names)", name
        )
    typ = own_source_type(value)
    if typ is FolderSource and ("csv" in value or "root" in value):
        raise _KeyError(key, f"one of {OWN_SHAPES}, not both", value)
    return convert(value, typ, key)
