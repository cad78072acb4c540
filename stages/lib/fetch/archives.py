"""Archive extraction that cannot escape its folder: `extract` unpacks a zip or tar (.gz, .bz2,
.xz) through `atomic_dir`, so a failure leaves no half-filled folder, and refuses members that
would write, or link, outside it.
"""

from __future__ import annotations

import gzip
import io
import os
import posixpath
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm import tqdm

from stages.lib.atomic import atomic_dir
from stages.lib.errors import PipelineError
from stages.lib.fetch.checksums import CHUNK

_MAX_LINK_HOPS = 40  # symlinks followed while resolving one archive path (like the OS limit)
_CORRUPT_HINT = "the archive looks corrupt or truncated; delete it and re-run the download"

_DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    zipfile.BadZipFile,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
)
try:  # lzma is optional in some Python builds
    import lzma

    _DECOMPRESS_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    pass


def extract(archive: Path, dest_dir: Path) -> list[str]:
    """Extract a zip or tar (.gz/.bz2/.xz) archive into `dest_dir`, refusing unsafe members.

    Returns the sorted posix paths of the extracted files, relative to `dest_dir`.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir)
    if not archive.is_file():
        raise PipelineError(f"archive {archive} does not exist; re-run the download")
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, dest_dir)
        if tarfile.is_tarfile(archive):
            return _extract_tar(archive, dest_dir)
    except PipelineError:
        raise
    except _DECOMPRESS_ERRORS as exc:
        raise PipelineError(f"cannot extract {archive} ({reason(exc)}): {_CORRUPT_HINT}") from None
    except OSError as exc:
        raise PipelineError(
            f"cannot extract {archive} into {dest_dir} ({reason(exc)}): check free disk space "
            f"and permissions; if the archive is damaged, delete it and re-run the download"
        ) from None
    raise PipelineError(
        f"{archive} is not a zip or tar archive; if it was downloaded, it may be damaged or an "
        "error page: delete it and re-run the download, and check the URL in params.yaml"
    )


def reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _unsafe(archive: Path, member: str, why: str) -> PipelineError:
    return PipelineError(
        f"refusing to extract {archive}: member {member!r} {why}; the archive is unsafe or "
        "corrupt: delete it and check the URL in params.yaml"
    )


def _check_name(archive: Path, name: str) -> str:
    """Normalize a member name to a relative posix path, or refuse it."""
    if (
        name.startswith(("/", "\\"))
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).drive
    ):
        raise _unsafe(
            archive, name, "has an absolute path and would be written outside the target folder"
        )
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        raise _unsafe(archive, name, "would be written outside the target folder")
    return normal


def _resolve(path: str, links: dict[str, str], follow_last: bool) -> str | None:
    """Resolve `path` inside the target folder as the OS would, given the archive's symlinks.

    `links` maps symlink locations (relative, normalized) to their targets. Returns the
    normalized relative result ("" is the folder itself) or None when it leaves the folder
    or loops.
    """
    pending = path.split("/")
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return None
            done.pop()
            continue
        done.append(part)
        target = links.get("/".join(done))
        if target is not None and (pending or follow_last):
            hops += 1
            if hops > _MAX_LINK_HOPS or target.startswith("/"):
                return None
            done.pop()
            pending = target.split("/") + pending
    return "/".join(done)


def _validate_tar(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse the archive if any member could write, or link, outside the target folder.

    Deliberate defence in depth, not a copy of tarfile's `filter="data"` (used below as well),
    which refuses most of the same members on its own:
    - the filter judges each member while it writes, against the links that exist so far: a
      symlink `m -> a/b/l/..` made before `a/b/l -> ../..` passes it and ends up pointing at the
      folder's parent. This check judges the final set of links, before a byte is written;
    - CPython fixed several ways around the filter only in June 2025 (CVE-2025-4517, -4330,
      -4138; python/cpython#135034: 3.11.13, 3.12.11, 3.13.4), and the project allows any 3.11.
    The temporary folder (`atomic_dir`) contains nothing: it only keeps a failed extraction
    from leaving a half-filled folder. tests/lib/test_fetch_archives.py extracts each unsafe
    archive with this check and with the filter alone.
    """
    outside = "would be written outside the target folder"
    links: dict[str, str] = {}  # symlinks created so far, as extraction would create them
    for member in members:
        _check_name(archive, member.name)
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise _unsafe(archive, member.name, "is a device, fifo or other special file")
        # Resolve the raw name: "l/.." through a symlink l is not what normpath says it is.
        where = _resolve(member.name, links, follow_last=not member.issym())
        if where is None or (where == "" and not member.isdir()):
            raise _unsafe(archive, member.name, f"{outside} (through a symlink)")
        if member.issym():
            target = member.linkname
            if target.startswith("/") or PureWindowsPath(target).drive:
                raise _unsafe(
                    archive,
                    member.name,
                    f"is a symlink to the absolute path {target!r}, outside the target folder",
                )
            if _resolve(posixpath.join(posixpath.dirname(where), target), links, True) is None:
                raise _unsafe(
                    archive,
                    member.name,
                    f"is a symlink to {target!r}, which resolves outside the target folder",
                )
            links[where] = target
        elif member.islnk():
            target = member.linkname
            if (
                target.startswith("/")
                or PureWindowsPath(target).drive
                or _resolve(target, links, True) is None
            ):
                raise _unsafe(
                    archive, member.name, f"is a hard link to {target!r}, outside the target folder"
                )
    # Symlinks are followed when used, not when made: re-check them against the final set.
    for where, target in links.items():
        if _resolve(posixpath.join(posixpath.dirname(where), target), links, True) is None:
            raise _unsafe(
                archive,
                where,
                f"is a symlink to {target!r}, which resolves outside "
                "the target folder once all the archive's symlinks exist",
            )


