"""The OpenMIC-2018 release reader (also reads SynthMIC, written in the same layout).

Layout (DESIGN §2): `class-map.json`, `openmic-2018.npz` (`Y_true` float relevance with
exactly 0.5 for unobserved entries, `Y_mask` bool, `sample_key` object array of str,
optionally `X` VGGish), `partitions/split01_{train,test}.csv` (one key per line),
`audio/<key[:3]>/<key>.ogg`, and optionally `openmic-2018-metadata.csv` (its
`artist_id` is the group; without it the FMA track id is).

Labels: positive where `Y_true > 0.5`, negative where `< 0.5`, unlabelled where `Y_mask`
is False (exactly the entries at 0.5; a release where the two disagree is refused).
Splits: the official test partition; validation is taken out of split01_train by a
`valid_split` rule (`east_ray.data.valid_split`): the authors' committed list of 2,223
clips, or a seeded fraction (SynthMIC, or OpenMIC offline).

VGGish: the release ships the teacher's embeddings as `X` (8-bit PCA output, 10 frames per
clip); `release_vggish` reads them dequantised as `(x - 128) / 256`, the scale of the
network's own output, so that the VGGish teacher need not run on OpenMIC.

`sample_key` is a pickled object array; unpickling a downloaded file can run code, so it
is read with an unpickler that admits only numpy's array reconstruction.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from east_ray.catalog import DatasetInfo, get_dataset
from east_ray.data.checksums import md5sum
from east_ray.data.datasets import ReadOptions, published_counts, valid_split_for
from east_ray.data.release import (
    CLIP_COLUMNS,
    ReleaseIndex,
    Skipped,
    clips_frame,
    require_file,
    require_root,
)
from east_ray.data.valid_split import ValidSplit
from east_ray.errors import BadValueError

NPZ = "openmic-2018.npz"
# Published sizes: 14,915 train keys (of which the authors held out 2,223), 5,085 test.

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits numpy array reconstruction and nothing else (no arbitrary callables)."""

    def find_class(self, module: str, name: str) -> Any:
        target = _SAFE_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(*target)


def read_string_array(npz_path: Path, name: str) -> np.ndarray:
    """Read array `name` of an .npz as str without trusting pickles in it."""
    with zipfile.ZipFile(npz_path) as archive:
        member = f"{name}.npy"
        if member not in archive.namelist():
            raise BadValueError(f"{npz_path}: no array {name!r}; arrays: {archive.namelist()}")
        with archive.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            if dtype.hasobject:
                array = _ArrayOnlyUnpickler(io.BytesIO(fh.read())).load()
            else:
                array = np.frombuffer(fh.read(), dtype=dtype)
    values = np.asarray(array).reshape(shape)
    if not all(isinstance(v, str | np.str_) for v in values.ravel()):
        raise BadValueError(f"{npz_path}: array {name!r} holds non-string values")
    return values.astype(str)


def release_vggish(root: Path, clip_ids: Sequence[str]) -> np.ndarray | None:
    """The release's VGGish embeddings of `clip_ids` in that order, `(N, T, 128)` float32
    dequantised; None when the release at `root` ships none (no `X`, or no archive)."""
    npz_path = Path(root) / NPZ
    if not npz_path.is_file():
        return None
    with np.load(npz_path, allow_pickle=False) as archive:
        if "X" not in archive.files:
            return None
        x = np.asarray(archive["X"])
    row_of = {k: i for i, k in enumerate(read_string_array(npz_path, "sample_key"))}
    missing = [c for c in clip_ids if c not in row_of]
    if missing:
        raise BadValueError(
            f"{npz_path}: no row for {len(missing)} prepared clips in its sample_key, e.g. "
            f"{missing[:3]}; prepare the dataset again from this release"
        )
    return (x[[row_of[c] for c in clip_ids]].astype(np.float32) - 128.0) / 256.0


