"""The embed stage: test images in fp32 whatever training used, with the run's record passed on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from stages import embed
from stages.lib.embedding import embed_pixels
from stages.lib.models import build_backbone, save_checkpoint
from tests.helpers import tiny_params, write_params


def test_test_images_are_embedded_in_fp32_even_when_training_used_bf16(tmp_path):
    raw = tiny_params()
    raw["train"]["precision"] = "bf16"  # autocast on the CPU too: it would change the embeddings
    p = write_params(tmp_path / "params.yaml", raw)
    torch.manual_seed(0)
    backbone = build_backbone("test_convnext")
    leak = {"test_in_train": 0, "test_in_pool": 4, "groups_across": 0, "val_in_train": 0, "anchors_outside_train": 0}
    save_checkpoint(tmp_path / "model", backbone, None, {"model": "test_convnext", "image_size": 32,
                                                         "classes": ["a", "b"], "leak": leak, "triplet_pool": "study"})
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "decoded.npy", pixels)
    (tmp_path / "splits").mkdir()
    pd.DataFrame({"row": [5, 1, 3], "path": ["p5", "p1", "p3"], "label": [1, 0, 1]}).to_csv(
        tmp_path / "splits" / "test.csv", index=False)
    embed.main(["--params", str(p), "--model", str(tmp_path / "model"), "--splits", str(tmp_path / "splits"),
                "--decoded", str(tmp_path / "decoded.npy"), "--out", str(tmp_path / "e.npz")])
    with np.load(tmp_path / "e.npz") as out:
        expected = embed_pixels(backbone, pixels[[5, 1, 3]], torch.device("cpu"), 16, "fp32")
        assert np.array_equal(out["embeddings"], expected)
        assert not np.array_equal(expected, embed_pixels(backbone, pixels[[5, 1, 3]], torch.device("cpu"), 16, "bf16"))
        assert list(out["rows"]) == [5, 1, 3] and list(out["labels"]) == [1, 0, 1]
        assert json.loads(str(out["run"])) == {"leak": leak, "triplet_pool": "study"}
    assert yaml.safe_load(p.read_text())["train"]["precision"] == "bf16"


@pytest.fixture
def tf32_restored():
    """PyTorch's TF32 switches put back as they were after the test (they are process-wide)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_the_stage_embeds_with_tf32_off(tmp_path, tf32_restored):
    # PyTorch lets cuDNN convolutions run in TF32 on CUDA unless told not to: the stage's fp32 must be fp32.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    p = write_params(tmp_path / "params.yaml", tiny_params())
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model", build_backbone("test_convnext"), None,
                    {"model": "test_convnext", "image_size": 32, "classes": ["a"], "leak": {}})
    np.save(tmp_path / "decoded.npy", np.zeros((2, 32, 32, 3), dtype=np.uint8))
    (tmp_path / "splits").mkdir()
    pd.DataFrame({"row": [0, 1], "path": ["p0", "p1"], "label": [0, 0]}).to_csv(tmp_path / "splits" / "test.csv",
                                                                             index=False)
    embed.main(["--params", str(p), "--model", str(tmp_path / "model"), "--splits", str(tmp_path / "splits"),
                "--decoded", str(tmp_path / "decoded.npy"), "--out", str(tmp_path / "e.npz")])
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
