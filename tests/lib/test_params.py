"""params.yaml validation: the defaults load, every bad input is one line naming the key."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.datasets import DATASETS
from stages.lib.errors import PipelineError
from stages.lib.methods import METHODS
from stages.lib.params import Params, load_params, params_from_dict
from tests.helpers import ROOT, default_params, params_error, tiny_params, write_params


def test_repository_defaults_reproduce_the_study():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.datasets == ["pets", "defungi"]
    assert p.methods == ["classification", "triplet"]
    assert p.shots == 0
    assert (p.model.name, p.model.pretrained, p.model.image_size) == ("convnext_tiny.fb_in22k", True, 224)
    t = p.train
    assert (t.epochs, t.optimizer, t.lr, t.betas, t.weight_decay) == (100, "adam", 5e-5, [0.9, 0.999], 1e-6)
    assert (t.warmup_epochs, t.cosine_t_max, t.eta_min, t.hflip) == (10, 100, 5e-6, 0.5)
    assert t.warmup_start_factor == pytest.approx(1 / 3)
    assert p.method_params("classification").batch_size == 128
    assert (p.method_params("triplet").batch_size, p.method_params("triplet").margin) == (64, 1.0)
    assert (p.evaluate.kmeans_n_init, p.evaluate.kmeans_seed) == (10, 0)


def test_every_registered_dataset_and_method_has_a_section_in_the_defaults():
    raw = default_params()
    for name in DATASETS.names():
        assert name in raw["sources"], name
    for name in METHODS.names():
        assert name in raw, name


def test_unknown_dataset_names_the_key_and_accepted_values():
    message = params_error(tiny_params(datasets=["synthetic", "cifar"]))
    assert "datasets" in message and "'cifar'" in message
    for name in DATASETS.names():
        assert name in message


def test_unknown_method():
    message = params_error(tiny_params(methods=["triplet", "arcface"]))
    assert "methods" in message and "arcface" in message and "classification" in message


def test_negative_shots():
    assert "shots" in params_error(tiny_params(shots=-1))


def test_shots_too_large_names_the_real_limit_in_one_step(tmp_path):
    """The limit named at validation is the split stage's own: shots at the limit validates and
    splits; one more is refused before anything runs, naming that same number."""
    from stages import download, split

    raw = tiny_params(shots=99)
    message = params_error(raw)
    limit = int(message.split("at most ")[1].split()[0])
    assert "for synthetic" in message and limit < raw["sources"]["synthetic"]["per_class"]  # after hold-out
    assert f"at most {limit}" in params_error(tiny_params(shots=limit + 1))
    p = str(write_params(tmp_path / "params.yaml", tiny_params(shots=limit)))
    download.main(["synthetic", "--params", p, "--out", f"{tmp_path}/raw", "--cache", f"{tmp_path}/cache"])
    split.main(["synthetic", "--params", p, "--raw", f"{tmp_path}/raw", "--out", f"{tmp_path}/splits"])
    train = (tmp_path / "splits/train.csv").read_text().strip().splitlines()
    assert len(train) == 1 + limit * raw["sources"]["synthetic"]["n_classes"]

    digits = tiny_params(datasets=["digits"], shots=175)
    digits["split"].update(test_fraction=0.2, val_fraction=0.1)  # the demo's: digit 8 (174 images) keeps 122
    assert "at most 122 for digits" in params_error(digits)


def test_digits_class_sizes_are_scikit_learns():
    from sklearn.datasets import load_digits

    from stages.lib.datasets.digits import CLASS_SIZES

    labels, counts = np.unique(load_digits().target, return_counts=True)
    assert CLASS_SIZES == {str(label): int(count) for label, count in zip(labels, counts, strict=True)}


def test_unknown_keys_at_every_level():
    raw = tiny_params()
    raw["learning_rate"] = 1
    message = params_error(raw)
    assert "unknown key learning_rate" in message and "train" in message
    raw = tiny_params()
    raw["train"]["lrr"] = 1
    message = params_error(raw)
    assert "unknown key train.lrr" in message and "lr" in message
    raw = tiny_params()
    raw["sources"]["cifar"] = {}
    assert "unknown key sources.cifar" in params_error(raw)


def test_wrong_types_and_values():
    raw = tiny_params()
    raw["train"]["epochs"] = "many"
    assert "train.epochs must be an integer" in params_error(raw)
    raw = tiny_params()
    raw["train"]["epochs"] = True
    assert "train.epochs" in params_error(raw)
    raw = tiny_params()
    raw["train"]["lr"] = -1
    assert "train.lr" in params_error(raw)
    raw = tiny_params()
    raw["train"]["device"] = "tpu"
    message = params_error(raw)
    assert "train.device" in message and "auto, cpu, cuda" in message
    raw = tiny_params()
    raw["model"]["pretrained"] = "yes"
    assert "model.pretrained must be true or false" in params_error(raw)
    raw = tiny_params()
    raw["split"]["test_fraction"] = 0.6
    raw["split"]["val_fraction"] = 0.5
    assert "below 1" in params_error(raw)


def test_missing_key():
    raw = tiny_params()
    del raw["train"]["lr"]
    assert "missing key train.lr" in params_error(raw)
    raw = tiny_params()
    del raw["triplet"]
    assert "missing key triplet" in params_error(raw)


def test_floats_written_by_dvc_are_read_as_numbers():
    # `dvc exp run -S train.lr=5e-5` writes `5e-05`, which PyYAML reads as a string.
    raw = tiny_params()
    raw["train"]["lr"] = "5e-05"
    assert params_from_dict(raw).train.lr == 5e-5


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 0\ntrain: [unclosed\n")
    with pytest.raises(PipelineError, match=r"not valid YAML at line \d+"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_tiny_params_are_valid(tmp_path):
    p = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    assert p.datasets == ["synthetic"]
