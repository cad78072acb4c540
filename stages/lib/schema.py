"""How a params section states each setting once: its type, default, meaning and rule.

A section is a frozen dataclass whose fields are `setting(default, doc, rule)`: the field's type
is what YAML must give (`convert` reads it, DVC's `5e-05` strings included), `default` is the
value params.yaml ships with (a test holds them equal), `doc` is the row of docs/params.md
(generated: `python -m stages.lib.params_doc`), and `rule` checks the converted value and words
the one-line error (`check_settings`). Rules that tie several settings together stay in the
section's `check` method. This module imports nothing of the project but `validate`, so any
section (params.py, a dataset's or a method's module) can use it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

from stages.lib.validate import MissingKey, ParamError, UnknownKey, key_name

T = TypeVar("T")
NO_DEFAULT = object()


@dataclass(frozen=True)
class Rule:
    """What a value must be: `ok(value)` decides, `words` completes "<key> must be ...".

    With `whole`, `ok(value, section)` sees the whole section and `words` may name its other
    settings as `{name}` (filled in with their values), for a rule that ties settings together.
    """

    ok: Callable[..., bool]
    words: str
    whole: bool = False

    def refuses(self, value: Any, section: Any) -> bool:
        return not (self.ok(value, section) if self.whole else self.ok(value))

    def wording(self, section: Any) -> str:
        """`words`, with `{name}` filled in from `section` (an object or a mapping of values)."""
        if not self.whole:
            return self.words
        values = section if isinstance(section, dict) else {f.name: getattr(section, f.name) for f in fields(section)}
        return self.words.format(**values)


def at_least(low: float, kind: str = "an integer", note: str = "") -> Rule:
    """`value >= low`: "an integer >= 1", with an optional note in brackets."""
    return Rule(lambda v: v >= low, f"{kind} >= {low}{f' ({note})' if note else ''}")


def above(low: float, kind: str = "a number") -> Rule:
    """`value > low`."""
    return Rule(lambda v: v > low, f"{kind} > {low}")


def within(low: float, high: float, *, low_open: bool = False, high_open: bool = False,
           kind: str = "a number") -> Rule:
    """`value` in an interval: `within(0, 1, low_open=True)` is "a number in (0, 1]"."""

    def ok(v: Any) -> bool:
        return (low < v if low_open else low <= v) and (v < high if high_open else v <= high)

    return Rule(ok, f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")


def choice(choices: Sequence[str]) -> Rule:
    """`value` is one of `choices`, listed in this order."""
    return Rule(lambda v: v in choices, f"one of: {', '.join(choices)}")


def matches(pattern: str, words: str, *, nullable: bool = False) -> Rule:
    """A string that matches `pattern` in full (None too when `nullable`)."""
    return Rule(lambda v: (nullable and v is None) or re.fullmatch(pattern, v) is not None, words)


def starts_with(prefixes: tuple[str, ...], words: str, *, nullable: bool = False) -> Rule:
    """A string that starts with one of `prefixes` (None too when `nullable`)."""
    return Rule(lambda v: (nullable and v is None) or v.startswith(prefixes), words)


def setting(default: Any, doc: str, rule: Rule | None = None, *, optional: bool = False) -> Any:
    """A dataclass field that states one setting: its default, its meaning and its rule. A setting
    is required in params.yaml unless `optional` (then a missing key takes `default`)."""
    metadata = {"default": default, "doc": doc, "rule": rule}
    if optional:
        return dataclasses.field(default=default, metadata=metadata)
    return dataclasses.field(metadata=metadata)


def default_of(f: dataclasses.Field) -> Any:
    """The value params.yaml ships with for field `f` (its `setting` default, else its dataclass
    default), or NO_DEFAULT."""
    if "default" in f.metadata:
        return f.metadata["default"]
    return NO_DEFAULT if f.default is dataclasses.MISSING else f.default


def check_settings(section: Any, where: str = "") -> None:
    """Raise ParamError for the first field of `section` whose `setting` rule refuses its value;
    `where`: the section's key (the top level of params.yaml without one)."""
    for f in fields(section):
        rule = f.metadata.get("rule")
        if rule is not None:
            value = getattr(section, f.name)
            if rule.refuses(value, section):
                error = ParamError(f"{where}.{f.name}" if where else f.name, rule.wording(section), value)
                error.setting = (type(section), f.name)  # which setting refused: the rules test reads it
                raise error


# --- conversion of parsed YAML to typed values --------------------------------------------


def type_words(typ: Any) -> str:
    """How a message or the docs name a type: `int` -> "an integer", `Literal["a"]` -> "a"."""
    origin = typing.get_origin(typ)
    if origin is Literal:
        return " or ".join(map(str, typing.get_args(typ)))
    if origin is list:
        return f"a list of {type_words(typing.get_args(typ)[0]).split(' ', 1)[-1]}s"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_words(a) for a in typing.get_args(typ))
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    return words.get(typ, getattr(typ, "__name__", str(typ)))


def convert(value: Any, typ: Any, key: str) -> Any:
    """Convert a parsed YAML value to `typ`, or raise ParamError naming `key`."""
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        return to_dataclass(value, typ, key)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ParamError(key, "true or false", value)
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ParamError(key, "an integer", value)
    if typ is float:
        # DVC writes floats like 5e-05, which PyYAML (YAML 1.1) reads as a string.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ParamError(key, "a number", value) from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)  # an int beyond the float range overflows
            except OverflowError:
                number = math.inf
            if math.isfinite(number):
                return number
        raise ParamError(key, "a finite number", value)
    if typ is str:
        if isinstance(value, str):
            return value
        raise ParamError(key, "a string", value)
    if origin is list:
        (item_type,) = typing.get_args(typ)
        if not isinstance(value, list):
            raise ParamError(key, "a list", value)
        return [convert(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is Literal:
        choices = typing.get_args(typ)
        if value in choices:
            return value
        raise ParamError(key, f"one of: {', '.join(map(str, choices))}", value)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return convert(value, inner[0], key)
        for option in inner:  # e.g. `int | Literal["study"] | None`: the first that fits
            try:
                return convert(value, option, key)
            except ParamError:
                continue
        raise ParamError(key, " or ".join(type_words(a) for a in args), value)
    if typ is Any:
        return value
    raise TypeError(f"unsupported params type {typ!r} for {key}")


def to_dataclass(value: Any, cls: type[T], key: str) -> T:
    """A mapping to the dataclass `cls`: every key known, every field without a dataclass default
    present (a `setting` default is what params.yaml ships, not a fallback)."""
    if value is None and not fields(cls):
        value = {}
    if not isinstance(value, dict):
        raise ParamError(key, "a mapping", value)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for k in value:
        if k not in names:
            raise UnknownKey(f"{key}.{key_name(k)}", names)
    kwargs = {}
    for f in fields(cls):
        if f.name in value:
            kwargs[f.name] = convert(value[f.name], hints[f.name], f"{key}.{f.name}")
        elif f.default is not dataclasses.MISSING:
            kwargs[f.name] = f.default
        else:
            raise MissingKey(f"{key}.{f.name}")
    return cls(**kwargs)
