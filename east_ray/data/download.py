"""Download a dataset release, verify it and unpack it safely: one job, one command.

`python -m east_ray.data download openmic` (or `magnatagatune`) leaves under `--out`:

```
<out>/openmic-2018/          the OpenMIC-2018 tree (class-map.json, openmic-2018.npz, ...)
<out>/magnatagatune/         annotations_final.csv and the folders 0/ .. f/ of mp3 clips
<out>/downloads/<name>/      the downloaded files while they are needed (deleted after a
                             successful extraction unless --keep-archives)
```

A release folder is complete when it holds the marker file `.east_ray_extracted`:
extraction happens in a hidden sibling folder (`.<name>.<pid>.partial`) that is renamed into
place only after every member was written, so an interrupted run never leaves a folder that
looks finished. Rerunning when the marker is there does nothing (and makes no request).

Downloads (stdlib urllib only) go to `<file>.part` and resume with `Range: bytes=N-`; a server
that answers 200 instead of 206 is read from byte 0 again, a 416 is resolved by checking the
part's length against the server's total, and a dropped connection is retried up to
`RETRIES` consecutive times without progress (an attempt that adds bytes resets the count).
The file gets its final name (`os.replace`) only after its length and checksum verified.

What is checksummed, and how
----------------------------
- OpenMIC-2018: the md5 of `openmic-2018-v1.0.0.tgz`, `e4ccf187e2bb5ab2e115416e8aafe7f4`
  (published on Zenodo record 1432913), is verified before the file gets its final name.
  A mismatch raises `ChecksumError` naming the file, the expected and the actual md5, and
  deletes the download (the next run starts over).
- MagnaTagATune: the host (mirg.city.ac.uk) publishes no checksum for `mp3.zip.001..003`
  or `annotations_final.csv`, and none was found in public loaders that download MTAT (the
  CLMR / torchaudio-style `MAGNATAGATUNE` loaders list these URLs with empty checksums), so
  none is invented here. What *is* verified: each file's length against the server's
  `Content-Length` / `Content-Range` total (a truncated transfer never gets its final name);
  the CRC-32 of every zip member (checked by `zipfile` as each member is extracted); the
  number of `.mp3` members (25,863: one per row of `annotations_final.csv`); and the
  25,863 data rows of `annotations_final.csv`. A consistently altered file (a tampered
  mirror that also fixes the CRCs) is *not* detected. Whether `zipfile` reads the
  concatenated parts of the real release directly was not tried here (the hosts are
  unreachable from where this was written); some users report needing `zip -FF`.

Archives are extracted by this module, never by `tarfile.extractall`/`ZipFile.extractall`:
a member with an absolute path, a `..` that climbs out of the target, a symlink or hard link
that points outside, or a path that would be written through such a link is refused with
`UnsafeArchiveError` naming the member and the archive, before anything is written for it.
AppleDouble members (`._*`) and `__MACOSX/` are skipped.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import re
import shutil
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

MARKER = ".east_ray_extracted"
"""File written into a release folder once it is completely extracted."""
RETRIES = 5
"""Consecutive failed attempts (without progress) before a download gives up."""
RETRY_DELAY_S = 1.0
"""First pause after a failed attempt; doubled per consecutive failure, at most 30 s."""
TIMEOUT_S = 60.0
"""Socket timeout of one HTTP request, in seconds."""
PROGRESS_INTERVAL_S = 0.5
"""Least time between two updates of the progress line."""
CHUNK = 1 << 20
USER_AGENT = "east_ray-download/0.1 (+python urllib)"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class DownloadError(RuntimeError):
    """A release could not be downloaded, verified or extracted."""


class ChecksumError(DownloadError):
    """A downloaded file's md5 differs from the published one."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the target folder."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a release: its name under the base URL (and on disk) and what verifies it."""

    name: str
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Release:
    """How to fetch and unpack one dataset release.

    `archive_parts` are concatenated (in order) into `archive` when there are several, else
    `archive` is the one part. `strip_root` is the archive's top folder whose contents become
    the release folder `root`; `add_files` are downloaded files copied into `root`.
    `member_count` is `(suffix, n)`: the archive must hold exactly `n` members ending in
    `suffix`. `text_rows` maps a downloaded text file to its number of non-empty lines after
    the header.
    """

    root: str
    base_url: str
    files: tuple[RemoteFile, ...]
    archive_parts: tuple[str, ...]
    archive: str
    strip_root: str | None = None
    add_files: tuple[str, ...] = ()
    member_count: tuple[str, int] | None = None
    text_rows: tuple[tuple[str, int], ...] = ()


