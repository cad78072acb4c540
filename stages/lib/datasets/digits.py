"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), upscaled to files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stages.lib.datasets import register_dataset
from stages.lib.validate import require


@dataclass(frozen=True)
class DigitsSource:
    """`sources.digits`: the side of the square PNG each 8x8 digit is upscaled to."""

    image_size: int

    def check(self, where: str) -> None:
        require(self.image_size >= 8, f"{where}.image_size", "an integer >= 8", self.image_size)


# Images per digit in scikit-learn's copy (1,797 in all; every image is its own source group).
CLASS_SIZES = {"0": 178, "1": 182, "2": 177, "3": 183, "4": 181, "5": 182, "6": 181, "7": 179, "8": 174, "9": 180}


@register_dataset(
    "digits",
    DigitsSource,
    "scikit-learn's handwritten digits: 1,797 images, 10 classes, ships with the package",
    class_sizes=lambda source: dict(CLASS_SIZES),
)
def fetch_digits(source: DigitsSource, images_dir: Path, cache_dir: Path) -> None:
    """Write every digit as a grayscale PNG, white on black, bilinearly upscaled."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    for index, (image, target) in enumerate(zip(pixels, digits.target, strict=True)):
        folder = images_dir / str(int(target))
        folder.mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(image, mode="L").resize(
            (source.image_size, source.image_size), Image.Resampling.BILINEAR
        )
        big.save(folder / f"digit_{index:04d}.png", optimize=False)
