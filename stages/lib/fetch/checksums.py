"""File checksums: md5 and sha256 digests read in chunks, and the check that a digest someone
typed (params.yaml, a record file) looks like one."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from stages.lib.errors import PipelineError

CHUNK = 1 << 20  # bytes read or hashed at a time
ALGORITHMS = ("md5", "sha256")
HEX_LENGTH = {"md5": 32, "sha256": 64}


def is_hex_digest(value: object, algorithm: str = "sha256") -> bool:
    """Whether `value` is a lowercase hex digest of `algorithm`'s length (64 digits for sha256)."""
    return isinstance(value, str) and re.fullmatch(rf"[0-9a-f]{{{HEX_LENGTH[algorithm]}}}", value) is not None


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest ("md5" or "sha256") of the file at `path`, read in chunks so size is no issue."""
    return file_digests(Path(path), (algorithm,))[algorithm]


def file_digests(path: Path, algorithms: Iterable[str]) -> dict[str, str]:
    """Hex digests of `path` for several algorithms in one pass."""
    hashers = {name: new_hasher(name) for name in algorithms}
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def new_hasher(algorithm: str):
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}; use one of {ALGORITHMS}")
    return hashlib.new(algorithm)


def expected_digests(url: str, md5: str | None, sha256: str | None) -> dict[str, str]:
    """The checksums the caller gave, lower-cased, each checked to look like a hex digest."""
    expected = {}
    for name, value in (("md5", md5), ("sha256", sha256)):
        if value is None:
            continue
        value = str(value).strip().lower()
        if not is_hex_digest(value, name):
            raise PipelineError(
                f"the {name} given for {url} ({value!r}) is not a {HEX_LENGTH[name]}-digit hex "
                f"digest; fix it in params.yaml (`sources` section) or set it to null"
            )
        expected[name] = value
    return expected
