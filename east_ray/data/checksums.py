"""md5 checksums of files: verifying a download, recording a release's source files.

The release readers record the md5 of the files a prepared dataset was built from; the
downloader checks a file's md5 (and length) against the published one.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from east_ray.errors import BadValueError

CHUNK = 1 << 20
"""Bytes read (or copied) at a time."""


def md5sum(path: Path) -> str:
    """The md5 of the file at `path`, as 32 lowercase hex digits."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as source:
        while block := source.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def parse_md5(md5: str | None) -> str | None:
    """`md5` in lowercase, after checking that it is 32 hex digits (None stays None)."""
    if md5 is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
        raise BadValueError(f"md5: got {md5!r}, expected 32 hex digits or None")
    return md5.lower()


def mismatch(path: Path, md5: str | None, size: int | None) -> str | None:
    """Why the file at `path` differs from the expected `md5` / `size`; None when it matches."""
    if size is not None and (actual := path.stat().st_size) != size:
        return f"its size is {actual} bytes, expected {size}"
    if md5 is not None and (actual_md5 := md5sum(path)) != md5:
        return f"md5 mismatch: expected {md5}, got {actual_md5}"
    return None
