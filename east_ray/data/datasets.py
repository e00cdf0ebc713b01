"""The datasets a study can name: how each one's release is read, which validation rules it
takes (the first is its default), and the shipped study whose [features] it is prepared
with unless another is named. SynthMIC is written in OpenMIC-2018's layout and read by the
same reader; it has no authors' validation list, so it keeps the seeded hold-out.

`config.DATASETS` repeats the names as plain data (a spec loads without this layer);
tests/test_data.py checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from east_ray.data.magnatagatune import read_magnatagatune
from east_ray.data.openmic import read_openmic
from east_ray.data.release import ReleaseIndex, require_root
from east_ray.data.valid_split import SeededSplit, ValidSplit, authors_valid_list
from east_ray.errors import BadValueError, UnknownNameError


@dataclass(frozen=True)
class ReadOptions:
    """How to read a release: `split_scheme` (MagnaTagATune's won/pons), `valid_split` (a
    rule of `valid_split.RULES`; None: the dataset's default) and `valid_list` (a file
    holding the authors' list, instead of downloading it)."""

    split_scheme: str = "won"
    valid_split: str | None = None
    valid_list: Path | None = None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    default_study: str
    reader: Callable[[Path, ReadOptions], ReleaseIndex]  # (release folder, options) → clips
    valid_splits: tuple[str, ...] = ()  # rules --valid-split may name, the default first
    # the dataset's one validation split, where it has no other
    only_valid_split: SeededSplit | None = None

    def read(self, root: Path, options: ReadOptions | None = None) -> ReleaseIndex:
        """Read the release at `root`, after checking `options` apply to this dataset."""
        options = options or ReadOptions()
        default = self.valid_splits[0] if self.valid_splits else None
        rule = options.valid_split or default
        if options.valid_split is not None and options.valid_split not in self.valid_splits:
            takes = ", ".join(self.valid_splits) or "none (its splits are fixed)"
            raise BadValueError(
                f"--valid-split: got {options.valid_split!r} for {self.name}, whose rules are: "
                f"{takes}; leave it out or name one of them"
            )
        if options.valid_list is not None and rule != "authors":
            raise BadValueError(
                f"--valid-list {options.valid_list}: a list is only used by --valid-split "
                f"authors (here {self.name} with rule {rule}); leave it out"
            )
        return self.reader(Path(root), ReadOptions(options.split_scheme, rule, options.valid_list))


def _openmic_valid(root: Path, options: ReadOptions) -> ValidSplit:
    if options.valid_split == "seeded":
        return SeededSplit()
    # the list is cached in the release folder: make sure `root` is one before fetching
    return authors_valid_list(
        require_root(root, "OpenMIC-2018", "class-map.json"), options.valid_list
    )


SYNTHMIC_VALID = SeededSplit(by_group=True)

DATASETS: dict[str, DatasetInfo] = {
    row.name: row
    for row in (
        DatasetInfo(
            "openmic",
            "openmic",
            lambda root, options: read_openmic(root, _openmic_valid(root, options)),
            valid_splits=("authors", "seeded"),
        ),
        DatasetInfo(
            "magnatagatune",
            "magnatagatune",
            lambda root, options: read_magnatagatune(root, options.split_scheme),
        ),
        DatasetInfo(
            "synthmic",
            "demo",
            # SynthMIC's clips are excerpts of rendered scores, several per score: a clip's
            # neighbours must not be in training while it validates (its test split is
            # grouped by score too)
            lambda root, _: read_openmic(root, SYNTHMIC_VALID, dataset="synthmic"),
            valid_splits=("seeded",),
            only_valid_split=SYNTHMIC_VALID,
        ),
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
