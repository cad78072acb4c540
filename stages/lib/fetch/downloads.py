"""Resumable HTTP downloads: `download` writes to `<dest>.part`, resumes it with an HTTP Range
request, retries transient failures with backoff, checks size and checksums, and only then
renames onto `dest`. With no checksum to check, the first download's sha256 is recorded beside
it and later downloads are checked against that.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from stages.lib.errors import PipelineError
from stages.lib.fetch.checksums import ALGORITHMS, CHUNK, expected_digests, file_digests, is_hex_digest, new_hasher

log = logging.getLogger(__name__)

USER_AGENT = "stages-fetch/1.0 (python urllib)"
_MAX_RESTARTS = 3  # restarts from zero (200 to a Range request, 416, bad Content-Range)

_OFFLINE_HINT = (
    "this stage needs the network; run it on a machine with internet access, point params.yaml "
    "`sources` at a reachable mirror, or run `make demo`, which works offline"
)


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
    expected = expected_digests(url, md5, sha256)
    if dest.exists():
        if expected:
            actual = file_digests(dest, ALGORITHMS)
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
    if recorded_url != url or not is_hex_digest(digest):
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
        hashers = {name: new_hasher(name) for name in ALGORITHMS}
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
