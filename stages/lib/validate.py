"""Checks on params values, shared by `params.py` and the sections that registries define.

Dataset and method modules validate their own `params.yaml` sections with `require` and
`one_of`; `params.py` turns a `ParamError` into the one-line `PipelineError` that names the file.
This module imports nothing of the project, so those imports point one way.
"""

from __future__ import annotations

from typing import Any


class ParamError(Exception):
    """A params value is wrong: `<key> must be <expected>, got <value>`."""

    def __init__(self, key: str, expected: str, got: Any) -> None:
        super().__init__(f"{key} must be {expected}, got {show(got)}")


class UnknownKey(ParamError):
    """A key that no section accepts; the message lists the accepted ones."""

    def __init__(self, key: str, accepted: list[str]) -> None:
        Exception.__init__(self, f"unknown key {key}; accepted: {', '.join(accepted) or 'none (no keys)'}")


class MissingKey(ParamError):
    """A required key that is absent."""

    def __init__(self, key: str) -> None:
        Exception.__init__(self, f"missing key {key}; add it (see docs/params.md)")


def require(ok: bool, key: str, expected: str, got: Any) -> None:
    """Raise ParamError(`key`, `expected`, `got`) unless `ok`."""
    if not ok:
        raise ParamError(key, expected, got)


def one_of(value: Any, key: str, accepted: tuple[str, ...] | list[str]) -> None:
    """Raise ParamError unless `value` is one of `accepted`."""
    if value not in accepted:
        raise ParamError(key, f"one of: {', '.join(accepted)}", value)


def key_name(key: Any) -> str:
    """A key as a message shows it: plain if it reads plainly, else quoted (empty, spaces, control characters)."""
    text = str(key)
    return text if text and text.isprintable() and " " not in text else repr(text)


def printable(message: str) -> str:
    """`message` on one line: control characters (newlines included) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def show(value: Any) -> str:
    """A value as a message shows it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."
