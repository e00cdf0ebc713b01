"""Reading a dataset's release through its catalog row (`east_ray.catalog.datasets`): the
options a read takes, checked against the row, and the validation split a rule names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from east_ray.catalog import DatasetInfo, get_dataset
from east_ray.catalog.resolve import resolve
from east_ray.data.release import ReleaseIndex
from east_ray.data.valid_split import SeededSplit, ValidSplit, authors_valid_list
from east_ray.errors import BadValueError


@dataclass(frozen=True)
class ReadOptions:
    """How to read a release: `split_scheme` (MagnaTagATune's won/pons; None: the row's
    first), `valid_split` (a rule of `valid_split.RULES`; None: the dataset's default) and
    `valid_list` (a file holding the authors' list, instead of downloading it)."""

    split_scheme: str | None = None
    valid_split: str | None = None
    valid_list: Path | None = None


Reader = Callable[[DatasetInfo, Path, ReadOptions], ReleaseIndex]


def read_release(name: str, root: Path, options: ReadOptions | None = None) -> ReleaseIndex:
    """Read dataset `name`'s release at `root`, after checking `options` apply to it."""
    row = get_dataset(name)
    options = options or ReadOptions()
    rule = options.valid_split or (row.valid_splits[0] if row.valid_splits else None)
    if options.valid_split is not None and options.valid_split not in row.valid_splits:
        takes = ", ".join(row.valid_splits) or "none (its splits are fixed)"
        raise BadValueError(
            f"--valid-split: got {options.valid_split!r} for {name}, whose rules are: "
            f"{takes}; leave it out or name one of them"
        )
    if options.valid_list is not None and rule != "authors":
        raise BadValueError(
            f"--valid-list {options.valid_list}: a list is only used by --valid-split "
            f"authors (here {name} with rule {rule}); leave it out"
        )
    scheme = options.split_scheme
    if scheme is not None and scheme not in row.split_schemes:
        raise BadValueError(
            f"--split-scheme: got {scheme!r} for {name}, whose schemes are: "
            f"{', '.join(row.split_schemes) or 'none'}; leave it out or name one of them"
        )
    scheme = scheme or row.default_scheme
    reader: Reader = resolve(row.reader)
    return reader(row, Path(root), ReadOptions(scheme, rule, options.valid_list))


def published_counts(row: DatasetInfo, scheme: str | None = None) -> dict[str, int]:
    """The clips per split the release publishes under `scheme` (None: its default; {}
    where none are published)."""
    scheme = scheme or row.default_scheme
    return dict(row.published_clips[scheme]) if scheme is not None else {}


def valid_split_for(row: DatasetInfo, root: Path, options: ReadOptions) -> ValidSplit:
    """The validation split `options.valid_split` names for `row` (its authors' list is
    cached in the release folder `root`)."""
    if options.valid_split == "authors":
        return authors_valid_list(root, options.valid_list)
    return SeededSplit(by_group=row.valid_by_group)


def only_valid_split(name: str) -> SeededSplit | None:
    """The one split dataset `name` is ever validated on, where it takes no other rule."""
    row = get_dataset(name)
    return SeededSplit(by_group=row.valid_by_group) if row.valid_splits == ("seeded",) else None
