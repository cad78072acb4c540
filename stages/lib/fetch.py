"""Fetch data safely: resumable, checked downloads and archive extraction that cannot escape.

`download` writes to `<dest>.part`, resumes it with an HTTP Range request, retries transient
failures, checks size and checksums, and only then renames onto `dest`. `extract` validates
every archive member before writing any, and writes through `atomic_dir`, so a failure leaves
no half-filled folder. Every user-fixable problem is a one-line `PipelineError`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import logging
import os
import posixpath
import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm import tqdm

from stages.lib.atomic import atomic_dir
from stages.lib.errors import PipelineError

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes read or hashed at a time
USER_AGENT = "stages-fetch/1.0 (python urllib)"
ALGORITHMS = ("md5", "sha256")
_HEX_LENGTH = {"md5": 32, "sha256": 64}
_MAX_RESTARTS = 3  # restarts from zero (200 to a Range request, 416, bad Content-Range)
_MAX_LINK_HOPS = 40  # symlinks followed while resolving one archive path (like the OS limit)

_OFFLINE_HINT = (
    "this stage needs the network; run it on a machine with internet access, point params.yaml "
    "`sources` at a reachable mirror, or run `make demo`, which works offline"
)
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


# --------------------------------------------------------------------------- checksums


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest ("md5" or "sha256") of the file at `path`, read in chunks so size is no issue."""
    return _file_digests(Path(path), (algorithm,))[algorithm]


def _file_digests(path: Path, algorithms: Iterable[str]) -> dict[str, str]:
    """Hex digests of `path` for several algorithms in one pass."""
    hashers = {name: _new_hasher(name) for name in algorithms}
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _new_hasher(algorithm: str):
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}; use one of {ALGORITHMS}")
    return hashlib.new(algorithm)


def _expected_digests(url: str, md5: str | None, sha256: str | None) -> dict[str, str]:
    """The checksums the caller gave, lower-cased, each checked to look like a hex digest."""
    expected = {}
    for name, value in (("md5", md5), ("sha256", sha256)):
        if value is None:
            continue
        value = str(value).strip().lower()
        if not re.fullmatch(rf"[0-9a-f]{{{_HEX_LENGTH[name]}}}", value):
            raise PipelineError(
                f"the {name} given for {url} ({value!r}) is not a {_HEX_LENGTH[name]}-digit hex "
                f"digest; fix it in params.yaml (`sources` section) or set it to null"
            )
        expected[name] = value
    return expected


# --------------------------------------------------------------------------- download


class _TransientError(Exception):
    """A failure worth retrying: the next attempt resumes from the bytes already in `.part`."""

    def __init__(self, reason: str, *, connect: bool = False) -> None:
        super().__init__(reason)
        self.connect = connect  # True: the server was never reached on this attempt


class _RestartError(Exception):
    """The `.part` cannot be resumed; delete it and start again from zero."""


