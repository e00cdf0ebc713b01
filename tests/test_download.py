"""Release downloads against a local HTTP server: resume, misbehaving servers, md5, safe unpacking.

The server (127.0.0.1, port 0, one per test) serves in-memory files, honours `Range`
requests, records every request, and can be told to drop the connection part-way, to
ignore `Range`, or to fail with a status. The fixture archives are tiny copies of the real
release layouts: an OpenMIC-shaped .tgz and an MTAT-shaped zip split into three parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import re
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from east_ray.data import __main__ as data_cli
from east_ray.data import download
from east_ray.data.download import (
    MARKER,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    add_cli,
    download_file,
    download_release,
    safe_extract,
)


@dataclass
class _State:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent, first time
    ignore_range: bool = False
    fail_status: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet

    def do_GET(self) -> None:
        state = self.server.state
        requested = self.headers.get("Range")
        with state.lock:
            state.requests.append((self.path, requested))
            drop = state.drop_after.pop(self.path, None)
        if state.fail_status is not None:
            self.send_error(state.fail_status)
            return
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if requested is not None and not state.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", requested)
            assert match, requested
            start = int(match[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:] if drop is None else body[start : start + drop]
        self.wfile.write(payload)  # HTTP/1.0: the connection closes after this


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = _State()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _payload(seed: int, n: int) -> bytes:
    """Incompressible, deterministic bytes (so archives are as long as their content)."""
    out = bytearray()
    block = seed.to_bytes(4, "little")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


OPENMIC_MEMBERS = {
    "openmic-2018/class-map.json": b'{"accordion": 0, "banjo": 1}',
    "openmic-2018/partitions/split01_train.csv": b"000046_3840\n000135_483840\n",
    "openmic-2018/audio/000/000046_3840.ogg": _payload(1, 40_000),
    "openmic-2018/._class-map.json": b"AppleDouble junk",
    "._junk": b"AppleDouble junk",
}


@pytest.fixture
def openmic(server: _Server, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Serve an OpenMIC-shaped tarball and point the release table at its md5."""
    tgz = _tgz(OPENMIC_MEMBERS)
    server.state.files["/openmic-2018-v1.0.0.tgz"] = tgz
    release = download.RELEASES["openmic"]
    patched = dataclasses.replace(
        release, files=(download.RemoteFile("openmic-2018-v1.0.0.tgz", md5=_md5(tgz)),)
    )
    monkeypatch.setitem(download.RELEASES, "openmic", patched)
    return tgz


MTAT_MEMBERS = {
    "0/artist-album-01-title-0-29.mp3": _payload(2, 9_000),
    "0/artist-album-01-title-30-59.mp3": _payload(3, 9_000),
    "c/other-record-02-song-0-29.mp3": _payload(4, 9_000),
    "f/last-one-03-tune-0-29.mp3": _payload(5, 9_000),
}
MTAT_CSV = (
    b'"clip_id"\t"guitar"\t"mp3_path"\r\n'
    b'"2"\t"1"\t"0/artist-album-01-title-0-29.mp3"\r\n'
    b'"6"\t"0"\t"0/artist-album-01-title-30-59.mp3"\r\n'
    b'"10"\t"1"\t"c/other-record-02-song-0-29.mp3"\r\n'
    b'"11"\t"0"\t"f/last-one-03-tune-0-29.mp3"\r\n'
)


def _mtat_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in MTAT_MEMBERS.items():
            zf.writestr(name, data)
        zf.writestr("__MACOSX/0/._artist-album-01-title-0-29.mp3", b"junk")
    return buf.getvalue()


