"""Downloads resume, retry, verify and say what went wrong in one line, against the loopback
server of tests/http_files.py (no internet needed)."""

from __future__ import annotations

import hashlib
import random
import socket
from pathlib import Path

import pytest

from stages.lib.errors import PipelineError
from stages.lib.fetch import downloads
from stages.lib.fetch.checksums import file_digest
from stages.lib.fetch.downloads import download

BLOB = random.Random(0).randbytes(300_000)
OTHER = random.Random(1).randbytes(300_000)  # what a mirror serving a different file sends
BLOB_MD5 = hashlib.md5(BLOB).hexdigest()
BLOB_SHA256 = hashlib.sha256(BLOB).hexdigest()
STALL_S = 1.0  # how long /slow-once goes quiet mid-body; the client's timeout is shorter


@pytest.fixture
def server(http_files):
    """The loopback server with the files and the misbehaviours these tests download."""
    for path in ("/file.bin", "/norange.bin", "/flaky500", "/always500", "/trunc-once", "/trunc-always", "/slow-once"):
        http_files.files[path] = BLOB
    http_files.files["/other.bin"] = OTHER
    http_files.answers.update({
        "/norange.bin": lambda hit: {"ranged": False},
        "/flaky500": lambda hit: 500 if hit <= 2 else {},
        "/always500": lambda hit: 500,
        "/trunc-once": lambda hit: {"truncate": hit == 1},
        "/trunc-always": lambda hit: {"truncate": True},
        "/slow-once": lambda hit: {"stall": STALL_S if hit == 1 else 0.0},
    })
    return http_files


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _fast(**kwargs):
    return {"retries": 3, "backoff": 0.0, "timeout": 5.0, **kwargs}


def test_file_digest_is_the_md5_or_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(BLOB)
    assert file_digest(path, "md5") == BLOB_MD5
    assert file_digest(path, "sha256") == BLOB_SHA256


def test_a_verified_download_is_not_downloaded_again(server, tmp_path):
    dest = tmp_path / "sub" / "file.bin"
    result = download(server.url("/file.bin"), dest, sha256=BLOB_SHA256, **_fast())
    assert result == {
        "url": server.url("/file.bin"),
        "bytes": len(BLOB),
        "md5": BLOB_MD5,
        "sha256": BLOB_SHA256,
    }
    assert dest.read_bytes() == BLOB
    assert not _part(dest).exists()
    assert server.ranges("/file.bin") == [None]

    again = download(server.url("/file.bin"), dest, sha256=BLOB_SHA256, **_fast())
    assert again == result
    assert server.hits("/file.bin") == 1  # skipped: no new request
    assert dest.read_bytes() == BLOB


