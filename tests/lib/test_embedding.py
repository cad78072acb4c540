"""`embed_pixels`: the embedding of an image depends on the image alone, not on `embed.batch_size`
nor on where it stands in the input (within float rounding of the CPU's convolution kernels); fp32
is fp32 on CUDA too (TF32 off, pixels divided as torchvision divides them)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from stages.lib import device
from stages.lib.device import configure_tf32, normalise, to_device
from stages.lib.embedding import embed_pixels
from stages.lib.models import input_stats

CPU = torch.device("cpu")
N = 23  # not a multiple of any batch size below: the last batch is a short one
# Batched convolutions may sum in another order than single ones: allow float32 rounding, relative
# to the largest embedding entry (measured on this CPU: at most 5.8e-7 of it, batch sizes 4 to 64).
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_convnext", pretrained=False, num_classes=0).eval()


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(N, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def one_by_one(backbone: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    """Each image through the model alone, normalised with the model's own mean and std: what its
    embedding is, by definition."""
    stats = input_stats(backbone)
    with torch.inference_mode():
        return np.concatenate(
            [backbone(normalise(to_device(pixels[i : i + 1], CPU), stats=stats)).numpy() for i in range(N)]
        )


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE * np.abs(expected).max())


@pytest.mark.parametrize("batch_size", [1, 4, 7, N, 64])
def test_embeddings_do_not_depend_on_the_batch_size(backbone, pixels, one_by_one, batch_size):
    expected = one_by_one
    assert len(np.unique(expected.round(4), axis=0)) == N  # every image has its own embedding
    assert_same(embed_pixels(backbone, pixels, CPU, batch_size), expected)


def test_permuting_the_images_permutes_the_embeddings(backbone, pixels):
    order = np.random.default_rng(1).permutation(N)
    reference = embed_pixels(backbone, pixels, CPU, 5)
    assert_same(embed_pixels(backbone, pixels[order], CPU, 5), reference[order])
    assert_same(embed_pixels(backbone, pixels[::-1], CPU, 6), reference[::-1])


def test_no_images_give_no_embeddings(backbone, pixels):
    out = embed_pixels(backbone, pixels[:0], CPU, 4)
    assert out.shape == (0, backbone.num_features) and out.dtype == np.float32


@pytest.fixture
def tf32_restored():
    """PyTorch's TF32 switches put back as they were after the test (they are process-wide)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_embedding_in_fp32_turns_tf32_off_for_convolutions_and_products(backbone, pixels, tf32_restored):
    # PyTorch lets cuDNN convolutions run in TF32 by default (10-bit mantissas on CUDA): "fp32" would not be.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    embed_pixels(backbone, pixels[:2], CPU, 2, "fp32")
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (False, False)
    embed_pixels(backbone, pixels[:2], CPU, 2, "bf16")  # mixed precision: PyTorch's defaults
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, False)


@pytest.mark.parametrize(
    ("precision", "where", "fp32"),
    [("fp32", "cuda", True), ("fp32", "cpu", True), ("auto", "cpu", True), ("auto", "cuda", False),
     ("bf16", "cuda", False), ("bf16", "cpu", False)],
)
def test_tf32_is_off_exactly_where_the_precision_means_fp32(tf32_restored, precision, where, fp32):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    assert configure_tf32(precision, torch.device(where)) is fp32
    assert torch.backends.cudnn.allow_tf32 is (not fp32) and torch.backends.cuda.matmul.allow_tf32 is False


def test_the_device_path_divides_by_tensors_and_gives_the_cpu_paths_bits(monkeypatch):
    # CUDA divides by a Python number as a multiplication by its float32 reciprocal, which for 126
    # of the 256 pixel values is not the division torchvision's ToTensor does (1 ulp off). The
    # path `normalise` takes on CUDA must divide by tensors on the device only; run here on the CPU
    # (where division is division either way) it gives the CPU path's bits.
    values = torch.arange(256, dtype=torch.float32)
    assert int((values * torch.tensor(1 / 255, dtype=torch.float32) != values / 255).sum()) == 126
    divisors = []
    div_ = torch.Tensor.div_

    def watched(self, other, *args, **kwargs):
        divisors.append(other)
        return div_(self, other, *args, **kwargs)

    pixels = np.random.default_rng(2).integers(0, 256, (5, 9, 7, 3), dtype=np.uint8)
    images, flip = to_device(pixels, CPU), torch.tensor([True, False, True, False, False])
    stats = ((0.5, 0.45, 0.4), (0.2, 0.25, 0.3))
    monkeypatch.setattr(torch.Tensor, "div_", watched)
    ours = device._normalise_torch(images, flip, stats)
    monkeypatch.undo()
    assert len(divisors) == 2 and all(isinstance(d, torch.Tensor) and d.device == images.device for d in divisors)
    assert torch.equal(ours, device._normalise_cpu(images, flip, None, stats))
