"""Release downloads against a local HTTP server, and the `download` command; the authors'
OpenMIC validation list (downloaded once, md5-checked, cached) and `prepare`'s options for it.

The fixture archives are tiny copies of the real release layouts: an OpenMIC-shaped .tgz and
an MTAT-shaped zip split into three parts.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from east_ray.catalog import DATASETS
from east_ray.catalog.datasets import RemoteFile
from east_ray.data import __main__ as data_cli
from east_ray.data import fetch, prepare, valid_split
from east_ray.data.archives import MARKER, ArchiveError
from east_ray.data.download import add_cli, download_release
from east_ray.data.fetch import ChecksumError, DownloadError
from east_ray.data.release import ReleaseIndex
from east_ray.data.valid_split import authors_valid_list
from east_ray.errors import UnknownNameError
from tests.http_fixtures import Server, State, md5, patch_release, payload, serve
from tests.release_fixtures import OpenmicFixture, write_openmic


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setattr(fetch, "RETRY_DELAY_S", 0.0)
    with serve(monkeypatch) as httpd:
        yield httpd


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
    "openmic-2018/audio/000/000046_3840.ogg": payload(1, 40_000),
    "openmic-2018/._class-map.json": b"AppleDouble junk",
    "._junk": b"AppleDouble junk",
}


@pytest.fixture
def openmic(server: Server, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Serve an OpenMIC-shaped tarball and point the release table at its md5."""
    tgz = _tgz(OPENMIC_MEMBERS)
    server.state.files["/openmic-2018-v1.0.0.tgz"] = tgz
    patch_release(
        monkeypatch, "openmic", files=(RemoteFile("openmic-2018-v1.0.0.tgz", md5=md5(tgz)),)
    )
    return tgz


