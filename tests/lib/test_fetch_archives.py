"""Extraction writes a whole folder or nothing, and refuses every member that would write, or
link, outside it."""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

from stages.lib.errors import PipelineError
from stages.lib.fetch import archives
from stages.lib.fetch.archives import extract

BLOB = random.Random(0).randbytes(300_000)


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
def test_a_tar_of_any_compression_extracts_every_file(tmp_path, suffix, mode):
    archive = _make_tar(tmp_path / f"a{suffix}", mode)
    dest = tmp_path / "out" / "x"
    names = extract(archive, dest)
    assert names == sorted(FILES)
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x"]  # no temporary left over


def test_a_zip_extracts_every_file_and_folder(tmp_path):
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


def _assert_refused_and_old_folder_kept(tmp_path: Path, archive: Path, existing: bool, archives: list[str]) -> None:
    """Extracting the damaged `archive` into `out` (an existing folder or none) is refused in one line
    naming it; the old folder is as it was (or none is made), and nothing else is left in `tmp_path`."""
    dest = _existing(tmp_path) if existing else tmp_path / "out"
    with pytest.raises(PipelineError, match="delete it and re-run the download") as info:
        extract(archive, dest)
    assert str(archive) in str(info.value)
    if existing:
        assert _snapshot(dest) == {"keep": None, "keep/me.txt": b"precious"}
    else:
        assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(archives + (["out"] if existing else []))


@pytest.mark.parametrize("existing", [False, True])
def test_a_truncated_tar_gz_is_refused_and_the_old_folder_kept(tmp_path, existing):
    files = {"a.bin": random.Random(2).randbytes(200_000), "b.bin": BLOB[:100_000]}
    full = _make_tar(tmp_path / "full.tar.gz", files=files).read_bytes()
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(full[: len(full) // 2])
    _assert_refused_and_old_folder_kept(tmp_path, archive, existing, ["full.tar.gz", "cut.tar.gz"])


def test_extract_plain_tar_cut_at_a_member_boundary(tmp_path):
    full = _make_tar(tmp_path / "full.tar", "w").read_bytes()
    first = 512 + 512  # the header and the padded data of "top.txt"
    archive = tmp_path / "cut.tar"
    archive.write_bytes(full[:first])
    with pytest.raises(PipelineError, match=r"end-of-archive marker.*delete it and re-run"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_a_corrupted_zip_is_refused_and_the_old_folder_kept(tmp_path, existing):
    payload = b"0123456789abcdef" * 4096
    good = _make_zip(tmp_path / "good.zip", files={"x/payload.bin": payload}).read_bytes()
    at = good.index(payload) + 1000
    archive = tmp_path / "bad.zip"
    archive.write_bytes(good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :])
    _assert_refused_and_old_folder_kept(tmp_path, archive, existing, ["good.zip", "bad.zip"])


def test_a_file_that_is_no_archive_is_refused(tmp_path):
    archive = tmp_path / "page.zip"
    archive.write_text("<html>Not found</html>")
    with pytest.raises(PipelineError, match="not a zip or tar archive"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


FILTER_REFUSES = sorted(set(UNSAFE) - {"absolute", "late-symlink"})


@pytest.mark.parametrize("case", FILTER_REFUSES)
def test_tarfiles_data_filter_alone_refuses_most_unsafe_members_too(tmp_path, monkeypatch, case):
    """Without the member checks (`_validate_tar`) tarfile's `filter="data"` still refuses these,
    and the temporary folder leaves nothing behind but the target's (empty) parent folders."""
    monkeypatch.setattr(archives, "_validate_tar", lambda archive, members: None)
    dest = tmp_path / "one" / "two" / "out"
    archive = _tar_with(tmp_path / "bad.tar.gz", *UNSAFE[case])
    before = _snapshot(tmp_path)
    with pytest.raises(PipelineError, match=f"refusing to extract {archive}"):
        extract(archive, dest)
    assert _snapshot(tmp_path) == {**before, "one": None, "one/two": None}  # only the empty parents


def test_tarfiles_data_filter_alone_makes_an_absolute_name_relative(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "_validate_tar", lambda archive, members: None)
    outside = tmp_path / "abs-evil"
    names = extract(_tar_with(tmp_path / "bad.tar.gz", (_member(str(outside)), b"evil")), tmp_path / "out")
    assert names == sorted(["fine.txt", str(outside).lstrip("/")]) and not outside.exists()


def test_only_the_member_checks_see_a_symlink_that_escapes_once_a_later_one_exists(tmp_path, monkeypatch):
    """Why `_validate_tar` stays: the data filter judges `m -> a/b/l/..` when `a/b/l` does not
    exist yet (inside), then lets `a/b/l -> ../..` in (inside too), and `m` ends up pointing at
    the folder's parent. The member checks judge the final set of links and refuse it."""
    archive = _tar_with(tmp_path / "bad.tar.gz", *UNSAFE["late-symlink"])
    with pytest.raises(PipelineError, match="once all the archive's symlinks exist"):
        extract(archive, tmp_path / "checked")
    monkeypatch.setattr(archives, "_validate_tar", lambda archive, members: None)
    dest = tmp_path / "one" / "out"
    extract(archive, dest)
    assert (dest / "m").resolve() == dest.parent
