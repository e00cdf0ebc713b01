"""The datasets a study can name: how each one's release is read, and the shipped study
whose [features] it is prepared with unless another is named. SynthMIC is written in
OpenMIC-2018's layout and read by the same reader.

`config.DATASETS` repeats the names as plain data (a spec loads without this layer);
tests/test_data.py checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from east_ray.data.magnatagatune import read_magnatagatune
from east_ray.data.openmic import read_openmic
from east_ray.data.release import ReleaseIndex
from east_ray.errors import UnknownNameError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    default_study: str
    read: Callable[[Path, str], ReleaseIndex]  # (release folder, split scheme) → clips


DATASETS: dict[str, DatasetInfo] = {
    row.name: row
    for row in (
        DatasetInfo("openmic", "openmic", lambda root, _: read_openmic(root)),
        DatasetInfo("magnatagatune", "magnatagatune", read_magnatagatune),
        DatasetInfo("synthmic", "demo", lambda root, _: read_openmic(root, dataset="synthmic")),
    )
}


def get_dataset(name: str) -> DatasetInfo:
    """Look a dataset up by name; an unknown name lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError(
            f"dataset: got {name!r}, expected one of {', '.join(DATASETS)}"
        ) from None
