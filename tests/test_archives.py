"""Safe, all-or-nothing unpacking of tar and zip archives built by the tests."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from east_ray.data.archives import (
    MARKER,
    ArchiveError,
    UnsafeArchiveError,
    count_members,
    safe_extract,
)
from east_ray.errors import UserError


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    return _member(name, kind, target)


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _tar_with(tmp_path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    return _tar(tmp_path / "bad.tar.gz", [(_member("ok.txt"), b"ok"), (info, data)])


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda base: tarfile.TarInfo("../evil"), "climbs out"),
        (lambda base: tarfile.TarInfo("sub/../../evil"), "climbs out"),
        (lambda base: tarfile.TarInfo(str(base / "evil")), "absolute path"),
        (lambda base: _link("link", "../evil", tarfile.SYMTYPE), "points outside"),
        (lambda base: _link("link", str(base / "evil"), tarfile.SYMTYPE), "absolute path"),
        (lambda base: _link("hard", "../evil", tarfile.LNKTYPE), "points outside"),
        (lambda base: _member("fifo", tarfile.FIFOTYPE), "special file"),
        (lambda base: _member("dev", tarfile.CHRTYPE), "special file"),
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink-out",
        "symlink-abs",
        "hardlink-out",
        "fifo",
        "device",
    ],
)
def test_tar_members_escaping_the_target_are_refused(
    tmp_path: Path, make: Callable[[Path], tarfile.TarInfo], reason: str
) -> None:
    base = tmp_path / "out"
    base.mkdir()
    (base / "evil").write_bytes(b"untouched")  # a hard link needs an existing target
    info = make(base)
    archive = _tar_with(tmp_path, info, b"pwned")
    dest = base / "target"
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, dest)
    message = str(caught.value)
    assert str(archive) in message and repr(info.name) in message and reason in message
    assert isinstance(caught.value, UserError)
    assert (base / "evil").read_bytes() == b"untouched"
    assert sorted(p.name for p in base.iterdir()) == ["evil"]  # no target, no partial folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz", "out"]


def test_writing_through_an_inner_symlink_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "sneaky.tar"
    with tarfile.open(archive, "w") as tar:
        tar.addfile(_link("here", ".", tarfile.SYMTYPE))  # inside: allowed by itself
        tar.addfile(_link("here/up", "../evil", tarfile.SYMTYPE))  # lexically inside, really out
    with pytest.raises(UnsafeArchiveError, match="'here/up'.*points outside"):
        safe_extract(archive, tmp_path / "target")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sneaky.tar"]


def test_tar_strip_root_moves_members_and_their_hard_links(tmp_path: Path) -> None:
    setuid = _member("top/bin/tool")
    setuid.mode = 0o4777
    archive = _tar(
        tmp_path / "a.tar",
        [
            (_member("top/dir", tarfile.DIRTYPE), b""),
            (_member("top/dir/file.txt"), b"content"),
            (_link("top/dir/same.txt", "top/dir/file.txt", tarfile.LNKTYPE), b""),
            (_link("top/dir/alias.txt", "file.txt", tarfile.SYMTYPE), b""),
            (setuid, b"#!"),
            (_member("top/._file.txt"), b"AppleDouble junk"),
        ],
    )
    dest = safe_extract(archive, tmp_path / "x", strip_root="top")
    assert _tree(dest) == {MARKER, "dir/file.txt", "dir/same.txt", "dir/alias.txt", "bin/tool"}
    assert (dest / "dir/same.txt").read_bytes() == b"content"
    assert (dest / "dir/same.txt").stat().st_ino == (dest / "dir/file.txt").stat().st_ino
    assert (dest / "dir/alias.txt").is_symlink()
    assert stat.S_IMODE((dest / "bin/tool").stat().st_mode) == 0o755  # no set-uid, no o+w


def test_tar_strip_root_refuses_members_and_hard_links_outside_it(tmp_path: Path) -> None:
    stray = _tar(tmp_path / "stray.tar", [(_member("top/a"), b"a"), (_member("other"), b"b")])
    with pytest.raises(ArchiveError, match=r"'other' is not under the expected top folder top/"):
        safe_extract(stray, tmp_path / "x", strip_root="top")
    hard = _tar(tmp_path / "hard.tar", [(_link("top/h", "other", tarfile.LNKTYPE), b"")])
    with pytest.raises(UnsafeArchiveError, match=r"'top/h' is a link to 'other'.*points outside"):
        safe_extract(hard, tmp_path / "x", strip_root="top")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))


@pytest.mark.parametrize(
    "before",
    [[], [(_link("a/b/s", "../x", tarfile.SYMTYPE), b"")]],
    ids=["missing", "symlink"],
)
def test_tar_hard_link_to_anything_but_an_earlier_file_is_refused(
    tmp_path: Path, before: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    # tarfile would copy the target member as it is: a symlink relative to another folder
    hard = _link("h", "a/b/s", tarfile.LNKTYPE)
    archive = _tar(tmp_path / "a.tar", [*before, (hard, b"")])
    with pytest.raises(UnsafeArchiveError, match=r"'h' is a hard link to 'a/b/s', which is not"):
        safe_extract(archive, tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]


def test_zip_member_escaping_the_target_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"ok")
        zf.writestr("../evil", b"pwned")
    dest = tmp_path / "out" / "target"
    with pytest.raises(UnsafeArchiveError, match=r"bad\.zip: member '\.\./evil' climbs out"):
        safe_extract(archive, dest)
    assert not (tmp_path / "out" / "evil").exists() and not (tmp_path / "evil").exists()
    assert list((tmp_path / "out").iterdir()) == []


def _zip_symlink(zf: zipfile.ZipFile, name: str, target: str) -> None:
    link = zipfile.ZipInfo(name)
    link.external_attr = 0o120777 << 16
    zf.writestr(link, target.encode())


def _dotdot_after_link(zf: zipfile.ZipFile) -> None:
    _zip_symlink(zf, "here", ".")
    zf.writestr("here/../../evil", b"x")


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda zf: zf.writestr("/abs/evil", b"pwned"), "has an absolute path"),
        (lambda zf: _zip_symlink(zf, "link", "../evil"), "points outside"),
        (lambda zf: _zip_symlink(zf, "link", "/etc/passwd"), "absolute path"),
        (_dotdot_after_link, "climbs out"),
    ],
    ids=["absolute", "symlink-out", "symlink-abs", "dotdot-after-link"],
)
def test_zip_links_and_paths_leading_outside_are_refused(
    tmp_path: Path, build: Callable[[zipfile.ZipFile], object], reason: str
) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        build(zf)
    with pytest.raises(UnsafeArchiveError, match=reason):
        safe_extract(archive, tmp_path / "out" / "target")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "out"]
    assert list((tmp_path / "out").iterdir()) == []


def test_safe_extract_skips_appledouble_and_marks_completion(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dir/file.txt", b"content")
        zf.writestr("dir/._file.txt", b"junk")
        zf.writestr("__MACOSX/dir/._file.txt", b"junk")
        _zip_symlink(zf, "inner/link", "../dir/file.txt")
    dest = safe_extract(archive, tmp_path / "x")
    assert _tree(dest) == {MARKER, "dir/file.txt", "inner/link"}
    assert (dest / "inner" / "link").is_symlink()
    assert (dest / "inner" / "link").read_bytes() == b"content"
    assert safe_extract(archive, dest) == dest  # marker present: nothing to do


def test_safe_extract_refuses_an_unmarked_nonempty_destination(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("f.txt", b"x")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("user data")
    with pytest.raises(ArchiveError, match=r"dest: .*x exists but has no \.east_ray_extracted"):
        safe_extract(archive, tmp_path / "x")
    assert _tree(tmp_path / "x") == {"mine.txt"}


def test_a_stale_partial_folder_is_replaced(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar", [(_member("f.txt"), b"x")])
    (tmp_path / ".x.999999.partial").mkdir()
    (tmp_path / ".x.999999.partial" / "half.txt").write_text("interrupted")
    dest = safe_extract(archive, tmp_path / "x")
    assert _tree(dest) == {MARKER, "f.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "x"]


def test_damaged_or_foreign_archives_are_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an archive")
    with pytest.raises(ArchiveError, match=r"notes\.txt is neither a tar nor a zip archive"):
        safe_extract(text, tmp_path / "x")
    with pytest.raises(ArchiveError, match=r"notes\.txt is neither a tar nor a zip archive"):
        count_members(text, ".mp3")
    whole = _tar(tmp_path / "whole.tar.gz", [(_member("f.bin"), bytes(range(256)) * 400)])
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(whole.read_bytes()[:-200])
    with pytest.raises(ArchiveError, match=r"truncated\.tar\.gz is damaged"):
        safe_extract(truncated, tmp_path / "y")
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y.*"))


def test_count_members_ignores_folders_and_junk(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("0/", b"")
        zf.writestr("0/a.mp3", b"a")
        zf.writestr("0/._a.mp3", b"junk")
        zf.writestr("__MACOSX/0/b.mp3", b"junk")
        zf.writestr("0/notes.txt", b"n")
    assert count_members(archive, ".mp3") == 1
