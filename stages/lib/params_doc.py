"""docs/params.md, generated from the params schema: `python -m stages.lib.params_doc > docs/params.md`.

Every setting of a fixed section is one row: its key, its default, what it accepts (the type and
the rule that `check` applies, in the words of its error message) and its meaning, all read from
its `setting(...)` field in stages/lib/sections.py (or params.py). A dataset's or method's section is one row per
setting too: from its `setting(...)` fields where its module states them so, else from its
dataclass (field and type) and params.yaml (value and the comment beside it).
tests/lib/test_params_doc.py fails when the committed docs/params.md differs from this output.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

from stages.lib import params as P
from stages.lib.datasets import DATASETS
from stages.lib.methods import METHODS
from stages.lib.schema import NO_DEFAULT, default_of, type_words


def runs_train_keys() -> list[str]:
    from stages.lib.runs import train_keys

    return train_keys(P.TrainParams)

ROOT = Path(__file__).resolve().parents[2]

INTRO = """\
# Params

Every knob of `params.yaml`. Back to the [README](../README.md). This page is generated from the
schema in `stages/lib/sections.py` and `stages/lib/params.py`
(`python -m stages.lib.params_doc > docs/params.md`); edit the schema, not this page.

Every knob is in `params.yaml`, checked before any work by the `check` stage, which every other
stage follows: an unknown key, a wrong type, a value outside its rule (the "accepts" column, in the
words of the error), an unknown dataset, method or timm model, a negative `shots` or one larger
than the training images a class keeps once test and val are held out (named exactly where the
class sizes are known before the download: digits, synthetic; elsewhere the `split` stage names
it) stops the pipeline with one line naming the key and the accepted values, before any stage
deletes an output. The defaults reproduce the study. `make demo ARGS="-S key=value"` checks its
settings the same way before it touches anything.

