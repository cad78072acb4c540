"""`python -m stages.check --restore`: the last checked values back in params.yaml, its comments and
layout kept, the refused file kept in data/."""

from __future__ import annotations

import pytest
import yaml

from stages.lib.errors import PipelineError
from stages.lib.params_restore import locked_params, restore, with_values
from tests.helpers import ROOT

PARAMS = (ROOT / "params.yaml").read_text()


def lock_text(values: dict) -> str:
    return yaml.safe_dump({"schema": "2.0", "stages": {"check": {"cmd": "python -m stages.check",
                                                                 "params": {"params.yaml": values}}}})


def test_only_the_refused_values_change_and_every_comment_stays():
    good = yaml.safe_load(PARAMS)
    refused = PARAMS.replace("  device: auto  ", "  device: cpuu  ")
    refused = refused.replace("  epochs: 100\n", "  epochs: 100\n  epoch: 3\n")  # a key typo, added with -S +key
    assert refused != PARAMS
    assert with_values(refused, good) == PARAMS


def test_restore_puts_back_dvc_locks_values_and_keeps_the_refused_file(tmp_path):
    good = yaml.safe_load(PARAMS)
    good["train"]["lr"] = 1e-05  # DVC writes floats as 1e-05, which PyYAML reads as a string: still a number here
    (tmp_path / "dvc.lock").write_text(lock_text(good).replace("1.0e-05", "1e-05"))
    assert locked_params(tmp_path / "dvc.lock")["train"]["lr"] == 1e-05
    refused = PARAMS.replace("  device: auto  ", "  device: cpuu  ")
    (tmp_path / "params.yaml").write_text(refused)
    said = restore(tmp_path / "params.yaml", tmp_path)
    assert said == (f"{tmp_path / 'params.yaml'}: restored the params of the last run that passed the check "
                    "(dvc.lock); the refused file is kept as data/params.yaml.refused")
    assert (tmp_path / "data/params.yaml.refused").read_text() == refused
    text = (tmp_path / "params.yaml").read_text()
    assert yaml.safe_load(text)["train"]["lr"] == 1e-05 and yaml.safe_load(text)["train"]["device"] == "auto"
    assert text == PARAMS.replace("  lr: 5.0e-5", "  lr: 1.0e-05")
    assert restore(tmp_path / "params.yaml", tmp_path).endswith("already holds the params of the last run that "
                                                                 "passed the check (dvc.lock); nothing changed")


def test_without_a_lock_or_a_commit_it_says_what_to_do(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [\n")
    with pytest.raises(PipelineError, match="no dvc.lock and no committed params.yaml to restore from"):
        restore(tmp_path / "params.yaml", tmp_path)
    assert (tmp_path / "params.yaml").read_text() == "seed: [\n"
