"""`train.deterministic`: deterministic kernels always on the CPU, and on CUDA when asked (cuDNN
deterministic, no benchmarking, a fixed cuBLAS workspace), an op without one named on every rank;
no GPU is needed to check the settings."""

from __future__ import annotations

import pytest
import torch

from stages.lib.device import configure_determinism
from stages.lib.errors import PipelineError
from stages.lib.params import params_from_dict
from tests.helpers import tiny_params


@pytest.fixture
def restore_torch_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


@pytest.mark.parametrize("deterministic", [True, False])
def test_the_cpu_is_always_deterministic(deterministic, restore_torch_flags):
    configure_determinism(deterministic, torch.device("cpu"))
    assert torch.are_deterministic_algorithms_enabled()


def test_cuda_deterministic(restore_torch_flags):
    import os

    torch.backends.cudnn.benchmark = True
    configure_determinism(True, torch.device("cuda"))
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_cuda_fast(restore_torch_flags):
    import os

    configure_determinism(False, torch.device("cuda"))
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_the_knob_is_a_validated_boolean():
    raw = tiny_params()
    assert params_from_dict(raw).train.deterministic is True
    raw["train"]["deterministic"] = "yes"
    with pytest.raises(PipelineError, match="train.deterministic must be true or false"):
        params_from_dict(raw)


def test_an_op_without_a_deterministic_kernel_is_named_on_every_rank(restore_torch_flags):
    # Ranks other than 0 hide their Python warnings (rank 0 speaks for the run), but not this one:
    # it means a rerun may not be byte-identical, whichever rank meets it.
    import logging
    import warnings

    from stages.lib.launcher import speak_for_the_run

    level = logging.getLogger().level
    try:
        with warnings.catch_warnings(record=True) as caught:
            speak_for_the_run(1)
            configure_determinism(True, torch.device("cpu"))
            torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))  # no deterministic kernel
            warnings.warn("a warning rank 0 also gives", UserWarning, stacklevel=1)
    finally:
        logging.getLogger().setLevel(level)
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and said[0].startswith("put_ does not have a deterministic implementation"), said