RELEASES: dict[str, Release] = {
    "openmic": Release(
        root="openmic-2018",
        base_url="https://zenodo.org/records/1432913/files/",
        files=(RemoteFile("openmic-2018-v1.0.0.tgz", md5="e4ccf187e2bb5ab2e115416e8aafe7f4"),),
        archive_parts=("openmic-2018-v1.0.0.tgz",),
        archive="openmic-2018-v1.0.0.tgz",
        strip_root="openmic-2018",
    ),
    "magnatagatune": Release(
        root="magnatagatune",
        base_url="https://mirg.city.ac.uk/datasets/magnatagatune/",
        files=(
            RemoteFile("annotations_final.csv"),
            RemoteFile("mp3.zip.001"),
            RemoteFile("mp3.zip.002"),
            RemoteFile("mp3.zip.003"),
        ),
        archive_parts=("mp3.zip.001", "mp3.zip.002", "mp3.zip.003"),
        archive="mp3.zip",
        add_files=("annotations_final.csv",),
        member_count=(".mp3", 25_863),
        text_rows=(("annotations_final.csv", 25_863),),
    ),
}
"""The known releases by name. Tests (and users with a private copy) may patch entries."""


def _say(message: str) -> None:
    print(f"download: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- downloading


class _Response(Protocol):
    status: int | None
    headers: Message

    def read(self, amt: int, /) -> bytes: ...

    def close(self) -> None: ...


class _RetryableError(Exception):
    """An attempt failed in a way that another attempt may fix."""


class _Progress:
    """A `done / total` line on stderr, rewritten at most every `PROGRESS_INTERVAL_S`."""

    def __init__(self, label: str, total: int | None, done: int, enabled: bool) -> None:
        self._label, self._total, self._enabled = label, total, enabled
        self._start_done, self._start = done, time.monotonic()
        self._last = float("-inf")
        self._shown = False

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._enabled or (not force and now - self._last < PROGRESS_INTERVAL_S):
            return
        self._last = now
        rate = (done - self._start_done) / max(now - self._start, 1e-6)
        if self._total:
            amount = f"{_size(done)} / {_size(self._total)} ({100 * done / self._total:.0f}%)"
        else:
            amount = _size(done)
        sys.stderr.write(f"\r  {self._label}: {amount}  {_size(int(rate))}/s   ")
        sys.stderr.flush()
        self._shown = True

    def finish(self, done: int) -> None:
        if self._shown:
            self.update(done, force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*")


def _int_header(headers: Message, name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.strip().isdigit() else None


def _attempt(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One request that extends `part`; returns once `part` holds the whole file.

    Raises `_RetryableError` when another attempt may succeed (resuming from `part`'s length),
    `DownloadError` when it cannot.
    """
    offset = part.stat().st_size if part.exists() else 0
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
                    return  # the part already holds every byte
                part.unlink()
                raise _RetryableError(
                    f"the server cannot resume at byte {offset} (HTTP 416); starting over"
                ) from exc
            if exc.code in RETRY_STATUS:
                raise _RetryableError(f"HTTP {exc.code} {exc.reason}") from exc
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
    try:
        total: int | None
        if response.status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if match is None or int(match[1]) != offset:
                part.unlink(missing_ok=True)
                raise _RetryableError(
                    f"the server resumed with Content-Range "
                    f"{response.headers.get('Content-Range')!r}, expected bytes {offset}-; "
                    "starting over"
                )
            total = None if match[3] == "*" else int(match[3])
            mode = "ab"
        else:  # 200 (or None for file: URLs): the whole file from byte 0
            if offset:
                _say(f"{part.name}: the server ignored the Range header; starting from byte 0")
            offset = 0
            total = _int_header(response.headers, "Content-Length")
            mode = "wb"
        done = offset
        meter = _Progress(part.name.removesuffix(".part"), total, done, progress)
        with part.open(mode) as sink:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _RetryableError(f"connection lost after {done} bytes ({exc})") from exc
                if not chunk:
                    break
                sink.write(chunk)
                done += len(chunk)
                meter.update(done)
        meter.finish(done)
    finally:
        response.close()
    if total is not None and done != total:
        raise _RetryableError(f"connection closed after {done} of {total} bytes")


def _fetch(url: str, part: Path, retries: int, timeout: float, progress: bool) -> None:
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _attempt(url, part, timeout, progress)
            return
        except _RetryableError as exc:
            after = part.stat().st_size if part.exists() else 0
            if after > before:
                failures = 0  # progress was made: resume at once
                _say(f"{part.name}: {exc}; resuming at byte {after}")
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
                    + kept
                ) from exc
            delay = min(RETRY_DELAY_S * 2 ** (failures - 1), 30.0)
            _say(f"{part.name}: {exc}; retry {failures}/{retries} in {delay:g} s")
            time.sleep(delay)


def md5sum(path: Path) -> str:
    """The md5 of the file at `path`, as 32 lowercase hex digits."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as source:
        while block := source.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _check_md5_arg(md5: str | None) -> str | None:
    if md5 is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
        raise ValueError(f"md5: got {md5!r}, expected 32 hex digits or None")
    return md5.lower()


def _problem(path: Path, md5: str | None, size: int | None) -> str | None:
    """Why `path` does not verify, or None when it does."""
    if size is not None and (actual := path.stat().st_size) != size:
        return f"its size is {actual} bytes, expected {size}"
    if md5 is not None and (actual_md5 := md5sum(path)) != md5:
        return f"md5 mismatch: expected {md5}, got {actual_md5}"
    return None


def download_file(
    url: str,
    dest: Path,
    md5: str | None = None,
    *,
    size: int | None = None,
    retries: int = RETRIES,
    timeout: float = TIMEOUT_S,
    progress: bool | None = None,
) -> Path:
    """Download `url` to `dest`, resuming `<dest>.part`, and return `dest`.

    `md5` (32 hex digits) and `size` (bytes), when given, must match before the file is
    renamed to `dest`; a mismatching md5 raises `ChecksumError` and deletes the download.
    An existing `dest` that verifies is kept and nothing is requested. `progress`: show a
    progress line on stderr (default: only when stderr is a terminal).
    """
    dest = Path(dest)
    md5 = _check_md5_arg(md5)
    if size is not None and size < 0:
        raise ValueError(f"size: got {size}, expected a byte count >= 0 or None")
    if retries < 0:
        raise ValueError(f"retries: got {retries}, expected an integer >= 0")
    if dest.exists():
        problem = _problem(dest, md5, size)
        if problem is None:
            _say(f"{dest} is already there{' and its md5 verifies' if md5 else ''}")
            return dest
        _say(f"{dest} is there but {problem}; downloading it again")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    show = sys.stderr.isatty() if progress is None else progress
    _say(f"fetching {url}")
    _fetch(url, part, retries, timeout, show)
    if size is not None and (actual := part.stat().st_size) != size:
        part.unlink()
        raise DownloadError(
            f"{dest.name}: downloaded {actual} bytes from {url}, expected {size}; "
            f"the download was deleted, rerun to start over"
        )
    if md5 is not None:
        actual_md5 = md5sum(part)
        if actual_md5 != md5:
            part.unlink()
            raise ChecksumError(
                f"{dest.name}: md5 mismatch: expected {md5}, got {actual_md5} "
                f"(downloaded from {url}); the download {part} was deleted, rerun to start over"
            )
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- extraction


def _is_junk(parts: Sequence[str]) -> bool:
    """AppleDouble resource forks (`._*`) and macOS zip metadata (`__MACOSX/`)."""
    return any(p.startswith("._") or p == "__MACOSX" for p in parts)


def _resolve(name: str) -> list[str] | None:
    """`name`'s components with `.`/`..` resolved lexically; None if `..` climbs above the top."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return parts


def _member_path(name: str, archive: Path, strip_root: str | None) -> PurePosixPath | None:
    """Where member `name` goes, relative to the target folder; None to skip it."""
    if name.startswith("/"):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path; refusing to extract the archive"
        )
    parts = _resolve(name)
    if parts is None:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} climbs out of the target folder with '..'; "
            "refusing to extract the archive"
        )
    if _is_junk(parts):
        return None
    if strip_root is not None:
        if not parts or parts[0] != strip_root:
            raise DownloadError(
                f"{archive}: member {name!r} is not under the expected top folder {strip_root}/"
            )
        parts = parts[1:]
    return PurePosixPath(*parts) if parts else None


def _within(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _location(root: str, rel: PurePosixPath, archive: Path, name: str) -> Path:
    """The path for `rel` under `root` (a realpath), refusing one reached through a link."""
    parent = os.path.realpath(os.path.join(root, *rel.parts[:-1]))
    if not _within(root, parent):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} would be written through a link that points outside "
            "the target folder; refusing to extract the archive"
        )
    location = Path(parent, rel.name)
    if location.is_symlink():
        location.unlink()  # replace an earlier link instead of writing through it
    return location


def _make_symlink(root: str, location: Path, link: str, archive: Path, name: str) -> None:
    if not link or os.path.isabs(link):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} is a symlink to the absolute path {link!r}; "
            "refusing to extract the archive"
        )
    if not _within(root, os.path.realpath(os.path.join(location.parent, link))):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} is a symlink to {link!r}, which points outside the "
            "target folder; refusing to extract the archive"
        )
    location.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(link, location)


def _write(location: Path, source: IO[bytes]) -> None:
    location.parent.mkdir(parents=True, exist_ok=True)
    with source, location.open("wb") as sink:
        shutil.copyfileobj(source, sink, CHUNK)


def _extract_tar(archive: Path, root: str, strip_root: str | None) -> None:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            rel = _member_path(member.name, archive, strip_root)
            if rel is None:
                continue
            location = _location(root, rel, archive, member.name)
            if member.isdir():
                location.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members always have data
                    raise DownloadError(f"{archive}: member {member.name!r} has no data")
                _write(location, source)
            elif member.issym():
                _make_symlink(root, location, member.linkname, archive, member.name)
            elif member.islnk():
                target = None if member.linkname.startswith("/") else _resolve(member.linkname)
                if target is not None and strip_root is not None:
                    target = target[1:] if target and target[0] == strip_root else None
                source_path = os.path.realpath(os.path.join(root, *target)) if target else ""
                if not target or not _within(root, source_path):
                    raise UnsafeArchiveError(
                        f"{archive}: member {member.name!r} is a hard link to "
                        f"{member.linkname!r}, which points outside the target folder; "
                        "refusing to extract the archive"
                    )
                if not os.path.isfile(source_path):
                    raise DownloadError(
                        f"{archive}: member {member.name!r} is a hard link to "
                        f"{member.linkname!r}, which was not extracted before it"
                    )
                location.parent.mkdir(parents=True, exist_ok=True)
                os.link(source_path, location)
            else:
                raise UnsafeArchiveError(
                    f"{archive}: member {member.name!r} is a device, FIFO or other special "
                    "file; only files, folders and links are extracted"
                )


def _extract_zip(archive: Path, root: str, strip_root: str | None) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = _member_path(info.filename, archive, strip_root)
            if rel is None:
                continue
            location = _location(root, rel, archive, info.filename)
            try:
                if info.is_dir():
                    location.mkdir(parents=True, exist_ok=True)
                elif stat.S_ISLNK(info.external_attr >> 16):
                    link = zf.read(info).decode("utf-8")
                    _make_symlink(root, location, link, archive, info.filename)
                else:
                    _write(location, zf.open(info))
            except zipfile.BadZipFile as exc:  # a CRC-32 mismatch, or a damaged header
                raise DownloadError(
                    f"{archive}: member {info.filename!r} is corrupt ({exc}); the download is "
                    f"damaged: delete {archive.parent} and rerun"
                ) from exc


def safe_extract(
    archive: Path, dest: Path, *, strip_root: str | None = None, add: Sequence[Path] = ()
) -> Path:
    """Extract the tar(.gz/.bz2/.xz) or zip `archive` into the folder `dest`; return `dest`.

    Members are written into a hidden sibling folder that is renamed to `dest` after the
    last one, together with the marker file `MARKER`; a `dest` holding the marker is taken
    as done and left alone. `strip_root`: the archive's top folder whose contents become
    `dest` (every other member is an error). `add`: files copied into `dest` before it is
    marked complete. Unsafe members raise `UnsafeArchiveError` (see the module docstring);
    `._*` and `__MACOSX/` members are skipped.
    """
    archive, dest = Path(archive), Path(dest)
    if (dest / MARKER).is_file():
        _say(f"{dest} is already extracted")
        return dest
    if not archive.is_file():
        raise DownloadError(f"archive: {archive} is not a file")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(
            f"dest: {dest} exists but has no {MARKER} marker, so it is not a finished "
            "extraction of ours; remove it or choose another folder"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*.partial"):
        _say(f"removing {stale}, left by an interrupted extraction")
        shutil.rmtree(stale, ignore_errors=True)
    work = dest.parent / f".{dest.name}.{os.getpid()}.partial"
    work.mkdir()
    try:
        root = os.path.realpath(work)
        _say(f"extracting {archive.name} into {dest}")
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, root, strip_root)
        elif tarfile.is_tarfile(archive):
            try:
                _extract_tar(archive, root, strip_root)
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise DownloadError(
                    f"archive: {archive} is damaged ({type(exc).__name__}: {exc}); "
                    "delete it and rerun"
                ) from exc
        else:
            raise DownloadError(f"archive: {archive} is neither a tar nor a zip archive")
        for extra in add:
            shutil.copyfile(extra, work / Path(extra).name)
        (work / MARKER).write_text(f"extracted from {archive.name}\n", encoding="utf-8")
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dest


# --------------------------------------------------------------------------- releases


def _release(name: str) -> Release:
    try:
        return RELEASES[name]
    except KeyError:
        known = ", ".join(sorted(RELEASES))
        raise ValueError(f"name: unknown release {name!r}, expected one of: {known}") from None


def _mirror_base(mirror: str) -> str:
    scheme = urllib.parse.urlsplit(mirror).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(
            f"mirror: got {mirror!r}, expected an http://, https:// or file:// base URL"
        )
    return mirror if mirror.endswith("/") else mirror + "/"


def _join(parts: Sequence[Path], joined: Path) -> Path:
    """Concatenate `parts` into `joined` (via `<joined>.part`, renamed when complete)."""
    if joined.is_file():
        return joined
    tmp = joined.with_name(joined.name + ".part")
    _say(f"joining {', '.join(p.name for p in parts)} into {joined.name}")
    with tmp.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, sink, CHUNK)
    os.replace(tmp, joined)
    return joined


def _count_members(archive: Path, suffix: str) -> int:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    else:
        with tarfile.open(archive, "r:*") as tar:
            names = [m.name for m in tar if m.isfile()]
    return sum(1 for n in names if n.endswith(suffix) and not _is_junk(n.split("/")))


def _data_rows(path: Path) -> int:
    with path.open("rb") as source:
        return sum(1 for line in source if line.strip()) - 1


def download_release(
    name: str,
    out: Path,
    mirror: str | None = None,
    *,
    keep_archives: bool = False,
    progress: bool | None = None,
) -> Path:
    """Download, verify and extract the release `name` under `out`; return its folder.

    `name`: a key of `RELEASES` (`openmic` → `out/openmic-2018`, `magnatagatune` →
    `out/magnatagatune`). `mirror`: a base URL that replaces the release's host (the file
    names are appended to it). Downloads go to `out/downloads/<name>/` and are deleted after a
    successful extraction unless `keep_archives` (a joined multi-part archive is always
    deleted: the parts hold the same bytes). Does nothing when the release folder is complete.
    """
    release = _release(name)
    out = Path(out)
    root = out / release.root
    if (root / MARKER).is_file():
        _say(f"{name}: {root} is already there; nothing to do")
        return root
    base = release.base_url if mirror is None else _mirror_base(mirror)
    downloads = out / "downloads" / name
    paths: dict[str, Path] = {}
    for remote in release.files:
        url = base + urllib.parse.quote(remote.name)
        paths[remote.name] = download_file(
            url, downloads / remote.name, remote.md5, size=remote.size, progress=progress
        )
    for file_name, rows in release.text_rows:
        if (actual := _data_rows(paths[file_name])) != rows:
            paths[file_name].unlink()
            raise DownloadError(
                f"{file_name}: {actual} data rows, expected {rows}; the file is damaged or not "
                "the published release, it was deleted: rerun to download it again"
            )
    parts = [paths[p] for p in release.archive_parts]
    joined = len(parts) > 1
    archive = _join(parts, downloads / release.archive) if joined else parts[0]
    if release.member_count is not None:
        suffix, expected = release.member_count
        if (count := _count_members(archive, suffix)) != expected:
            raise DownloadError(
                f"{archive}: holds {count} '{suffix}' members, expected {expected}; the "
                f"download is damaged or not the published release: delete {downloads} and rerun"
            )
    safe_extract(
        archive,
        root,
        strip_root=release.strip_root,
        add=[paths[f] for f in release.add_files],
    )
    if joined:
        archive.unlink()
    if not keep_archives:
        for path in paths.values():
            path.unlink(missing_ok=True)
        for folder in (downloads, downloads.parent):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    _say(f"{name}: ready in {root}")
    return root


# --------------------------------------------------------------------------- command line


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `download` subcommand (`name`, `--out`, `--mirror`, `--keep-archives`)."""
    parser = subparsers.add_parser(
        "download",
        help="download, verify and unpack a dataset release",
        description="Download, verify and unpack a dataset release (resumable; rerunning "
        "a finished release does nothing).",
    )
    parser.add_argument("name", choices=sorted(RELEASES), help="which release")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/raw"),
        metavar="DIR",
        help="folder that receives the release folder (default: data/raw)",
    )
    parser.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help="base URL replacing the release's host; the file names are appended to it",
    )
    parser.add_argument(
        "--keep-archives",
        action="store_true",
        help="keep the downloaded archives after a successful extraction",
    )
    parser.set_defaults(func=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    """The `download` subcommand (errors reach the CLI's one convention: exit 2)."""
    root = download_release(args.name, args.out, args.mirror, keep_archives=args.keep_archives)
    print(root)
    return 0