def test_existing_dest_with_wrong_checksum_is_downloaded_again(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    result = download(server.url("/file.bin"), dest, md5=BLOB_MD5, **_fast())
    assert result["md5"] == BLOB_MD5
    assert dest.read_bytes() == BLOB
    assert server.hits("/file.bin") == 1


def test_a_partial_download_is_resumed_with_a_range_request(server, tmp_path):
    dest = tmp_path / "file.bin"
    half = len(BLOB) // 2
    _part(dest).write_bytes(BLOB[:half])
    result = download(server.url("/file.bin"), dest, md5=BLOB_MD5, sha256=BLOB_SHA256, **_fast())
    assert server.ranges("/file.bin") == [f"bytes={half}-"]
    assert result["md5"] == BLOB_MD5 and result["sha256"] == BLOB_SHA256
    assert dest.read_bytes() == BLOB
    assert not _part(dest).exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(b"garbage that must not stay at the front")
    result = download(server.url("/norange.bin"), dest, sha256=BLOB_SHA256, **_fast())
    assert server.ranges("/norange.bin")[0] is not None  # it asked to resume ...
    assert result["bytes"] == len(BLOB)  # ... got 200 and started over
    assert dest.read_bytes() == BLOB
    assert not _part(dest).exists()


def test_416_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(b"x" * (len(BLOB) + 10))  # longer than the file: 416
    result = download(server.url("/file.bin"), dest, md5=BLOB_MD5, **_fast())
    assert server.ranges("/file.bin") == [f"bytes={len(BLOB) + 10}-", None]
    assert result["md5"] == BLOB_MD5
    assert dest.read_bytes() == BLOB
    assert not _part(dest).exists()


def test_server_errors_are_retried_until_the_download_succeeds(server, tmp_path):
    dest = tmp_path / "file.bin"
    result = download(server.url("/flaky500"), dest, sha256=BLOB_SHA256, **_fast(retries=3))
    assert server.hits("/flaky500") == 3
    assert result["sha256"] == BLOB_SHA256
    assert dest.read_bytes() == BLOB
    assert not _part(dest).exists()


def _fails_after_2_retries(server, dest: Path, path: str, match: str, **checksum) -> None:
    """Downloading `path` with 2 retries fails in one line naming its URL after 3 requests, and no file
    is left at `dest`."""
    url = server.url(path)
    with pytest.raises(PipelineError, match=match) as info:
        download(url, dest, **checksum, **_fast(retries=2))
    assert url in str(info.value)
    assert "\n" not in str(info.value)
    assert server.hits(path) == 3  # the first try and 2 retries
    assert not dest.exists()


def test_always_500_fails_after_retries(server, tmp_path):
    _fails_after_2_retries(server, tmp_path / "file.bin", "/always500", "500")


def test_404_is_not_retried(server, tmp_path):
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(BLOB[:100])  # a stale partial download is removed too
    url = server.url("/missing")
    with pytest.raises(PipelineError, match="404") as info:
        download(url, dest, **_fast())
    message = str(info.value)
    assert url in message and "params.yaml" in message and "sources" in message
    assert server.hits("/missing") == 1
    assert not dest.exists()
    assert not _part(dest).exists()


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_a_wrong_checksum_deletes_the_download_and_names_both_digests(server, tmp_path, algorithm):
    dest = tmp_path / "file.bin"
    expected = {"md5": BLOB_MD5, "sha256": BLOB_SHA256}[algorithm]
    actual = hashlib.new(algorithm, OTHER).hexdigest()
    url = server.url("/other.bin")
    with pytest.raises(PipelineError) as info:
        download(url, dest, **{algorithm: expected}, **_fast())
    message = str(info.value)
    assert url in message and algorithm in message
    assert expected in message and actual in message
    assert "re-run" in message
    assert not dest.exists()
    assert not _part(dest).exists()


def test_malformed_checksum_is_refused_before_downloading(server, tmp_path):
    with pytest.raises(PipelineError, match="not a 32-digit hex digest"):
        download(server.url("/file.bin"), tmp_path / "f", md5="abc", **_fast())
    assert server.hits("/file.bin") == 0


def test_truncated_once_resumes(server, tmp_path):
    dest = tmp_path / "file.bin"
    result = download(server.url("/trunc-once"), dest, sha256=BLOB_SHA256, **_fast())
    ranges = server.ranges("/trunc-once")
    assert ranges == [None, f"bytes={len(BLOB) // 2}-"]  # the retry resumed
    assert result["sha256"] == BLOB_SHA256 and result["bytes"] == len(BLOB)
    assert dest.read_bytes() == BLOB
    assert not _part(dest).exists()


def test_always_truncated_fails_and_keeps_part_for_resume(server, tmp_path):
    dest = tmp_path / "file.bin"
    _fails_after_2_retries(server, dest, "/trunc-always", "truncated", sha256=BLOB_SHA256)
    part = _part(dest)  # transient: kept so that a re-run resumes, and it is a true prefix
    assert part.exists() and BLOB.startswith(part.read_bytes())


def test_timeout_mid_body_retries_and_resumes(server, tmp_path):
    dest = tmp_path / "file.bin"
    result = download(server.url("/slow-once"), dest, md5=BLOB_MD5, **_fast(timeout=0.3))
    ranges = server.ranges("/slow-once")
    assert len(ranges) == 2 and ranges[1] is not None  # resumed after the timeout
    assert result["md5"] == BLOB_MD5
    assert dest.read_bytes() == BLOB
    assert not _part(dest).exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_says_how_to_work_offline(tmp_path):
    dest = tmp_path / "file.bin"
    url = f"http://127.0.0.1:{_free_port()}/file.bin"
    with pytest.raises(PipelineError, match="make demo") as info:
        download(url, dest, retries=1, backoff=0.0, timeout=2.0)
    message = str(info.value)
    assert message.startswith(f"cannot reach {url} (")
    assert "params.yaml" in message and "\n" not in message
    assert not dest.exists()
    assert not _part(dest).exists()


def test_dns_failure_says_how_to_work_offline(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    dest = tmp_path / "file.bin"
    with pytest.raises(PipelineError, match=r"cannot reach .*name lookup failed.*make demo"):
        download("http://data.example.invalid/x.zip", dest, retries=1, backoff=0.0)
    assert not dest.exists()


def test_backoff_sleeps_double_each_retry(server, tmp_path, monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(downloads.time, "sleep", sleeps.append)
    with pytest.raises(PipelineError):
        download(server.url("/always500"), tmp_path / "f", retries=3, backoff=0.5, timeout=5.0)
    assert sleeps == [0.5, 1.0, 2.0]


def test_without_a_checksum_the_first_download_is_recorded_and_verified_later(server, tmp_path):
    dest = tmp_path / "file.bin"
    first = download(server.url("/file.bin"), dest, **_fast())
    record = tmp_path / "file.bin.sha256"
    assert record.read_text().split() == [first["sha256"], server.url("/file.bin")]
    hits = server.hits("/file.bin")
    again = download(server.url("/file.bin"), dest, **_fast())  # verified against the record: no request
    assert again["sha256"] == first["sha256"] and server.hits("/file.bin") == hits
    dest.unlink()
    record.write_text(f"{'0' * 64}  {server.url('/file.bin')}\n")  # as if the server's file had changed
    with pytest.raises(PipelineError, match=r"recorded in .*file\.bin\.sha256: delete that record") as info:
        download(server.url("/file.bin"), dest, **_fast())
    assert "\n" not in str(info.value) and not dest.exists()
    record.write_text(f"{'0' * 64}  {server.url('/other.bin')}\n")  # recorded for another URL: ignored
    assert download(server.url("/file.bin"), dest, **_fast())["sha256"] == first["sha256"]
