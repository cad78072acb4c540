"""The schema in stages/lib/params.py is the one place each setting is stated: docs/params.md is
generated from it and params.yaml ships its defaults."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml

from stages.lib.params_doc import markdown, shipped_values
from tests.helpers import ROOT


def test_docs_params_md_is_what_the_schema_generates():
    committed = (ROOT / "docs" / "params.md").read_text(encoding="utf-8")
    assert committed == markdown(), "docs/params.md is stale: python -m stages.lib.params_doc > docs/params.md"


def test_the_generator_runs_as_documented():
    out = subprocess.run([sys.executable, "-m", "stages.lib.params_doc"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out == markdown()
    assert "| `train.lr` | `5.0e-05` | a number > 0 |" in out


def _at(raw: dict, key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        node = node[part]
    return node


def test_params_yaml_ships_the_schema_defaults():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    expected = shipped_values()
    assert len(expected) > 40  # every fixed setting, not an empty walk
    differing = {key: (_at(raw, key), value) for key, value in expected.items() if _at(raw, key) != value}
    assert not differing, f"params.yaml differs from the schema's defaults (params.yaml, schema): {differing}"
