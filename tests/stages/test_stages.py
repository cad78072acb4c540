"""Every stage's entry point: the whole chain on a temporary folder, tiny params (`--help`: test_help.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import ROOT, run, tiny_params, write_params


def test_every_stage_yaml_entry_has_a_module():
    import yaml

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        cmd = stage.get("cmd") or stage["do"]["cmd"]
        assert f"python -m stages.{name}" in cmd


def test_stage_chain_on_synthetic_every_method_two_seeds(tmp_path):
    from safetensors import safe_open

    from stages import check, decode, download, embed, evaluate, pictures, report, split, train, umap, weights
    from stages.lib.losses import Training, training
    from stages.lib.methods import METHODS

    methods = METHODS.names()
    p = str(write_params(tmp_path / "params.yaml", tiny_params(methods=methods, seeds=[0, 1])))
    d = tmp_path
    check.main(["--params", p, "--out", f"{d}/checked"])
    assert (d / "checked").read_text() == check.CHECKED
    download.main(["synthetic", "--params", p, "--out", f"{d}/raw", "--cache", f"{d}/cache"])
    manifest = pd.read_csv(d / "raw/manifest.csv")
    assert len(manifest) == 36 and set(manifest.columns) >= {"path", "class", "group", "sha256"}
    split.main(["synthetic", "--params", p, "--raw", f"{d}/raw", "--annotations", f"{d}/none", "--out", f"{d}/splits"])
    sizes = {s: len(pd.read_csv(d / f"splits/{s}.csv")) for s in ("train", "val", "test")}
    assert sizes == {"train": 18, "val": 9, "test": 9}
    decode.main(["--params", p, "--raw", f"{d}/raw", "--out", f"{d}/decoded.npy"])
    assert np.load(d / "decoded.npy", mmap_mode="r").shape == (36, 32, 32, 3)
    weights.main(["--params", p, "--out", f"{d}/pretrained", "--cache", f"{d}/cache/w"])
    for method in methods:
        for seed in (0, 1):
            run_dir = f"{method}/seed{seed}"
            train.main([
                "synthetic", method, "--seed", str(seed), "--params", p, "--splits", f"{d}/splits",
                "--decoded", f"{d}/decoded.npy", "--weights", f"{d}/pretrained", "--out", f"{d}/models/{run_dir}",
                "--curve", f"{d}/curves/synthetic/{run_dir}.csv",
            ])
            with safe_open(f"{d}/models/{run_dir}/model.safetensors", "pt") as saved:  # a trained head is kept
                heads = [k for k in saved.keys() if k.startswith("head.")]
            assert bool(heads) == (method != "pretrained" and training(method).head is not Training.head), heads
            embed.main([
                "--params", p, "--model", f"{d}/models/{run_dir}", "--splits", f"{d}/splits",
                "--decoded", f"{d}/decoded.npy", "--out", f"{d}/emb/{run_dir}.npz",
            ])
            metrics_file = f"{d}/m/synthetic/{run_dir}.json"
            evaluate.main(["--params", p, "--embeddings", f"{d}/emb/{run_dir}.npz", "--out", metrics_file,
                           "--predictions", f"{d}/pred/synthetic/{run_dir}.csv"])
            umap.main([
                "synthetic", method, "--seed", str(seed), "--params", p, "--embeddings", f"{d}/emb/{run_dir}.npz",
                "--metrics", metrics_file, "--out", f"{d}/umap/synthetic_{method}_seed{seed}.png",
            ])
            metrics = json.loads(Path(metrics_file).read_text())
            assert metrics["n_test"] == 9 and metrics["n_classes"] == 3
            predictions = pd.read_csv(d / f"pred/synthetic/{run_dir}.csv")
            assert metrics["kmeans_acc"] == pytest.approx(predictions["correct"].mean(), abs=1e-6)
            assert metrics["l2"]["kmeans_acc"] == pytest.approx(predictions["correct_l2"].mean(), abs=1e-6)
            lo, hi = metrics["kmeans_acc_ci95"]
            assert lo <= metrics["kmeans_acc"] <= hi
            assert metrics["leak"] == {"test_in_train": 0, "test_in_pool": 0, "groups_across": 0, "val_in_train": 0,
                                       "anchors_outside_train": 0}
            assert ("triplet_pool" in metrics) == (method == "triplet")
            assert (d / f"umap/synthetic_{method}_seed{seed}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if seed == 0:
                pictures.main([
                    "synthetic", method, "--seed", "0", "--params", p, "--embeddings", f"{d}/emb/{run_dir}.npz",
                    "--splits", f"{d}/splits", "--decoded", f"{d}/decoded.npy",
                    "--predictions", f"{d}/pred/synthetic/{run_dir}.csv",
                    "--retrieval", f"{d}/retrieval/{method}.png", "--confusion", f"{d}/confusion/{method}.png",
                ])
                for kind in ("retrieval", "confusion"):
                    assert (d / f"{kind}/{method}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = pd.read_csv(d / "curves/synthetic/triplet/seed1.csv")
    assert list(curve.columns) == ["epoch", "train_loss", "val_loss", "lr", "best"] and len(curve) == 2
    meta = json.loads((d / "models/triplet/seed1/meta.json").read_text())
    assert meta["seed"] == 1 and meta["best_epoch"] in (1, 2) and meta["classes"] == sorted(meta["classes"])
    assert curve.loc[curve["best"] == 1, "epoch"].tolist() == [meta["best_epoch"]]  # the curve marks the model's epoch
    first = (d / "models/triplet/seed0/model.safetensors").read_bytes()
    assert first != (d / "models/triplet/seed1/model.safetensors").read_bytes()  # the seed matters
    report.main(["--params", p, "--metrics", f"{d}/m", "--predictions", f"{d}/pred", "--curves", f"{d}/curves",
                 "--umaps", f"{d}/umap", "--out", f"{d}/report", "--plots", f"{d}/pictures"])
    summary = json.loads((d / "report/summary.json").read_text())
    assert set(summary["synthetic"]) == {*methods, "comparisons"}
    triplet = summary["synthetic"]["triplet"]
    runs = [json.loads((d / f"m/synthetic/triplet/seed{s}.json").read_text()) for s in (0, 1)]
    assert triplet["seeds"] == 2 and triplet["kmeans_acc"] == pytest.approx(np.mean([r["kmeans_acc"] for r in runs]))
    comparison = summary["synthetic"]["comparisons"]["triplet_vs_classification"]
    assert set(comparison["per_seed"]) == {"0", "1"}
    table = (d / "report/summary.md").read_text()
    assert "| triplet |" in table and "triplet vs classification" in table
    pictures = sorted(p.name for p in (d / "pictures").iterdir())
    assert pictures == ["curves_synthetic.png", "summary.png", "umap_grid.png"]


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