def download(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    pin_as: str = "its checksum",
) -> dict:
    """Download `url` to `dest` via a resumable `.part` file, retrying and checking checksums.

    With no checksum given, the sha256 of the first download is recorded beside `dest`
    (`<dest>.sha256`, with the URL), printed with a hint to pin it as `pin_as` (a params key),
    and later downloads of the same URL are verified against it.
    Returns {"url", "bytes", "md5", "sha256"} so a caller can pin a checksum on first download.
    """
    dest = Path(dest)
    record = dest.with_name(dest.name + ".sha256")
    recorded = None
    if md5 is None and sha256 is None:
        recorded = _read_record(record, url)
        sha256 = recorded
    expected = _expected_digests(url, md5, sha256)
    if dest.exists():
        if expected:
            actual = _file_digests(dest, ALGORITHMS)
            if all(actual[name] == value for name, value in expected.items()):
                log.info("%s is already downloaded and its checksum matches; skipping", dest)
                return {"url": url, "bytes": dest.stat().st_size, **actual}
            log.warning("%s exists but its checksum does not match; downloading again", dest)
        else:
            log.info(
                "%s exists but no checksum is given to verify it; downloading again "
                "(pin a checksum in params.yaml to let re-runs skip this)",
                dest,
            )
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    attempt = 0
    restarts = 0
    reached = False  # some attempt got an HTTP answer, so the network works
    while True:
        try:
            size, total, digests = _fetch_once(url, part, timeout)
            break
        except _RestartError as exc:
            restarts += 1
            part.unlink(missing_ok=True)
            if restarts > _MAX_RESTARTS:
                raise PipelineError(
                    f"download of {url} keeps failing to resume ({exc}); re-run later, or point "
                    f"params.yaml `sources` at a mirror"
                ) from None
            log.info("cannot resume %s (%s); starting again from zero", url, exc)
        except _TransientError as exc:
            reached = reached or not exc.connect
            if attempt >= retries:
                if not reached:
                    raise PipelineError(f"cannot reach {url} ({exc}): {_OFFLINE_HINT}") from None
                kept = (
                    f"the {part.stat().st_size} bytes received are kept in {part} and a re-run "
                    "resumes them; "
                    if part.exists() and part.stat().st_size
                    else ""
                )
                raise PipelineError(
                    f"download of {url} failed after {attempt + 1} attempts ({exc}); {kept}"
                    f"re-run later, or point params.yaml `sources` at a mirror"
                ) from None
            delay = backoff * 2**attempt
            attempt += 1
            log.warning(
                "download of %s failed (%s); retry %d of %d in %.1f s",
                url,
                exc,
                attempt,
                retries,
                delay,
            )
            time.sleep(delay)
        except (KeyboardInterrupt, SystemExit):
            raise  # keep the `.part`: a re-run resumes it
        except BaseException:
            part.unlink(missing_ok=True)  # a permanent error (4xx, bad URL, cannot write)
            raise

    if total is not None and size != total:  # _fetch_once guarantees size >= total here
        part.unlink(missing_ok=True)
        raise PipelineError(
            f"download of {url} gave {size} bytes but the server announced {total}; re-run to "
            "download again, and if it persists point params.yaml `sources` at a mirror"
        )
    for name, value in expected.items():
        if digests[name] != value:
            part.unlink(missing_ok=True)
            fix = (
                f"the server now serves another file than at the first download, whose sha256 is "
                f"recorded in {record}: delete that record to accept the new file"
                if recorded
                else f"the server serves a different file: update the {name} in params.yaml"
            )
            raise PipelineError(
                f"checksum mismatch for {url}: {name} expected {value}, got {digests[name]}; "
                f"re-run to download again; if it persists, {fix} only if you trust the source"
            )
    os.replace(part, dest)
    log.info("downloaded %s (%d bytes) to %s", url, size, dest)
    if md5 is None and sha256 is None:
        record.write_text(f"{digests['sha256']}  {url}\n")
        log.warning(
            "no checksum is pinned for %s; its sha256 is %s (recorded in %s, later downloads are checked "
            "against it). Pin it in params.yaml as %s to verify it on every machine.",
            url, digests["sha256"], record, pin_as,
        )
    return {"url": url, "bytes": size, **digests}


def _read_record(record: Path, url: str) -> str | None:
    """The sha256 an earlier download of `url` recorded, or None (none, another URL, unreadable)."""
    try:
        digest, _, recorded_url = record.read_text().strip().partition("  ")
    except (OSError, UnicodeDecodeError):
        return None
    if recorded_url != url or not re.fullmatch(r"[0-9a-f]{64}", digest):
        return None
    return digest


