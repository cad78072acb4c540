"""The decode-once cache and the on-device normalisation give the study's pixels.

The study read every image as `transform(Image.open(p).convert("RGB"))` with
`Compose([Resize((s, s)), RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)])`; the cache
stores the resized uint8 pixels once and `normalise` does the rest in batches. Together they
must equal the study's transform, for every kind of file the datasets hold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

from stages.lib.decoded import decode_to_file, open_decoded
from stages.lib.device import MEAN, STD, normalise, to_device
from stages.lib.images import load_resized

SIZE = 48


def _photo(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth gradients plus noise: photo-like, so resizing and JPEG both have work to do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * rng.uniform(0.5, 3) + yy * rng.uniform(0.5, 3) + rng.uniform(0, 255)) % 256
                     for _ in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[str, object]:
    """One file of each kind the datasets hold (and a few more), named by kind."""
    folder = tmp_path_factory.mktemp("images")
    rgb = Image.fromarray(_photo(100, 75, 0))
    files = {}

    def save(name: str, image: Image.Image, **kwargs) -> None:
        path = folder / name
        image.save(path, **kwargs)
        files[name] = path

    save("rgb.jpg", rgb, quality=90)
    save("grayscale.jpg", rgb.convert("L"), quality=90)
    save("cmyk.jpg", rgb.convert("CMYK"), quality=90)
    save("png_data.jpg", rgb, format="PNG")  # PNG bytes behind a .jpg name, as in the Pet dataset
    save("palette.png", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    transparent.info["transparency"] = 0
    save("palette_transparent.png", transparent)
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(_photo(100, 75, 1)[..., 0]))
    save("rgba.png", rgba)
    save("grayscale_alpha.png", rgba.convert("LA"))
    save("portrait.jpg", Image.fromarray(_photo(37, 61, 2)), quality=80)  # smaller than SIZE: upscaled
    save("exact.png", Image.fromarray(_photo(SIZE, SIZE, 3)))  # already SIZE x SIZE: not resized
    return files


def _study_pixels(path, size: int) -> np.ndarray:
    """The study's transform without the flip and normalisation, times 255, as H x W x 3."""
    transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    tensor = transform(Image.open(path).convert("RGB")) * 255
    return tensor.permute(1, 2, 0).numpy()


KINDS = [
    "rgb.jpg", "grayscale.jpg", "cmyk.jpg", "png_data.jpg", "palette.png", "palette_transparent.png",
    "rgba.png", "grayscale_alpha.png", "portrait.jpg", "exact.png",
]


def test_the_files_are_the_kinds_they_claim(image_files):
    modes = {name: Image.open(path).mode for name, path in image_files.items()}
    assert modes["grayscale.jpg"] == "L"
    assert modes["cmyk.jpg"] == "CMYK"
    assert Image.open(image_files["png_data.jpg"]).format == "PNG"
    assert modes["palette.png"] == "P" and modes["palette_transparent.png"] == "P"
    assert modes["rgba.png"] == "RGBA" and modes["grayscale_alpha.png"] == "LA"


@pytest.mark.parametrize("kind", KINDS)
def test_cached_pixels_equal_the_study_transform(image_files, kind):
    ours = load_resized(image_files[kind], SIZE)
    assert ours.dtype == np.uint8 and ours.shape == (SIZE, SIZE, 3)
    study = _study_pixels(image_files[kind], SIZE)
    assert np.abs(ours.astype(np.float64) - study).max() <= 1.0


def test_decode_to_file_stores_what_load_resized_gives(image_files, tmp_path):
    paths = [image_files[k] for k in KINDS]
    out = tmp_path / "decoded.npy"
    decode_to_file(paths, SIZE, out)
    cached = open_decoded(out, expected_rows=len(paths), size=SIZE)
    assert cached.shape == (len(paths), SIZE, SIZE, 3) and cached.dtype == np.uint8
    for row, path in enumerate(paths):
        np.testing.assert_array_equal(cached[row], load_resized(path, SIZE))
        assert np.abs(cached[row].astype(np.float64) - _study_pixels(path, SIZE)).max() <= 1.0


