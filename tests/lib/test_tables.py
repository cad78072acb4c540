"""A file an earlier stage wrote, missing or unreadable, gets one line naming the stage to run."""

from __future__ import annotations

import pytest

from stages.lib.errors import PipelineError
from stages.lib.tables import read_csv, read_json


def test_a_table_is_read_with_the_options_given(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("row,label\n0,a\n1,b\n")
    table = read_csv(path, "evaluate", usecols=["label"])
    assert list(table.columns) == ["label"] and table["label"].tolist() == ["a", "b"]


@pytest.mark.parametrize("reader", [read_csv, read_json])
def test_a_missing_file_names_the_stage_to_run(tmp_path, reader):
    path = tmp_path / "absent"
    with pytest.raises(PipelineError) as caught:
        reader(path, "train")
    assert str(caught.value) == f"{path} not found; run the train stage first (dvc repro)"


@pytest.mark.parametrize(
    ("reader", "text", "options"),
    [
        (read_csv, "", {}),  # no columns at all
        (read_csv, "row,label\n0,a\n", {"usecols": ["row", "correct"]}),  # a column asked for is missing
        (read_csv, 'a,b\n"1,2\n', {}),  # an unclosed quote
        (read_json, "{not json", {}),
    ],
)
def test_an_unreadable_file_says_to_rerun_the_stage(tmp_path, reader, text, options):
    path = tmp_path / "f"
    path.write_text(text)
    with pytest.raises(PipelineError) as caught:
        reader(path, "evaluate", **options)
    message = str(caught.value)
    assert message.startswith(f"{path} is corrupt (") and message.endswith("); re-run the evaluate stage")


def test_bytes_that_are_not_utf8_are_corrupt_not_a_crash(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"row,label\n0,\xff\xfe\n")
    with pytest.raises(PipelineError, match="is corrupt"):
        read_csv(path, "split")
