"""download@pets, download@defungi and weights against a loopback server: real layouts, and every
failure (wrong checksum, truncated transfer or archive, 404, path traversal) is one line and
leaves no partial output."""

from __future__ import annotations

import io
import json
import tarfile

import pandas as pd
import pytest
from safetensors.torch import load_file

from stages import download, weights
from stages.lib.fetch import downloads
from tests.helpers import write_params
from tests.stages import study_data as sd


@pytest.fixture
def study(http_files, tmp_path):
    """(server, params dict) with every download published."""
    return http_files, sd.serve_study(http_files)


def _run_download(tmp_path, params: dict, dataset: str) -> None:
    p = write_params(tmp_path / "params.yaml", params)
    download.main([dataset, "--params", str(p), "--out", str(tmp_path / "raw" / dataset),
                   "--cache", str(tmp_path / "cache" / dataset)])


def _fails(capsys, func, *args) -> str:
    """Run a stage's main, expect exit 1, and return its one-line message."""
    with pytest.raises(SystemExit) as info:
        func(*args)
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    message = [line for line in err if line.startswith("error: ")]
    assert len(message) == 1, err
    return message[0]


def _nothing_partial(folder, dataset: str) -> None:
    """No output folder and no temporary beside it; the cache holds no extraction leftovers."""
    raw = folder / "raw"
    assert not (raw / dataset).exists()
    assert not raw.exists() or list(raw.iterdir()) == []
    cache = folder / "cache" / dataset
    if cache.exists():
        assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []


def test_pets_download_layout(study, tmp_path):
    server, params = study
    _run_download(tmp_path, params, "pets")
    raw = tmp_path / "raw" / "pets"
    assert sorted(p.name for p in (raw / "images").iterdir()) == sorted(sd.BREEDS)
    assert sorted(p.name for p in (raw / "images" / "Abyssinian").iterdir()) == [
        f"Abyssinian_{n}.jpg" for n in range(1, 7)
    ]
    assert not list(raw.rglob("*.mat"))
    assert sorted(p.name for p in (raw / "official").iterdir()) == ["list.txt", "test.txt", "trainval.txt"]
    manifest = pd.read_csv(raw / "manifest.csv")
    assert list(manifest.columns) == ["path", "class", "group", "bytes", "sha256"]
    assert len(manifest) == len(sd.BREEDS) * sd.PETS_PER_BREED
    row = manifest[manifest["path"] == "images/american_bulldog/american_bulldog_3.jpg"].iloc[0]
    assert row["class"] == "american_bulldog" and row["group"] == "american_bulldog/american_bulldog_3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "params.yaml", "raw"]
    assert sorted(p.name for p in (tmp_path / "cache" / "pets").iterdir()) == ["annotations.tar.gz", "images.tar.gz"]
    # a re-run finds the archives by checksum and downloads nothing
    hits = server.hits("/pets/images.tar.gz")
    _run_download(tmp_path, params, "pets")
    assert server.hits("/pets/images.tar.gz") == hits


def test_defungi_download_layout_groups_patches(study, tmp_path):
    _, params = study
    _run_download(tmp_path, params, "defungi")
    raw = tmp_path / "raw" / "defungi"
    assert sorted(p.name for p in (raw / "images").iterdir()) == list(sd.DEFUNGI_CLASSES)
    manifest = pd.read_csv(raw / "manifest.csv")
    assert sorted(manifest["path"]) == sorted(f"images/{name}" for name in sd.defungi_files())  # no ._ debris
    assert set(manifest[manifest["class"] == "H2"]["group"]) == {"H2/H2_1a", "H2/H2_2a", "H2/H2_3a"}


def test_defungi_inner_zip_per_class(http_files, tmp_path):
    params = sd.serve_study(http_files)
    inner = {
        f"{c}.zip": sd.zip_bytes({name.split("/")[1]: sd.jpeg(i) for i, name in enumerate(sd.defungi_files())
                                  if name.startswith(c + "/")})
        for c in sd.DEFUNGI_CLASSES
    }
    http_files.files["/uci/defungi.zip"] = sd.zip_bytes({f"defungi/{k}": v for k, v in inner.items()})
    params["sources"]["defungi"]["sha256"] = None
    _run_download(tmp_path, params, "defungi")
    manifest = pd.read_csv(tmp_path / "raw" / "defungi" / "manifest.csv")
    assert sorted(manifest["path"]) == sorted(f"images/{name}" for name in sd.defungi_files())


