"""Teacher weight downloads against a local HTTP server: published checksums, trust on first
use, truncated and stalled transfers, damaged cached files, offline errors, `checkpoint=`.

No teacher package is needed: the weights are small state dicts saved with `torch.save`,
served under a teacher's file name, and the registry row's URL points at the server.
"""

from __future__ import annotations

import dataclasses
import io
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from east_ray.catalog.teachers import TEACHERS, get_teacher
from east_ray.data import fetch as fetch_module
from east_ray.errors import BadValueError
from east_ray.teachers import weights
from east_ray.teachers.weights import PINNED, Pin, WeightsUnavailableError, read_weights
from tests.http_fixtures import Server, md5, serve, sha256

NAME = "torchopenl3_mel128_music_512.pth.tar"  # an unpinned release file (trust on first use)
SOURCE = "the test's server"


def _state_bytes(seed: int) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    buf = io.BytesIO()
    torch.save({"layer.weight": torch.randn(64, 64, generator=generator)}, buf)
    return buf.getvalue()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Server]:
    """A server holding one weights file, torch's hub cache in `tmp_path/hub`, no delays."""
    monkeypatch.setattr(fetch_module, "RETRY_DELAY_S", 0.0)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with serve(monkeypatch) as httpd:
        httpd.state.files["/" + NAME] = _state_bytes(1)
        row = dataclasses.replace(get_teacher("openl3"), weights_url=httpd.url + NAME)
        monkeypatch.setitem(TEACHERS, "openl3", row)
        yield httpd


def _cached(name: str = NAME) -> Path:
    return weights.cache_dir() / name


def _listing() -> list[str]:
    """The cache's files, lock files left out."""
    return sorted(p.name for p in weights.cache_dir().iterdir() if p.suffix != ".lock")


def _pin(monkeypatch: pytest.MonkeyPatch, pin: Pin) -> None:
    monkeypatch.setitem(PINNED, NAME, pin)


# --- published checksums ------------------------------------------------------------------


def test_pinned_names_are_release_files_and_their_checksums_parse() -> None:
    released = {
        weights.file_name(url)
        for info in TEACHERS.values()
        for url in (info.weights_url, info.pca_url)
        if url
    }
    assert set(PINNED) <= released
    assert set(PINNED) == {
        "vggish-10086976.pth",
        "vggish_pca_params-970ea276.pth",
        "Cnn14_mAP=0.431.pth",
    }
    for name, pin in PINNED.items():
        assert pin.md5 or pin.sha256, name
        assert pin.md5 is None or re.fullmatch(r"[0-9a-f]{32}", pin.md5), name
        assert pin.sha256 is None or re.fullmatch(r"[0-9a-f]{8,64}", pin.sha256), name
        if pin.sha256 and len(pin.sha256) < 64:  # torch.hub's convention: the name carries it
            assert f"-{pin.sha256}." in name, name


