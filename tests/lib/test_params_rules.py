"""Every params validation rule has a case that it rejects, with its exact one-line message.

`RULES` holds one or more rejecting cases per rule (a tiny valid params dict with one edit).
`test_every_rule_has_a_rejecting_case` finds the rules themselves in the source (each `_require`
and `_one_of` call and each `raise` of a key error in `stages/lib/params.py`, and the
`_require` / `_one_of` calls of the dataset and method modules) and fails if one of them is never
the rule that rejects a case here: a new rule needs a new case. `ACCEPTED` holds the values at
the edge of each range, which must pass.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stages.lib import params as params_module
from stages.lib.datasets import DATASETS
from stages.lib.errors import PipelineError
from stages.lib.methods import METHODS
from stages.lib.params import load_params, params_from_dict
from tests.helpers import ROOT, tiny_params

MAX = 4294967295
SEED_RANGE = f"an integer in [0, {MAX}]"
class _Delete:
    """The marker `edited` removes a key for (its repr is stable, so pytest-xdist workers collect the same ids)."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()
OWN = "{folder: PATH} or {csv: FILE, root: FOLDER}"  # the two shapes of a dataset of your own
TOP_KEYS = sorted(["datasets", "embed", "evaluate", "methods", "model", "pictures", "primary", "seed", "seeds", "shots",
                   "sources", "split", "train", "tune", "umap", "runs", *METHODS.names()])
TRAIN_KEYS = ("device, epochs, optimizer, lr, betas, weight_decay, warmup_epochs, warmup_start_factor, "
              "cosine_t_max, eta_min, hflip, precision, compile, deterministic, resume_every_s, processes, select, "
              "val_batch_size, budget, budget_amount")


def edited(*edits: tuple[str, Any], base: dict | None = None) -> dict:
    """tiny_params with `("a.b.c", value)` edits applied (`DELETE` removes the key)."""
    raw = copy.deepcopy(base if base is not None else tiny_params())
    for path, value in edits:
        *parents, last = path.split(".")
        node = raw
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return raw


def case(message: str, *edits: tuple[str, Any], raw: Callable[[], Any] | None = None):
    """A rejecting case: params with `edits` (or `raw()`), and the message after `params.yaml: `."""
    return pytest.param(raw() if raw else edited(*edits), message, id=message[:70])


