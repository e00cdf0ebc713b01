"""Unpack a tar or zip archive into a folder, safely and all or nothing.

A folder unpacked here is complete when it holds the marker file `.east_ray_extracted`
(`MARKER`): members are written into a hidden sibling folder (`.<name>.<pid>.partial`) that is
renamed into place only after every member was written, so an interrupted run never leaves a
folder that looks finished (the next run removes the stale partial folder). Unpacking into a
folder that holds the marker does nothing.

Tar members go through the standard library's `data` extraction filter
(`tarfile.data_filter`): a member whose path leads outside the target folder (a `..` that
climbs out, a path written through a link that points outside), a symlink or hard link to an
absolute path or outside, and a device or FIFO are refused, and modes are made safe (no
set-uid bits, no group or other write). Refused as well: a member with an absolute path (the
filter would quietly make it relative), and a hard link to anything but a regular file
extracted before it (tarfile would copy that member unfiltered, a filter bypass that Python
fixed only in 3.11.13). Zip members are written by this module, with the same checks on their
paths and on symlinks (entries whose mode says so). Every refusal is an `UnsafeArchiveError`
naming the archive and the member, raised before anything is written for that member. Each
zip member's CRC-32 is checked as it is written. AppleDouble members (`._*`) and `__MACOSX/`
are skipped.
"""

from __future__ import annotations

import gzip
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal

from tqdm import tqdm

from east_ray.data.checksums import CHUNK
from east_ray.errors import UserError

logger = logging.getLogger(__name__)

MARKER = ".east_ray_extracted"
"""File written into a folder once it is completely extracted."""


class ArchiveError(UserError):
    """An archive cannot be extracted: it is damaged, laid out unexpectedly, or unsafe."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would be written, or would link, outside the target folder."""


def _unsafe(archive: Path, name: str, reason: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: member {name!r} {reason}; refusing to extract the archive (it is not the "
        "published release: delete it and download it again from the release's own host)"
    )


def _outside(linkname: str) -> str:
    return f"is a link to {linkname!r}, which points outside the target folder"


def is_junk(name: str) -> bool:
    """AppleDouble resource forks (`._*`) and macOS zip metadata (`__MACOSX/`)."""
    return any(p.startswith("._") or p == "__MACOSX" for p in name.split("/"))


def _relative(name: str, archive: Path, strip_root: str | None) -> str | None:
    """Where member `name` goes, relative to the target folder; None to skip it."""
    if name.startswith("/"):
        raise _unsafe(archive, name, "has an absolute path")
    if is_junk(name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if strip_root is not None:
        if parts[:1] != [strip_root]:
            raise ArchiveError(
                f"{archive}: member {name!r} is not under the expected top folder "
                f"{strip_root}/; the archive is not the published release: delete it and rerun"
            )
        parts = parts[1:]
    return "/".join(parts) or None


@contextmanager
def _readable(archive: Path) -> Iterator[None]:
    """Report a damaged archive as an `ArchiveError` naming it."""
    try:
        yield
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError(
            f"archive: {archive} is damaged ({type(exc).__name__}: {exc}); delete it (and "
            "the files it was made from) and rerun to download it again"
        ) from exc


def _kind(archive: Path) -> Literal["zip", "tar"]:
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise ArchiveError(
        f"archive: {archive} is neither a tar nor a zip archive; it is damaged or not the "
        "published release: delete it and rerun to download it again"
    )


def count_members(archive: Path, suffix: str) -> int:
    """How many files in the tar or zip `archive` end in `suffix` (AppleDouble junk aside)."""
    with _readable(archive):
        if _kind(archive) == "zip":
            with zipfile.ZipFile(archive) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir()]
        else:
            with tarfile.open(archive, "r:*") as tar:
                names = [m.name for m in tar if m.isfile()]
    return sum(1 for n in names if n.endswith(suffix) and not is_junk(n))


# --------------------------------------------------------------------------- tar


_Filter = Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]


def _tar_reason(exc: tarfile.FilterError, member: tarfile.TarInfo) -> str:
    if isinstance(exc, tarfile.OutsideDestinationError):
        return "climbs out of the target folder"
    if isinstance(exc, tarfile.AbsoluteLinkError):
        return f"is a link to the absolute path {member.linkname!r}"
    if isinstance(exc, tarfile.LinkOutsideDestinationError):
        return _outside(member.linkname)
    if isinstance(exc, tarfile.SpecialFileError):
        return "is a device, FIFO or other special file; only files, folders and links are kept"
    return f"is refused by tarfile's data filter ({exc})"


