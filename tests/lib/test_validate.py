"""The params checks' public home: messages as before, and imports that point one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stages.lib.validate import MissingKey, ParamError, UnknownKey, key_name, one_of, printable, require

ROOT = Path(__file__).resolve().parents[2]


def test_messages():
    with pytest.raises(ParamError, match=r"^train\.lr must be a number > 0, got -1$"):
        require(False, "train.lr", "a number > 0", -1)
    require(True, "train.lr", "a number > 0", -1)
    with pytest.raises(ParamError, match=r"^x must be one of: a, b, got 'c'$"):
        one_of("c", "x", ["a", "b"])
    assert str(UnknownKey("sources.pest", ["pets", "weights"])) == "unknown key sources.pest; accepted: pets, weights"
    assert str(UnknownKey("pretrained.x", [])) == "unknown key pretrained.x; accepted: none (no keys)"
    assert str(MissingKey("seed")) == "missing key seed; add it (see docs/params.md)"
    assert isinstance(MissingKey("seed"), ParamError) and isinstance(UnknownKey("a", []), ParamError)
    long = "x" * 100
    assert str(ParamError("k", "short", long)).endswith("'" + "x" * 56 + "...")
    assert key_name("a b") == "'a b'" and key_name("ab") == "ab" and printable("a\nb") == "a\\nb"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["datasets", "methods"])
def test_registries_do_not_import_params(package):
    """params.py imports the registries; the registries' modules import only validate, not params."""
    files = sorted((ROOT / "stages" / "lib" / package).glob("*.py"))
    assert files
    for path in files:
        assert "stages.lib.params" not in _imports(path), path
    assert _imports(ROOT / "stages" / "lib" / "validate.py") <= {"__future__", "typing"}