RULES = [
    # -- the file's shape and the conversion of each value to its type
    case("(top level) must be a mapping of sections, got [1]", raw=lambda: [1]),
    case(f"unknown key learning_rate; accepted: {', '.join(TOP_KEYS)}", ("learning_rate", 1)),
    case(f"unknown key 'bad\\nkey'; accepted: {', '.join(TOP_KEYS)}", ("bad\nkey", 1)),
    case("missing key umap; add it (see docs/params.md)", ("umap", DELETE)),
    case("sources must be a mapping with one section per dataset, got None", ("sources", None)),
    case(f"unknown key sources.cifar; accepted: {', '.join(sorted([*DATASETS.names(), 'weights', 'annotations']))}"
         f", or a dataset of your own, <name>: {OWN}", ("sources.cifar", {})),
    case("sources.mine.folder must be the path of a folder of class folders, got ' '",
         ("sources.mine", {"folder": " "})),
    case("sources.mine.csv must be the path of a CSV file (columns path, label), got ' '",
         ("sources.mine", {"csv": " ", "root": "x"})),
    case("sources.mine.root must be the folder the CSV's paths are relative to, got ' '",
         ("sources.mine", {"csv": "a.csv", "root": " "})),
    case("sources.1mine must be named with a letter, then letters, digits, _ or - (the name becomes folder and stage "
         "names), got '1mine'", ("sources.1mine", {"folder": "x"})),
    case(f"sources.mine must be one of {OWN}, not both, got {{'folder': 'x', 'csv': 'a.csv'}}",
         ("sources.mine", {"folder": "x", "csv": "a.csv"})),
    case("missing key sources.weights; add it (see docs/params.md)", ("sources.weights", DELETE)),
    case("missing key sources.synthetic; add it (see docs/params.md)", ("sources.synthetic", DELETE)),
    case("missing key triplet; add it (see docs/params.md)", ("triplet", DELETE)),
    case("train must be a mapping, got 5", ("train", 5)),
    case("unknown key embed.bs; accepted: batch_size", ("embed.bs", 1)),
    case(f"unknown key train.'a b'; accepted: {TRAIN_KEYS}", ("train.a b", 1)),
    case("missing key embed.batch_size; add it (see docs/params.md)", ("embed.batch_size", DELETE)),
    case("model.pretrained must be true or false, got 'yes'", ("model.pretrained", "yes")),
    case("train.epochs must be an integer, got 'many'", ("train.epochs", "many")),
    case("train.epochs must be an integer, got True", ("train.epochs", True)),
    case("train.lr must be a number, got 'fast'", ("train.lr", "fast")),
    case("train.lr must be a finite number, got inf", ("train.lr", float("inf"))),
    case("train.lr must be a finite number, got True", ("train.lr", True)),
    case(f"train.lr must be a finite number, got {repr(10**400)[:57]}...", ("train.lr", 10**400)),
    case("model.name must be a string, got 5", ("model.name", 5)),
    case("seeds must be a list, got 5", ("seeds", 5)),
    case("seeds[1] must be an integer, got 'a'", ("seeds", [0, "a"])),
    case("split.source must be one of: annotations, generated, got 'mine'", ("split.source", "mine")),
    case(f"primary.better must be one of: {', '.join(METHODS.names())}, got 'simclr'",
         ("primary.better", "simclr")),
    case("primary.than must be a method other than better (triplet), got 'triplet'",
         ("primary.than", "triplet")),
    case(f"primary.than must be one of: {', '.join(METHODS.names())}, got 'simclr'", ("primary.than", "simclr")),
    case("primary.metric must be one of: kmeans_acc, got 'nmi'", ("primary.metric", "nmi")),
    case("primary.view must be one of: raw, l2, got 'cosine'", ("primary.view", "cosine")),
    case("sources.weights.url must be a string, got 5", ("sources.weights.url", 5)),
    case("split.test_per_class must be an integer or study or null, got 'many'", ("split.test_per_class", "many")),
    # -- whole-file rules
    case(f"seed must be {SEED_RANGE}, got -1", ("seed", -1)),
    case(f"seed must be {SEED_RANGE}, got {MAX + 1}", ("seed", MAX + 1)),
    case("seeds must be a non-empty list of training seeds, got []", ("seeds", [])),
    case(f"seeds[1] must be {SEED_RANGE}, got -1", ("seeds", [0, -1])),
    case(f"seeds[0] must be {SEED_RANGE}, got {MAX + 1}", ("seeds", [MAX + 1])),
    case("seeds must be a list without repeats, got [3, 1, 3]", ("seeds", [3, 1, 3])),
    case("shots must be an integer >= 0 (0 = every training image), got -1", ("shots", -1)),
    case(f"datasets must be a non-empty list of: {', '.join(DATASETS.names())}, got []", ("datasets", [])),
    case(f"datasets must be names from: {', '.join(DATASETS.names())}, or a dataset of your own defined as "
         f"sources.<name>: {OWN}, got 'cifar'", ("datasets", ["cifar"])),
    case("datasets must be a list without repeats, got ['synthetic', 'synthetic']",
         ("datasets", ["synthetic", "synthetic"])),
    case(f"methods must be a non-empty list of: {', '.join(METHODS.names())}, got []", ("methods", [])),
    case(f"methods must be names from: {', '.join(METHODS.names())}, got 'arcface'", ("methods", ["arcface"])),
    case("methods must be a list without repeats, got ['triplet', 'triplet']", ("methods", ["triplet", "triplet"])),
    case("split.source must be generated when datasets include synthetic (the study published split lists only "
         "for defungi, pets), got 'annotations'", ("split.source", "annotations")),
    case("shots must be 0 or 15 with split.source: annotations (the study's lists cover only those); set "
         "split.source: generated for other values, got 5",
         ("datasets", ["pets"]), ("split.source", "annotations"), ("shots", 5)),
    case("split.source must be generated when datasets include flowers (the study published split lists only "
         "for defungi, pets; a split column in your CSV is used as given), got 'annotations'",
         ("sources.flowers", {"folder": "/data/flowers"}), ("datasets", ["flowers"]), ("split.source", "annotations")),
    case("shots must be at most 6 for synthetic (the training images of its class 'circle_c0_plain' once test and "
         "val are held out; 0 = every image), got 7", ("shots", 7)),
    # a dataset whose sizes are known only once downloaded (your own, pets) does not stop the check of the next
    case("shots must be at most 6 for synthetic (the training images of its class 'circle_c0_plain' once test and "
         "val are held out; 0 = every image), got 7",
         ("sources.flowers", {"folder": "/data/flowers"}), ("datasets", ["flowers", "synthetic"]), ("shots", 7)),
    case("shots must be at most 6 for synthetic (the training images of its class 'circle_c0_plain' once test and "
         "val are held out; 0 = every image), got 7", ("datasets", ["pets", "synthetic"]), ("shots", 7)),
    case("split must be a split that synthetic allows (class 'circle_c0_plain' has 12 images; "
         "split.test_per_class=11 leaves too few for val and train: lower it, or set it to null to use "
         "split.test_fraction), got {'source': 'generated', 'test_fraction': 0.25, 'test_per_...",
         ("shots", 2), ("split.test_per_class", 11)),
    case("pictures.queries must be an integer >= 1, got 0", ("pictures.queries", 0)),
    case("pictures.neighbours must be an integer >= 1, got 0", ("pictures.neighbours", 0)),
    case(f"pictures.seed must be {SEED_RANGE}, got -1", ("pictures.seed", -1)),
    # -- split
    case("split.test_per_class must be an integer >= 1, study or null, got 0", ("split.test_per_class", 0)),
    case("split.test_fraction must be a number in (0, 1), got 0.0", ("split.test_fraction", 0)),
    case("split.test_fraction must be a number in (0, 1), got 1.0", ("split.test_fraction", 1)),
    case("split.val_fraction must be a number in (0, 1), got 0.0", ("split.val_fraction", 0)),
    case("split.val_fraction must be a number in (0, 1), got 1.0", ("split.val_fraction", 1)),
    case("split.test_fraction + split.val_fraction must be a sum below 1 (something must be left to train on), "
         "got 1.0", ("split.test_fraction", 0.5), ("split.val_fraction", 0.5)),
    # -- model, train
    case("model.name must be a timm model name, got '  '", ("model.name", "  ")),
    case("model.image_size must be an integer >= 16, got 15", ("model.image_size", 15)),
    case("train.device must be one of: auto, cpu, cuda, cuda:N (N a GPU index), got 'tpu'", ("train.device", "tpu")),
    case("train.device must be one of: auto, cpu, cuda, cuda:N (N a GPU index), got 'cuda:x'",
         ("train.device", "cuda:x")),
    case("train.processes must be an integer >= 1 (processes, one per GPU, for one run), got 0",
         ("train.processes", 0)),
    case("train.precision must be one of: auto, bf16, fp32, got 'fp16'", ("train.precision", "fp16")),
    case("train.optimizer must be one of: adam, adamw, got 'sgd'", ("train.optimizer", "sgd")),
    case("train.select must be one of: loss, last, val_kmeans, val_map_at_r, val_precision_at_1, got 'kmeans'",
         ("train.select", "kmeans")),
    case("tune.trials must be an integer >= 0 (0 = no search), got -1", ("tune.trials", -1)),
    case("tune.epochs must be an integer >= 1, got 0", ("tune.epochs", 0)),
    case("tune.metric must be one of: val_kmeans, val_map_at_r, val_precision_at_1, got 'loss'",
         ("tune.metric", "loss")),
    case(f"tune.seed must be an integer in [0, {MAX}], got -1", ("tune.seed", -1)),
    case("train.epochs must be an integer >= 1, got 0", ("train.epochs", 0)),
    case("train.lr must be a number > 0, got 0.0", ("train.lr", 0)),
    case("train.betas must be two numbers in [0, 1), got [0.9]", ("train.betas", [0.9])),
    case("train.betas must be two numbers in [0, 1), got [0.9, 1.0]", ("train.betas", [0.9, 1.0])),
    case("train.betas must be two numbers in [0, 1), got [-0.1, 0.9]", ("train.betas", [-0.1, 0.9])),
    case("train.weight_decay must be a number >= 0, got -1e-06", ("train.weight_decay", -1e-6)),
    case("train.warmup_epochs must be an integer >= 0, got -1", ("train.warmup_epochs", -1)),
    case("train.warmup_start_factor must be a number in (0, 1], got 0.0", ("train.warmup_start_factor", 0)),
    case("train.warmup_start_factor must be a number in (0, 1], got 1.5", ("train.warmup_start_factor", 1.5)),
    case("train.cosine_t_max must be an integer >= 1, got 0", ("train.cosine_t_max", 0)),
    case("train.eta_min must be a number in [0, lr=0.001], got -1e-05", ("train.eta_min", -1e-5)),
    case("train.eta_min must be a number in [0, lr=0.001], got 0.002", ("train.eta_min", 0.002)),
    case("train.hflip must be a probability in [0, 1], got -0.1", ("train.hflip", -0.1)),
    case("train.hflip must be a probability in [0, 1], got 1.1", ("train.hflip", 1.1)),
    case("train.resume_every_s must be seconds >= 0 (0: every epoch), got -1.0", ("train.resume_every_s", -1)),
    case("train.val_batch_size must be an integer >= 1 or null, got 0", ("train.val_batch_size", 0)),
    case("train.val_batch_size must be a batch size TripletBatchHardParams accepts (an integer >= 2 * "
         "images_per_class = 8 (a batch needs two classes)), got 7",
         ("methods", ["triplet_batch_hard"]), ("train.val_batch_size", 7)),
    case("train.budget must be one of: epochs, steps, images, got 'tokens'", ("train.budget", "tokens")),
    case("train.budget_amount must be an integer >= 1 or null, got 0", ("train.budget_amount", 0)),
    case("train.budget_amount must be an integer >= 1 with train.budget images and no classification section "
         "(null takes the amount from the classification run), got None",
         ("methods", ["triplet"]), ("classification", DELETE), ("train.budget", "images")),
    # -- embed, evaluate, umap
    case("embed.batch_size must be an integer >= 1, got 0", ("embed.batch_size", 0)),
    case("evaluate.kmeans_n_init must be an integer >= 1, got 0", ("evaluate.kmeans_n_init", 0)),
    case(f"evaluate.kmeans_seed must be {SEED_RANGE}, got -1", ("evaluate.kmeans_seed", -1)),
    case(f"evaluate.kmeans_seed must be {SEED_RANGE}, got {MAX + 1}", ("evaluate.kmeans_seed", MAX + 1)),
    case(f"evaluate.kmeans_repeats must be an integer >= 1 with kmeans_seed + kmeans_repeats - 1 <= {MAX}, got 0",
         ("evaluate.kmeans_repeats", 0)),
    case(f"evaluate.kmeans_repeats must be an integer >= 1 with kmeans_seed + kmeans_repeats - 1 <= {MAX}, got 3",
         ("evaluate.kmeans_seed", MAX - 1), ("evaluate.kmeans_repeats", 3)),
    case("evaluate.knn_k must be an integer >= 1, got 0", ("evaluate.knn_k", 0)),
    case("evaluate.distance must be one of: euclidean, cosine, got 'manhattan'", ("evaluate.distance", "manhattan")),
    case("evaluate.bootstrap_resamples must be an integer >= 1000 (fewer make the 2.5% tails of a 95% interval "
         "unstable), got 999", ("evaluate.bootstrap_resamples", 999)),
    case(f"evaluate.bootstrap_seed must be {SEED_RANGE}, got -1", ("evaluate.bootstrap_seed", -1)),
    case("evaluate.labels must be true or study, got False", ("evaluate.labels", False)),
    case("evaluate.labels must be true or false or study, got 'mine'", ("evaluate.labels", "mine")),
    case("evaluate.labels must be true or false or study, got 1", ("evaluate.labels", 1)),
    case("umap.n_neighbors must be an integer >= 2, got 1", ("umap.n_neighbors", 1)),
    case("umap.min_dist must be a number in [0, 1], got -0.1", ("umap.min_dist", -0.1)),
    case("umap.min_dist must be a number in [0, 1], got 1.1", ("umap.min_dist", 1.1)),
    case("umap.metric must be one of: euclidean, cosine, manhattan, correlation, got 'hamming'",
         ("umap.metric", "hamming")),
    case(f"umap.seed must be {SEED_RANGE}, got -1", ("umap.seed", -1)),
    case(f"umap.seed must be {SEED_RANGE}, got {MAX + 1}", ("umap.seed", MAX + 1)),
    # -- sources
    case("sources.weights.url must be an http(s) URL or null, got 'ftp://x/w.safetensors'",
         ("sources.weights.url", "ftp://x/w.safetensors")),
    case("sources.weights.sha256 must be 64 lowercase hex digits or null, got 'ABC'",
         ("sources.weights.sha256", "ABC")),
    case("sources.annotations.drive_folder must be a Google Drive folder id (letters, digits, - and _), got 'a/b'",
         ("sources.annotations.drive_folder", "a/b")),
    case("sources.annotations.url must be an http(s) URL of a zip or tar archive, or null (use drive_folder), "
         "got 'ftp://x/a.zip'", ("sources.annotations.url", "ftp://x/a.zip")),
    case("sources.annotations.sha256 must be 64 lowercase hex digits or null, got 'f00'",
         ("sources.annotations.sha256", "f00")),
    case("sources.synthetic.n_classes must be an integer in [2, 32], got 1", ("sources.synthetic.n_classes", 1)),
    case("sources.synthetic.n_classes must be an integer in [2, 32], got 33", ("sources.synthetic.n_classes", 33)),
    case("sources.synthetic.per_class must be an integer >= 3, got 2", ("sources.synthetic.per_class", 2)),
    case("sources.synthetic.image_size must be an integer >= 16, got 15", ("sources.synthetic.image_size", 15)),
    case("sources.synthetic.seed must be an integer >= 0, got -1", ("sources.synthetic.seed", -1)),
    case("sources.pets.images.url must be an http(s) URL, got 'ftp://x/i.tgz'",
         ("sources.pets.images.url", "ftp://x/i.tgz")),
    case("sources.pets.annotations.md5 must be 32 lowercase hex digits or null, got 'xyz'",
         ("sources.pets.annotations.md5", "xyz")),
    case("sources.defungi.url must be an http(s) URL, got 'defungi.zip'", ("sources.defungi.url", "defungi.zip")),
    case("sources.defungi.sha256 must be 64 lowercase hex digits or null, got 'abc'",
         ("sources.defungi.sha256", "abc")),
    case("sources.digits.image_size must be an integer >= 8, got 7", ("sources.digits.image_size", 7)),
    # -- methods
    case("classification.batch_size must be an integer >= 1, got 0", ("classification.batch_size", 0)),
    case("triplet.batch_size must be an integer >= 1, got 0", ("triplet.batch_size", 0)),
    case("triplet.margin must be a number > 0, got 0.0", ("triplet.margin", 0)),
    case("triplet.pool must be one of: split, study, got 'test'", ("triplet.pool", "test")),
    case("triplet_batch_hard.images_per_class must be an integer >= 2 (an image needs a positive), got 1",
         ("triplet_batch_hard.images_per_class", 1)),
    case("triplet_batch_hard.batch_size must be an integer >= 2 * images_per_class = 8 (a batch needs two "
         "classes), got 7", ("triplet_batch_hard.batch_size", 7)),
    case("triplet_batch_hard.margin must be a number > 0, got 0.0", ("triplet_batch_hard.margin", 0)),
    case("supcon.images_per_class must be an integer >= 2 (an image needs a positive), got 1",
         ("supcon.images_per_class", 1)),
    case("supcon.temperature must be a number > 0, got 0.0", ("supcon.temperature", 0)),
    case("normsoftmax.batch_size must be an integer >= 1, got 0", ("normsoftmax.batch_size", 0)),
    case("normsoftmax.temperature must be a number > 0, got -1.0", ("normsoftmax.temperature", -1)),
]

