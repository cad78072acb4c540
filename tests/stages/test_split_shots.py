"""The split stage with `shots: k` (generated splits) changes only the training table: `val.csv`,
`test.csv` and `classes.json` are byte-identical to `shots: 0`, so full and k-shot runs are scored
on the same images. Its refusals name the dataset; `test_per_class: study` is the dataset's own."""

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


def test_too_many_shots_names_the_dataset(raw, tmp_path, capsys):
    # synthetic's class sizes are known before the download: the params check names the real
    # limit before the split stage starts (the split stage's own refusal: tests/lib/test_splits_edges.py)
    with pytest.raises(SystemExit):
        run_split(raw, tmp_path / "few", 7)  # 6 training images per class
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'params7.yaml'}: shots must be at most 6 for synthetic (the training images of its "
        "class 'circle_c0_plain' once test and val are held out; 0 = every image), got 7"
    )


def test_test_per_class_study_is_the_datasets_size_in_the_study(http_files, tmp_path, capsys):
    from tests.stages import study_data as sd

    params = sd.serve_study(http_files)
    params["split"].update(source="generated", test_per_class="study")
    p = write_params(tmp_path / "params.yaml", params)
    download.main(["pets", "--params", str(p), "--out", str(tmp_path / "raw"), "--cache", str(tmp_path / "cache")])
    capsys.readouterr()
    with pytest.raises(SystemExit):  # the study held out 40 per breed; the stand-in has 6
        split.main(["pets", "--params", str(p), "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")])
    assert "split.test_per_class=40 leaves too few for val and train" in capsys.readouterr().err
