"""Download one file over HTTP: resumable, retried, verified, with a progress bar.

Downloads (stdlib urllib only) go to `<file>.part` and resume with `Range: bytes=N-`; a server
that answers 200 instead of 206 is read from byte 0 again, a 416 is resolved by checking the
part's length against the server's total, and a dropped connection is retried up to
`RETRIES` consecutive times without progress (an attempt that adds bytes resets the count).
The file gets its final name (`os.replace`) only after its length (against the server's
`Content-Length` / `Content-Range` total, and the expected size when given) and its md5 and
sha256 (when given; a sha256 may be its first 8+ hex digits) verified; a mismatching digest
deletes the download, so the next run starts over.

Every request has a socket timeout (`TIMEOUT_S`, read at call time so tests can shorten it):
a server that stops sending mid-body counts as a dropped connection (resumed at once), one
that never answers as a failed attempt (retried after `RETRY_DELAY_S`, doubled each time).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from contextlib import closing
from email.message import Message
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from east_ray.data.checksums import CHUNK, digest_mismatch, mismatch, parse_md5, parse_sha256
from east_ray.errors import BadValueError, UserError

logger = logging.getLogger(__name__)

RETRIES = 5
"""Consecutive failed attempts (without progress) before a download gives up."""
RETRY_DELAY_S = 1.0
"""First pause after a failed attempt; doubled per consecutive failure, at most 30 s."""
TIMEOUT_S = 60.0
"""Socket timeout of one HTTP request (connecting, and each read), in seconds."""
USER_AGENT = "east_ray-download/0.1 (+python urllib)"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*")


class DownloadError(UserError):
    """A file or release could not be downloaded or does not verify."""


class ChecksumError(DownloadError):
    """A downloaded file's digest differs from the expected one (the download was deleted);
    `algorithm`, `expected` and `actual` say how (empty when re-raised with a new message)."""

    def __init__(
        self, message: str, algorithm: str = "", expected: str = "", actual: str = ""
    ) -> None:
        super().__init__(message)
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


class _RetryableError(Exception):
    """An attempt failed in a way that another attempt may fix."""


class _Response(Protocol):
    status: int | None
    headers: Message

    def read1(self, amt: int, /) -> bytes: ...

    def close(self) -> None: ...


def _length(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _open(url: str, part: Path, offset: int, timeout: float) -> _Response | None:
    """The response to a request for `url` from byte `offset`; None if `part` is complete."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response: _Response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code == 416 and offset:
                match = _UNSATISFIED_RANGE.fullmatch(exc.headers.get("Content-Range", ""))
                if match and int(match[1]) == offset:
                    return None
                part.unlink()
                raise _RetryableError(
                    f"the server cannot resume at byte {offset} (HTTP 416); starting over"
                ) from exc
            if exc.code in RETRY_STATUS:
                raise _RetryableError(f"HTTP {exc.code} {exc.reason}") from exc
            raise DownloadError(
                f"{url}: HTTP {exc.code} {exc.reason}; check the URL (or --mirror)"
            ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
    return response


def _start(response: _Response, part: Path, offset: int) -> tuple[int, int | None]:
    """The byte the response body starts at and the file's total length, if announced."""
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.fullmatch(content_range)
        if match is None or int(match[1]) != offset:
            part.unlink(missing_ok=True)
            raise _RetryableError(
                f"the server resumed with Content-Range {content_range!r}, expected bytes "
                f"{offset}-; starting over"
            )
        return offset, None if match[3] == "*" else int(match[3])
    # 200 (or None for file: URLs): the whole file from byte 0
    if offset:
        logger.warning("%s: the server ignored the Range header; starting from byte 0", part.name)
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None and length.strip().isdigit() else None


def _receive(
    response: _Response, part: Path, offset: int, total: int | None, disable: bool | None
) -> int:
    """Append the response body to `part` (from `offset`); return the part's new length."""
    done = offset
    with (
        part.open("ab" if offset else "wb") as sink,
        tqdm(
            desc=part.name.removesuffix(".part"),
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=disable,
        ) as bar,
    ):
        while True:
            try:
                # read1: what has arrived, so bytes before a stall are kept
                chunk = response.read1(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _RetryableError(f"connection lost after {done} bytes ({exc})") from exc
            if not chunk:
                return done
            sink.write(chunk)
            done += len(chunk)
            bar.update(len(chunk))


def _attempt(url: str, part: Path, timeout: float, disable: bool | None) -> None:
    """One request that extends `part`; returns once `part` holds the whole file.

    Raises `_RetryableError` when another attempt may succeed (resuming from `part`'s length),
    `DownloadError` when it cannot.
    """
    offset = _length(part)
    response = _open(url, part, offset, timeout)
    if response is None:
        return  # the part already holds every byte
    with closing(response):
        offset, total = _start(response, part, offset)
        done = _receive(response, part, offset, total, disable)
    if total is not None and done != total:
        raise _RetryableError(f"connection closed after {done} of {total} bytes")


def _fetch(url: str, part: Path, retries: int, timeout: float, disable: bool | None) -> None:
    failures = 0
    while True:
        before = _length(part)
        try:
            _attempt(url, part, timeout, disable)
            return
        except _RetryableError as exc:
            after = _length(part)
            if after > before:
                failures = 0  # progress was made: resume at once
                logger.warning("%s: %s; resuming at byte %d", part.name, exc, after)
                continue
            failures += 1
            if failures > retries:
                kept = (
                    f"the partial download {part} is kept and the next run resumes it"
                    if part.exists()
                    else "nothing was kept"
                )
                raise DownloadError(
                    f"{url}: gave up after {failures} failed attempts in a row (last: {exc}); "
                    f"{kept}; check the network (or --mirror) and rerun"
                ) from exc
            delay = min(RETRY_DELAY_S * 2 ** (failures - 1), 30.0)
            logger.warning("%s: %s; retry %d/%d in %g s", part.name, exc, failures, retries, delay)
            time.sleep(delay)


def _verify(
    part: Path, dest: Path, url: str, *, md5: str | None, size: int | None, sha256: str | None
) -> None:
    """Delete `part` and raise unless it has the expected `size`, `md5` and `sha256`."""
    if size is not None and (actual := part.stat().st_size) != size:
        part.unlink()
        raise DownloadError(
            f"{dest.name}: downloaded {actual} bytes from {url}, expected {size}; "
            "the download was deleted, rerun to start over"
        )
    wrong = digest_mismatch(part, md5, sha256)
    if wrong is not None:
        part.unlink()
        name, expected, actual_digest = wrong
        raise ChecksumError(
            f"{dest.name}: {name} mismatch: expected {expected}, got {actual_digest} "
            f"(downloaded from {url}); the download {part} was deleted, rerun to start over",
            name,
            expected,
            actual_digest,
        )


def download_file(
    url: str,
    dest: Path,
    md5: str | None = None,
    *,
    size: int | None = None,
    sha256: str | None = None,
    retries: int = RETRIES,
    timeout: float | None = None,
    progress: bool | None = None,
) -> Path:
    """Download `url` to `dest`, resuming `<dest>.part`, and return `dest`.

    `md5` (32 hex digits), `sha256` (64 hex digits, or the first 8 or more) and `size`
    (bytes), when given, must match before the file is renamed to `dest`; a mismatching
    digest raises `ChecksumError` and deletes the download. An existing `dest` that verifies
    is kept and nothing is requested; one that does not is deleted and downloaded again.
    `timeout`: seconds per request (default `TIMEOUT_S`). `progress`: show a progress bar on
    stderr (default: only when stderr is a terminal).
    """
    dest = Path(dest)
    md5 = parse_md5(md5)
    sha256 = parse_sha256(sha256)
    if size is not None and size < 0:
        raise BadValueError(f"size: got {size}, expected a byte count >= 0 or None")
    if retries < 0:
        raise BadValueError(f"retries: got {retries}, expected an integer >= 0")
    if dest.exists():
        problem = mismatch(dest, md5, size, sha256)
        if problem is None:
            checked = " and ".join(
                name for name, value in (("md5", md5), ("sha256", sha256)) if value
            )
            logger.info(
                "%s is already there%s", dest, f" and its {checked} verifies" if checked else ""
            )
            return dest
        logger.warning("%s is there but %s; downloading it again", dest, problem)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    logger.info("fetching %s", url)
    seconds = TIMEOUT_S if timeout is None else timeout
    _fetch(url, part, retries, seconds, None if progress is None else not progress)
    _verify(part, dest, url, md5=md5, size=size, sha256=sha256)
    os.replace(part, dest)
    return dest
