"""Where a study's prepared dataset comes from, and whether this run can get it.

The study command's `--data` (the prepared dataset, default `--data-root/<dataset>`),
`--raw` (the folder of extracted releases, as `python -m east_ray.data download --out`
leaves them), `--download` and `--mirror` are its `DataOptions`, which give each part a
`DataSource`. `plan_data` decides, reading only, what `stages.ensure_data` will do with it:
nothing (prepared already), prepare a release found under `--raw`, or download it first.
It runs once, before Ray starts and before anything is written, so a missing release
without `--download` costs the user one line, not a cluster start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from east_ray.catalog import get_dataset
from east_ray.config import SpecError, StudySpec
from east_ray.data.datasets import only_valid_split
from east_ray.data.download import find_release, mirror_base
from east_ray.data.parquet import META, read_meta
from east_ray.errors import BadValueError, UserError


class MissingReleaseError(UserError, FileNotFoundError):
    """The prepared dataset and its release are both missing, and no download was asked for."""


@dataclass(frozen=True)
class DataSource:
    """The prepared dataset `data`, the releases folder `raw`, and whether (and from where:
    `mirror`, a base URL replacing the release's host) a missing release is downloaded."""

    data: Path
    raw: Path
    download: bool = False
    mirror: str | None = None


@dataclass(frozen=True)
class DataPlan:
    """What `ensure_data` does: nothing when `prepared`; else prepare `release` (a folder
    under `raw`; None: download it first, or render it for a local dataset)."""

    prepared: bool
    release: Path | None = None


@dataclass(frozen=True)
class DataOptions:
    """The study command's data options: `data` (one dataset's prepared folder; None: the
    dataset's name under `data_root`), `raw`, `download` and `mirror` (`DataSource`)."""

    data: Path | None = None
    data_root: Path = Path("data")
    raw: Path = Path("data/raw")
    download: bool = False
    mirror: str | None = None

    def __post_init__(self) -> None:
        if self.mirror is not None and not self.download:
            raise BadValueError(
                f"--mirror {self.mirror}: a mirror is only used to download; add --download "
                "or leave --mirror out"
            )

    def source(self, spec: StudySpec) -> DataSource:
        """Where `spec`'s dataset is, as absolute paths."""
        data = self.data or self.data_root / spec.dataset
        return DataSource(data.resolve(), self.raw.resolve(), self.download, self.mirror)


def is_prepared(spec: StudySpec, data: Path) -> bool:
    """Whether `data` holds a prepared dataset; one prepared with other features, or with a
    validation split its dataset no longer makes, is refused (nothing is removed)."""
    if not (data / META).is_file():
        return False
    meta = read_meta(data)
    problems = []
    if meta.get("features") != dataclasses.asdict(spec.features):
        problems.append(
            f"features: the dataset was prepared with {meta.get('features')}, the study "
            f"asks for {dataclasses.asdict(spec.features)}; prepare it again into "
            "another --data folder"
        )
    only = only_valid_split(spec.dataset)
    if only is not None and meta.get("valid_split") != only.describe():
        problems.append(
            f"valid_split: the dataset was prepared with {meta.get('valid_split')}, "
            f"{spec.dataset} is now split {only.describe()}; remove {data} to prepare it "
            "again, and the results of studies run on it (their cells were selected on the "
            "old split)"
        )
    if problems:
        raise SpecError(str(data / META), problems)
    return True


def plan_data(
    spec: StudySpec, source: DataSource, rerun: str = "the same command with --download"
) -> DataPlan:
    """Decide, writing nothing, how this run gets `spec`'s dataset from `source`; raise
    `MissingReleaseError` (naming `rerun`, the command that downloads it) when it cannot."""
    if is_prepared(spec, source.data):
        return DataPlan(prepared=True)
    if get_dataset(spec.dataset).local:
        return DataPlan(prepared=False)
    release = find_release(spec.dataset, source.raw)
    if release is None and not source.download:
        raise MissingReleaseError(
            f"--data {source.data}: no prepared dataset, and no {spec.dataset} release under "
            f"--raw {source.raw}; to download, verify and prepare it, run: {rerun}"
        )
    if release is None and source.mirror is not None:
        mirror_base(source.mirror)  # a malformed URL fails now, not after Ray started
    return DataPlan(prepared=False, release=release)