# Values at the edge of each range: accepted.
ACCEPTED = [
    (("seed", MAX),), (("seeds", [0, MAX]),), (("shots", 6),), (("split.test_per_class", 1),),
    (("split.test_per_class", None),), (("split.test_fraction", 0.5), ("split.val_fraction", 0.49)),
    (("model.image_size", 16),), (("train.epochs", 1),), (("train.betas", [0, 0.999]),),
    (("train.weight_decay", 0),), (("train.warmup_epochs", 0),), (("train.warmup_start_factor", 1),),
    (("train.cosine_t_max", 1),), (("train.eta_min", 0),), (("train.eta_min", 0.001),), (("train.hflip", 0),),
    (("train.hflip", 1),), (("train.resume_every_s", 0),), (("train.val_batch_size", 1),),
    (("train.budget", "steps"), ("train.budget_amount", 1)),
    (("methods", ["triplet"]), ("classification", DELETE), ("train.budget", "images"), ("train.budget_amount", 3)),
    (("methods", ["triplet"]), ("classification", DELETE)),  # budget epochs: no amount needed
    (("train.budget", "images"), ("train.budget_amount", None)),  # the amount from the classification run
    (("train.processes", 1),), (("train.device", "cuda:0"),),
    (("embed.batch_size", 1),), (("train.select", "last"),), (("train.select", "val_precision_at_1"),),
    (("tune.trials", 0), ("tune.epochs", 1), ("tune.seed", MAX)), (("tune.metric", "val_map_at_r"),),
    (("evaluate.kmeans_n_init", 1),), (("evaluate.kmeans_seed", MAX), ("evaluate.kmeans_repeats", 1)),
    (("evaluate.kmeans_seed", MAX - 1), ("evaluate.kmeans_repeats", 2)), (("evaluate.knn_k", 1),),
    (("evaluate.bootstrap_resamples", 1000), ("evaluate.bootstrap_seed", MAX)), (("triplet.pool", "study"),),
    (("evaluate.labels", "study"),), (("evaluate.labels", True),),
    (("umap.n_neighbors", 2),), (("umap.min_dist", 0),), (("umap.min_dist", 1),), (("umap.seed", MAX),),
    (("sources.synthetic.n_classes", 2), ("sources.synthetic.per_class", 3)), (("sources.synthetic.n_classes", 32),),
    (("sources.synthetic.image_size", 16), ("sources.synthetic.seed", 0)), (("sources.digits.image_size", 8),),
    (("sources.weights.sha256", "0" * 64),), (("sources.annotations.drive_folder", "abc-DEF_0123"),),
    (("sources.weights.url", "http://mirror/w.safetensors"), ("sources.weights.sha256", "ab" * 32)),
    (("sources.weights.url", "https://mirror/w.safetensors"),), (("sources.annotations.url", "http://m/a.zip"),),
    (("sources.annotations.url", "https://m/a.zip"), ("sources.annotations.sha256", "cd" * 32)),
    (("sources.annotations.url", "file:///data/a.zip"),),
    (("sources.defungi.url", "file:///data/defungi.zip"),), (("sources.pets.images.md5", "f" * 32),),
    (("classification.batch_size", 1),), (("triplet.batch_size", 1),),
    (("triplet_batch_hard.images_per_class", 2), ("triplet_batch_hard.batch_size", 4)),
    (("datasets", ["pets"]), ("split.source", "annotations"), ("shots", 15)),
    (("sources.flowers", {"folder": "/data/flowers"}), ("datasets", ["flowers", "synthetic"])),
    (("pictures.queries", 1), ("pictures.neighbours", 1), ("pictures.seed", MAX)),
]