A value the check refuses stays in params.yaml (DVC wrote it there for `-S`): the error says so
and names the one command that puts back the params of the last run that passed the check,
`python -m stages.check --restore` (it keeps the refused file as `params.yaml.refused`). A key
that params.yaml lacks (`dvc exp run -S train.epoch=3`) is refused by DVC itself before the
project sees it; DVC suggests `-S +train.epoch=3`, which the check then refuses naming the
accepted keys. `make demo ARGS="-S train.epoch=3"` names them at once.
"""


def _value(value: Any) -> str:
    """A default as params.yaml writes it, on one line."""
    if isinstance(value, float) and value == 1 / 3:
        return "1/3"
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _accepts(typ: Any, field: dataclasses.Field, section: type) -> str:
    rule = field.metadata.get("rule")
    words = type_words(typ)
    if rule is None:
        return words
    defaults = {f.name: default_of(f) for f in dataclasses.fields(section)}
    return rule.wording(defaults) if rule.whole else rule.words


def setting_rows(section: type, prefix: str) -> list[str]:
    """One row per field of `section`, keyed `prefix.<field>`."""
    hints = typing.get_type_hints(section)
    rows = []
    for f in dataclasses.fields(section):
        if "doc" not in f.metadata:
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        rows.append(f"| `{key}` | `{_value(default_of(f))}` | {_cell(_accepts(hints[f.name], f, section))} "
                    f"| {_cell(f.metadata['doc'])} |")
    return rows


def yaml_comments(text: str) -> dict[str, str]:
    """The comment beside each key of params.yaml, by dotted key ("triplet.pool": "where ...")."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    out: dict[str, str] = {}

    def walk(node: CommentedMap, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            token = (node.ca.items.get(key) or [None, None, None])[2]
            if token is not None:
                lines = token.value.split("\n\n")[0].splitlines()  # up to a blank line: the next key's own
                out[name] = " ".join(line.strip().removeprefix("#").strip() for line in lines if line.strip())
            if isinstance(value, CommentedMap):
                walk(value, f"{name}.")

    walk(YAML().load(text), "")
    return out


def section_rows(section: type, key: str, shipped: Any, comments: dict[str, str]) -> list[str]:
    """The rows of a registry section: from its `setting(...)` fields where it states them; else its
    docstring, then one row per field with params.yaml's value and comment (until its module uses
    `setting`, params.yaml is where those are stated)."""
    if any("doc" in f.metadata for f in dataclasses.fields(section)):
        return setting_rows(section, key)
    hints = typing.get_type_hints(section)
    doc = (section.__doc__ or "").strip().split("\n\n")[0]
    rows = [f"| `{key}` | | | {_cell(doc)} |"]
    for f in dataclasses.fields(section):
        value = shipped.get(f.name) if isinstance(shipped, dict) else None
        rows.append(f"| `{key}.{f.name}` | `{_value(value)}` | {_cell(type_words(hints[f.name]))} "
                    f"| {_cell(comments.get(f'{key}.{f.name}', ''))} |")
    return rows


def markdown(shipped: dict | None = None) -> str:
    """The whole of docs/params.md; `shipped` is params.yaml as parsed (the registry sections' defaults)."""
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    shipped = yaml.safe_load(text) if shipped is None else shipped
    comments = yaml_comments(text)
    header = ["| key | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    lines = [INTRO]
    lines += ["## The runs", "", *header, *setting_rows(P.Params, "")]
    lines += ["", "## Sources", "", "Where each dataset (and the pretrained weights) comes from; a dataset of your own "
              f"is `sources.<name>`: {P.OWN_SHAPES} (README, \"Your own data\").", "", *header]
    for name in DATASETS.names():
        lines += section_rows(DATASETS.get(name).params_type, f"sources.{name}", shipped["sources"].get(name),
                              comments)
    for name, section in P.FIXED_SOURCES.items():
        lines += setting_rows(section, f"sources.{name}")
    for key, section in P.FIXED_TOP.items():
        if dataclasses.is_dataclass(section):
            lines += ["", f"## {key}", "", section.__doc__.strip().split("\n\n")[0], "", *header,
                      *setting_rows(section, key)]
    lines += ["", "## Methods", "", "One top-level section per registered method ([methods.md](methods.md)).", "",
              *header]
    for name in METHODS.names():
        lines += section_rows(METHODS.get(name).params_type, name, shipped.get(name), comments)
    lines += ["", *runs_section(shipped.get("runs") or [])]
    lines += ["", COSTS]
    return "\n".join(lines) + "\n"


RUNS_INTRO = f"""\
## runs

Per-run settings (`stages/lib/runs.py`): each entry names the runs it applies to (`dataset`,
`method`, `shots`; an omitted one matches any) and `set`s keys over `train` and the method's
section for them; entries apply in list order, a later one winning. An entry may set the recipe's
`train` keys ({", ".join(f"`{k}`" for k in runs_train_keys())})
and, with `method` named, that method's keys; anything else is refused with one line naming the
entry and the accepted keys. Only the train stage reads `runs`. A run that no entry matches (the
digits demo, your own data) trains on the general values. The entries shipped are the study's
eight configs where they differ from the general values (epochs 100, lr 5e-5, warm-up 10, cosine
T_max 100, eta_min 5e-6 are the same in all eight: the general `train` values);
[differences.md](differences.md#the-studys-per-run-settings) names each config file. A general
value changed with `-S` (`-S classification.batch_size=64`) does not reach a run that an entry
sets that key for: change the entry (`-S runs.0.set.batch_size=64`, the first entry) or empty
the list (`-S 'runs=[]'`).
"""


# What each setting for a fair fight costs: (setting, the demo measured, the study estimated).
COST_ROWS = [
    ("the defaults", "32 min (a fresh copy: the data stages included)",
     "6.9 GPU-hours on an RTX 3090 (1.7 to 2.7 on an H100, an assumption); 15 per class: 0.7"),
    ("`train.budget: images`", "22 min", "x 0.52 (triplet passes a third of its images); 15 per class: x 0.70"),
    ("`train.budget: steps`", "31 min (22.9 CPU minutes) beside a mutation run: an upper bound; 240 steps a run",
     "x 1.0 (pets' classification batch of 32 gives triplet twice its images, DeFungi's 128 half); "
     "15 per class: x 0.92"),
    ("`train.select: val_*`", "28 min (23.4 CPU minutes) beside a mutation run: an upper bound",
     "x 1.02 (an embedding pass over the validation images each epoch); 15 per class: x 1.20"),
    ("`tune.trials: N`", "N = 8: 72 min beside the test suite and a mutation run (an upper bound); the pruner stopped "
     "6 of each method's 8 trials early",
     "x (1 + N x `tune.epochs` / (seeds x epochs)) at most (pruning stops trials early): 8 trials of 10 epochs "
     "beside 5 seeds of 100, x 1.16"),
    ("`split.classes: unseen`", "42 min beside the test suite and another demo: an upper bound",
     "x 0.5 (half the classes trained on)"),
]
COSTS = """\
## What the settings for a fair fight cost

The default `dvc repro` is the study's setup and cost: `train.budget: epochs`, `train.select:
loss`, `tune.trials: 0`, `split.classes: seen`. Each switch that puts the methods on equal terms
([methods.md](methods.md)) changes what is trained:

| setting | the demo, 5 seeds (measured) | the study, 5 seeds (an estimate) |
| --- | --- | --- |
""" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in COST_ROWS) + """

The study's column multiplies the estimate of
[results.md](results.md#what-the-study-command-costs-an-estimate) (timm's published
`convnext_tiny` training speed: no GPU has been measured by this project) by the image passes each
setting changes, with the study's per-run batch sizes (`runs`) and split sizes. The demo's column
is the wall time of each command of results.md's 5-seed comparison and fair fight (`make demo
ARGS="-S seeds=[0,1,2,3,4] ..."`) on this project's 2-core machine, on 2026-12-05 with other work
sharing the cores (load average 1.7 to 3 for the first two rows, 4 to 6 after; `tune.trials`
on 2026-12-06, load average 3.4 to 3.8).
"""


def runs_section(entries: list[dict]) -> list[str]:
    """The `runs` section: what it is, then one row per shipped entry."""
    rows = ["| dataset | method | shots | sets |", "| --- | --- | --- | --- |"]
    for entry in entries:
        cells = [_cell(str(entry.get(k, "any"))) for k in ("dataset", "method", "shots")]
        rows.append(f"| {' | '.join(cells)} | {_cell(_value(entry['set']))} |")
    return [RUNS_INTRO, *rows]


def shipped_values() -> dict[str, Any]:
    """What params.yaml must hold for each setting the schema states: {"train.lr": 5e-05, ...}."""
    out: dict[str, Any] = {}

    def walk(section: type, prefix: str) -> None:
        for f in dataclasses.fields(section):
            key = f"{prefix}.{f.name}" if prefix else f.name
            if default_of(f) is not NO_DEFAULT and "doc" in f.metadata:
                out[key] = default_of(f)

    walk(P.Params, "")
    for key, section in P.FIXED_TOP.items():
        if dataclasses.is_dataclass(section):
            walk(section, key)
    for name, section in P.FIXED_SOURCES.items():
        walk(section, f"sources.{name}")
    for name in DATASETS.names():
        walk(DATASETS.get(name).params_type, f"sources.{name}")
    for name in METHODS.names():
        walk(METHODS.get(name).params_type, name)
    return out


if __name__ == "__main__":
    sys.stdout.write(markdown())
