"""Tests for stages.lib.fetch against a local HTTP server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import hashlib
import io
import random
import socket
import sys
import tarfile
import threading
import types
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stages.lib import fetch
from stages.lib.errors import PipelineError
from stages.lib.fetch import download, download_drive_folder, extract, file_digest
from tests.http_files import respond, running

BLOB = random.Random(0).randbytes(300_000)
OTHER = random.Random(1).randbytes(300_000)  # what a mirror serving a different file sends
BLOB_MD5 = hashlib.md5(BLOB).hexdigest()
BLOB_SHA256 = hashlib.sha256(BLOB).hexdigest()
STALL_S = 1.0  # how long /slow-once goes quiet mid-body; the client's timeout is shorter


# --------------------------------------------------------------------------- the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)

    def handle_error(self, request, client_address) -> None:
        pass  # the tests hang up on purpose (timeouts); keep the output quiet

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if p == path)

    def ranges(self, path: str) -> list[str | None]:
        with self.lock:
            return [r for p, r in self.requests if p == path]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Range")))
            hit = sum(1 for p, _ in self.server.requests if p == self.path)
        path = self.path
        if path == "/file.bin":
            self._send(BLOB)
        elif path == "/norange.bin":
            self._send(BLOB, ranged=False)
        elif path == "/other.bin":
            self._send(OTHER)
        elif path == "/missing":
            self._status(404)
        elif path == "/flaky500":
            self._status(500) if hit <= 2 else self._send(BLOB)
        elif path == "/always500":
            self._status(500)
        elif path == "/trunc-once":
            self._send(BLOB, truncate=hit == 1)
        elif path == "/trunc-always":
            self._send(BLOB, truncate=True)
        elif path == "/slow-once":
            self._send(BLOB, stall=STALL_S if hit == 1 else 0.0)
        else:
            self._status(404)

    def _status(self, code: int) -> None:
        body = f"status {code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send(self, body: bytes, *, ranged: bool = True, truncate: bool = False, stall: float = 0.0) -> None:
        respond(self, body, ranged=ranged, truncate=truncate, stall=stall)


@pytest.fixture
def server():
    with running(_Server()) as srv:
        yield srv


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _fast(**kwargs):
    return {"retries": 3, "backoff": 0.0, "timeout": 5.0, **kwargs}


# --------------------------------------------------------------------------- download


def test_file_digest(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(BLOB)
    assert file_digest(path, "md5") == BLOB_MD5
    assert file_digest(path, "sha256") == BLOB_SHA256


def test_clean_download_then_skip(server, tmp_path):
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


def test_resume_from_part(server, tmp_path):
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


def test_500_twice_then_ok(server, tmp_path):
    dest = tmp_path / "file.bin"
    result = download(server.url("/flaky500"), dest, sha256=BLOB_SHA256, **_fast(retries=3))
    assert server.hits("/flaky500") == 3
    assert result["sha256"] == BLOB_SHA256
    assert dest.read_bytes() == BLOB
    assert not _part(dest).exists()


def test_always_500_fails_after_retries(server, tmp_path):
    dest = tmp_path / "file.bin"
    url = server.url("/always500")
    with pytest.raises(PipelineError, match="500") as info:
        download(url, dest, **_fast(retries=2))
    assert url in str(info.value)
    assert "\n" not in str(info.value)
    assert server.hits("/always500") == 3  # the first try and 2 retries
    assert not dest.exists()


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
def test_wrong_checksum(server, tmp_path, algorithm):
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
    url = server.url("/trunc-always")
    with pytest.raises(PipelineError, match="truncated") as info:
        download(url, dest, sha256=BLOB_SHA256, **_fast(retries=2))
    assert url in str(info.value)
    assert server.hits("/trunc-always") == 3
    assert not dest.exists()
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
    monkeypatch.setattr(fetch.time, "sleep", sleeps.append)
    with pytest.raises(PipelineError):
        download(server.url("/always500"), tmp_path / "f", retries=3, backoff=0.5, timeout=5.0)
    assert sleeps == [0.5, 1.0, 2.0]


# --------------------------------------------------------------------------- extract


FILES = {
    "top.txt": b"top\n",
    "data/a.bin": BLOB[:5000],
    "data/deeper/b.txt": b"bee\n",
    "data/deeper/deepest/c.txt": b"sea\n",
}


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its content (None for folders and links)."""
    return {
        p.relative_to(root).as_posix(): (
            p.read_bytes() if p.is_file() and not p.is_symlink() else None
        )
        for p in root.rglob("*")
    }


