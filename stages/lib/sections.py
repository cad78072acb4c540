"""The sections of `params.yaml` (`split`, `model`, `train`, `tune`, ...) as frozen dataclasses.

Each setting is stated once, as a `setting(default, doc, rule)` field (stages/lib/schema.py): its
default (params.yaml ships it; a test holds them equal), its description (docs/params.md is
generated from it) and its rule (the words of the one-line error). A section's `check` holds the
rules that tie two of its settings together. stages/lib/params.py assembles the sections into
`Params` and loads params.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from stages.lib.methods import METHODS
from stages.lib.schema import Rule, above, at_least, check_settings, choice, matches, setting, starts_with, within
from stages.lib.validate import require as _require
from stages.lib.validation import METRICS as SELECT_METRICS
from stages.lib.validation import RULES as SELECT_RULES

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")
# train.optimizer -> its torch.optim class (stages/lib/schedule.py); named here so that checking params
# does not import torch
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW"}  # Adam: coupled L2 weight decay, as in the study
UMAP_METRICS = ("euclidean", "cosine", "manhattan", "correlation")
EVALUATE_DISTANCES = ("euclidean", "cosine")  # for the retrieval metrics (K-means is Euclidean)
MAX_SEED = 2**32 - 1  # what scikit-learn and umap-learn accept as random_state (torch and numpy take more)
SEED_RANGE = f"an integer in [0, {MAX_SEED}]"
SEED = within(0, MAX_SEED, kind="an integer")  # words: SEED_RANGE
POSITIVE = at_least(1)
SHA256 = matches(r"[0-9a-f]{64}", "64 lowercase hex digits or null", nullable=True)


@dataclass(frozen=True)
class SplitParams:
    """How `split` builds train/val/test: the study's own lists, or generated from `seed` and sizes."""

    source: Literal["annotations", "generated"] = setting(
        "annotations",
        "`annotations`: the study's exact lists (`shots` 0 or 15, pets and defungi only); `generated`: from `seed` "
        "and the sizes below (a CSV source's own split column is used as given)",
    )
    test_fraction: float = setting(
        0.2, "generated: share of each class held out for the evaluation",
        within(0, 1, low_open=True, high_open=True),
    )
    test_per_class: int | Literal["study"] | None = setting(
        "study",
        "generated: that many test images per class instead of `test_fraction`; `study`: each dataset's test size "
        "in the study (pets 40, defungi 148; `test_fraction` for the others); `null`: off",
        Rule(lambda v: not isinstance(v, int) or v >= 1, "an integer >= 1, study or null"),
    )
    val_fraction: float = setting(
        0.1, "generated: share of each class for choosing the best epoch",
        within(0, 1, low_open=True, high_open=True),
    )
    classes: Literal["seen", "unseen"] = setting(
        "seen",
        "`seen`: train, validate and test on every class (the study); `unseen`: train and validate on one half of "
        "the classes (a random half drawn with `seed`, or the dataset's standard first half where it defines one: "
        "none of the registered ones does), test on every image of the other half; `shots` apply to the training "
        "half, `test_fraction` and `test_per_class` are not used; at least 4 classes; not with `triplet.pool: "
        "study` nor `evaluate.labels: study` ([methods.md](methods.md#seen-and-unseen-classes))",
    )

    def check(self, where: str) -> None:
        check_settings(self, where)
        _require(
            self.test_fraction + self.val_fraction < 1,
            f"{where}.test_fraction + {where}.val_fraction",
            "a sum below 1 (something must be left to train on)",
            self.test_fraction + self.val_fraction,
        )


@dataclass(frozen=True)
class ModelParams:
    """The timm backbone; its pooled feature (`num_classes=0`) is the embedding."""

    name: str = setting(
        "convnext_tiny.fb_in22k",
        "any timm model (`timm.list_models()`), with a pretrained tag (`.fb_in22k`) when `pretrained`; checked "
        "against the installed timm's registry, offline",
        Rule(lambda v: bool(v.strip()), "a timm model name"),
    )
    pretrained: bool = setting(True, "`false`: random initialisation, nothing downloaded")
    image_size: int = setting(
        224, "images are resized to this square, aspect ratio not kept", at_least(16),
    )

    def check(self, where: str) -> None:
        check_settings(self, where)