MTAT_MEMBERS = {
    "0/artist-album-01-title-0-29.mp3": payload(2, 9_000),
    "0/artist-album-01-title-30-59.mp3": payload(3, 9_000),
    "c/other-record-02-song-0-29.mp3": payload(4, 9_000),
    "f/last-one-03-tune-0-29.mp3": payload(5, 9_000),
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


def _pin_served(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the MTAT release's md5s at the files the server holds now (the real release
    pins the published ones)."""
    release = DATASETS["magnatagatune"].release
    assert release is not None
    files = tuple(
        RemoteFile(f.name, md5=md5(server.state.files["/" + f.name])) for f in release.files
    )
    patch_release(monkeypatch, "magnatagatune", files=files)


@pytest.fixture
def mtat(server: Server, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Serve an MTAT-shaped zip split in three parts plus the annotations file, md5-pinned."""
    data = _mtat_zip()
    third = len(data) // 3
    chunks = [data[:third], data[third : 2 * third], data[2 * third :]]
    for i, chunk in enumerate(chunks, start=1):
        server.state.files[f"/mp3.zip.00{i}"] = chunk
    server.state.files["/annotations_final.csv"] = MTAT_CSV
    patch_release(
        monkeypatch,
        "magnatagatune",
        member_count=(".mp3", len(MTAT_MEMBERS)),
        text_rows=(("annotations_final.csv", len(MTAT_MEMBERS)),),
    )
    _pin_served(server, monkeypatch)
    return data


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- OpenMIC


def test_openmic_release_downloads_verifies_and_extracts(
    server: Server, openmic: bytes, tmp_path: Path
) -> None:
    root = download_release("openmic", tmp_path, mirror=server.url)
    assert root == tmp_path / "openmic-2018"
    assert _tree(root) == {
        MARKER,
        "class-map.json",
        "partitions/split01_train.csv",
        "audio/000/000046_3840.ogg",
    }
    assert (root / "audio/000/000046_3840.ogg").read_bytes() == payload(1, 40_000)
    assert not (tmp_path / "downloads").exists()  # archives deleted by default
    assert [p.name for p in tmp_path.iterdir()] == ["openmic-2018"]  # no partial folders left
    assert server.state.requests == [("/openmic-2018-v1.0.0.tgz", None)]


def test_release_checksum_mismatch_extracts_nothing(
    server: Server, openmic: bytes, tmp_path: Path
) -> None:
    server.state.files["/openmic-2018-v1.0.0.tgz"] = _tgz({"openmic-2018/x": b"tampered"})
    with pytest.raises(ChecksumError, match="openmic-2018-v1.0.0.tgz: md5 mismatch"):
        download_release("openmic", tmp_path, mirror=server.url)
    assert not (tmp_path / "openmic-2018").exists()
    assert not (tmp_path / "downloads" / "openmic" / "openmic-2018-v1.0.0.tgz").exists()


def test_idempotent_release_rerun_makes_no_request(
    server: Server, openmic: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    download_release("openmic", tmp_path, mirror=server.url)
    count = len(server.state.requests)
    with caplog.at_level(logging.INFO, logger="east_ray"):
        again = download_release("openmic", tmp_path, mirror=server.url)
    assert again == tmp_path / "openmic-2018"
    assert len(server.state.requests) == count
    assert "already there; nothing to do" in caplog.text


def test_unknown_release_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="unknown release 'mtat'.*magnatagatune, openmic"):
        download_release("mtat", tmp_path)


# --------------------------------------------------------------------------- MagnaTagATune


def test_magnatagatune_parts_are_joined_verified_and_extracted(
    server: Server, mtat: bytes, tmp_path: Path
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


def test_every_release_file_is_md5_pinned() -> None:
    """The md5s two public sources agree on (download.py's docstring names them)."""
    pinned = {f.name: f.md5 for r in DATASETS.values() if r.release for f in r.release.files}
    assert pinned == {
        "openmic-2018-v1.0.0.tgz": "e4ccf187e2bb5ab2e115416e8aafe7f4",
        "annotations_final.csv": "f04fa01752a8cc64f6e1ca142a0fef1d",
        "mp3.zip.001": "179c91c8c2a6e9b3da3d4e69d306fd3b",
        "mp3.zip.002": "acf8265ff2e35c6ff22210e46457a824",
        "mp3.zip.003": "582dc649cabb8cd991f09e14b99349a5",
    }


def test_magnatagatune_part_with_another_md5_is_refused_and_named(
    server: Server, mtat: bytes, tmp_path: Path
) -> None:
    part = bytearray(server.state.files["/mp3.zip.002"])
    part[5] ^= 0xFF  # same length, other bytes: only the md5 can tell
    server.state.files["/mp3.zip.002"] = bytes(part)
    with pytest.raises(ChecksumError, match=r"mp3\.zip\.002: md5 mismatch: expected [0-9a-f]{32}"):
        download_release("magnatagatune", tmp_path, mirror=server.url)
    downloads = tmp_path / "downloads" / "magnatagatune"
    assert sorted(p.name for p in downloads.iterdir()) == ["annotations_final.csv", "mp3.zip.001"]
    assert not (tmp_path / "magnatagatune").exists()


def test_magnatagatune_corrupt_member_fails_its_crc(
    server: Server, mtat: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = bytearray(server.state.files["/mp3.zip.001"])
    offset = bytes(damaged).index(MTAT_MEMBERS["0/artist-album-01-title-0-29.mp3"][:64])
    damaged[offset + 10] ^= 0xFF
    server.state.files["/mp3.zip.001"] = bytes(damaged)
    _pin_served(server, monkeypatch)  # a part that verifies, damaged before it was pinned
    with pytest.raises(ArchiveError, match=r"artist-album-01-title-0-29\.mp3.*(CRC|corrupt)"):
        download_release("magnatagatune", tmp_path, mirror=server.url)
    assert not (tmp_path / "magnatagatune").exists()
    assert not list(tmp_path.glob(".magnatagatune.*"))


def test_magnatagatune_wrong_member_count_is_refused(
    server: Server, mtat: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch_release(monkeypatch, "magnatagatune", member_count=(".mp3", 25))
    with pytest.raises(DownloadError, match="holds 4 '.mp3' members, expected 25"):
        download_release("magnatagatune", tmp_path, mirror=server.url)
    assert not (tmp_path / "magnatagatune").exists()


def test_magnatagatune_wrong_row_count_deletes_the_annotations(
    server: Server, mtat: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.state.files["/annotations_final.csv"] = MTAT_CSV.rsplit(b"\r\n", 2)[0] + b"\r\n"
    _pin_served(server, monkeypatch)
    with pytest.raises(DownloadError, match="annotations_final.csv: 3 data rows, expected 4"):
        download_release("magnatagatune", tmp_path, mirror=server.url)
    assert not (tmp_path / "downloads" / "magnatagatune" / "annotations_final.csv").exists()
    assert not (tmp_path / "magnatagatune").exists()


# --------------------------------------------------------------------------- command line


def test_cli_download_subcommand(
    server: Server, openmic: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
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


def _main(argv: list[str]) -> int:
    """`python -m east_ray.data ...` (conftest undoes its logging setup)."""
    return data_cli.main(argv)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda state: None, "mirror: got 'ftp://x/', expected an http://, https:// or file://"),
        (
            lambda state: state.files.update({"/openmic-2018-v1.0.0.tgz": b"tampered"}),
            "openmic-2018-v1.0.0.tgz: md5 mismatch",
        ),
        (lambda state: setattr(state, "fail_status", 404), "openmic-2018-v1.0.0.tgz: HTTP 404"),
    ],
    ids=["bad-mirror", "checksum", "http-404"],
)
def test_cli_download_user_errors_exit_2_with_one_line(
    server: Server,
    openmic: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[State], object],
    message: str,
) -> None:
    damage(server.state)
    mirror = "ftp://x/" if "mirror" in message else server.url
    argv = ["-q", "download", "openmic", "--out", str(tmp_path), "--mirror", mirror]
    assert _main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err


def test_cli_download_of_parts_that_are_no_archive_exits_2(
    server: Server,
    mtat: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i in (1, 2, 3):
        server.state.files[f"/mp3.zip.00{i}"] = b"not a zip part"
    _pin_served(server, monkeypatch)
    argv = ["-q", "download", "magnatagatune", "--out", str(tmp_path), "--mirror", server.url]
    assert _main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: archive: ") and "mp3.zip is neither a tar nor a zip" in err
    assert err.count("\n") == 1


# --------------------------------------------------------------------------- validation list


@pytest.fixture
def valid_list(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[OpenmicFixture, bytes]:
    """A release, and a list of 3 of its training keys served (in the authors' JSON-lines
    form) where the pinned URL of the authors' list is pointed."""
    fx = write_openmic(tmp_path / "openmic-2018", n=12)
    body = "".join(
        json.dumps({"sample_key": k, "label": [0] * 20}) + "\n" for k in sorted(fx.train[:3])
    ).encode()
    server.state.files["/pinned/openmic_valid.json"] = body
    monkeypatch.setattr(valid_split, "AUTHORS_URL", server.url + "pinned/openmic_valid.json")
    monkeypatch.setattr(valid_split, "AUTHORS_MD5", md5(body))
    monkeypatch.setattr(valid_split, "AUTHORS_SIZE", len(body))
    return fx, body


def test_authors_valid_list_is_downloaded_once_verified_and_cached(
    server: Server, valid_list: tuple[OpenmicFixture, bytes]
) -> None:
    fx, body = valid_list
    split = authors_valid_list(fx.root)
    assert split.keys == tuple(sorted(fx.train[:3]))
    assert (fx.root / "east_ray" / "openmic_valid.json").read_bytes() == body
    assert server.state.requests == [("/pinned/openmic_valid.json", None)]
    assert authors_valid_list(fx.root) == split  # from the cache
    assert len(server.state.requests) == 1
    assert split.describe() == {
        "rule": "authors",
        "source": valid_split.AUTHORS_URL,
        "md5": md5(body),
        "clips": 3,
    }


def test_authors_valid_list_with_another_md5_is_refused(
    server: Server, valid_list: tuple[OpenmicFixture, bytes]
) -> None:
    fx, body = valid_list
    server.state.files["/pinned/openmic_valid.json"] = body.replace(b"_", b"-")  # same size
    with pytest.raises(ChecksumError) as caught:
        authors_valid_list(fx.root)
    message = str(caught.value)
    assert message.startswith("openmic_valid.json: md5 mismatch: expected " + md5(body))
    assert "--valid-list FILE" in message and "--valid-split seeded" in message
    assert list((fx.root / "east_ray").iterdir()) == []  # nothing kept


def _prepare_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[int, list[object]]:
    """Run `prepare` on the command line up to the Parquet writer (not run); returns the exit
    code and the release index (at most one) the writer was handed."""
    seen: list[object] = []
    monkeypatch.setattr(prepare, "prepare", lambda index, *a, **k: seen.append(index))
    return _main(["-q", "prepare", *argv]), seen


def test_cli_prepare_openmic_defaults_to_the_authors_list(
    server: Server,
    valid_list: tuple[OpenmicFixture, bytes],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fx, body = valid_list
    base = ["openmic", "--root", str(fx.root), "--out", str(tmp_path / "out")]
    rc, seen = _prepare_cli(monkeypatch, base)
    assert rc == 0 and len(server.state.requests) == 1
    (index,) = seen
    assert isinstance(index, ReleaseIndex) and index.valid_split["rule"] == "authors"
    assert sorted(index.clips.loc[index.clips["split"] == "valid", "clip_id"]) == sorted(
        fx.train[:3]
    )
    del server.state.files["/pinned/openmic_valid.json"]  # neither of these may ask for it
    copy = tmp_path / "copy.json"
    copy.write_bytes(body)
    rc, seen = _prepare_cli(monkeypatch, [*base, "--valid-list", str(copy)])
    assert rc == 0 and isinstance(seen[0], ReleaseIndex)
    assert seen[0].valid_split == {**index.valid_split, "source": str(copy)}
    rc, seen = _prepare_cli(monkeypatch, [*base, "--valid-split", "seeded"])
    assert rc == 0 and isinstance(seen[0], ReleaseIndex)
    assert seen[0].valid_split == {"rule": "seeded", "fraction": 0.15, "seed": 1223}
    assert len(server.state.requests) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["openmic", "--valid-list", "{bad}"], "validation keys are not in the training partition"),
        (["synthmic", "--valid-split", "authors"], "got 'authors' for synthmic"),
        (["openmic", "--valid-list", "{missing}"], "missing; expected a validation list"),
    ],
    ids=["key-outside-train", "synthmic-has-no-list", "missing-list"],
)
def test_cli_prepare_validation_errors_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    fx = write_openmic(tmp_path / "openmic-2018", n=8)
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{fx.train[0]}\n{fx.test[0]}\n")
    paths = {"bad": str(bad), "missing": str(tmp_path / "missing.json")}
    argv = [a.format(**paths) for a in argv]
    rc, seen = _prepare_cli(monkeypatch, [*argv, "--root", str(fx.root), "--out", "unused"])
    assert rc == 2 and seen == []
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and message in errors[0]