def _make_tar(path: Path, mode: str = "w:gz", files: dict[str, bytes] = FILES) -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _make_zip(path: Path, files: dict[str, bytes] = FILES, **kwargs) -> Path:
    with zipfile.ZipFile(path, "w", **kwargs) as zf:
        zf.writestr("data/empty-dir/", b"")
        for name, data in files.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("suffix", "mode"),
    [
        (".tar.gz", "w:gz"),
        (".tgz", "w:gz"),
        (".tar", "w"),
        (".tar.bz2", "w:bz2"),
        (".tar.xz", "w:xz"),
    ],
)
def test_extract_tar(tmp_path, suffix, mode):
    archive = _make_tar(tmp_path / f"a{suffix}", mode)
    dest = tmp_path / "out" / "x"
    names = extract(archive, dest)
    assert names == sorted(FILES)
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x"]  # no temporary left over


def test_extract_zip(tmp_path):
    archive = _make_zip(tmp_path / "a.zip", compression=zipfile.ZIP_DEFLATED)
    dest = tmp_path / "out"
    assert extract(archive, dest) == sorted(FILES)
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert (dest / "data" / "empty-dir").is_dir()


def test_extract_replaces_existing_folder_whole(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    assert extract(_make_zip(tmp_path / "a.zip"), dest) == sorted(FILES)
    assert not (dest / "old.txt").exists()


def _tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))  # a harmless member first: nothing may be written
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


