"""The contract every method fulfils, and the registry decorator.

A method is declared here without torch (its params, how it samples batches, what the trainer
needs to know about its loss), so checking params never imports torch; what it trains with (its
head and loss) is `stages.lib.losses`, imported only where training runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from stages.lib.registry import Registry

if TYPE_CHECKING:
    from stages.lib.trainer import SplitData


@dataclass(frozen=True)
class Range:
    """One dimension of a search space (`tune`): a number between `low` and `high`, log-uniform where
    `log`, an integer where `integer`. `suggest` asks an Optuna trial for it."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def suggest(self, trial: Any, name: str) -> float | int:
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)


def decade_around(value: float) -> Range:
    """Log-uniform from a tenth to ten times `value`."""
    return Range(value / 10, value * 10, log=True)


class Method:
    """How to train: which batches of indices (`split_batches`), and, in `stages.lib.losses`, which
    head and which loss on their embeddings.

    `split_batches` returns index arrays into the split (it may repeat indices, e.g. the anchors,
    positives and negatives of a triplet batch side by side); the trainer embeds each array in one
    forward pass and hands the embeddings to the loss.
    """

    params_type: ClassVar[type]
    trains: ClassVar[bool] = True
    indices_per_item: ClassVar[int] = 1  # indices per loss term in a batch (3 for triplets)
    # A loss that compares the items of a batch with each other (not a mean of per-item terms): with
    # several processes it is computed on the whole global batch (stages.lib.distributed). Such a
    # method has no head.
    batch_wide: ClassVar[bool] = False
    name: ClassVar[str]
    # Split tables to train / validate on instead of `train` / `val` when the split stage wrote
    # them (the study's triplet lists). Their rows carry `negative_label`, which `split_batches`
    # then finds as the split's `negative_labels`.
    study_tables: ClassVar[dict[str, str]] = {}
    # Where a sampling method draws positives and negatives from (`triplet.pool`); None: no pool.
    pool: str | None = None

    def __init__(self, params: Any, n_classes: int, embed_dim: int) -> None:
        self.params = params
        self.n_classes = n_classes
        self.embed_dim = embed_dim

    @classmethod
    def search_space(cls, params: Any, train: Any) -> dict[str, Range]:  # train: the `train` section
        """What `tune` searches for this method, keyed by the param each value replaces
        (`train.<key>` or `<method>.<key>`), given the method's section `params` and `train`: the
        learning rate (a decade either side of `train.lr`) and the weight decay (1e-8 to 1e-2) for
        every method that trains; a method adds its own (margin, temperature,
        images per class). A method that does not train has none."""
        if not cls.trains:
            return {}
        return {
            "train.lr": decade_around(train.lr),
            "train.weight_decay": Range(1e-8, 1e-2, log=True),
        }

    def split_batches(self, data: SplitData, rng: np.random.Generator) -> list[np.ndarray]:
        """Index arrays, one per optimiser step, for one pass over a decoded split (its `labels`, and
        where a method uses them its `negative_labels`, `anchors` and `images`), drawn from `rng` only."""
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Decorator: register a Method subclass under `name` (also its params.yaml section)."""

    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        return METHODS.register(name)(cls)

    return add


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation of range(n) cut into batches (the last may be smaller)."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