def _study_normalise(images: torch.Tensor, flip: torch.Tensor | None) -> torch.Tensor:
    """torchvision, image by image: hflip where `flip`, then ToTensor's /255, then Normalize."""
    normalize = transforms.Normalize(MEAN, STD)
    out = []
    for image, mirrored in zip(images, flip if flip is not None else [False] * len(images), strict=True):
        x = image.float().div(255)
        out.append(normalize(TF.hflip(x) if mirrored else x))
    return torch.stack(out)


@pytest.mark.parametrize("flips", ["none", "mixed", "all", "no_image"])
def test_normalise_equals_torchvision(flips):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 20, 24, 3), dtype=np.uint8)
    images = to_device(pixels, torch.device("cpu"))
    flip = {
        "none": None,
        "mixed": torch.tensor([True, False, False, True, True, False]),
        "all": torch.ones(6, dtype=torch.bool),
        "no_image": torch.zeros(6, dtype=torch.bool),
    }[flips]
    ours = normalise(images, flip)
    expected = _study_normalise(images, flip)
    assert ours.dtype == torch.float32 and ours.shape == (6, 3, 20, 24)
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(images, to_device(pixels, torch.device("cpu")))  # the input is left as it was


@pytest.mark.parametrize("flips", ["none", "mixed"])
def test_the_accelerator_normalise_equals_torchvision_too(flips):
    """The torch-only path `normalise` takes on CUDA, run here on the CPU."""
    from stages.lib.device import MEAN, STD, _normalise_torch

    pixels = np.random.default_rng(1).integers(0, 256, (4, 16, 12, 3), dtype=np.uint8)
    images = to_device(pixels, torch.device("cpu"))
    flip = None if flips == "none" else torch.tensor([False, True, True, False])
    ours = _normalise_torch(images, flip, (MEAN, STD))
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, _study_normalise(images, flip), rtol=1e-6, atol=1e-6)


def test_cache_plus_normalise_equals_the_study_transform_with_and_without_flip(image_files):
    paths = [image_files[k] for k in ("rgb.jpg", "cmyk.jpg", "palette.png", "rgba.png")]
    pixels = np.stack([load_resized(p, SIZE) for p in paths])
    images = to_device(pixels, torch.device("cpu"))
    for p_flip in (0.0, 1.0):
        study = transforms.Compose([
            transforms.Resize((SIZE, SIZE)), transforms.RandomHorizontalFlip(p_flip),
            transforms.ToTensor(), transforms.Normalize(MEAN, STD),
        ])
        expected = torch.stack([study(Image.open(p).convert("RGB")) for p in paths])
        ours = normalise(images, torch.full((len(paths),), p_flip == 1.0))
        # One grey level of resize rounding, after normalisation: 1 / 255 / min(std).
        torch.testing.assert_close(ours, expected, rtol=0, atol=1.0 / 255 / min(STD) + 1e-6)


def test_normalise_into_a_reused_buffer_gives_the_same_bits():
    from stages.lib.device import normalise, to_device

    rng = np.random.default_rng(0)
    cpu = torch.device("cpu")
    first = to_device(rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), cpu)
    second = to_device(rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), cpu)
    flip = torch.tensor([True, False, True, False])
    buffer = normalise(first, flip)
    reused = normalise(second, flip, out=buffer)
    assert reused.data_ptr() == buffer.data_ptr()
    assert torch.equal(reused, normalise(second, flip))
    smaller = to_device(rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8), cpu)
    fresh = normalise(smaller, None, out=buffer)  # another shape: a new tensor, the buffer untouched
    assert fresh.data_ptr() != buffer.data_ptr() and torch.equal(reused, normalise(second, flip))