def _linkname(member: tarfile.TarInfo, archive: Path, strip_root: str | None) -> str:
    """`member`'s link, moved out of `strip_root` for a hard link (it names another member)."""
    if not member.islnk() or strip_root is None:
        return member.linkname
    if not member.linkname.startswith(strip_root + "/"):
        raise _unsafe(archive, member.name, _outside(member.linkname))
    return member.linkname.removeprefix(strip_root + "/")


def _tar_filter(archive: Path, strip_root: str | None) -> _Filter:
    """`tarfile.data_filter` after skipping junk and moving members out of `strip_root`."""

    def keep(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        name = _relative(member.name, archive, strip_root)
        if name is None:
            return None
        linkname = _linkname(member, archive, strip_root)
        try:
            kept = tarfile.data_filter(member.replace(name=name, linkname=linkname), dest)
        except tarfile.FilterError as exc:
            raise _unsafe(archive, member.name, _tar_reason(exc, member)) from exc
        target = os.path.join(dest, kept.linkname)
        if kept.islnk() and (os.path.islink(target) or not os.path.isfile(target)):
            # tarfile would fall back to copying the target member as it is, unfiltered
            raise _unsafe(
                archive,
                member.name,
                f"is a hard link to {member.linkname!r}, which is not a file extracted before it",
            )
        return kept

    return keep


def _extract_tar(archive: Path, root: str, strip_root: str | None) -> None:
    with (
        tarfile.open(archive, "r:*") as tar,
        tqdm(tar, desc=archive.name, unit=" members", disable=None) as members,
    ):
        tar.extractall(root, members=members, filter=_tar_filter(archive, strip_root))


# --------------------------------------------------------------------------- zip


def _within(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _location(root: str, rel: str, archive: Path, name: str) -> Path:
    """The path for `rel` under `root` (a realpath), refusing one that leads outside it."""
    path = posixpath.normpath(rel)
    parent = os.path.realpath(os.path.join(root, posixpath.dirname(path)))
    if path == ".." or path.startswith("../") or not _within(root, parent):
        raise _unsafe(archive, name, "climbs out of the target folder")
    location = Path(parent, posixpath.basename(path))
    if location.is_symlink():
        location.unlink()  # replace an earlier link instead of writing through it
    return location


def _make_symlink(root: str, location: Path, link: str, archive: Path, name: str) -> None:
    if not link or os.path.isabs(link):
        raise _unsafe(archive, name, f"is a link to the absolute path {link!r}")
    if not _within(root, os.path.realpath(os.path.join(location.parent, link))):
        raise _unsafe(archive, name, _outside(link))
    location.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(link, location)


def _write(location: Path, source: IO[bytes]) -> None:
    location.parent.mkdir(parents=True, exist_ok=True)
    with source, location.open("wb") as sink:
        shutil.copyfileobj(source, sink, CHUNK)


def _extract_zip(archive: Path, root: str, strip_root: str | None) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in tqdm(zf.infolist(), desc=archive.name, unit=" members", disable=None):
            rel = _relative(info.filename, archive, strip_root)
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
                raise ArchiveError(
                    f"{archive}: member {info.filename!r} is corrupt ({exc}); the download is "
                    f"damaged: delete {archive.parent} and rerun"
                ) from exc


# --------------------------------------------------------------------------- both


def _work_folder(dest: Path) -> Path:
    """A fresh hidden sibling of `dest`, after removing those of interrupted runs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*.partial"):
        logger.info("removing %s, left by an interrupted extraction", stale)
        shutil.rmtree(stale, ignore_errors=True)
    work = dest.parent / f".{dest.name}.{os.getpid()}.partial"
    work.mkdir()
    return work


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
        logger.info("%s is already extracted", dest)
        return dest
    if not archive.is_file():
        raise ArchiveError(f"archive: {archive} is not a file; download it first")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ArchiveError(
            f"dest: {dest} exists but has no {MARKER} marker, so it is not a finished "
            "extraction of ours; remove it or choose another folder"
        )
    extract = _extract_zip if _kind(archive) == "zip" else _extract_tar
    work = _work_folder(dest)
    try:
        logger.info("extracting %s into %s", archive.name, dest)
        with _readable(archive):
            extract(archive, os.path.realpath(work), strip_root)
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
