"""The study's data stage: `python -m east_ray.study openmic --download` from nothing to the
tables against a local server (release archive and the authors' validation list), a rerun
that only prints the tables, and the fast failure when the release is missing.

Test seam for the checksums: the tiny archive and list cannot have the published md5s, so
the test points the catalog row's release (`http_fixtures.patch_release`) and the pinned list
(`valid_split.AUTHORS_URL/MD5/SIZE`) at the served bytes; the code checks them as it would
the real ones.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shlex
import sys
import tarfile
import types
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from east_ray.catalog.datasets import RemoteFile
from east_ray.config import load_study
from east_ray.data import fetch, valid_split
from east_ray.data.archives import MARKER
from east_ray.errors import BadValueError
from east_ray.study import __main__ as study
from east_ray.study.data_source import DataOptions, DataSource, MissingReleaseError, plan_data
from tests.http_fixtures import Server, md5, patch_release, serve
from tests.release_fixtures import OpenmicFixture, tiny_study, write_openmic

ARCHIVE = "/openmic-2018-v1.0.0.tgz"
VALID_LIST = "/suncerock/EAsT-music-classification/pinned/openmic_valid.json"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setattr(fetch, "RETRY_DELAY_S", 0.0)
    with serve(monkeypatch) as httpd:
        yield httpd


def _tgz(root: Path) -> bytes:
    """`root` packed as the release is: every file under `openmic-2018/`, plus the
    AppleDouble members the real tarball carries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname="openmic-2018")
        junk = tarfile.TarInfo("openmic-2018/._class-map.json")
        junk.size = 4
        tar.addfile(junk, io.BytesIO(b"junk"))
    return buf.getvalue()


@pytest.fixture
def openmic_mirror(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> OpenmicFixture:
    """A tiny OpenMIC release served as the real archive, and a validation list (4 usable
    training clips, in the authors' JSON-lines form) served where the pinned list is."""
    fx = write_openmic(tmp_path / "source" / "openmic-2018")
    archive = _tgz(fx.root)
    server.state.files[ARCHIVE] = archive
    patch_release(
        monkeypatch, "openmic", files=(RemoteFile(ARCHIVE.lstrip("/"), md5=md5(archive)),)
    )
    valid = sorted(k for k in fx.train if k not in fx.bad)[:4]
    body = "".join(json.dumps({"sample_key": k, "label": [0] * 20}) + "\n" for k in valid)
    server.state.files[VALID_LIST] = body.encode()
    monkeypatch.setattr(valid_split, "AUTHORS_URL", server.url + VALID_LIST.lstrip("/"))
    monkeypatch.setattr(valid_split, "AUTHORS_MD5", md5(body.encode()))
    monkeypatch.setattr(valid_split, "AUTHORS_SIZE", len(body.encode()))
    return fx


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.slow
def test_download_runs_every_stage_once_then_only_prints_the_tables(
    server: Server,
    openmic_mirror: OpenmicFixture,
    tmp_path: Path,
    ray_local: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(tiny_study("tiny", regularizers='["none", "dcor"]'))
    raw, data, storage = tmp_path / "efs" / "raw", tmp_path / "efs" / "openmic", tmp_path / "res"
    argv = [
        str(spec),
        "--download",
        "--mirror",
        server.url,
        "--raw",
        str(raw),
        "--data",
        str(data),
        "--storage",
        str(storage),
        "--max-epochs",
        "1",
    ]
    assert study.main(argv) == 0
    out, err = capsys.readouterr()
    assert server.state.requests == [(ARCHIVE, None), (VALID_LIST, None)]
    # the one fit, named by fraction, seed and the recipe's key
    (record,) = (storage / "tiny" / "teacher_lr_fits" / "handcrafted").glob("frac1-seed0-*.json")
    fit = record.with_suffix("")
    release = raw / "openmic-2018"
    for line in (
        f"data: no openmic release under {raw}; downloading it",
        f"data: preparing {release} into {data} with the study's [features] (Ray Data tasks)",
        "teacher handcrafted: 20 clips in 1 shards, 0 already written",
        f"Teacher_LR {fit}: fitting",  # in the study
        "0 cells already done, 2 to run",
    ):
        assert line in err, line
    assert (release / MARKER).is_file() and not (raw / "downloads").exists()
    meta = json.loads((data / "meta.json").read_text())
    assert meta["valid_split"]["rule"] == "authors" and meta["counts"]["valid"] == 4
    assert "EAsT_Final" in out and "Baseline" in out
    results = pd.read_parquet(storage / "tiny" / "results.parquet")
    assert sorted(results["regularizer"]) == ["dcor", "none", "teacher_lr"]
    written = _tree(tmp_path / "efs") | _tree(storage / "tiny" / "cells")

    assert study.main(argv) == 0  # everything is there: nothing is fetched, prepared, trained
    out, err = capsys.readouterr()
    assert len(server.state.requests) == 2
    for line in (
        f"data: {data} is prepared; skipping download and prepare",
        f"{data}: teacher handcrafted already extracted (20 clips)",
        f"Teacher_LR {fit}: already fitted",
        "2 cells already done, 0 to run",
    ):
        assert line in err, line
    assert "downloading" not in err and "preparing" not in err and "fitting" not in err
    assert "EAsT_Final" in out
    assert _tree(tmp_path / "efs") | _tree(storage / "tiny" / "cells") == written


def test_a_missing_release_without_download_fails_before_ray_writing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(*args: object, **kwargs: object) -> int:
        raise AssertionError("the study started")

    # a stand-in driver: the real one would import torch and Ray, which must not be needed
    driver = types.ModuleType("east_ray.study.driver")
    driver.run_study = never  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "east_ray.study.driver", driver)
    spec = tmp_path / "tiny.toml"
    spec.write_text(tiny_study("tiny"))
    data, raw = tmp_path / "openmic", tmp_path / "raw"
    argv = [str(spec), "--data", str(data), "--raw", str(raw), "--storage", str(tmp_path / "res")]
    before = _tree(tmp_path)
    assert study.main(["-q", *argv]) == 2
    captured = capsys.readouterr()
    command = shlex.join(["python", "-m", "east_ray.study", "-q", *argv, "--download"])
    assert captured.err == (
        f"error: --data {data}: no prepared dataset, and no openmic release under --raw "
        f"{raw}; to download, verify and prepare it, run: {command}\n"
    )
    assert captured.out == ""
    assert _tree(tmp_path) == before


def test_the_plan_finds_a_release_extracted_by_hand_and_checks_the_options(
    tmp_path: Path,
) -> None:
    spec = load_study("openmic")
    source = DataSource(data=tmp_path / "prepared", raw=tmp_path / "raw")
    with pytest.raises(MissingReleaseError, match="run: the same command with --download"):
        plan_data(spec, source)
    fetching = dataclasses.replace(source, download=True, mirror="ftp://mirror/")
    with pytest.raises(BadValueError, match="mirror: got 'ftp://mirror/'"):
        plan_data(spec, fetching)
    by_hand = tmp_path / "raw" / "openmic-2018"  # `tar xzf` of the release, no marker
    by_hand.mkdir(parents=True)
    (by_hand / "class-map.json").write_text("{}")
    plan = plan_data(spec, source)
    assert plan.release == by_hand and not plan.prepared
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # nothing written
    with pytest.raises(BadValueError, match="--mirror http://mirror/: .* add --download"):
        DataOptions(mirror="http://mirror/")
    options = DataOptions(data_root=tmp_path / "prepared_root", raw=tmp_path / "raw")
    assert options.source(spec).data == (tmp_path / "prepared_root" / "openmic").resolve()
