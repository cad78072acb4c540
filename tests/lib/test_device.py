"""`train.device` and `train.processes`: auto, cpu, cuda, cuda:N (a queued run pinned to one GPU),
and one GPU per process for a several-process run; each wrong choice is one line saying what to do.
GPUs are simulated (a CUDA device object needs no GPU)."""

from __future__ import annotations

import pytest
import torch

from stages.lib import device as device_module
from stages.lib.device import pick_device
from stages.lib.errors import PipelineError
from stages.lib.params import params_from_dict
from tests.helpers import tiny_params


def gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_cuda_n_pins_that_gpu(monkeypatch):
    gpus(monkeypatch, 2)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    assert pick_device("auto") == torch.device("cuda") and pick_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(("count", "said"), [(2, "GPUs cuda:0 to cuda:1 are visible"), (0, "no CUDA GPU is visible")])
def test_a_gpu_that_is_not_there_is_one_clear_line(monkeypatch, count, said):
    gpus(monkeypatch, count)
    with pytest.raises(PipelineError, match=f"train.device is cuda:2 but {said}; set train.device"):
        pick_device("cuda:2")


def test_each_process_of_a_run_takes_its_own_gpu(monkeypatch):
    gpus(monkeypatch, 4)
    assert [pick_device("auto", rank, 4) for rank in range(4)] == [torch.device("cuda", r) for r in range(4)]
    assert pick_device("cpu", 1, 4) == torch.device("cpu")  # gloo processes on the CPU
    with pytest.raises(PipelineError, match="train.processes is 8 but 4 CUDA GPU"):
        pick_device("cuda", 0, 8)
    with pytest.raises(PipelineError, match="pins one GPU, but train.processes is 2.*CUDA_VISIBLE_DEVICES"):
        pick_device("cuda:1", 0, 2)
    gpus(monkeypatch, 0)
    assert pick_device("auto", 1, 2) == torch.device("cpu")


def test_the_process_group_backend_follows_the_device():
    assert device_module.process_group_backend(torch.device("cuda", 1)) == "nccl"
    assert device_module.process_group_backend(torch.device("cpu")) == "gloo"


@pytest.mark.parametrize("value", ["cuda:0", "cuda:12"])
def test_params_accept_cuda_n(value):
    raw = tiny_params()
    raw["train"]["device"] = value
    assert params_from_dict(raw).train.device == value


@pytest.mark.parametrize(("key", "value", "said"), [
    ("device", "cuda:", "train.device"), ("device", "cuda:one", "cuda:N"), ("processes", 0, "train.processes"),
])
def test_params_refuse_bad_devices_and_process_counts(key, value, said):
    raw = tiny_params()
    raw["train"][key] = value
    with pytest.raises(PipelineError, match=said):
        params_from_dict(raw)
