"""`embed_pixels`: the embedding of an image depends on the image alone, not on `embed.batch_size`
nor on where it stands in the input (within float rounding of the CPU's convolution kernels)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from stages.lib.device import normalise, to_device
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