@pytest.fixture
def mtat(server: _Server, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Serve an MTAT-shaped zip split in three parts plus the annotations file."""
    data = _mtat_zip()
    third = len(data) // 3
    chunks = [data[:third], data[third : 2 * third], data[2 * third :]]
    for i, chunk in enumerate(chunks, start=1):
        server.state.files[f"/mp3.zip.00{i}"] = chunk
    server.state.files["/annotations_final.csv"] = MTAT_CSV
    patched = dataclasses.replace(
        download.RELEASES["magnatagatune"],
        member_count=(".mp3", len(MTAT_MEMBERS)),
        text_rows=(("annotations_final.csv", len(MTAT_MEMBERS)),),
    )
    monkeypatch.setitem(download.RELEASES, "magnatagatune", patched)
    return data


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- downloads


def test_openmic_release_downloads_verifies_and_extracts(
    server: _Server, openmic: bytes, tmp_path: Path
) -> None:
    root = download_release("openmic", tmp_path, mirror=server.url)
    assert root == tmp_path / "openmic-2018"
    assert _tree(root) == {
        MARKER,
        "class-map.json",
        "partitions/split01_train.csv",
        "audio/000/000046_3840.ogg",
    }
    assert (root / "audio/000/000046_3840.ogg").read_bytes() == _payload(1, 40_000)
    assert not (tmp_path / "downloads").exists()  # archives deleted by default
    assert [p.name for p in tmp_path.iterdir()] == ["openmic-2018"]  # no partial folders left
    assert server.state.requests == [("/openmic-2018-v1.0.0.tgz", None)]


def test_dropped_connection_is_resumed_with_a_range_request(
    server: _Server, tmp_path: Path
) -> None:
    body = _payload(6, 50_000)
    server.state.files["/f.bin"] = body
    server.state.drop_after["/f.bin"] = 12_345
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", _md5(body), progress=False)
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", None), ("/f.bin", "bytes=12345-")]
    assert not (tmp_path / "f.bin.part").exists()


def test_server_ignoring_range_restarts_from_zero(server: _Server, tmp_path: Path) -> None:
    body = _payload(7, 30_000)
    server.state.files["/f.bin"] = body
    server.state.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes from another version")
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", _md5(body), progress=False)
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", "bytes=32-")]  # asked to resume, got 200


def test_416_on_a_complete_part_finishes_without_downloading(
    server: _Server, tmp_path: Path
) -> None:
    body = _payload(8, 5_000)
    server.state.files["/f.bin"] = body
    (tmp_path / "f.bin.part").write_bytes(body)
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", _md5(body), progress=False)
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", "bytes=5000-")]


def test_416_on_an_overlong_part_starts_over(server: _Server, tmp_path: Path) -> None:
    body = _payload(9, 5_000)
    server.state.files["/f.bin"] = body
    (tmp_path / "f.bin.part").write_bytes(body + b"extra")
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", _md5(body), progress=False)
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", "bytes=5005-"), ("/f.bin", None)]


def test_checksum_mismatch_names_file_and_both_md5s_and_leaves_no_file(
    server: _Server, tmp_path: Path
) -> None:
    body = _payload(10, 4_000)
    server.state.files["/f.bin"] = body
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as caught:
        download_file(server.url + "f.bin", tmp_path / "f.bin", wrong, progress=False)
    message = str(caught.value)
    assert "f.bin" in message and wrong in message and _md5(body) in message
    assert "deleted" in message
    assert list(tmp_path.iterdir()) == []


def test_release_checksum_mismatch_extracts_nothing(
    server: _Server, openmic: bytes, tmp_path: Path
) -> None:
    server.state.files["/openmic-2018-v1.0.0.tgz"] = _tgz({"openmic-2018/x": b"tampered"})
    with pytest.raises(ChecksumError, match="openmic-2018-v1.0.0.tgz: md5 mismatch"):
        download_release("openmic", tmp_path, mirror=server.url)
    assert not (tmp_path / "openmic-2018").exists()
    assert not (tmp_path / "downloads" / "openmic" / "openmic-2018-v1.0.0.tgz").exists()


def test_bounded_retries_then_a_clear_error(server: _Server, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = b"never served"
    server.state.fail_status = 503
    with pytest.raises(DownloadError, match=r"gave up after 3 failed attempts.*HTTP 503"):
        download_file(server.url + "f.bin", tmp_path / "f.bin", retries=2, progress=False)
    assert len(server.state.requests) == 3


def test_client_error_is_not_retried(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="missing.bin: HTTP 404"):
        download_file(server.url + "missing.bin", tmp_path / "missing.bin", progress=False)
    assert len(server.state.requests) == 1


def test_verified_existing_file_makes_no_request(
    server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"already here"
    (tmp_path / "f.bin").write_bytes(body)
    download_file(server.url + "f.bin", tmp_path / "f.bin", _md5(body), progress=False)
    assert server.state.requests == []
    assert "already there" in capsys.readouterr().err


def test_idempotent_release_rerun_makes_no_request(
    server: _Server, openmic: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    download_release("openmic", tmp_path, mirror=server.url)
    count = len(server.state.requests)
    capsys.readouterr()
    assert download_release("openmic", tmp_path, mirror=server.url) == tmp_path / "openmic-2018"
    assert len(server.state.requests) == count
    assert "already there" in capsys.readouterr().err


def test_progress_line_goes_to_stderr_only_when_asked(
    server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.files["/f.bin"] = _payload(11, 3_000)
    download_file(server.url + "f.bin", tmp_path / "a.bin", progress=True)
    shown = capsys.readouterr()
    assert shown.out == ""
    assert "\r  a.bin: " in shown.err and "(100%)" in shown.err
    download_file(server.url + "f.bin", tmp_path / "b.bin", progress=False)
    assert "\r" not in capsys.readouterr().err


# --------------------------------------------------------------------------- MagnaTagATune


def test_magnatagatune_parts_are_joined_verified_and_extracted(
    server: _Server, mtat: bytes, tmp_path: Path
) -> None:
    root = download_release("magnatagatune", tmp_path, mirror=server.url, keep_archives=True)
    assert root == tmp_path / "magnatagatune"
    assert _tree(root) == {MARKER, "annotations_final.csv", *MTAT_MEMBERS}
    for name, data in MTAT_MEMBERS.items():
        assert (root / name).read_bytes() == data
    assert (root / "annotations_final.csv").read_bytes() == MTAT_CSV
    # --keep-archives keeps what was downloaded; the joined zip is always removed
    kept = sorted(p.name for p in (tmp_path / "downloads" / "magnatagatune").iterdir())
    assert kept == ["annotations_final.csv", "mp3.zip.001", "mp3.zip.002", "mp3.zip.003"]


def test_magnatagatune_corrupt_member_fails_its_crc(
    server: _Server, mtat: bytes, tmp_path: Path
) -> None:
    damaged = bytearray(server.state.files["/mp3.zip.001"])
    offset = bytes(damaged).index(MTAT_MEMBERS["0/artist-album-01-title-0-29.mp3"][:64])
    damaged[offset + 10] ^= 0xFF
    server.state.files["/mp3.zip.001"] = bytes(damaged)
    with pytest.raises(DownloadError, match=r"artist-album-01-title-0-29\.mp3.*(CRC|corrupt)"):
        download_release("magnatagatune", tmp_path, mirror=server.url)
    assert not (tmp_path / "magnatagatune").exists()
    assert not list(tmp_path.glob(".magnatagatune.*"))


def test_magnatagatune_wrong_member_count_is_refused(
    server: _Server, mtat: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patched = dataclasses.replace(download.RELEASES["magnatagatune"], member_count=(".mp3", 25))
    monkeypatch.setitem(download.RELEASES, "magnatagatune", patched)
    with pytest.raises(DownloadError, match="holds 4 '.mp3' members, expected 25"):
        download_release("magnatagatune", tmp_path, mirror=server.url)
    assert not (tmp_path / "magnatagatune").exists()


def test_unknown_release_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown release 'mtat'.*magnatagatune, openmic"):
        download_release("mtat", tmp_path)


# --------------------------------------------------------------------------- safe extraction


def _tar_with(tmp_path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("ok.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        info.size = len(data) if info.isfile() else 0
        tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda base: tarfile.TarInfo("../evil"), "climbs out"),
        (lambda base: tarfile.TarInfo("sub/../../evil"), "climbs out"),
        (lambda base: tarfile.TarInfo(str(base / "evil")), "absolute path"),
        (lambda base: _link("link", "../evil", tarfile.SYMTYPE), "points outside"),
        (lambda base: _link("link", str(base / "evil"), tarfile.SYMTYPE), "absolute path"),
        (lambda base: _link("hard", "../evil", tarfile.LNKTYPE), "points outside"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out"],
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


def test_safe_extract_skips_appledouble_and_marks_completion(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dir/file.txt", b"content")
        zf.writestr("dir/._file.txt", b"junk")
        zf.writestr("__MACOSX/dir/._file.txt", b"junk")
        link = zipfile.ZipInfo("inner/link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, b"../dir/file.txt")
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
    with pytest.raises(DownloadError, match=r"dest: .*x exists but has no \.east_ray_extracted"):
        safe_extract(archive, tmp_path / "x")
    assert _tree(tmp_path / "x") == {"mine.txt"}


# --------------------------------------------------------------------------- command line


def test_cli_download_subcommand(
    server: _Server, openmic: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="python -m east_ray.data")
    add_cli(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "raw"
    args = parser.parse_args(
        ["download", "openmic", "--out", str(out), "--mirror", server.url, "--keep-archives"]
    )
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(out / "openmic-2018")
    assert (out / "downloads" / "openmic" / "openmic-2018-v1.0.0.tgz").is_file()
    defaults = parser.parse_args(["download", "magnatagatune"])
    assert defaults.out == Path("data/raw") and defaults.mirror is None
    assert defaults.keep_archives is False
    (out / "openmic-2018" / MARKER).unlink()  # force it past the "already there" check
    bad = ["download", "openmic", "--out", str(out), "--mirror", "ftp://x/"]
    assert data_cli.main(bad) == 2  # the one CLI convention: user errors exit 2, one line
    assert capsys.readouterr().err == (
        "error: mirror: got 'ftp://x/', expected an http://, https:// or file:// base URL\n"
    )
