"""A Google Drive folder arrives whole or not at all (gdown replaced by a fake: no network)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from stages.lib.errors import PipelineError
from stages.lib.fetch.drive import download_drive_folder


def _fake_gdown(monkeypatch, download_folder) -> None:
    module = types.ModuleType("gdown")
    module.download_folder = download_folder
    monkeypatch.setitem(sys.modules, "gdown", module)


def test_a_drive_folder_arrives_whole(tmp_path, monkeypatch):
    calls = []

    def download_folder(**kwargs):
        calls.append(kwargs)
        out = Path(kwargs["output"])
        (out / "sub").mkdir()
        (out / "a.csv").write_text("a")
        (out / "sub" / "b.csv").write_text("b")
        return [str(out / "a.csv"), str(out / "sub" / "b.csv")]

    _fake_gdown(monkeypatch, download_folder)
    dest = tmp_path / "annotations"
    assert download_drive_folder("FOLDER123", dest) == ["a.csv", "sub/b.csv"]
    assert len(calls) == 1 and calls[0]["id"] == "FOLDER123" and calls[0]["quiet"] is False
    assert (dest / "sub" / "b.csv").read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations"]


def test_a_failed_drive_download_leaves_nothing(tmp_path, monkeypatch):
    def download_folder(**kwargs):
        (Path(kwargs["output"]) / "half.csv").write_text("partial")
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    _fake_gdown(monkeypatch, download_folder)
    dest = tmp_path / "annotations"
    with pytest.raises(PipelineError, match=r"sources.annotations.url") as info:
        download_drive_folder("FOLDER123", dest)
    assert "FOLDER123" in str(info.value) and "Too many users" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_drive_download_that_gets_nothing_leaves_nothing(tmp_path, monkeypatch):
    _fake_gdown(monkeypatch, lambda **kwargs: None)
    dest = tmp_path / "annotations"
    with pytest.raises(PipelineError, match=r"sources.annotations.url"):
        download_drive_folder("FOLDER123", dest)
    assert list(tmp_path.iterdir()) == []


def test_without_gdown_the_error_says_to_install_it_or_use_an_archive(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)  # makes `import gdown` fail
    dest = tmp_path / "annotations"
    with pytest.raises(PipelineError, match=r"gdown.*not installed.*sources.annotations.url"):
        download_drive_folder("FOLDER123", dest)
    assert not dest.exists()
