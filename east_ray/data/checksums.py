"""Checksums of files (md5, sha256): verifying a download, recording a release's source files.

The release readers record the md5 of the files a prepared dataset was built from; the
downloader checks a file's length, md5 and sha256 against the published ones. A sha256 may
be given in full or as its first hex digits (at least 8), as torch.hub's file names carry it
(`vggish-10086976.pth`: the file's sha256 starts with `10086976`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from east_ray.errors import BadValueError

CHUNK = 1 << 20
"""Bytes read (or copied) at a time."""


def file_digests(path: Path, algorithms: Sequence[str]) -> dict[str, str]:
    """The hex digests of the file at `path` for each of `algorithms`, in one read."""
    hashes = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    with Path(path).open("rb") as source:
        while block := source.read(CHUNK):
            for digest in hashes.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def md5sum(path: Path) -> str:
    """The md5 of the file at `path`, as 32 lowercase hex digits."""
    return file_digests(path, ("md5",))["md5"]


def sha256sum(path: Path) -> str:
    """The sha256 of the file at `path`, as 64 lowercase hex digits."""
    return file_digests(path, ("sha256",))["sha256"]


def parse_md5(md5: str | None) -> str | None:
    """`md5` in lowercase, after checking that it is 32 hex digits (None stays None)."""
    if md5 is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
        raise BadValueError(f"md5: got {md5!r}, expected 32 hex digits or None")
    return md5.lower()


def parse_sha256(sha256: str | None) -> str | None:
    """`sha256` in lowercase, after checking that it is 8 to 64 hex digits (the whole digest
    or its start); None stays None."""
    if sha256 is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{8,64}", sha256):
        raise BadValueError(
            f"sha256: got {sha256!r}, expected 64 hex digits (or the first 8 or more) or None"
        )
    return sha256.lower()


def digest_mismatch(path: Path, md5: str | None, sha256: str | None) -> tuple[str, str, str] | None:
    """`(algorithm, expected, actual)` for the first digest of the file at `path` that does
    not start with the expected one (`md5`, then `sha256`; None: not checked); None when all
    match. The file is read once."""
    expected = {name: value for name, value in (("md5", md5), ("sha256", sha256)) if value}
    if not expected:
        return None
    actual = file_digests(path, tuple(expected))
    for name, value in expected.items():
        if not actual[name].startswith(value):
            return name, value, actual[name]
    return None


def mismatch(
    path: Path, md5: str | None, size: int | None, sha256: str | None = None
) -> str | None:
    """Why the file at `path` differs from the expected `size`, `md5` and `sha256` (whole or
    its start); None when it matches. The size is checked first (no read needed)."""
    if size is not None and (actual := path.stat().st_size) != size:
        return f"its size is {actual} bytes, expected {size}"
    wrong = digest_mismatch(path, md5, sha256)
    if wrong is None:
        return None
    name, expected, got = wrong
    return f"{name} mismatch: expected {expected}, got {got}"