def test_a_wrong_checksum_is_refused_in_one_line_and_nothing_kept(study, tmp_path, capsys):
    server, params = study
    params["sources"]["pets"]["images"]["md5"] = "0" * 32
    message = _fails(capsys, _run_download, tmp_path, params, "pets")
    assert "checksum mismatch" in message and server.url("/pets/images.tar.gz") in message and "0" * 32 in message
    _nothing_partial(tmp_path, "pets")
    assert not list((tmp_path / "cache" / "pets").glob("images.tar.gz*"))


def test_a_transfer_that_keeps_breaking_keeps_its_part_for_a_rerun(study, tmp_path, capsys, monkeypatch):
    server, params = study
    monkeypatch.setattr(downloads.time, "sleep", lambda s: None)  # the retries' back-off
    params["sources"]["defungi"]["url"] = server.url("/truncated/uci/defungi.zip")
    message = _fails(capsys, _run_download, tmp_path, params, "defungi")
    assert "truncated" in message and "/truncated/uci/defungi.zip" in message and "re-run" in message
    _nothing_partial(tmp_path, "defungi")
    part = tmp_path / "cache" / "defungi" / "defungi.zip.part"  # kept on purpose: a re-run resumes it
    assert sd.defungi_zip().startswith(part.read_bytes())
    assert not (tmp_path / "cache" / "defungi" / "defungi.zip").exists()


def test_a_truncated_archive_is_refused_in_one_line(study, tmp_path, capsys):
    server, params = study
    whole = server.files["/pets/images.tar.gz"]
    server.files["/pets/images.tar.gz"] = whole[: len(whole) // 2]  # served honestly, but cut
    params["sources"]["pets"]["images"]["md5"] = None
    message = _fails(capsys, _run_download, tmp_path, params, "pets")
    assert "cannot extract" in message and "images.tar.gz" in message and "delete it and re-run" in message
    _nothing_partial(tmp_path, "pets")


def test_a_file_missing_on_the_server_is_refused_in_one_line(study, tmp_path, capsys):
    server, params = study
    params["sources"]["defungi"]["url"] = server.url("/uci/moved.zip")
    message = _fails(capsys, _run_download, tmp_path, params, "defungi")
    assert "404" in message and server.url("/uci/moved.zip") in message and "sources" in message
    _nothing_partial(tmp_path, "defungi")
    assert list((tmp_path / "cache" / "defungi").iterdir()) == []


def test_an_archive_member_escaping_the_folder_is_refused(study, tmp_path, capsys):
    server, params = study
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in (("images/pug_1.jpg", sd.jpeg(0)), ("images/../../../evil.jpg", b"evil")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    server.files["/pets/images.tar.gz"] = buffer.getvalue()
    params["sources"]["pets"]["images"]["md5"] = sd.md5(buffer.getvalue())
    message = _fails(capsys, _run_download, tmp_path, params, "pets")
    assert "refusing to extract" in message and "'images/../../../evil.jpg'" in message
    _nothing_partial(tmp_path, "pets")
    assert not list(tmp_path.parent.rglob("evil.jpg"))


def test_pets_annotations_archive_must_hold_the_official_lists(study, tmp_path, capsys):
    server, params = study
    server.files["/pets/annotations.tar.gz"] = sd.tar_gz({"annotations/README": b"x"})
    params["sources"]["pets"]["annotations"]["md5"] = None
    message = _fails(capsys, _run_download, tmp_path, params, "pets")
    assert "trainval.txt" in message and "sources.pets.annotations.url" in message
    _nothing_partial(tmp_path, "pets")


# --------------------------------------------------------------------------- weights


def test_weights_downloaded_checked_and_loadable(study, tmp_path):
    server, params = study
    p = write_params(tmp_path / "params.yaml", params)
    out = tmp_path / "pretrained"
    weights.main(["--params", str(p), "--out", str(out), "--cache", str(tmp_path / "cache" / "weights")])
    served = server.files["/hub/model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == served
    info = json.loads((out / "info.json").read_text())
    assert info["pretrained"] is True and info["sha256"] == sd.sha256(served)
    assert weights.weights_file(out) == out / "model.safetensors"

    from stages.lib.models import build_backbone

    model = build_backbone("test_convnext", out / "model.safetensors")
    expected = load_file(str(out / "model.safetensors"))
    for key, value in model.state_dict().items():
        assert (value == expected[key]).all(), key


def test_weights_wrong_checksum(study, tmp_path, capsys):
    server, params = study
    params["sources"]["weights"]["sha256"] = "f" * 64
    p = write_params(tmp_path / "params.yaml", params)
    out = tmp_path / "pretrained"
    message = _fails(capsys, weights.main, ["--params", str(p), "--out", str(out), "--cache", str(tmp_path / "c")])
    assert "checksum mismatch" in message and server.url("/hub/model.safetensors") in message
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c", "params.yaml"]
