"""Generated, seeded image classes (shape x colour x texture) written as JPEG files, for tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stages.lib.datasets import register_dataset
from stages.lib.validate import require

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ((220, 40, 40), (40, 160, 60), (40, 70, 220), (230, 200, 30))
TEXTURES = ("plain", "stripes")
MAX_CLASSES = len(SHAPES) * len(COLOURS) * len(TEXTURES)


@dataclass(frozen=True)
class SyntheticSource:
    """`sources.synthetic`: how many classes and images, their size and the generator's seed."""

    n_classes: int
    per_class: int
    image_size: int
    seed: int

    def check(self, where: str) -> None:
        require(
            2 <= self.n_classes <= MAX_CLASSES, f"{where}.n_classes", f"an integer in [2, {MAX_CLASSES}]",
            self.n_classes,
        )
        require(self.per_class >= 3, f"{where}.per_class", "an integer >= 3", self.per_class)
        require(self.image_size >= 16, f"{where}.image_size", "an integer >= 16", self.image_size)
        require(self.seed >= 0, f"{where}.seed", "an integer >= 0", self.seed)


def class_names(n_classes: int) -> list[str]:
    """The first `n_classes` (shape, colour, texture) combinations, shapes varying fastest."""
    combos = itertools.product(TEXTURES, range(len(COLOURS)), SHAPES)
    return [f"{shape}_c{colour}_{texture}" for texture, colour, shape in itertools.islice(combos, n_classes)]


def draw_image(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One image of class `name`: a jittered shape on a noisy background."""
    shape, colour_key, texture = name.split("_")
    colour = np.array(COLOURS[int(colour_key[1:])])
    background = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background, mode="RGB")
    draw = ImageDraw.Draw(image)
    radius = size * rng.uniform(0.22, 0.36)
    cx, cy = rng.uniform(radius, size - radius, size=2)
    jitter = np.clip(colour + rng.integers(-25, 26, size=3), 0, 255)
    fill = tuple(int(c) for c in jitter)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    else:
        w = radius / 3
        draw.rectangle((cx - radius, cy - w, cx + radius, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - radius, cx + w, cy + radius), fill=fill)
    if texture == "stripes":
        for y in range(0, size, max(2, size // 8)):
            draw.line((0, y, size, y), fill=(0, 0, 0), width=max(1, size // 32))
    return image


@register_dataset(
    "synthetic",
    SyntheticSource,
    "generated shapes, colours and textures; sized by params, for tests",
    class_sizes=lambda source: dict.fromkeys(class_names(source.n_classes), source.per_class),
)
def fetch_synthetic(source: SyntheticSource, images_dir: Path, cache_dir: Path) -> None:
    """Write `per_class` JPEGs for each of `n_classes` classes, reproducibly from `seed`."""
    rng = np.random.default_rng(source.seed)
    for name in class_names(source.n_classes):
        folder = images_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(source.per_class):
            draw_image(name, source.image_size, rng).save(folder / f"{name}_{index:03d}.jpg", quality=90)
