"""Shared test fixtures: `../shared/data` when present, a local Ray, a prepared dataset."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _plain_east_ray_logger() -> Iterator[None]:
    """Every test starts and ends with the `east_ray` logger as a library leaves it: the
    commands' `configure_logging` (handler, level) would otherwise leak into later tests."""

    def reset() -> None:
        logger = logging.getLogger("east_ray")
        logger.handlers[:] = []
        logger.setLevel(logging.NOTSET)
        logger.propagate = True

    reset()
    yield
    reset()


@pytest.fixture
def shared_data() -> Path:
    """`../shared/data`; the test is skipped cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def ray_local() -> Iterator[None]:
    """A local Ray (2 CPUs, loopback only), started once and kept for the tests after."""
    from east_ray.ray_session import init_ray

    init_ray(num_cpus=2)
    yield


@pytest.fixture(scope="session")
def _prepared_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.release_fixtures import prepared_openmic

    return prepared_openmic(tmp_path_factory.mktemp("openmic"))


@pytest.fixture
def prepared(_prepared_once: Path, tmp_path: Path) -> Path:
    """A private copy of a small prepared OpenMIC-layout dataset (24 clips, 4 skipped)."""
    release = _prepared_once.parent / "openmic-2018"
    shutil.copytree(release, tmp_path / "openmic-2018")
    copy = tmp_path / "prepared"
    shutil.copytree(_prepared_once, copy)
    meta = (copy / "meta.json").read_text().replace(str(release), str(tmp_path / "openmic-2018"))
    (copy / "meta.json").write_text(meta)
    return copy