def rejection(raw: Any) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        params_from_dict(raw)
    return info.value


@pytest.mark.parametrize(("raw", "message"), RULES)
def test_each_rule_rejects_its_case_in_one_line_naming_the_key(raw, message):
    assert str(rejection(raw)) == f"params.yaml: {message}"


@pytest.mark.parametrize("edits", ACCEPTED, ids=lambda e: ", ".join(f"{k}={v!r}"[:40] for k, v in e))
def test_values_at_the_edge_of_each_range_are_accepted(edits):
    params_from_dict(edited(*edits))


def file_cases(tmp_path: Path) -> list[tuple[Path, str]]:
    """params files that cannot be read, and the start of what each must say."""
    missing, bad_yaml, latin1 = tmp_path / "nope.yaml", tmp_path / "bad.yaml", tmp_path / "latin1.yaml"
    bad_yaml.write_text("seed: 0\ntrain: [unclosed\n")
    latin1.write_bytes("seed: 0 # caf\xe9\n".encode("latin-1"))
    return [
        (missing, f"{missing} not found; run from the project folder, or pass --params PATH"),
        (bad_yaml, f"{bad_yaml} is not valid YAML at line 3, column 1: "),
        (latin1, f"{latin1} is not UTF-8 text (byte 13); fix the file"),
    ]


