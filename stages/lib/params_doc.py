"""docs/params.md, generated from the params schema: `python -m stages.lib.params_doc > docs/params.md`.

Every setting of a fixed section is one row: its key, its default, what it accepts (the type and
the rule that `check` applies, in the words of its error message) and its meaning, all read from
its `setting(...)` field in stages/lib/params.py. A dataset's or method's section is one row per
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

ROOT = Path(__file__).resolve().parents[2]

INTRO = """\
# Params

Every knob of `params.yaml`. Back to the [README](../README.md). This page is generated from the
schema in `stages/lib/params.py` (`python -m stages.lib.params_doc > docs/params.md`); edit the
schema, not this page.

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
    return "\n".join(lines) + "\n"


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
