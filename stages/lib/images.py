"""Reading one image file as RGB pixels, the way the study's transform sees it, with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stages.lib.errors import PipelineError

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def load_rgb(path: str | Path, draft: bool = False) -> Image.Image:
    """Open `path` fully decoded and converted to RGB; any failure names the file.

    Grayscale, palette, CMYK, RGBA and PNG-data-in-a-.jpg all become plain RGB, as in the study
    (`Image.open(p).convert("RGB")`). 16-bit images are scaled to 8 bits first instead of clipped.
    `draft`: a JPEG is decoded at 1/8 scale (every byte is still read, a fraction of the work), to
    check that a file decodes, not for its pixels.
    """
    path = Path(path)
    bomb = PipelineError(
        f"image {path} is larger than Pillow's safety limit ({Image.MAX_IMAGE_PIXELS} pixels); "
        "remove it from the dataset or check where it came from"
    )
    try:
        with Image.open(path) as image:
            # Checked here, not by turning Pillow's warning into an error: warning filters are
            # process-wide and not thread-safe, and images are decoded on several threads.
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise bomb
            if draft:
                image.draft("RGB", (1, 1))
            image.load()
            if image.mode in _SIXTEEN_BIT:
                array = np.asarray(image, dtype=np.int64)
                top = 65535 if array.max() > 255 else 255
                image = Image.fromarray((array * 255 // top).astype(np.uint8), mode="L")
            return image.convert("RGB")
    except FileNotFoundError:
        raise PipelineError(f"image not found: {path}; re-run the download stage (dvc repro)") from None
    except Image.DecompressionBombError:  # Pillow's own refusal, above twice its limit
        raise bomb from None
    except UnidentifiedImageError:
        raise PipelineError(f"{path} is not an image Pillow can read; remove or replace it") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PipelineError(f"image {path} is corrupt or truncated ({exc}); remove or replace it") from None


def load_resized(path: str | Path, size: int) -> np.ndarray:
    """RGB pixels of `path` resized to `size` x `size` as uint8 (H, W, 3).

    Same as torchvision's `Resize((size, size))` on a PIL image: PIL bilinear, aspect not kept.
    """
    image = load_rgb(path)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)
