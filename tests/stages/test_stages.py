"""Every stage's entry point: `--help`, then the whole chain on a temporary folder, tiny params."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers import ROOT, run, tiny_params, write_params

STAGES = ["download", "annotations", "split", "decode", "weights", "train", "embed", "evaluate", "umap", "report"]


@pytest.mark.parametrize("name", STAGES)
def test_help(name, capsys):
    module = importlib.import_module(f"stages.{name}")
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    assert f"python -m stages.{name}" in capsys.readouterr().out


def test_every_stage_yaml_entry_has_a_module():
    import yaml

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        cmd = stage.get("cmd") or stage["do"]["cmd"]
        assert f"python -m stages.{name}" in cmd


def test_stage_chain_on_synthetic(tmp_path):
    from stages import decode, download, embed, evaluate, report, split, train, umap, weights

    p = str(write_params(tmp_path / "params.yaml", tiny_params()))
    d = tmp_path
    download.main(["synthetic", "--params", p, "--out", f"{d}/raw", "--cache", f"{d}/cache"])
    manifest = pd.read_csv(d / "raw/manifest.csv")
    assert len(manifest) == 36 and set(manifest.columns) >= {"path", "class", "group", "sha256"}
    split.main(["synthetic", "--params", p, "--raw", f"{d}/raw", "--out", f"{d}/splits"])
    sizes = {s: len(pd.read_csv(d / f"splits/{s}.csv")) for s in ("train", "val", "test")}
    assert sizes == {"train": 18, "val": 9, "test": 9}
    decode.main(["--params", p, "--raw", f"{d}/raw", "--out", f"{d}/decoded.npy"])
    assert np.load(d / "decoded.npy", mmap_mode="r").shape == (36, 32, 32, 3)
    weights.main(["--params", p, "--out", f"{d}/pretrained", "--cache", f"{d}/cache/w"])
    for method in ("pretrained", "classification", "triplet"):
        train.main([
            "synthetic", method, "--params", p, "--splits", f"{d}/splits", "--decoded", f"{d}/decoded.npy",
            "--weights", f"{d}/pretrained", "--out", f"{d}/models/{method}", "--curve", f"{d}/curves/{method}.csv",
        ])
        embed.main([
            "--params", p, "--model", f"{d}/models/{method}", "--splits", f"{d}/splits",
            "--decoded", f"{d}/decoded.npy", "--out", f"{d}/emb/{method}.npz",
        ])
        evaluate.main(["--params", p, "--embeddings", f"{d}/emb/{method}.npz", "--out", f"{d}/m/synthetic/{method}.json"])
        umap.main([
            "synthetic", method, "--params", p, "--embeddings", f"{d}/emb/{method}.npz",
            "--metrics", f"{d}/m/synthetic/{method}.json", "--out", f"{d}/umap/{method}.png",
        ])
        metrics = json.loads((d / f"m/synthetic/{method}.json").read_text())
        assert set(metrics) >= {"kmeans_acc", "nmi", "ari", "n_test", "n_classes"}
        assert metrics["n_test"] == 9 and metrics["n_classes"] == 3
        assert (d / f"umap/{method}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = pd.read_csv(d / "curves/triplet.csv")
    assert list(curve.columns) == ["epoch", "train_loss", "val_loss", "lr"] and len(curve) == 2
    meta = json.loads((d / "models/triplet/meta.json").read_text())
    assert meta["best_epoch"] in (1, 2) and meta["classes"] == sorted(meta["classes"])
    report.main(["--params", p, "--metrics", f"{d}/m", "--out", f"{d}/report", "--plot", f"{d}/summary.png"])
    summary = json.loads((d / "report/summary.json").read_text())
    assert set(summary["synthetic"]) == {"pretrained", "classification", "triplet"}
    assert "| synthetic | all | triplet |" in (d / "report/summary.md").read_text()


def test_a_stage_error_is_one_line_without_traceback(tmp_path):
    p = write_params(tmp_path / "params.yaml", tiny_params(shots=-2))
    result = run(["python", "-m", "stages.split", "synthetic", "--params", str(p), "--raw", "x", "--out", "y"],
                 cwd=ROOT, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {p}: shots must be an integer >= 0 (0 = every training image), got -2"]


def test_missing_inputs_name_the_file(tmp_path):
    p = write_params(tmp_path / "params.yaml", tiny_params())
    result = run(["python", "-m", "stages.split", "synthetic", "--params", str(p), "--raw", str(tmp_path / "raw"),
                  "--out", str(tmp_path / "out")], cwd=ROOT, check=False)
    assert result.returncode == 1
    assert "manifest.csv not found; run the download stage first" in result.stderr
    assert not (tmp_path / "out").exists()
