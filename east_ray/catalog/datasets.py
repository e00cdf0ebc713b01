"""The datasets' catalog rows: one per dataset a study can name, everything known about it
without reading it: how its release is obtained (or that it is rendered here), the splits
and classes the release publishes, the validation rules it takes, the metrics of its
table, the shipped study it is prepared with by default, and its reader
(`"module:function"`, called as `reader(row, root, options)` by
`east_ray.data.datasets.read_release`).

SynthMIC is written in OpenMIC-2018's layout and read by the same reader; it has no
authors' validation list and its clips are excerpts of rendered scores, several per score,
so its one rule is the seeded hold-out of whole scores (`valid_by_group`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from east_ray.errors import UnknownNameError


@dataclass(frozen=True)
class RemoteFile:
    """One file of a release: its name under the base URL (and on disk) and what verifies it."""

    name: str
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Release:
    """How to fetch and unpack one dataset release.

    `archive_parts` are concatenated (in order) into `archive` when there are several, else
    `archive` is the one part. `strip_root` is the archive's top folder whose contents become
    the release folder `root`; `add_files` are downloaded files copied into `root`. `key_file`
    is a file at the top of every copy of the release (how a copy extracted by hand is
    recognised). `member_count` is `(suffix, n)`: the archive must hold exactly `n` members
    ending in `suffix`. `text_rows` maps a downloaded text file to its number of non-empty
    lines after the header. Where the checksums come from: `east_ray.data.download`.
    """

    root: str
    key_file: str
    base_url: str
    files: tuple[RemoteFile, ...]
    archive_parts: tuple[str, ...]
    archive: str
    strip_root: str | None = None
    add_files: tuple[str, ...] = ()
    member_count: tuple[str, int] | None = None
    text_rows: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset (`dataset` in a spec)."""

    name: str
    display: str  # the release's own name, in messages
    default_study: str  # the shipped study whose [features] `prepare` uses unless told
    reader: str  # "module:function", `reader(row, root, options) -> ReleaseIndex`
    metrics: tuple[str, str]  # the paper's two table columns for it
    classes: int  # labels per clip
    release: Release | None = None  # how it is downloaded; None: rendered on this machine
    # clips per split as the release publishes them, by split scheme (the first the
    # default); empty: nothing published to compare with
    published_clips: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    valid_splits: tuple[str, ...] = ()  # rules --valid-split may name, the default first
    valid_by_group: bool = False  # its seeded hold-out takes whole groups
    release_embeddings: tuple[str, ...] = ()  # teachers whose embeddings the release ships

    @property
    def split_schemes(self) -> tuple[str, ...]:
        return tuple(self.published_clips)

    @property
    def default_scheme(self) -> str | None:
        """The split scheme read unless another is named (None: it publishes none)."""
        return next(iter(self.published_clips), None)

    @property
    def local(self) -> bool:
        """Rendered on this machine (the demo's), never downloaded."""
        return self.release is None


DATASETS: dict[str, DatasetInfo] = {
    row.name: row
    for row in (
        DatasetInfo(
            "openmic",
            "OpenMIC-2018",
            default_study="openmic",
            reader="east_ray.data.openmic:read_release",
            metrics=("mAP", "F1"),
            classes=20,
            release=Release(
                root="openmic-2018",
                key_file="class-map.json",
                base_url="https://zenodo.org/records/1432913/files/",
                files=(
                    RemoteFile("openmic-2018-v1.0.0.tgz", md5="e4ccf187e2bb5ab2e115416e8aafe7f4"),
                ),
                archive_parts=("openmic-2018-v1.0.0.tgz",),
                archive="openmic-2018-v1.0.0.tgz",
                strip_root="openmic-2018",
            ),
            # the authors' validation list holds 2,223 of split01's 14,915 training clips
            published_clips={"split01": {"train": 14_915 - 2_223, "valid": 2_223, "test": 5_085}},
            valid_splits=("authors", "seeded"),
            release_embeddings=("vggish",),
        ),
        DatasetInfo(
            "magnatagatune",
            "MagnaTagATune",
            default_study="magnatagatune",
            reader="east_ray.data.magnatagatune:read_release",
            metrics=("mAP", "ROC-AUC"),
            classes=50,
            release=Release(
                root="magnatagatune",
                key_file="annotations_final.csv",
                base_url="https://mirg.city.ac.uk/datasets/magnatagatune/",
                # md5s: kapre's load_magnatagatune and a torchaudio-based loader
                files=(
                    RemoteFile("annotations_final.csv", md5="f04fa01752a8cc64f6e1ca142a0fef1d"),
                    RemoteFile("mp3.zip.001", md5="179c91c8c2a6e9b3da3d4e69d306fd3b"),
                    RemoteFile("mp3.zip.002", md5="acf8265ff2e35c6ff22210e46457a824"),
                    RemoteFile("mp3.zip.003", md5="582dc649cabb8cd991f09e14b99349a5"),
                ),
                archive_parts=("mp3.zip.001", "mp3.zip.002", "mp3.zip.003"),
                archive="mp3.zip",
                add_files=("annotations_final.csv",),
                member_count=(".mp3", 25_863),
                text_rows=(("annotations_final.csv", 25_863),),
            ),
            # "won": clips with at least one top-50 tag (the paper's); "pons": all of them
            published_clips={
                "won": {"train": 15_244, "valid": 1_529, "test": 4_332},
                "pons": {"train": 18_706, "valid": 1_825, "test": 5_329},
            },
        ),
        DatasetInfo(
            "synthmic",
            "SynthMIC",
            default_study="demo",
            reader="east_ray.data.openmic:read_release",
            metrics=("mAP", "F1"),
            classes=20,
            valid_splits=("seeded",),
            valid_by_group=True,
        ),
    )
}


def get_dataset(name: str) -> DatasetInfo:
    """The row of dataset `name`; an unknown name lists the known ones."""
    if name not in DATASETS:
        raise UnknownNameError(f"dataset: got {name!r}, expected one of {', '.join(DATASETS)}")
    return DATASETS[name]