def _fetch_once(url: str, part: Path, timeout: float) -> tuple[int, int | None, dict[str, str]]:
    """One attempt: append to `part` from where it ends. Returns (size, expected size, digests).

    Raises _TransientError (retry), _RestartError (resume impossible) or PipelineError (give up).
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        request = urllib.request.Request(url, headers=headers)
    except ValueError as exc:
        raise PipelineError(
            f"invalid URL {url!r} ({exc}); fix it in params.yaml (`sources` section)"
        ) from None
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            reason = f"the server refused the range from byte {offset} (HTTP 416)"
            raise _RestartError(reason) from None
        if exc.code >= 500 or exc.code == 429:
            raise _TransientError(f"HTTP {exc.code} {exc.reason}") from None
        raise PipelineError(
            f"download of {url} failed with HTTP {exc.code} {exc.reason}; check the URL in "
            "params.yaml (`sources` section) or point it at a mirror"
        ) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, OSError):  # DNS failure, refused, unreachable, timeout
            raise _TransientError(_describe(exc.reason), connect=True) from None
        raise PipelineError(
            f"cannot download {url} ({exc.reason}); check the URL in params.yaml "
            "(`sources` section)"
        ) from None
    except (OSError, http.client.HTTPException) as exc:  # e.g. reset while reading the headers
        raise _TransientError(_describe(exc)) from None

    with response:
        status = response.status
        length = _int_header(response.headers.get("Content-Length"))
        if offset and status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise _RestartError(f"the server answered the range with {start}, not {offset}")
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
        else:
            if offset:
                log.info("the server ignored the range request for %s; starting from zero", url)
            offset = 0
            total = length
            mode = "wb"
        hashers = {name: _new_hasher(name) for name in ALGORITHMS}
        if offset:
            log.info("resuming %s from byte %d", url, offset)
            with open(part, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    for hasher in hashers.values():
                        hasher.update(chunk)
        size = offset
        # read1 returns whatever has arrived, so a timeout mid-chunk loses nothing received.
        read = getattr(response, "read1", response.read)
        with (
            _open_part(part, mode) as fh,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name[: -len(".part")],
                disable=None,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    chunk = read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    reason = f"connection broke after {size} bytes: {_describe(exc)}"
                    raise _TransientError(reason) from None
                if not chunk:
                    break
                try:
                    fh.write(chunk)
                except OSError as exc:
                    raise PipelineError(
                        f"cannot write {part} ({exc}); free some disk space and re-run"
                    ) from None
                for hasher in hashers.values():
                    hasher.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    if total is not None and size < total:
        raise _TransientError(f"truncated: got {size} of {total} bytes")
    return size, total, {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _open_part(part: Path, mode: str):
    """Open the `.part` file, turning a permission problem into a PipelineError."""
    try:
        return open(part, mode)
    except OSError as exc:
        raise PipelineError(
            f"cannot write {part} ({exc}); check the folder's permissions"
        ) from None


def _describe(exc: BaseException) -> str:
    """A short reason for a network error: 'timed out', 'Connection refused', ..."""
    if isinstance(exc, socket.gaierror):
        return f"name lookup failed: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) from 'bytes START-END/TOTAL' (TOTAL may be '*')."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


# --------------------------------------------------------------------------- extract


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
        raise PipelineError(f"cannot extract {archive} ({_reason(exc)}): {_CORRUPT_HINT}") from None
    except OSError as exc:
        raise PipelineError(
            f"cannot extract {archive} into {dest_dir} ({_reason(exc)}): check free disk space "
            f"and permissions; if the archive is damaged, delete it and re-run the download"
        ) from None
    raise PipelineError(
        f"{archive} is not a zip or tar archive; if it was downloaded, it may be damaged or an "
        "error page: delete it and re-run the download, and check the URL in params.yaml"
    )


def _reason(exc: BaseException) -> str:
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
    """Refuse the archive if any member could write, or link, outside the target folder."""
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
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: a second safety net
                try:
                    tf.extractall(tmp, members=bar, filter="data")
                except tarfile.FilterError as exc:
                    member = exc.tarinfo.name if getattr(exc, "tarinfo", None) else "?"
                    why = f"would be written outside the target folder or is unsafe ({exc})"
                    raise _unsafe(archive, member, why) from None
            else:  # pragma: no cover
                tf.extractall(tmp, members=bar)
            return _list_files(tmp)


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
            return _list_files(tmp)


def _list_files(root: Path) -> list[str]:
    """Sorted posix paths, relative to `root`, of everything under it that is not a folder."""
    found = []
    for folder, _dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        found.extend((rel / name).as_posix() for name in files)
    return sorted(found)


# --------------------------------------------------------------------------- Google Drive


def download_drive_folder(folder_id: str, dest_dir: Path) -> list[str]:
    """Download a public Google Drive folder into `dest_dir` (whole or not at all) with gdown.

    Returns the sorted posix paths of the downloaded files, relative to `dest_dir`.
    """
    dest_dir = Path(dest_dir)
    hint = (
        "`sources.annotations.url` in params.yaml can point at an archive (zip or tar) of the "
        "same files instead"
    )
    try:
        import gdown
    except ImportError:
        raise PipelineError(
            f"could not fetch Google Drive folder {folder_id}: the gdown package is not "
            f"installed (pip install gdown); {hint}"
        ) from None
    with atomic_dir(dest_dir) as tmp:
        try:
            result = gdown.download_folder(id=folder_id, output=str(tmp), quiet=False)
        except Exception as exc:  # noqa: BLE001 -- gdown raises many types (HTTP, quota...)
            raise PipelineError(
                f"could not fetch Google Drive folder {folder_id} ({_reason(exc)}); the folder "
                f"may be private, moved or over its download quota; {hint}"
            ) from None
        files = _list_files(tmp)
        if result is None or not files:
            raise PipelineError(
                f"could not fetch Google Drive folder {folder_id} (gdown downloaded nothing); "
                f"the folder may be private, empty, moved or over its download quota; {hint}"
            )
    log.info(
        "downloaded %d files from Google Drive folder %s to %s", len(files), folder_id, dest_dir
    )
    return files
