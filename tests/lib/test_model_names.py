"""`model.name` is checked against the installed timm's registry before anything runs, offline,
and without torch once the registry file is written."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stages import check
from stages.lib import model_names
from stages.lib.errors import PipelineError
from stages.lib.params import params_from_dict
from tests.helpers import ROOT, env, tiny_params, write_params

VERSION = importlib.metadata.version("timm")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A registry file written from timm itself, as the check stage writes it the first time."""
    folder = tmp_path_factory.mktemp("timm")
    tags = model_names.registry(folder)
    assert (folder / f"{model_names.timm_stamp()}.json").is_file()
    assert json.loads((folder / f"{model_names.timm_stamp()}.json").read_text()) == tags
    return folder


def refusal(cache: Path, **model) -> str:
    raw = tiny_params()
    raw["model"].update(model)
    with pytest.raises(PipelineError) as info:
        model_names.check_names(params_from_dict(raw), "params.yaml", cache)
    return str(info.value)


def test_an_unknown_architecture_is_refused_naming_the_close_ones(cache):
    assert refusal(cache, name="resnet_18") == (
        f"params.yaml: model.name must be a model of timm {VERSION} (timm.list_models()); close: resnet18, "
        "resnetv2_18, resnet18d, got 'resnet_18'"
    )


def test_an_unknown_pretrained_tag_is_refused_naming_the_known_ones(cache):
    message = refusal(cache, name="convnext_tiny.fb_in23k", pretrained=True)
    assert message.startswith(f"params.yaml: model.name must be convnext_tiny or convnext_tiny.<tag>, a pretrained "
                              f"tag of timm {VERSION}: ")
    assert "fb_in22k, " in message and message.endswith("got 'convnext_tiny.fb_in23k'")
    # timm refuses the tag with pretrained: false too (create_model), so the check does
    assert refusal(cache, name="convnext_tiny.fb_in23k", pretrained=False) == message


def test_pretrained_needs_weights_that_timm_has(cache):
    tags = json.loads(next(cache.glob("*.json")).read_text())
    bare = sorted(name for name, known in tags.items() if not known)[0]  # an architecture without weights
    assert refusal(cache, name=bare, pretrained=True) == (
        f"params.yaml: model.pretrained must be false for {bare} (timm {VERSION} has no pretrained weights for "
        "it), or give sources.weights.url, got True"
    )
    for model, url in (({"name": bare, "pretrained": False}, None), ({"name": bare, "pretrained": True}, "https://m/w"),
                       ({"name": "convnext_tiny.fb_in22k", "pretrained": True}, None),
                       ({"name": "resnet18", "pretrained": True}, None),
                       ({"name": "test_convnext", "pretrained": False}, None)):
        raw = tiny_params()
        raw["model"].update(model)
        raw["sources"]["weights"]["url"] = url
        model_names.check_names(params_from_dict(raw), "params.yaml", cache)


def test_the_registry_file_is_read_without_importing_torch(tmp_path):
    """A registry file for this timm is what the check reads: a fake one decides, and neither timm nor
    torch is imported (the check stage stays light once the file is written)."""
    folder = tmp_path / "data/cache/timm"
    folder.mkdir(parents=True)
    (folder / f"{model_names.timm_stamp()}.json").write_text(json.dumps({"only_this": []}))
    params = write_params(tmp_path / "params.yaml", tiny_params())
    code = (
        "import sys\nfrom stages import check\n"
        f"try:\n    check.main(['--params', {str(params)!r}, '--out', {str(tmp_path / 'checked')!r}])\n"
        "except SystemExit as exit:\n    print('exit', exit.code)\n"
        "print(' '.join(m for m in ('torch', 'timm') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.splitlines() == ["exit 1", ""], result.stdout + result.stderr
    assert f"model.name must be a model of timm {VERSION} (timm.list_models()), got 'test_convnext'" in result.stderr


def test_the_check_stage_refuses_an_unknown_model_in_one_line_naming_the_way_back(tmp_path, cache, capsys):
    (tmp_path / "data/cache").mkdir(parents=True)
    (tmp_path / "data/cache/timm").symlink_to(cache)
    raw = tiny_params()
    raw["model"]["name"] = "resnet_18"
    params = write_params(tmp_path / "params.yaml", raw)
    with pytest.raises(SystemExit) as exit:
        check.main(["--params", str(params), "--out", str(tmp_path / "checked")])
    assert exit.value.code == 1 and not (tmp_path / "checked").exists()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {params}: model.name must be a model of timm {VERSION}"), err
    assert err.endswith(f"{params} still holds it: `python -m stages.check --restore --params {params}` puts back "
                        "the params of the last run that passed (and keeps this file as data/params.yaml.refused)"), err