def _device_ok(device: str) -> bool:
    return device in DEVICES or re.fullmatch(r"cuda:\d+", device) is not None


@dataclass(frozen=True)
class TrainParams:
    """Optimiser, schedule and loop settings shared by every method that trains."""

    device: str = setting(
        "auto",
        "`auto` (CUDA if present, else CPU), `cuda` (an error without a GPU), `cuda:N` (GPU N: pins a queued run; "
        "not with `processes` > 1), `cpu`",
        Rule(_device_ok, f"one of: {', '.join(DEVICES)}, cuda:N (N a GPU index)"),
    )
    epochs: int = setting(100, "epochs of training", POSITIVE)
    optimizer: str = setting(
        "adam", "`adam` (coupled L2 weight decay, as the study) or `adamw`", choice(sorted(OPTIMIZERS)),
    )
    lr: float = setting(5e-5, "the peak learning rate", above(0))
    betas: list[float] = setting(
        [0.9, 0.999], "Adam's betas",
        Rule(lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    )
    weight_decay: float = setting(1e-6, "weight decay", at_least(0, "a number"))
    warmup_epochs: int = setting(
        10, "`LinearLR` from `warmup_start_factor` * lr to lr over this many epochs (0: no warm-up)", at_least(0),
    )
    warmup_start_factor: float = setting(
        1 / 3, "the warm-up's first factor of lr", within(0, 1, low_open=True),
    )
    cosine_t_max: int = setting(
        100, "then `CosineAnnealingLR(T_max)`; the schedule steps once per epoch", POSITIVE,
    )
    eta_min: float = setting(
        5e-6, "the cosine schedule's last learning rate",
        Rule(lambda v, s: 0 <= v <= s.lr, "a number in [0, lr={lr}]", whole=True),
    )
    hflip: float = setting(
        0.5, "horizontal-flip probability, training only", within(0, 1, kind="a probability"),
    )
    precision: str = setting(
        "auto", "`auto` (bf16 autocast on CUDA, fp32 on CPU), `bf16`, `fp32`", choice(PRECISIONS),
    )
    compile: bool = setting(False, "`torch.compile` the backbone (CUDA; slow first epoch)")
    deterministic: bool = setting(
        True, "deterministic CUDA kernels: byte-identical reruns (the CPU always is); `false` is faster",
    )
    resume_every_s: float = setting(
        60, "seconds between resume checkpoints (and one at the last epoch); 0: every epoch",
        at_least(0, "seconds", "0: every epoch"),
    )
    processes: int = setting(
        1,
        "N > 1: one run on N processes, one per GPU (gloo processes on the CPU), under torchrun and DDP, the same "
        "global batch ([scaling.md](scaling.md))",
        at_least(1, note="processes, one per GPU, for one run"),
    )
    select: str = setting(
        "loss",
        "the epoch kept: `loss` (each method's own validation loss, the study's; the later epoch on a tie), `last`, "
        "or a validation embedding metric, the same for every method (`val_kmeans`: K-means accuracy, "
        "`val_map_at_r`, `val_precision_at_1`: on the split's validation images, [methods.md](methods.md))",
        choice(SELECT_RULES),
    )
    val_batch_size: int | None = setting(
        None,
        "items per validation batch (the study: 16 images for classification, 4 or 8 triplets for triplet, set per "
        "run in `runs`); null: the method's `batch_size`",
        Rule(lambda v: v is None or v >= 1, "an integer >= 1 or null"),
    )
    budget: Literal["epochs", "steps", "images"] = setting(
        "epochs",
        "what is held equal across the methods of a run: `epochs` (the study's: `epochs` passes over each "
        "method's own data), `steps` (optimiser steps) or `images` (images passed forward in training, each image "
        "of a triplet counted); see [methods.md](methods.md#an-equal-budget)",
    )
    budget_amount: int | None = setting(
        None,
        "with `budget` steps or images: that many for every method; null: what the `classification` run of the "
        "same dataset and shots uses at its settings (`epochs * ceil(N / batch_size)` steps or `epochs * N` "
        "images, N its training images)",
        Rule(lambda v: v is None or v >= 1, "an integer >= 1 or null"),
    )

    def check(self, where: str) -> None:
        check_settings(self, where)


@dataclass(frozen=True)
class TuneParams:
    """The same hyper-parameter search for every dataset x method (the `tune` stage, Optuna)."""

    trials: int = setting(
        0,
        "trials of the search per dataset x method (each trains on the training split, scored on the validation "
        "split); 0: no search, train with the values given here (the study's). Costs N x `epochs` / `train.epochs` "
        "training runs per dataset x method ([methods.md](methods.md))",
        at_least(0, note="0 = no search"),
    )
    epochs: int = setting(
        10, "each trial's training epochs, the same for every method (the schedule shrunk to fit)", POSITIVE,
    )
    metric: str = setting(
        "val_kmeans",
        "what a trial is scored by: its best epoch's validation embedding metric (as `train.select`)",
        choice(SELECT_METRICS),
    )
    seed: int = setting(0, "the sampler's seed (Optuna TPE) and each trial's training seed", SEED)
    prune: bool = setting(
        True, "stop a trial early when its score after an epoch is below the median of earlier trials' "
        "(Optuna's MedianPruner, from the 3rd trial and the 2nd epoch)",
    )

    def check(self, where: str) -> None:
        check_settings(self, where)


@dataclass(frozen=True)
class EmbedParams:
    """Embedding the test split (no augmentation)."""

    batch_size: int = setting(256, "images per batch", POSITIVE)

    def check(self, where: str) -> None:
        check_settings(self, where)


@dataclass(frozen=True)
class EvaluateParams:
    """The metrics of each run's test embeddings and their bootstrap intervals."""

    kmeans_n_init: int = setting(10, "K-means initialisations (the study: 10)", POSITIVE)
    kmeans_seed: int = setting(0, "K-means `random_state` (the study: 0)", SEED)
    kmeans_repeats: int = setting(
        5, "single-initialisation K-means runs (random_state `kmeans_seed` onwards) behind `kmeans_init_std`",
        Rule(lambda v, s: 1 <= v <= MAX_SEED - s.kmeans_seed + 1,
             f"an integer >= 1 with kmeans_seed + kmeans_repeats - 1 <= {MAX_SEED}", whole=True),
    )
    knn_k: int = setting(5, "neighbours in `knn_acc` (majority vote; tie: the nearest class)", POSITIVE)
    distance: str = setting(
        "euclidean",
        "for the retrieval metrics (`precision_at_1`, `map_at_r`, `knn_acc`): `euclidean` (raw embeddings, as "
        "K-means) or `cosine`",
        choice(EVALUATE_DISTANCES),
    )
    bootstrap_resamples: int = setting(
        10000,
        "resamples of the test images behind every 95% interval (`kmeans_acc_ci95`, the report's comparisons)",
        at_least(1000, note="fewer make the 2.5% tails of a 95% interval unstable"),
    )
    bootstrap_seed: int = setting(
        0, "the bootstrap's seed; also seeds the 200 label permutations of `kmeans_acc_chance`", SEED)
    labels: bool | Literal["study"] = setting(
        True,
        "what the label-based metrics score against: `true`, each image's own label; `study`, the study's "
        "scoring (docs/study-scoring.md): every image of the test list, read in its order in batches of four, takes "
        "the label of its batch's first image (the published numbers are comparable only with this)",
        Rule(lambda v: v is True or v == "study", "true or study"),
    )

    def check(self, where: str) -> None:
        check_settings(self, where)


@dataclass(frozen=True)
class UmapParams:
    """umap-learn settings for the 2-D pictures of the test embeddings."""

    n_neighbors: int = setting(15, "umap-learn's `n_neighbors`", at_least(2))
    min_dist: float = setting(0.1, "umap-learn's `min_dist`", within(0, 1))
    metric: str = setting("euclidean", "umap-learn's `metric`", choice(UMAP_METRICS))
    seed: int = setting(0, "umap-learn's `random_state`", SEED)

    def check(self, where: str) -> None:
        check_settings(self, where)


@dataclass(frozen=True)
class PicturesParams:
    """The per-run pictures: a retrieval picture and a confusion matrix (plots/)."""

    queries: int = setting(
        8, "test images shown as queries in the retrieval picture (drawn with `seed`, the same for every method)",
        POSITIVE,
    )
    neighbours: int = setting(5, "each query's nearest other test images (by `evaluate.distance`)", POSITIVE)
    seed: int = setting(0, "draws the queries", SEED)

    def check(self, where: str) -> None:
        check_settings(self, where)


# The comparisons the report can make: K-means accuracy (the one metric with per-image results and a
# chance level) on either view of the embeddings.
REPORT_METRICS = ("kmeans_acc",)
REPORT_VIEWS = ("raw", "l2")


@dataclass(frozen=True)
class PrimaryParams:
    """The report's primary question, per dataset and shots; every other comparison is secondary."""

    better: str = setting("triplet", "the report's primary question, per dataset and shots: this method minus "
                          "`than` (the report leads with it; every other comparison is secondary, Holm-adjusted)",
                          choice(METHODS.names()))
    than: str = setting(
        "classification", "the method `better` is compared with, on the same test images",
        Rule(lambda v, s: v != s.better, "a method other than better ({better})", whole=True),
    )
    metric: str = setting("kmeans_acc", "the metric compared: `kmeans_acc` (the one with per-image results and a "
                          "chance level)", choice(REPORT_METRICS))
    view: str = setting("raw", "the embeddings compared: `raw` or `l2` (L2-normalised)", choice(REPORT_VIEWS))

    def check(self, where: str) -> None:
        check_settings(self, where)
        _require(self.than in METHODS.names(), f"{where}.than", f"one of: {', '.join(METHODS.names())}", self.than)


@dataclass(frozen=True)
class WeightsSource:
    """`sources.weights`: where the pretrained weights come from."""

    url: str | None = setting(
        None, "an http(s) URL of the weights file; null: timm's hub file for `model.name`",
        starts_with(("http://", "https://"), "an http(s) URL or null", nullable=True),
    )
    sha256: str | None = setting(None, "of that file; null: not checked", SHA256)

    def check(self, where: str) -> None:
        check_settings(self, where)


@dataclass(frozen=True)
class AnnotationsSource:
    """`sources.annotations`: the study's split lists (used with `split.source: annotations`)."""

    drive_folder: str = setting(
        "1a-zzC2Gyu-7nwQ6KanNKCFcw099U6E6w", "the study's public Google Drive folder (read with gdown)",
        matches(r"[A-Za-z0-9_-]{10,}", "a Google Drive folder id (letters, digits, - and _)"),
    )
    url: str | None = setting(
        None, "or a zip or tar archive of the same files (a mirror); replaces Drive when set",
        starts_with(("http://", "https://", "file://"),
                    "an http(s) URL of a zip or tar archive, or null (use drive_folder)", nullable=True),
        optional=True,
    )
    sha256: str | None = setting(None, "of that archive; null: not checked", SHA256, optional=True)

    def check(self, where: str) -> None:
        check_settings(self, where)


# Entries of `sources` that are not datasets.
FIXED_SOURCES: dict[str, type] = {"weights": WeightsSource, "annotations": AnnotationsSource}