def test_pinned_download_is_verified_and_records_nothing(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = server.state.files["/" + NAME]
    _pin(monkeypatch, Pin(SOURCE, md5=md5(body), sha256=sha256(body)[:8], size=len(body)))
    assert read_weights("openl3", None, True) is not None
    assert _cached().read_bytes() == body
    assert _listing() == [NAME]  # no .sha256 record beside a pinned file


def test_download_that_misses_the_published_checksum_is_not_kept(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = server.state.files["/" + NAME]
    _pin(monkeypatch, Pin(SOURCE, sha256="0badc0de"))
    with pytest.raises(WeightsUnavailableError) as caught:
        weights.fetch("openl3", server.url + NAME)
    message = str(caught.value)
    assert NAME in message and server.url + NAME in message
    assert f"sha256 {sha256(body)}, expected 0badc0de" in message
    assert "published checksum (the test's server)" in message and "checkpoint=" in message
    assert _listing() == []  # neither the file nor a .part


def test_truncated_cached_file_is_detected_on_load_and_fetched_again(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = server.state.files["/" + NAME]
    _pin(monkeypatch, Pin(SOURCE, md5=md5(body)))
    first = read_weights("openl3", None, True)
    _cached().write_bytes(body[: len(body) // 2])  # an interrupted copy
    again = read_weights("openl3", None, True)
    assert first is not None and again is not None
    torch.testing.assert_close(again.state, first.state)
    assert _cached().read_bytes() == body
    assert [path for path, _ in server.state.requests] == ["/" + NAME, "/" + NAME]


# --- transfers ----------------------------------------------------------------------------


def test_transfer_closed_early_is_resumed_and_verified(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = server.state.files["/" + NAME]
    _pin(monkeypatch, Pin(SOURCE, md5=md5(body)))
    server.state.drop_after["/" + NAME] = 5_000
    assert weights.fetch("openl3", server.url + NAME).read_bytes() == body
    assert server.state.requests == [("/" + NAME, None), ("/" + NAME, "bytes=5000-")]


def test_server_that_keeps_closing_early_gives_an_error_naming_the_file(
    server: Server,
) -> None:
    server.state.drop_after["/" + NAME] = 100
    server.state.keep_dropping = True
    server.state.ignore_range = True  # every attempt restarts: no progress
    with pytest.raises(WeightsUnavailableError) as caught:
        weights.fetch("openl3", server.url + NAME)
    message = str(caught.value)
    assert f"gave up after {fetch_module.RETRIES + 1} failed attempts" in message
    assert "connection closed after 100 of" in message
    assert str(_cached()) in message and "checkpoint=" in message
    assert not _cached().exists()


def test_stalled_transfer_times_out_and_is_resumed(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "TIMEOUT_S", 0.3)
    body = server.state.files["/" + NAME]
    server.state.stall_after["/" + NAME] = 4_000
    started = time.monotonic()
    assert weights.fetch("openl3", server.url + NAME).read_bytes() == body
    assert time.monotonic() - started < 2.0
    assert server.state.requests[-1] == ("/" + NAME, "bytes=4000-")


def test_concurrent_loads_download_once(server: Server) -> None:
    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(weights.fetch("openl3", server.url + NAME)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert paths == [_cached()] * 4
    assert len(server.state.requests) == 1


# --- trust on first use -------------------------------------------------------------------


def test_first_download_records_its_sha256_and_later_loads_check_it(server: Server) -> None:
    body = server.state.files["/" + NAME]
    weights.fetch("openl3", server.url + NAME)
    record = weights.sidecar(_cached())
    assert record.read_text() == f"{sha256(body)}  {NAME}\n"  # `sha256sum -c` reads it
    damaged = bytearray(body)
    damaged[-1] ^= 0xFF  # same size, other bytes
    _cached().write_bytes(bytes(damaged))
    assert weights.fetch("openl3", server.url + NAME).read_bytes() == body
    assert len(server.state.requests) == 2
    assert record.read_text() == f"{sha256(body)}  {NAME}\n"


def test_changed_upstream_file_is_refused_against_the_recorded_sha256(server: Server) -> None:
    body = server.state.files["/" + NAME]
    weights.fetch("openl3", server.url + NAME)
    _cached().unlink()
    server.state.files["/" + NAME] = other = _state_bytes(2)
    with pytest.raises(WeightsUnavailableError) as caught:
        weights.fetch("openl3", server.url + NAME)
    message = str(caught.value)
    record = weights.sidecar(_cached())
    assert f"sha256 {sha256(other)}, expected {sha256(body)}" in message
    assert f"delete {record}" in message and "checkpoint=" in message
    assert _listing() == [NAME + ".sha256"]  # the download was not kept; the record was
    record.unlink()  # the documented fix: trust the new file
    assert weights.fetch("openl3", server.url + NAME).read_bytes() == other


def test_offline_with_a_damaged_cached_file_names_it_and_the_fix(server: Server) -> None:
    weights.fetch("openl3", server.url + NAME)
    _cached().write_bytes(b"half a file")
    server.state.fail_status = 404  # the host is gone
    with pytest.raises(WeightsUnavailableError) as caught:
        weights.fetch("openl3", server.url + NAME)
    message = str(caught.value)
    assert f"put it at {_cached()}" in message and "checkpoint=Path(...)" in message
    assert "did not verify (sha256 mismatch" in message and "was deleted" in message


def test_malformed_record_is_named(server: Server) -> None:
    weights.fetch("openl3", server.url + NAME)
    record = weights.sidecar(_cached())
    record.write_text("not a digest\n")
    with pytest.raises(BadValueError, match=re.escape(f"{record}: expected '<sha256>  {NAME}'")):
        weights.fetch("openl3", server.url + NAME)


def test_unreadable_cached_file_says_which_files_to_delete(server: Server) -> None:
    """A file already in the cache (say, fetched by the teacher's package) is trusted on its
    first use here; when it cannot be read, the error names both files to delete."""
    weights.cache_dir().mkdir(parents=True)
    _cached().write_bytes(b"<html>an error page saved as weights</html>")
    with pytest.raises(BadValueError) as caught:
        read_weights("openl3", None, True)
    record = weights.sidecar(_cached())
    assert f"delete {_cached()} and {record}" in str(caught.value)
    assert server.state.requests == []


# --- checkpoint= --------------------------------------------------------------------------


def test_checkpoint_file_is_never_verified_or_deleted(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pin(monkeypatch, Pin(SOURCE, sha256="0badc0de"))  # the user's copy does not match: still used
    own = tmp_path / NAME
    own.write_bytes(server.state.files["/" + NAME])
    assert read_weights("openl3", own, True) is not None
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BadValueError, match=re.escape(f"{garbage} could not be read")) as caught:
        read_weights("openl3", garbage, True)
    assert "pass the release's file" in str(caught.value)
    assert own.is_file() and garbage.is_file()
    assert server.state.requests == []