def _extract_tar(archive: Path, dest_dir: Path) -> list[str]:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()  # reads every header: finds truncation before writing
        # A plain tar cut at a member boundary reads as complete but lacks the end blocks.
        # (Compressed streams detect truncation themselves: EOFError.)
        plain = type(tf.fileobj) is io.BufferedReader
        if plain and archive.stat().st_size < tf.offset + tarfile.BLOCKSIZE:
            raise PipelineError(
                f"cannot extract {archive} (it ends without the end-of-archive marker): "
                f"{_CORRUPT_HINT}"
            )
        _validate_tar(archive, members)
        with atomic_dir(dest_dir) as tmp:
            bar = tqdm(
                members, desc=f"extract {archive.name}", unit="file", disable=None, leave=False
            )
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the library's own net, behind _validate_tar
                try:
                    tf.extractall(tmp, members=bar, filter="data")
                except tarfile.FilterError as exc:
                    member = exc.tarinfo.name if getattr(exc, "tarinfo", None) else "?"
                    why = f"would be written outside the target folder or is unsafe ({exc})"
                    raise _unsafe(archive, member, why) from None
            else:  # pragma: no cover
                tf.extractall(tmp, members=bar)
            return list_files(tmp)


def _extract_zip(archive: Path, dest_dir: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        names = [_check_name(archive, info.filename) for info in infos]
        for info, name in zip(infos, names, strict=True):
            if name == "." and not info.is_dir():
                raise _unsafe(archive, info.filename, "has no file name")
        with atomic_dir(dest_dir) as tmp:
            pairs = list(zip(infos, names, strict=True))
            bar = tqdm(
                pairs, desc=f"extract {archive.name}", unit="file", disable=None, leave=False
            )
            for info, name in bar:
                target = tmp / name
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)  # checks the CRC at the end
                except (RuntimeError, NotImplementedError) as exc:  # encrypted, odd compression
                    raise PipelineError(
                        f"cannot extract {info.filename!r} from {archive} ({exc}); repack the "
                        "archive without encryption, or extract it by hand"
                    ) from None
            return list_files(tmp)


def list_files(root: Path) -> list[str]:
    """Sorted posix paths, relative to `root`, of everything under it that is not a folder."""
    found = []
    for folder, _dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        found.extend((rel / name).as_posix() for name in files)
    return sorted(found)
