"""One-file downloads against a local HTTP server: resume, misbehaving servers (dropped,
stalled), md5 and sha256, progress."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from east_ray.data import fetch
from east_ray.data.checksums import md5sum, mismatch, parse_md5, parse_sha256, sha256sum
from east_ray.data.fetch import ChecksumError, DownloadError, download_file
from east_ray.errors import BadValueError, UserError
from tests.http_fixtures import Server, md5, payload, serve, sha256


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setattr(fetch, "RETRY_DELAY_S", 0.0)
    with serve(monkeypatch) as httpd:
        yield httpd


def test_dropped_connection_is_resumed_with_a_range_request(server: Server, tmp_path: Path) -> None:
    body = payload(6, 50_000)
    server.state.files["/f.bin"] = body
    server.state.drop_after["/f.bin"] = 12_345
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", md5(body), progress=False)
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", None), ("/f.bin", "bytes=12345-")]
    assert not (tmp_path / "f.bin.part").exists()


def test_stalled_transfer_times_out_and_resumes(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "TIMEOUT_S", 0.3)
    body = payload(13, 40_000)
    server.state.files["/f.bin"] = body
    server.state.stall_after["/f.bin"] = 10_000  # then silence, connection left open
    started = time.monotonic()
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", md5(body), progress=False)
    assert time.monotonic() - started < 2.0
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", None), ("/f.bin", "bytes=10000-")]


def test_server_that_never_answers_is_retried_then_named(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "TIMEOUT_S", 0.2)
    server.state.files["/f.bin"] = payload(14, 1_000)
    server.state.stall_after["/f.bin"] = 0  # headers, then nothing, once
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", progress=False)
    assert path.read_bytes() == payload(14, 1_000)
    assert len(server.state.requests) == 2


def test_server_ignoring_range_restarts_from_zero(server: Server, tmp_path: Path) -> None:
    body = payload(7, 30_000)
    server.state.files["/f.bin"] = body
    server.state.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes from another version")
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", md5(body), progress=False)
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", "bytes=32-")]  # asked to resume, got 200


def test_416_on_a_complete_part_finishes_without_downloading(
    server: Server, tmp_path: Path
) -> None:
    body = payload(8, 5_000)
    server.state.files["/f.bin"] = body
    (tmp_path / "f.bin.part").write_bytes(body)
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", md5(body), progress=False)
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", "bytes=5000-")]


def test_416_on_an_overlong_part_starts_over(server: Server, tmp_path: Path) -> None:
    body = payload(9, 5_000)
    server.state.files["/f.bin"] = body
    (tmp_path / "f.bin.part").write_bytes(body + b"extra")
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", md5(body), progress=False)
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", "bytes=5005-"), ("/f.bin", None)]


def test_checksum_mismatch_names_file_and_both_md5s_and_leaves_no_file(
    server: Server, tmp_path: Path
) -> None:
    body = payload(10, 4_000)
    server.state.files["/f.bin"] = body
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as caught:
        download_file(server.url + "f.bin", tmp_path / "f.bin", wrong, progress=False)
    message = str(caught.value)
    assert "f.bin" in message and wrong in message and md5(body) in message
    assert "deleted" in message
    assert isinstance(caught.value, UserError)
    assert list(tmp_path.iterdir()) == []


def test_sha256_whole_or_prefix_verifies_and_a_mismatch_is_deleted(
    server: Server, tmp_path: Path
) -> None:
    body = payload(15, 3_000)
    server.state.files["/f.bin"] = body
    full, prefix = sha256(body), sha256(body)[:8]
    assert download_file(server.url + "f.bin", tmp_path / "a.bin", sha256=full, progress=False)
    assert download_file(server.url + "f.bin", tmp_path / "b.bin", sha256=prefix, progress=False)
    wrong = "0" * 8
    with pytest.raises(
        ChecksumError, match=f"c.bin: sha256 mismatch: expected {wrong}, got {full}"
    ):
        download_file(server.url + "f.bin", tmp_path / "c.bin", sha256=wrong, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_existing_file_that_does_not_verify_is_downloaded_again(
    server: Server, tmp_path: Path
) -> None:
    body = payload(16, 2_000)
    server.state.files["/f.bin"] = body
    (tmp_path / "f.bin").write_bytes(body[:1_500])  # an earlier, truncated copy
    path = download_file(server.url + "f.bin", tmp_path / "f.bin", sha256=sha256(body)[:10])
    assert path.read_bytes() == body
    assert server.state.requests == [("/f.bin", None)]


def test_wrong_size_is_refused_and_deleted(server: Server, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = payload(12, 1_000)
    with pytest.raises(DownloadError, match="downloaded 1000 bytes .* expected 999"):
        download_file(server.url + "f.bin", tmp_path / "f.bin", size=999, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bounded_retries_then_a_clear_error(server: Server, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = b"never served"
    server.state.fail_status = 503
    with pytest.raises(DownloadError, match=r"gave up after 3 failed attempts.*HTTP 503"):
        download_file(server.url + "f.bin", tmp_path / "f.bin", retries=2, progress=False)
    assert len(server.state.requests) == 3


def test_client_error_is_not_retried(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="missing.bin: HTTP 404"):
        download_file(server.url + "missing.bin", tmp_path / "missing.bin", progress=False)
    assert len(server.state.requests) == 1


def test_verified_existing_file_makes_no_request(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"already here"
    (tmp_path / "f.bin").write_bytes(body)
    with caplog.at_level(logging.INFO, logger="east_ray"):
        download_file(server.url + "f.bin", tmp_path / "f.bin", md5(body), progress=False)
    assert server.state.requests == []
    assert "already there and its md5 verifies" in caplog.text


def test_progress_bar_goes_to_stderr_only_when_asked(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.files["/f.bin"] = payload(11, 3_000)
    download_file(server.url + "f.bin", tmp_path / "a.bin", progress=True)
    shown = capsys.readouterr()
    assert shown.out == ""
    assert "a.bin: 100%" in shown.err
    download_file(server.url + "f.bin", tmp_path / "b.bin", progress=False)
    download_file(server.url + "f.bin", tmp_path / "c.bin")  # not a terminal: no bar
    assert "%" not in capsys.readouterr().err


def test_checksum_helpers(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    abc_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert md5sum(tmp_path / "f") == "900150983cd24fb0d6963f7d28e17f72"
    assert sha256sum(tmp_path / "f") == abc_sha256
    assert parse_md5("900150983CD24FB0D6963F7D28E17F72") == "900150983cd24fb0d6963f7d28e17f72"
    with pytest.raises(BadValueError, match="md5: got 'abc', expected 32 hex digits"):
        parse_md5("abc")
    assert parse_sha256("BA7816BF") == "ba7816bf"
    with pytest.raises(BadValueError, match="sha256: got 'ba78', expected 64 hex digits"):
        parse_sha256("ba78")
    assert mismatch(tmp_path / "f", None, 3, "ba7816bf") is None
    assert mismatch(tmp_path / "f", None, 4, None) == "its size is 3 bytes, expected 4"
    assert mismatch(tmp_path / "f", None, None, "00000000") == (
        f"sha256 mismatch: expected 00000000, got {abc_sha256}"
    )