def _read_keys(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _groups(root: Path, keys: list[str]) -> dict[str, str]:
    """artist_id per key from the metadata CSV when present, else the FMA track id."""
    groups = {k: f"track{k.split('_')[0]}" for k in keys}
    meta = root / "openmic-2018-metadata.csv"
    if meta.is_file():
        with meta.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                key, artist = row.get("sample_key"), row.get("artist_id")
                if key in groups and artist:
                    groups[key] = f"artist{artist}"
    return groups


def read_release(row: DatasetInfo, root: Path, options: ReadOptions) -> ReleaseIndex:
    """Read the OpenMIC-2018-layout release of dataset `row` at `root` under `options`
    (`east_ray.data.datasets.read_release` has checked them against the row)."""
    if options.valid_split == "authors":  # its list is cached in the release folder
        root = require_root(Path(root), row.display, "class-map.json")
    return read_openmic(root, valid_split_for(row, root, options), row.name)


def read_openmic(root: Path, valid_split: ValidSplit, dataset: str = "openmic") -> ReleaseIndex:
    """Read an OpenMIC-2018-layout release at `root` (the folder holding class-map.json),
    holding out the training clips `valid_split` chooses for validation.

    `dataset` names what is read ("synthmic" shares the layout); only "openmic" is compared
    with the published split sizes.
    """
    root = require_root(Path(root), "OpenMIC-2018", "class-map.json")
    class_map = json.loads(require_file(root / "class-map.json", "the class map").read_text())
    if sorted(class_map.values()) != list(range(len(class_map))):
        raise BadValueError(
            f"{root / 'class-map.json'}: indices {sorted(class_map.values())} "
            f"are not 0..{len(class_map) - 1}"
        )
    classes = tuple(sorted(class_map, key=class_map.__getitem__))
    npz_path = require_file(root / NPZ, "the labels archive (Y_true, Y_mask, sample_key)")
    with np.load(npz_path, allow_pickle=False) as npz:
        y_true = np.asarray(npz["Y_true"], dtype=np.float64)
        y_mask = np.asarray(npz["Y_mask"], dtype=bool)
    keys = read_string_array(npz_path, "sample_key")
    n, c = len(keys), len(classes)
    for name, arr in (("Y_true", y_true), ("Y_mask", y_mask)):
        if arr.shape != (n, c):
            raise BadValueError(f"{npz_path}: {name} has shape {arr.shape}, expected ({n}, {c})")
    if len(set(keys)) != n:
        raise BadValueError(f"{npz_path}: sample_key has {n - len(set(keys))} duplicate keys")
    disagree = int(((y_true == 0.5) == y_mask).sum())
    if disagree:
        raise BadValueError(
            f"{npz_path}: {disagree} entries where Y_mask disagrees with Y_true == 0.5"
            " (expected unobserved entries to be exactly 0.5 and unmasked)"
        )
    partition_files = {
        split: require_file(
            root / "partitions" / f"split01_{split}.csv",
            f"the OpenMIC {split} partition, one key per line",
        )
        for split in ("train", "test")
    }
    partitions = {split: _read_keys(path) for split, path in partition_files.items()}
    groups = _groups(root, [*partitions["train"], *partitions["test"]])
    valid = valid_split.choose(partitions["train"], partition_files["train"], groups)
    split_of = {k: ("valid" if k in valid else "train") for k in sorted(partitions["train"])}
    split_of.update({k: "test" for k in partitions["test"]})

    row_of = {k: i for i, k in enumerate(keys)}
    rows: dict[str, list[object]] = {column: [] for column in CLIP_COLUMNS}
    skipped = [Skipped(k, "sample_key in no partition") for k in keys if k not in split_of]
    for key, split in sorted(split_of.items()):
        if key not in row_of:
            skipped.append(Skipped(key, f"in partition {split} but has no label row in {NPZ}"))
            continue
        i = row_of[key]
        rows["clip_id"].append(key)
        rows["split"].append(split)
        rows["group"].append(groups[key])
        rows["labels"].append((y_true[i] > 0.5).astype(np.float32))
        rows["label_mask"].append(y_mask[i])
        rows["audio_path"].append(str(root / "audio" / key[:3] / f"{key}.ogg"))
    sources = [NPZ, "class-map.json", "partitions/split01_train.csv", "partitions/split01_test.csv"]
    return ReleaseIndex(
        dataset=dataset,
        root=root,
        classes=classes,
        clips=clips_frame(rows, c),
        skipped=tuple(skipped),
        published_counts=published_counts(get_dataset(dataset)),
        source_md5={name: md5sum(root / name) for name in sources},
        valid_split=valid_split.describe(),
    )