def test_unreadable_files_are_one_line_naming_the_file(tmp_path):
    for path, start in file_cases(tmp_path):
        with pytest.raises(PipelineError) as info:
            load_params(path)
        message = str(info.value)
        assert message.startswith(start) and "\n" not in message, message
    assert str(info.value).endswith("; fix the file")


# --- every rule in the source has a case above ----------------------------------------------

RULE_CALLS = {"_require", "_one_of", "require", "one_of"}  # params.py imports validate's helpers as _require, ...
KEY_ERRORS = {"_KeyError", "_UnknownKey", "_Missing", "ParamError", "UnknownKey", "MissingKey", "PipelineError"}
SPLITS_FILE = ROOT / "stages/lib/splits.py"  # only its `check_params`: the split's params rules
RULE_FILES = [Path(params_module.__file__), SPLITS_FILE, *sorted((ROOT / "stages/lib/datasets").glob("*.py")),
              *sorted((ROOT / "stages/lib/methods").glob("*.py"))]
RAISING_FILES = {"params.py", "splits.py"}  # where each raise of a key error is a rule


def _name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else None


def setting_sites() -> set[tuple[str, str]]:
    """("setting", "<section class>.<field>") of every setting that states a rule (stages/lib/schema.py)."""
    sections = {c for c in vars(params_module).values() if dataclasses.is_dataclass(c) and isinstance(c, type)}
    sections |= {DATASETS.get(n).params_type for n in DATASETS.names()}
    sections |= {METHODS.get(n).params_type for n in METHODS.names()}
    return {("setting", f"{c.__qualname__}.{f.name}") for c in sections for f in dataclasses.fields(c)
            if f.metadata.get("rule") is not None}


