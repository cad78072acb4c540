"""The study's data path and training step, re-implemented from /work/shared/SEED_PROTOCOL.md.

This is the baseline the benchmarks compare against, not code the pipeline uses. What it does
on every read, as the study did: open the JPEG, decode it with PIL, `.convert("RGB")`,
`Resize((s, s))`, `RandomHorizontalFlip(0.5)`, `ToTensor()`, `Normalize(ImageNet)`, in a torch
`DataLoader`; a triplet item draws its positive and negative images at random from their class
each time it is read, and the training step embeds anchors, positives and negatives in three
separate forward passes.

Where the study's exact code is unknown the baseline is given the benefit of the doubt: class
members are listed once (not re-listed from the folder on every read), and the model is fed
fp32 tensors that are already normalised.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

MEAN = (0.485, 0.456, 0.406)  # ImageNet, as the study
STD = (0.229, 0.224, 0.225)
LR = 5e-5  # the study's Adam
BETAS = (0.9, 0.999)
WEIGHT_DECAY = 1e-6
MARGIN = 1.0


def study_transform(size: int, flip: float = 0.5) -> transforms.Compose:
    """`Resize((size, size))`, `RandomHorizontalFlip(flip)`, `ToTensor()`, `Normalize(ImageNet)`."""
    return transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.RandomHorizontalFlip(flip),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )


def read_image(path: str | Path, transform: transforms.Compose) -> torch.Tensor:
    """One read, as the study: open, decode, convert to RGB, transform."""
    return transform(Image.open(path).convert("RGB"))


class ImageListDataset(Dataset):
    """Classification items: (image tensor, label), decoded from the file on every read."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], transform: transforms.Compose) -> None:
        self.paths = list(paths)
        self.labels = [int(x) for x in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return read_image(self.paths[index], self.transform), self.labels[index]


class TripletListDataset(Dataset):
    """Triplet items, one per line `anchor_path positive_class negative_class` of the study's lists.

    The positive and negative images are drawn at random from their classes on every read, and
    all three images are decoded from their files on every read.
    """

    def __init__(
        self,
        lines: Sequence[tuple[Path, int, int]],
        members: dict[int, list[Path]],
        transform: transforms.Compose,
    ) -> None:
        self.lines = list(lines)
        self.members = members
        self.transform = transform

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        anchor, positive_class, negative_class = self.lines[index]
        positive = random.choice(self.members[positive_class])
        negative = random.choice(self.members[negative_class])
        return tuple(read_image(p, self.transform) for p in (anchor, positive, negative))


def triplet_lines(
    paths: Sequence[Path], labels: Sequence[int], seed: int = 0
) -> tuple[list[tuple[Path, int, int]], dict[int, list[Path]]]:
    """The study's triplet list (every image an anchor, with a random other class as negative)."""
    rng = random.Random(seed)
    classes = sorted(set(int(x) for x in labels))
    members: dict[int, list[Path]] = {c: [] for c in classes}
    for path, label in zip(paths, labels, strict=True):
        members[int(label)].append(Path(path))
    lines = []
    for path, label in zip(paths, labels, strict=True):
        others = [c for c in classes if c != int(label)]
        lines.append((Path(path), int(label), rng.choice(others)))
    return lines, members


def loader(dataset: Dataset, batch_size: int, workers: int = 2, shuffle: bool = True) -> DataLoader:
    """The study's loader: shuffled batches, `workers` processes decoding."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers)


def optimizer(parameters) -> torch.optim.Adam:
    """Adam, lr 5e-5, betas (0.9, 0.999), coupled L2 weight decay 1e-6."""
    return torch.optim.Adam(parameters, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)


def triplet_epoch(backbone: nn.Module, batches, opt: torch.optim.Optimizer, device: torch.device) -> float:
    """One training pass, three forward passes per batch (anchors, positives, negatives)."""
    criterion = nn.TripletMarginLoss(margin=MARGIN, p=2, eps=1e-7)
    backbone.train()
    total, count = 0.0, 0
    for anchor, positive, negative in batches:
        anchor, positive, negative = (t.to(device) for t in (anchor, positive, negative))
        loss = criterion(backbone(anchor), backbone(positive), backbone(negative))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(anchor)
        count += len(anchor)
    return total / max(count, 1)


def classification_epoch(
    backbone: nn.Module, head: nn.Module, batches, opt: torch.optim.Optimizer, device: torch.device
) -> float:
    """One training pass of `Linear` on the embedding with cross-entropy."""
    criterion = nn.CrossEntropyLoss()
    backbone.train()
    head.train()
    total, count = 0.0, 0
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        loss = criterion(head(backbone(images)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(images)
        count += len(images)
    return total / max(count, 1)


def triplet_validation(backbone: nn.Module, batches, device: torch.device) -> float:
    """The per-epoch validation pass, three forward passes per batch, no gradients."""
    criterion = nn.TripletMarginLoss(margin=MARGIN, p=2, eps=1e-7)
    backbone.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for anchor, positive, negative in batches:
            anchor, positive, negative = (t.to(device) for t in (anchor, positive, negative))
            total += criterion(backbone(anchor), backbone(positive), backbone(negative)).item() * len(anchor)
            count += len(anchor)
    return total / max(count, 1)


def classification_validation(backbone: nn.Module, head: nn.Module, batches, device: torch.device) -> float:
    """The per-epoch validation pass of the classification model, no gradients."""
    criterion = nn.CrossEntropyLoss()
    backbone.eval()
    head.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for images, labels in batches:
            images, labels = images.to(device), labels.to(device)
            total += criterion(head(backbone(images)), labels).item() * len(images)
            count += len(images)
    return total / max(count, 1)


def random_rgb_jpegs(folder: Path, n: int, width: int = 500, height: int = 375, seed: int = 0) -> list[Path]:
    """`n` photo-like JPEGs (smooth gradients plus noise, quality 90), the size of a typical pet photo."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(n):
        path = folder / f"img_{i:04d}.jpg"
        channels = [(xx * rng.uniform(0.1, 0.6) + yy * rng.uniform(0.1, 0.6) + rng.uniform(0, 255)) % 256
                    for _ in "rgb"]
        noise = rng.normal(0.0, 18.0, (height, width, 1)).astype(np.float32)
        pixels = np.clip(np.stack(channels, axis=-1) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths
