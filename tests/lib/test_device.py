"""`train.device` and `train.processes`: auto, cpu, cuda, cuda:N (a queued run pinned to one GPU),
and one GPU per process of this machine for a several-process run; each wrong choice is one line
saying what to do. The chosen GPU becomes the process's current device, and a resume checkpoint
restores its random state whatever the number of GPUs visible. GPUs are simulated (a CUDA device
object needs no GPU; `torch.cuda`'s functions are replaced)."""

from __future__ import annotations

import pytest
import torch

from stages import train
from stages.lib import device as device_module
from stages.lib import launcher
from stages.lib.device import pick_device, rng_state, set_rng_state
from stages.lib.errors import PipelineError
from stages.lib.params import params_from_dict
from tests.helpers import tiny_params, write_params
from tests.lib import distributed_runs


def gpus(monkeypatch, count: int) -> list[torch.device]:
    """`count` simulated GPUs; returns the list of devices made current (`torch.cuda.set_device`)."""
    current: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: current.append(torch.device(d)))
    return current


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
    with pytest.raises(PipelineError, match="8 training processes run on this machine but 4 CUDA GPU"):
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


def test_a_pinned_gpu_becomes_the_current_device(monkeypatch):
    # Else pinned memory, cuDNN handles and compiled kernels start on GPU 0, beside another run.
    current = gpus(monkeypatch, 4)
    assert pick_device("cuda:2") == torch.device("cuda", 2)
    assert pick_device("auto", 3, 4) == torch.device("cuda", 3)
    assert current == [torch.device("cuda", 2), torch.device("cuda", 3)]
    pick_device("cpu")
    pick_device("auto")  # the first GPU, already the current one
    assert len(current) == 2


class Launched(Exception):
    pass


def test_a_rank_of_a_two_machine_run_checks_the_gpus_of_its_own_machine(monkeypatch, tmp_path):
    # 2 machines x 8 GPUs, train.processes: 16 (the whole run), as torchrun starts rank 11 on the second.
    gpus(monkeypatch, 8)
    raw = tiny_params()
    raw["train"].update(processes=16, device="auto")
    params = write_params(tmp_path / "params.yaml", raw)
    for key, value in {"TORCHELASTIC_RUN_ID": "run", "WORLD_SIZE": "16", "RANK": "11", "LOCAL_RANK": "3",
                       "LOCAL_WORLD_SIZE": "8"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    joined = []

    def init(device):
        joined.append(device)
        raise Launched

    monkeypatch.setattr(launcher, "init", init)
    with pytest.raises(Launched):
        train.main(["synthetic", "triplet", "--seed", "0", "--params", str(params), "--splits", "s", "--decoded", "d",
                    "--weights", "w", "--out", "o", "--curve", "c"])
    assert joined == [torch.device("cuda", 3)]


class FakeCudaRandom:
    """The CUDA random states of `count` GPUs, one per device as torch keeps them."""

    def __init__(self, monkeypatch, count: int, current: int) -> None:
        self.states = {i: torch.tensor([i], dtype=torch.uint8) for i in range(count)}
        self.current = current
        gpus(monkeypatch, count)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [self.states[i] for i in range(count)])
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.set_all)

    def index(self, device) -> int:
        index = self.current if device in ("cuda", None) else torch.device(device).index
        if index >= len(self.states):
            raise IndexError("tuple index out of range")  # torch.cuda.default_generators[index]
        return index

    def get(self, device="cuda"):
        return self.states[self.index(device)].clone()

    def set(self, state, device="cuda"):
        self.states[self.index(device)] = state.clone()

    def set_all(self, states):
        for i, state in enumerate(states):
            self.set(state, i)


def test_a_process_saves_and_restores_the_random_state_of_its_own_gpu(monkeypatch):
    FakeCudaRandom(monkeypatch, 4, current=2)
    saved = rng_state()
    assert [t.tolist() for t in saved["cuda"]] == [[2]]
    machine = FakeCudaRandom(monkeypatch, 1, current=0)  # resumed where one GPU is visible
    set_rng_state(saved)
    assert machine.states[0].tolist() == [2]


def test_an_older_checkpoint_with_more_gpus_than_visible_is_one_line(monkeypatch, tmp_path):
    run = distributed_runs.run("classification", epochs=1, resume_dir=tmp_path)  # leaves its checkpoint
    state = torch.load(tmp_path / "resume.pt", weights_only=True)
    state["rng"]["cuda"] = [torch.zeros(8, dtype=torch.uint8)] * 4  # as every visible GPU's was saved
    torch.save(state, tmp_path / "resume.pt")
    FakeCudaRandom(monkeypatch, 1, current=0)
    with pytest.raises(PipelineError) as info:
        distributed_runs.run("classification", epochs=1, resume_dir=tmp_path)
    assert str(info.value) == (f"resume checkpoint {tmp_path / 'resume.pt'} does not fit this run (it holds the "
                               "random states of 4 GPUs but 1 are visible); delete it and re-run")
    assert run["best_epoch"] == 1
