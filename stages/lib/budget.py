"""`train.budget`: what is held equal across the methods of a run (dataset x shots x seed).

`epochs` (the study's) trains every method for `train.epochs` passes over its own data: per epoch,
triplet takes N / 64 steps of three images per item, classification N / 128 steps of one image,
so equal epochs are not an equal budget. `steps` and `images` give every method the same amount:
`train.budget_amount`, or when it is null the amount the `classification` run of the same dataset
and shots uses at its settings (per-run ones included): `epochs * ceil(N / batch_size)` steps or
`epochs * N` images, N its training images; so switching the budget on makes the comparison equal
without new numbers, and leaves classification's own training as it was.

Under a budget a method trains passes over its data (each followed by validation, as an epoch)
until the amount is used; the pass that reaches it is cut short, its last batch trimmed to what is
left (whole items: a triplet's three images are never split, so a triplet run may use up to two
images fewer). Images are those passed forward in training, each image of a triplet counted. The
learning-rate schedule is stated in epochs of the amount: it steps once each time another
`amount / train.epochs` has been used, so every method sees the same learning rate at the same
share of its budget (classification, at the default amount, exactly its epoch schedule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BUDGETS = ("epochs", "steps", "images")


@dataclass(frozen=True)
class Budget:
    """`amount` of `kind` (steps or images) for one run; the schedule steps per `amount / epochs` of it."""

    kind: str
    amount: int
    epochs: int

    def used(self, steps: int, images: int) -> int:
        return steps if self.kind == "steps" else images

    def finished(self, steps: int, images: int, per_item: int) -> bool:
        """Whether nothing more fits: the amount is used (images: less than one item is left)."""
        left = self.amount - self.used(steps, images)
        return left < (per_item if self.kind == "images" else 1)

    def schedule_steps_due(self, steps: int, images: int) -> int:
        """How many schedule steps (epochs of the amount) have been used up: floor(used * epochs / amount)."""
        return min(self.used(steps, images) * self.epochs // self.amount, self.epochs)

    def cut(self, batches: list[np.ndarray], steps: int, images: int, per_item: int) -> list[np.ndarray]:
        """The first of `batches` that fit in what is left after `steps` and `images`, the last trimmed to
        whole items (a batch lays out its items as `per_item` blocks: anchors, positives, negatives)."""
        out = []
        for index in batches:
            if self.finished(steps, images, per_item):
                break
            if self.kind == "images":
                items = min(len(index) // per_item, (self.amount - images) // per_item)
                if items * per_item < len(index):
                    index = index.reshape(per_item, -1)[:, :items].reshape(-1)
            out.append(index)
            steps, images = steps + 1, images + len(index)
        return out


def reference_amount(kind: str, epochs: int, batch_size: int, n_train: int) -> int:
    """What a classification run uses at `epochs` over `n_train` images in batches of `batch_size`."""
    if kind == "steps":
        return epochs * math.ceil(n_train / batch_size)
    return epochs * n_train


def budget_record(budget: Budget | None, steps: int, images: int) -> dict | None:
    """What the train stage writes to meta.json (and the metrics file carries): None under `epochs`."""
    if budget is None:
        return None
    return {"kind": budget.kind, "amount": budget.amount, "steps": steps, "images": images}