UNSAFE = {
    "absolute": [(_member("/ABSOLUTE"), b"evil")],  # name rewritten to a path under tmp_path
    "dotdot": [(_member("../evil"), b"evil")],
    "deep-dotdot": [(_member("a/../../../evil"), b"evil")],
    "symlink-abs": [(_member("passwd", tarfile.SYMTYPE, "/etc/passwd"), b"")],
    "symlink-up": [(_member("a/link", tarfile.SYMTYPE, "../../x"), b"")],
    "hardlink-out": [(_member("hard", tarfile.LNKTYPE, "../outside.txt"), b"")],
    "hardlink-abs": [(_member("hard", tarfile.LNKTYPE, "/etc/passwd"), b"")],
    "through-symlink": [  # each link stays inside, but a/b/l/.. is the folder's parent
        (_member("a/b/l", tarfile.SYMTYPE, "../.."), b""),
        (_member("a/b/l/../evil"), b"evil"),
    ],
    "write-via-symlink": [  # a symlink to the parent (refused), then a file through it
        (_member("up", tarfile.SYMTYPE, ".."), b""),
        (_member("up/evil"), b"evil"),
    ],
    "late-symlink": [  # m is fine when made, escapes once a/b/l exists
        (_member("m", tarfile.SYMTYPE, "a/b/l/.."), b""),
        (_member("a/b/l", tarfile.SYMTYPE, "../.."), b""),
    ],
    "device": [(_member("dev", tarfile.CHRTYPE), b"")],
    "fifo": [(_member("fifo", tarfile.FIFOTYPE), b"")],
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_extract_refuses_unsafe_members(tmp_path, case):
    members = UNSAFE[case]
    if case == "absolute":
        members = [(_member(str(tmp_path / "abs-evil")), b"evil")]
    dest = tmp_path / "one" / "two" / "out"
    archive = _tar_with(tmp_path / "bad.tar.gz", *members)
    before = _snapshot(tmp_path)
    with pytest.raises(PipelineError) as info:
        extract(archive, dest)
    message = str(info.value)
    assert str(archive) in message
    culprit = {"late-symlink": "m", "write-via-symlink": "up"}.get(case, members[-1][0].name)
    assert f"member {culprit!r}" in message
    if case in ("device", "fifo"):
        assert "special file" in message
    else:
        assert "outside the target folder" in message
    assert "\n" not in message
    assert not dest.exists()
    after = _snapshot(tmp_path)
    assert after == before
    assert not (tmp_path / "abs-evil").exists()


def test_extract_allows_symlinks_that_stay_inside(tmp_path):
    archive = _tar_with(
        tmp_path / "ok.tar.gz",
        (_member("dir/real.txt"), b"real"),
        (_member("dir/alias.txt", tarfile.SYMTYPE, "real.txt"), b""),
        (_member("top-alias", tarfile.SYMTYPE, "dir/../dir/real.txt"), b""),
        (_member("hard.txt", tarfile.LNKTYPE, "dir/real.txt"), b""),
    )
    dest = tmp_path / "out"
    names = extract(archive, dest)
    assert names == ["dir/alias.txt", "dir/real.txt", "fine.txt", "hard.txt", "top-alias"]
    assert (dest / "dir" / "alias.txt").read_bytes() == b"real"
    assert (dest / "top-alias").read_bytes() == b"real"
    assert (dest / "hard.txt").read_bytes() == b"real"


def test_extract_zip_refuses_escaping_names(tmp_path):
    for name in ("../evil.txt", "/abs/evil.txt", "a/../../evil.txt"):
        archive = tmp_path / "bad.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("fine.txt", b"ok")
            zf.writestr(name, b"evil")
        dest = tmp_path / "out"
        with pytest.raises(PipelineError, match="outside the target folder") as info:
            extract(archive, dest)
        assert repr(name) in str(info.value)
        assert not dest.exists()
        assert not (tmp_path.parent / "evil.txt").exists()


def _existing(tmp_path: Path) -> Path:
    dest = tmp_path / "out"
    (dest / "keep").mkdir(parents=True)
    (dest / "keep" / "me.txt").write_text("precious")
    return dest


@pytest.mark.parametrize("existing", [False, True])
def test_extract_truncated_tar_gz(tmp_path, existing):
    files = {"a.bin": random.Random(2).randbytes(200_000), "b.bin": BLOB[:100_000]}
    full = _make_tar(tmp_path / "full.tar.gz", files=files).read_bytes()
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(full[: len(full) // 2])
    dest = _existing(tmp_path) if existing else tmp_path / "out"
    with pytest.raises(PipelineError, match="delete it and re-run the download") as info:
        extract(archive, dest)
    assert str(archive) in str(info.value)
    if existing:
        assert _snapshot(dest) == {"keep": None, "keep/me.txt": b"precious"}
    else:
        assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["full.tar.gz", "cut.tar.gz"] + (["out"] if existing else [])
    )


def test_extract_plain_tar_cut_at_a_member_boundary(tmp_path):
    full = _make_tar(tmp_path / "full.tar", "w").read_bytes()
    first = 512 + 512  # the header and the padded data of "top.txt"
    archive = tmp_path / "cut.tar"
    archive.write_bytes(full[:first])
    with pytest.raises(PipelineError, match=r"end-of-archive marker.*delete it and re-run"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_extract_corrupted_zip(tmp_path, existing):
    payload = b"0123456789abcdef" * 4096
    good = _make_zip(tmp_path / "good.zip", files={"x/payload.bin": payload}).read_bytes()
    at = good.index(payload) + 1000
    archive = tmp_path / "bad.zip"
    archive.write_bytes(good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :])
    dest = _existing(tmp_path) if existing else tmp_path / "out"
    with pytest.raises(PipelineError, match="delete it and re-run the download") as info:
        extract(archive, dest)
    assert str(archive) in str(info.value)
    if existing:
        assert _snapshot(dest) == {"keep": None, "keep/me.txt": b"precious"}
    else:
        assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["good.zip", "bad.zip"] + (["out"] if existing else [])
    )


def test_extract_not_an_archive(tmp_path):
    archive = tmp_path / "page.zip"
    archive.write_text("<html>Not found</html>")
    with pytest.raises(PipelineError, match="not a zip or tar archive"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- Google Drive


def _fake_gdown(monkeypatch, download_folder) -> None:
    module = types.ModuleType("gdown")
    module.download_folder = download_folder
    monkeypatch.setitem(sys.modules, "gdown", module)


def test_drive_folder_success(tmp_path, monkeypatch):
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


def test_drive_folder_failure(tmp_path, monkeypatch):
    def download_folder(**kwargs):
        (Path(kwargs["output"]) / "half.csv").write_text("partial")
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    _fake_gdown(monkeypatch, download_folder)
    dest = tmp_path / "annotations"
    with pytest.raises(PipelineError, match=r"sources.annotations.url") as info:
        download_drive_folder("FOLDER123", dest)
    assert "FOLDER123" in str(info.value) and "Too many users" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_drive_folder_returns_none(tmp_path, monkeypatch):
    _fake_gdown(monkeypatch, lambda **kwargs: None)
    dest = tmp_path / "annotations"
    with pytest.raises(PipelineError, match=r"sources.annotations.url"):
        download_drive_folder("FOLDER123", dest)
    assert list(tmp_path.iterdir()) == []


def test_drive_folder_without_gdown(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)  # makes `import gdown` fail
    dest = tmp_path / "annotations"
    with pytest.raises(PipelineError, match=r"gdown.*not installed.*sources.annotations.url"):
        download_drive_folder("FOLDER123", dest)
    assert not dest.exists()


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
