"""`model.name` checked against the installed timm's own registry, offline, before anything runs.

timm cannot be imported without torch (several seconds of CPU), so the check stage and `make demo`
read the registry from a small JSON file that this module writes the first time, with timm's own
`list_models()` and `list_pretrained()`, and reads from then on (milliseconds). The file's name
holds timm's version and the time its package was installed, so a new timm writes a new file.
`load_params`, which every stage runs, does not do this check: only the check stage and the demo.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from stages.lib.atomic import write_text
from stages.lib.errors import PipelineError
from stages.lib.validate import ParamError, printable

CACHE = Path("data") / "cache" / "timm"  # relative to the project folder; git ignores data/cache


def timm_stamp() -> str:
    """`<version>-<mtime ns of timm's __init__.py>`: names one installed timm without importing it."""
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        raise PipelineError("timm is not installed; run make setup (or pip install -e .) first")
    return f"{importlib.metadata.version('timm')}-{os.stat(spec.origin).st_mtime_ns}"


def read_registry() -> dict[str, list[str]]:
    """Every timm architecture -> its pretrained tags, from timm itself (imports timm, so torch)."""
    import timm

    tags: dict[str, list[str]] = {name: [] for name in timm.list_models()}
    for full in timm.list_pretrained():
        arch, _, tag = full.partition(".")
        if arch in tags and tag:
            tags[arch].append(tag)
    return tags


def registry(cache: Path | None = CACHE) -> dict[str, list[str]]:
    """timm's registry: from `cache`/<stamp>.json when there, else read from timm and written there
    (`cache` None: read from timm, write nothing)."""
    if cache is None:
        return read_registry()
    path = cache / f"{timm_stamp()}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    tags = read_registry()
    try:
        write_text(path, json.dumps(tags, sort_keys=True))
    except OSError:
        pass  # a read-only folder: the check still holds, it is only slower next time
    return tags


def _close(name: str, names: list[str]) -> str:
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"; close: {', '.join(near)}" if near else ""


def check_model(model: Any, weights: Any, tags: dict[str, list[str]], version: str) -> None:
    """Raise ParamError unless timm (`tags`: its registry) can build `model.name` and, when
    `model.pretrained` and no `sources.weights.url` is given, has pretrained weights for it."""
    arch, dot, tag = model.name.partition(".")
    if arch not in tags:
        raise ParamError("model.name", f"a model of timm {version} (timm.list_models()){_close(arch, sorted(tags))}",
                         model.name)
    if dot and tag not in tags[arch]:
        known = ", ".join(tags[arch]) or "none"
        raise ParamError("model.name", f"{arch} or {arch}.<tag>, a pretrained tag of timm {version}: {known}",
                         model.name)
    if model.pretrained and weights.url is None and not tags[arch]:
        raise ParamError(
            "model.pretrained",
            f"false for {arch} (timm {version} has no pretrained weights for it), or give sources.weights.url",
            model.pretrained,
        )


def check_names(params: Any, origin: str = "params.yaml", cache: Path | None = CACHE) -> None:
    """Raise the one-line PipelineError `<origin>: model.name must be ...` unless timm knows the model."""
    version = importlib.metadata.version("timm")
    try:
        check_model(params.model, params.source("weights"), registry(cache), version)
    except ParamError as exc:
        raise PipelineError(printable(f"{origin}: {exc}")) from None
