"""Shared test helpers: tiny params, a throw-away copy of the project in a git repository."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "docs/coverage.json", ".dvc/config", ".dvcignore", ".gitignore")


def default_params() -> dict[str, Any]:
    """The repository's params.yaml as a dict (a fresh copy)."""
    return copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))


def tiny_params(**overrides: Any) -> dict[str, Any]:
    """Params for fast CPU runs on `synthetic` with timm's test ConvNeXt; `overrides` replace top-level keys."""
    p = default_params()
    p["datasets"] = ["synthetic"]
    p["methods"] = ["pretrained", "classification", "triplet"]
    p["sources"]["synthetic"] = {"n_classes": 3, "per_class": 12, "image_size": 32, "seed": 0}
    p["split"]["test_fraction"] = 0.25
    p["split"]["val_fraction"] = 0.25
    if "source" in p["split"]:
        p["split"]["source"] = "generated"
    p["model"] = {"name": "test_convnext", "pretrained": False, "image_size": 32}
    p["train"].update(
        device="cpu", epochs=2, lr=1e-3, warmup_epochs=1, cosine_t_max=2, eta_min=1e-5, precision="fp32",
        resume_every_s=0,
    )
    p["classification"]["batch_size"] = 8
    p["triplet"]["batch_size"] = 4
    p["embed"]["batch_size"] = 16
    p["evaluate"]["kmeans_n_init"] = 2
    p["umap"]["n_neighbors"] = 5
    p.update(overrides)
    return p


def with_changes(raw: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`raw` with each change applied: `section.name=value` (given as `**{"section.name": value}`)
    sets that key of the section, a plain `key=value` the top-level key. Returns `raw`."""
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            raw[section][name] = value
        else:
            raw[key] = value
    return raw


def params_error(raw: Any) -> str:
    """The one-line message with which params_from_dict refuses `raw` (fails if it accepts it)."""
    import pytest

    from stages.lib.errors import PipelineError
    from stages.lib.params import params_from_dict

    with pytest.raises(PipelineError) as info:
        params_from_dict(raw)
    message = str(info.value)
    assert "\n" not in message
    return message


def run_evaluate(folder: Path, name: str, raw: dict[str, Any]) -> tuple[dict, Any]:
    """The evaluate stage on folder/emb.npz with params `raw`: (its metrics, its predictions table),
    written as folder/<name>.json and .csv."""
    import json

    import pandas as pd

    from stages import evaluate

    params = write_params(folder / f"{name}.yaml", raw)
    evaluate.main(["--params", str(params), "--embeddings", str(folder / "emb.npz"),
                   "--out", str(folder / f"{name}.json"), "--predictions", str(folder / f"{name}.csv")])
    return json.loads((folder / f"{name}.json").read_text()), pd.read_csv(folder / f"{name}.csv")


def write_params(path: Path, params: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def prepare_synthetic(root: Path, params: dict[str, Any], *, decode: bool = True, weights: bool = True) -> Path:
    """The `synthetic` dataset downloaded, split, decoded (unless `decode` is False) and its weights
    written (unless `weights` is False), in-process, under `root` with `params` as root/params.yaml;
    returns that params file."""
    from stages import decode as decode_stage
    from stages import download, split
    from stages import weights as weights_stage

    root.mkdir(parents=True, exist_ok=True)
    p = str(write_params(root / "params.yaml", params))
    download.main(["synthetic", "--params", p, "--out", f"{root}/raw", "--cache", f"{root}/cache"])
    split.main(["synthetic", "--params", p, "--raw", f"{root}/raw", "--annotations", f"{root}/none",
                "--out", f"{root}/splits"])
    if decode:
        decode_stage.main(["--params", p, "--raw", f"{root}/raw", "--out", f"{root}/decoded.npy"])
    if weights:
        weights_stage.main(["--params", p, "--out", f"{root}/pretrained", "--cache", f"{root}/cache/w"])
    return Path(p)


def env() -> dict[str, str]:
    """Environment for subprocesses: the venv's tools first, one thread, no DVC analytics."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e["PYTHONPATH"] = ""
    e["DVC_NO_ANALYTICS"] = "1"
    # One torch thread per stage: the suite runs one worker per core (pytest-xdist), so a second thread
    # would only wait for a core (and spin, burning CPU). The demo's own runs pin 2 (scripts/printed_figures.py).
    e["OMP_NUM_THREADS"] = e.get("OMP_NUM_THREADS", "1")
    return e


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command, returning its output; on failure show it in the assertion."""
    result = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def project_copy(dest: Path, params: dict[str, Any]) -> Path:
    """Copy the pipeline into `dest` as a fresh git repository with one commit and `params`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    write_params(dest / "params.yaml", params)
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.name", "Test Runner"],
        ["git", "config", "user.email", "tests@example.invalid"],
        ["git", "config", "commit.gpgsign", "false"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "pipeline"],
    ):
        run(cmd, dest)
    return dest


def default_sigint() -> None:
    """`preexec_fn` for a child the test will Ctrl-C: pytest-xdist workers ignore SIGINT, and an
    ignored signal stays ignored in children, so Python would never raise KeyboardInterrupt there."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def poison_loss_from(monkeypatch, epoch: int, factor: float) -> None:
    """From training epoch `epoch` on, the method's loss is multiplied by `factor` (nan, inf): the
    trainer's non-finite-loss path, with real training before it."""
    from stages.lib import trainer

    real = trainer._run_batches

    def run_batches(step, *args, **kwargs):
        if kwargs["epoch"] == epoch and kwargs["optimizer"] is not None:
            loss = step.method.loss
            monkeypatch.setattr(step.method, "loss", lambda *a: loss(*a) * factor)
        return real(step, *args, **kwargs)

    monkeypatch.setattr(trainer, "_run_batches", run_batches)
