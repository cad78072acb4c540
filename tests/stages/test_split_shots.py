"""The split stage with `shots: k` (generated splits) changes only the training table: `val.csv`,
`test.csv` and `classes.json` are byte-identical to `shots: 0`, so full and k-shot runs are scored
on the same images."""

from __future__ import annotations

import pandas as pd
import pytest

from stages import download, split
from tests.helpers import tiny_params, write_params

FILES = ("val.csv", "test.csv", "classes.json")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    d = tmp_path_factory.mktemp("shots")
    p = write_params(d / "params.yaml", tiny_params())
    download.main(["synthetic", "--params", str(p), "--out", str(d / "raw"), "--cache", str(d / "cache")])
    return d / "raw"


def run_split(raw, out, shots: int) -> None:
    p = write_params(out.parent / f"params{shots}.yaml", tiny_params(shots=shots))
    split.main(["synthetic", "--params", str(p), "--raw", str(raw), "--annotations", str(out.parent / "none"),
                "--out", str(out)])


@pytest.mark.parametrize("shots", [1, 3, 6])  # 6: every training image of a class (12 - 3 test - 3 val)
def test_shots_leave_val_and_test_byte_identical(raw, tmp_path, shots):
    run_split(raw, tmp_path / "full", 0)
    run_split(raw, tmp_path / "few", shots)
    for name in FILES:
        assert (tmp_path / "few" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    full = (tmp_path / "full" / "train.csv").read_text().splitlines()
    few = (tmp_path / "few" / "train.csv").read_text().splitlines()
    assert few[0] == full[0] and set(few[1:]) <= set(full[1:])  # whole rows of the full training table
    table = pd.read_csv(tmp_path / "few" / "train.csv")
    assert table.groupby("class").size().tolist() == [shots] * 3
    assert table["row"].is_monotonic_increasing
