"""What each method trains with: its head (trainable layers on the embedding, or none) and its loss.

`stages.lib.methods` declares a method without torch (its params and how it samples batches); this
module adds the torch half, as a subclass of each declaration that fills in `Training`'s two hooks,
`head()` and `loss(embeddings, labels, head)`. Only training imports it (the trainer, the train
stage), so checking params never pays for torch. pytorch-metric-learning is imported by the two
methods that use it when they are built, so the others (and benchmarks/gpu_bench.py) run without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stages.lib.methods.base import METHODS, Method
from stages.lib.methods.classification import Classification, ClassificationParams
from stages.lib.methods.normsoftmax import NormSoftmax
from stages.lib.methods.supcon import SupCon, SupConParams
from stages.lib.methods.triplet import Triplet, TripletParams
from stages.lib.methods.triplet_batch_hard import TripletBatchHard, TripletBatchHardParams
from stages.lib.registry import Registry


class Training(Method):
    """A method as the trainer runs it: the declaration's batches, plus a head and a loss."""

    def head(self) -> nn.Module | None:
        """Trainable layers on top of the embedding (None: the embedding alone)."""
        return None

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        """Mean loss of one batch; `embeddings` and `labels` follow the batch's index array."""
        raise NotImplementedError


TRAINING: Registry[type[Training]] = Registry("method that trains")


def training(name: str) -> type[Training]:
    """The training class of the method called `name` (a PipelineError if it is not registered)."""
    return TRAINING.get(METHODS.get(name).name)


def _trains(cls: type[Training]) -> type[Training]:
    return TRAINING.register(cls.name)(cls)


class CosineClassifier(nn.Module):
    """Logits = cos(embedding, class weight) / temperature: both sides L2-normalised, no bias."""

    def __init__(self, embed_dim: int, n_classes: int, temperature: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, embed_dim))
        nn.init.normal_(self.weight)  # only the directions matter: uniform on the sphere
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T / self.temperature


@_trains
class ClassificationTraining(Classification, Training):
    """`Linear(embed_dim, n_classes)` + `CrossEntropyLoss`."""

    def __init__(self, params: ClassificationParams, n_classes: int, embed_dim: int) -> None:
        super().__init__(params, n_classes, embed_dim)
        self.criterion = nn.CrossEntropyLoss()

    def head(self) -> nn.Module:
        return nn.Linear(self.embed_dim, self.n_classes)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        assert head is not None
        return self.criterion(head(embeddings).float(), labels)


@_trains
class NormSoftmaxTraining(NormSoftmax, Training):
    """A `CosineClassifier` head with the method's temperature, and cross-entropy in float32."""

    def head(self) -> nn.Module:
        return CosineClassifier(self.embed_dim, self.n_classes, self.params.temperature)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        assert head is not None
        with torch.autocast(embeddings.device.type, enabled=False):  # logits / temperature in float32
            return F.cross_entropy(head(embeddings.float()), labels)


@_trains
class TripletTraining(Triplet, Training):
    """`TripletMarginLoss(margin, p=2, eps=1e-7)` on the raw embeddings of a batch laid out as its
    anchors, then its positives, then its negatives."""

    def __init__(self, params: TripletParams, n_classes: int, embed_dim: int) -> None:
        super().__init__(params, n_classes, embed_dim)
        self.criterion = nn.TripletMarginLoss(margin=params.margin, p=2, eps=1e-7)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        anchor, positive, negative = embeddings.float().chunk(3)
        return self.criterion(anchor, positive, negative)


@_trains
class TripletBatchHardTraining(TripletBatchHard, Training):
    """pytorch-metric-learning `BatchHardMiner` and `TripletMarginLoss(margin)` with L2 distances on
    the raw embeddings, averaged over every anchor (`MeanReducer`: zero-loss ones included), in float32."""

    def __init__(self, params: TripletBatchHardParams, n_classes: int, embed_dim: int) -> None:
        super().__init__(params, n_classes, embed_dim)
        from pytorch_metric_learning.distances import LpDistance
        from pytorch_metric_learning.losses import TripletMarginLoss
        from pytorch_metric_learning.miners import BatchHardMiner
        from pytorch_metric_learning.reducers import MeanReducer

        distance = LpDistance(p=2, power=1, normalize_embeddings=False)
        self.miner = BatchHardMiner(distance=distance)
        self.criterion = TripletMarginLoss(margin=params.margin, distance=distance, reducer=MeanReducer())

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):  # distances in float32
            x = embeddings.float()
            return self.criterion(x, labels, self.miner(x, labels))


@_trains
class SupConTraining(SupCon, Training):
    """pytorch-metric-learning `SupConLoss(temperature)`, in float32."""

    def __init__(self, params: SupConParams, n_classes: int, embed_dim: int) -> None:
        super().__init__(params, n_classes, embed_dim)
        from pytorch_metric_learning.losses import SupConLoss

        self.criterion = SupConLoss(temperature=params.temperature)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, head: nn.Module | None) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):  # similarities / temperature in float32
            return self.criterion(embeddings.float(), labels)
