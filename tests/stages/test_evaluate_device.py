"""Where the evaluate stage computes: on the device of `train.device` (the GPU a run is pinned to
with `cuda:N`, or the CPU), and on the CPU when that GPU is short of memory, said in one log line.
No GPU needed: `torch.cuda` is faked, and what the stage would compute on a fake GPU is computed on
the CPU."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import yaml

from stages import evaluate
from stages.lib import metrics
from stages.lib.arrays import save_npz
from stages.lib.device import compute_device
from tests.helpers import tiny_params, write_params

CPU = torch.device("cpu")
GIB = 2**30


def fake_gpus(monkeypatch, count: int = 2, free: int = 70 * GIB) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)  # pick_device makes cuda:N current


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("cpu", "cpu"), ("cuda:1", "cuda:1"), ("cuda:0", "cuda:0"), ("auto", "cuda"), ("cuda", "cuda")],
)
def test_the_compute_device_is_train_devices(monkeypatch, requested, expected):
    fake_gpus(monkeypatch)
    assert compute_device(requested, need_bytes=GIB) == torch.device(expected)


def test_without_a_gpu_auto_computes_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compute_device("auto", need_bytes=GIB) == CPU == compute_device()


def test_a_gpu_short_of_memory_gives_the_cpu_and_says_so_in_one_line(monkeypatch, caplog):
    fake_gpus(monkeypatch, free=3 * GIB)
    with caplog.at_level(logging.INFO):
        assert compute_device("cuda:1", need_bytes=3 * GIB) == torch.device("cuda", 1)  # just enough: no line
        assert caplog.records == []
        assert compute_device("cuda:1", need_bytes=5 * GIB) == CPU
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("cuda:1 has 3.0 GiB free, 5.0 GiB needed: computing on the CPU instead") and "\n" not in line


def test_the_memory_needed_grows_with_the_test_set():
    # The search's float32 copies and K-means' float64 one (16 bytes a value) and blocks of 64 queries.
    assert metrics.evaluate_bytes(1_000_000, 768) == 1_000_000 * 768 * 16 + 64 * 12 * 1_000_000 + 2**28
    assert metrics.evaluate_bytes(2_000, 768) < metrics.evaluate_bytes(4_000, 768) < metrics.evaluate_bytes(4_000, 769)


@pytest.fixture
def stage(tmp_path, monkeypatch):
    """Run the evaluate stage with a `train.device`; returns (devices it evaluated on, its metrics).
    The metrics are computed on the CPU whatever device the stage chose (there is no GPU here)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 6)
    x = (rng.normal(size=(3, 8))[labels] + rng.normal(size=(18, 8))).astype(np.float32)
    save_npz(tmp_path / "emb.npz", embeddings=x, labels=labels, paths=np.array([f"p{i}" for i in range(18)]),
             rows=np.arange(18), run=np.array(json.dumps({"leak": {}})))
    devices: list[torch.device] = []
    real = metrics.evaluate_embeddings

    def on_the_cpu(embeddings, labels, *, device, **settings):
        devices.append(device)
        if device.type == "cuda" and run.out_of_memory:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(embeddings, labels, device=CPU, **settings)

    monkeypatch.setattr(metrics, "evaluate_embeddings", on_the_cpu)

    def run(device: str) -> tuple[list[torch.device], dict]:
        raw = tiny_params()
        raw["train"]["device"] = device
        p = write_params(tmp_path / "params.yaml", raw)
        evaluate.main(["--params", str(p), "--embeddings", str(tmp_path / "emb.npz"), "--out",
                       str(tmp_path / "m.json"), "--predictions", str(tmp_path / "p.csv")])
        return devices[:], json.loads((tmp_path / "m.json").read_text())

    run.out_of_memory = False  # True: a fake GPU runs out of memory in the middle
    return run


def test_the_stage_evaluates_on_the_gpu_train_device_pins(monkeypatch, stage):
    fake_gpus(monkeypatch)
    devices, on_gpu = stage("cuda:1")
    assert devices == [torch.device("cuda", 1)]
    devices, on_cpu = stage("cpu")
    assert devices[1:] == [CPU] and on_cpu == on_gpu and on_cpu["n_test"] == 18


def test_the_stage_evaluates_on_the_cpu_when_the_gpu_is_short_of_memory(monkeypatch, stage, caplog):
    fake_gpus(monkeypatch, free=2**20)
    with caplog.at_level(logging.WARNING):
        devices, _ = stage("cuda:1")
    assert devices == [CPU]
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["cuda"]


def test_the_stage_finishes_on_the_cpu_when_the_gpu_runs_out_of_memory(monkeypatch, stage, caplog):
    fake_gpus(monkeypatch)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    stage.out_of_memory = True
    with caplog.at_level(logging.WARNING):
        devices, written = stage("cuda:1")
    assert devices == [torch.device("cuda", 1), CPU] and written["n_test"] == 18
    [line] = [r.getMessage() for r in caplog.records]
    assert line == "cuda:1 ran out of memory: computing on the CPU instead"


def test_dvc_reruns_evaluate_when_train_device_or_the_kmeans_code_changes():
    from pathlib import Path

    stages = yaml.safe_load((Path(__file__).resolve().parents[2] / "dvc.yaml").read_text())["stages"]
    assert "train.device" in stages["evaluate"]["params"]
    assert "stages/lib/kmeans.py" in stages["evaluate"]["deps"]
