"""Put back the params of the last run that passed the check, after a refused value.

`dvc exp run -S key=value` writes the value into params.yaml before the check stage sees it, and
leaves it there when the check refuses it, so every later run would fail on it too. The check
stage's error names `python -m stages.check --restore`, which calls `restore`: the values come
from dvc.lock (what the check stage last passed, as DVC recorded it; right after `dvc exp apply`
too), or from the committed params.yaml when no run passed yet. params.yaml keeps its comments and
layout (only the values that differ change), and the refused file is kept, so no hand edit is lost.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

from stages.lib.atomic import write_text
from stages.lib.errors import PipelineError

REFUSED = Path("data") / "params.yaml.refused"  # git ignores data/; DVC does not track it
RESTORE_HINT = "python -m stages.check --restore"


def _yaml(pure: bool):
    from ruamel.yaml import YAML

    rt = YAML(typ="safe", pure=True) if pure else YAML()
    if not pure:
        rt.width = 4096
        rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
        rt.representer.add_representer(float, lambda r, v: r.represent_scalar("tag:yaml.org,2002:float", _float(v)))
    return rt


def _float(value: float) -> str:
    """A float as PyYAML (YAML 1.1) reads back as a float: 1e-05 -> 1.0e-05."""
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def locked_params(lock: Path) -> dict | None:
    """The params.yaml values dvc.lock records for the check stage, or None."""
    if not lock.is_file():
        return None
    try:
        data = _yaml(pure=True).load(lock.read_text(encoding="utf-8"))
        values = data["stages"]["check"]["params"]["params.yaml"]
    except Exception:  # noqa: BLE001 - an unreadable or older lock: fall back to the committed file
        return None
    return values if isinstance(values, dict) and values else None


def committed_params(root: Path) -> str | None:
    """params.yaml as the last commit holds it, or None."""
    result = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=root, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def with_values(text: str, values: dict) -> str:
    """`text` (params.yaml) with `values` set: comments and layout kept, keys that `values` lacks removed."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    rt = _yaml(pure=False)
    data = rt.load(text)
    if not isinstance(data, CommentedMap):
        data = CommentedMap()

    def assign(node: CommentedMap, new: dict) -> None:
        for key in [k for k in node if k not in new]:
            del node[key]
        for key, value in new.items():
            old = node.get(key)
            if isinstance(value, dict) and isinstance(old, CommentedMap):
                assign(old, value)
            elif isinstance(value, list):
                if not (isinstance(old, list) and _same(list(old), value)):
                    seq = CommentedSeq(value)
                    seq.fa.set_flow_style()
                    node[key] = seq
            elif key not in node or not _same(old, value):
                node[key] = value

    assign(data, values)
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def restore(params: Path = Path("params.yaml"), root: Path = Path(".")) -> str:
    """Put back the last params that passed the check; keep the current file in data/; say what was done."""
    from stages.lib.params import load_params

    values = locked_params(root / "dvc.lock")
    current = params.read_text(encoding="utf-8") if params.is_file() else ""
    if values is not None:
        try:
            text, source = with_values(current, values), "the last run that passed the check (dvc.lock)"
        except Exception:  # noqa: BLE001 - the current file is not YAML at all: start from the committed one
            base = committed_params(root) or ""
            text, source = with_values(base, values), "the last run that passed the check (dvc.lock)"
    else:
        text, source = committed_params(root), "the last commit (no run has passed the check yet)"
        if text is None:
            raise PipelineError("no dvc.lock and no committed params.yaml to restore from; fix params.yaml by hand")
    if text == current:
        return f"{params} already holds the params of {source}; nothing changed"
    kept = root / REFUSED
    if params.is_file():
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(params, kept)
    write_text(params, text)
    load_params(params)  # what was restored passes (it did before): a PipelineError otherwise
    return f"{params}: restored the params of {source}; the refused file is kept as {REFUSED}"
