"""`make demo ARGS=...` checks every value as the check stage does, timm's model names included,
before it writes params.yaml: a refused value leaves the project as it was."""

from __future__ import annotations

import importlib.metadata

from stages.lib import model_names
from tests.helpers import ROOT, project_copy, run, tiny_params


def test_an_unknown_model_name_is_refused_before_params_yaml_is_written(tmp_path):
    repo = project_copy(tmp_path / "repo", tiny_params())
    (repo / "scripts").mkdir()
    (repo / "scripts/demo.py").write_bytes((ROOT / "scripts/demo.py").read_bytes())
    model_names.registry(repo / "data/cache/timm")  # what the first check writes (timm's registry), once
    before = (repo / "params.yaml").read_bytes()
    version = importlib.metadata.version("timm")
    for args, line in (
        (["-S", "model.name=resnet_18"],
         f"error: ARGS: model.name must be a model of timm {version} (timm.list_models()); close: resnet18, "
         "resnetv2_18, resnet18d, got 'resnet_18'; nothing was run or changed"),
        (["-S", "model.name=test_convnext.in1k"],
         f"error: ARGS: model.name must be test_convnext or test_convnext.<tag>, a pretrained tag of timm {version}: "
         "r160_in1k, got 'test_convnext.in1k'; nothing was run or changed"),
        (["-S", "train.epoch=3"], "error: ARGS: unknown key train.epoch; accepted: device, epochs, optimizer, lr, "),
    ):
        result = run(["python", "scripts/demo.py", *args], repo, check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith(line), result.stderr
        assert (repo / "params.yaml").read_bytes() == before
        assert not (repo / "dvc.lock").exists()