def rule_sites() -> set[tuple[str, int, int]]:
    """(file, first line, last line) of every rule written as code: each `_require` / `_one_of` call,
    and in params.py and splits.py's `check_params` each raise of a key error that is not the
    helpers' own or the final re-raise."""
    sites = set()
    for path in RULE_FILES:
        tree = ast.parse(path.read_text())
        if path == SPLITS_FILE:
            tree = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "check_params")
        skip: set[int] = set()  # ids of nodes inside the helpers and the handler that re-raises
        for node in ast.walk(tree):
            helper = isinstance(node, ast.FunctionDef) and node.name in RULE_CALLS
            rewrap = isinstance(node, ast.ExceptHandler) and node.type is not None and _name(node.type) == "_KeyError"
            if helper or rewrap:
                skip |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            call = isinstance(node, ast.Call) and _name(node.func) in RULE_CALLS
            raised = (
                path.name in RAISING_FILES and isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                and _name(node.exc.func) in KEY_ERRORS
            )
            if call or raised:
                sites.add((str(path.resolve()), node.lineno, node.end_lineno))
    return sites


def rejecting_site(error: PipelineError) -> tuple[str, int | str]:
    """Where the rule that raised `error` is: ("setting", "<class>.<field>") for a setting's rule,
    else (file, line): the caller of `_require` / `_one_of`, or the raise."""
    inner = error.__context__ if type(error.__context__).__name__ in KEY_ERRORS else error
    if getattr(inner, "setting", None):
        cls, name = inner.setting
        return "setting", f"{cls.__qualname__}.{name}"
    frames = []
    tb = inner.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_name, str(Path(tb.tb_frame.f_code.co_filename).resolve()), tb.tb_lineno))
        tb = tb.tb_next
    if frames[-1][0] in RULE_CALLS:
        frames.pop()
    return frames[-1][1], frames[-1][2]


def test_every_rule_has_a_rejecting_case(tmp_path):
    hit = set()
    for param in RULES:
        raw, _ = param.values
        hit.add(rejecting_site(rejection(raw)))
    for path, _ in file_cases(tmp_path):
        with pytest.raises(PipelineError) as info:
            load_params(path)
        hit.add(rejecting_site(info.value))
    sites, settings = rule_sites(), setting_sites()
    assert len(sites) > 30 and len(settings) > 30  # the scans find the rules (a broken scan would pass vacuously)
    missed = sorted(
        (f"{Path(f).relative_to(ROOT)}:{start}" for f, start, end in sites
         if not any(hf == f and isinstance(line, int) and start <= line <= end for hf, line in hit)),
    )
    missed += sorted(name for kind, name in settings - hit)
    assert not missed, f"rules with no rejecting case in RULES: {missed}"
