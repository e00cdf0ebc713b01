"""The prepared-dataset layout on disk: Arrow columns, atomic writes, `meta.json`.

```
<dataset>/
  meta.json                    classes, features, frame hops, counts, skipped clips, checksums
  manifest.parquet             what `prepare` was asked to build (one row per clip, its shard)
  clips/part-NNNNN.parquet     clip_id, split, group, labels float32[C], label_mask bool[C],
                               logmel fixed-shape tensor float16 [n_mels, frames]
  status/part-NNNNN.json       the shard's per-clip outcome (ok / skipped and why)
  spectra/part-NNNNN.parquet   clip_id, magnitude float16 [n_fft // 2, frames]: the training
                               clips' STFT magnitudes, for mel-band jitter only (data.spectra)
  teachers/<name>/part-*.parquet  clip_id, embedding fixed-shape tensor [T, D]
  teachers/<name>/_teacher.json   the teacher's extraction record (east_ray.teachers.stored)
```
A file appears under its final name only once complete (write to a temporary name, then
`os.replace`), so a reader never sees half a shard.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from east_ray.data.subsets import training_subset
from east_ray.errors import BadValueError

META_VERSION = 2
"""2: `meta.json` records the validation rule (`valid_split`); a version-1 dataset does not
say how its validation clips were chosen (OpenMIC's were the seeded 15%), so it is refused."""
META = "meta.json"


def clip_order(clip_ids: Any) -> str:
    """How a dataset's clips are ordered on disk: "numeric" when every id is a whole number
    (MagnaTagATune: the release's row order, which the authors' batches follow), else
    "string"."""
    ids = [str(c) for c in clip_ids]
    return "numeric" if ids and all(c.isascii() and c.isdigit() for c in ids) else "string"


def _check_clip_order(data_dir: Path, meta: dict[str, Any]) -> None:
    """Refuse a dataset of numeric ids prepared before they were ordered as numbers (its
    clips, and so its validation batches, are in string order: 10009 before 1009)."""
    if "clip_order" in meta or not (data_dir / "clips").is_dir():
        return
    ids = pq.read_table(data_dir / "clips", columns=["clip_id"])["clip_id"].to_pylist()
    if clip_order(ids) == "numeric":
        dataset = meta.get("dataset", "<dataset>")
        root = meta.get("release_root", "<release folder>")
        raise BadValueError(
            f"{data_dir / META}: clips ordered as strings (prepared before numeric ids were "
            f"ordered as numbers, so the validation batches differ from the authors'); "
            f"prepare it again into a new folder: python -m east_ray.data prepare {dataset} "
            f"--root {root} --out NEW_FOLDER (this one is left as it is)"
        )


def tensor_array(values: np.ndarray) -> pa.ExtensionArray:
    """`(N, *shape)` numeric array → Arrow fixed-shape tensor column of N tensors."""
    if values.ndim < 2:
        raise ValueError(f"values: got shape {values.shape}, expected (N, *tensor_shape)")
    arrow_type = pa.fixed_shape_tensor(pa.from_numpy_dtype(values.dtype), list(values.shape[1:]))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    storage = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(values.shape[1:])))
    return pa.ExtensionArray.from_storage(arrow_type, storage)


def vector_array(values: np.ndarray) -> pa.FixedSizeListArray:
    """`(N, C)` array (bool allowed) → Arrow fixed-size-list column."""
    if values.ndim != 2:
        raise ValueError(f"values: got shape {values.shape}, expected (N, C)")
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def column_chunks(column: pa.ChunkedArray) -> list[np.ndarray]:
    """A tensor column → one numpy view `(n_i, ...)` per chunk, no copy (read-only when
    the buffers are, e.g. in Ray's object store)."""
    if not isinstance(column.type, pa.FixedShapeTensorType):
        raise TypeError(f"column: got Arrow type {column.type}, expected a tensor")
    return [chunk.to_numpy_ndarray() for chunk in column.chunks if len(chunk)]


def column_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A tensor or fixed-size-list column → one stacked numpy array `(N, ...)`."""
    array = column
    if isinstance(column, pa.ChunkedArray):  # one chunk: a view, never a copy
        array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if isinstance(array.type, pa.FixedShapeTensorType):
        return np.asarray(array.to_numpy_ndarray())
    if isinstance(array.type, pa.FixedSizeListType):
        flat = array.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat).reshape(len(array), array.type.list_size)
    raise TypeError(f"column: got Arrow type {array.type}, expected a tensor or fixed-size list")


def write_atomic(path: Path, write: Callable[[str], object]) -> None:
    """`write(tmp)` to a temporary name beside `path`, then rename it to `path`.

    `path` never holds half a file, a failed write leaves no temporary file behind, and the
    file gets the mode of any new file of this process (0o666 less the umask; `mkstemp`
    would make it private to its owner, and the rename would keep that).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            # pyarrow's write errors name no file; the CLI reports where a write failed
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def copy_atomic(source: Path, path: Path) -> None:
    """Copy `source` to `path` like `write_atomic`, unless `path` already holds the same
    bytes (so a rerun rewrites nothing)."""
    if path.is_file() and path.read_bytes() == source.read_bytes():
        return
    write_atomic(path, lambda tmp: shutil.copyfile(source, tmp))


def move_aside(path: Path) -> Path:
    """Rename a damaged file to `_<name>.corrupt-<time>[-n]` beside it (never deleting it).

    The leading underscore keeps it out of Arrow's dataset discovery, so a folder of
    Parquet shards still reads as a dataset with the damaged file in it.
    """
    stem = f"_{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    aside = path.with_name(stem)
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{stem}-{n}")
    os.replace(path, aside)
    return aside


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file so that it exists under `path` only when complete."""
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def write_text_atomic(text: str, path: Path) -> None:
    """Write UTF-8 text so that it exists under `path` only when complete (and synced)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    write_atomic(path, write)


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON so that it exists under `path` only when complete."""
    write_text_atomic(json.dumps(obj, indent=1, sort_keys=True) + "\n", path)


def read_meta(data_dir: Path) -> dict[str, Any]:
    """The `meta.json` of a prepared dataset; clear errors if absent or from another version."""
    path = Path(data_dir) / META
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; expected a dataset prepared by `python -m east_ray.data prepare`"
        )
    meta: dict[str, Any] = json.loads(path.read_text())
    if meta.get("version") != META_VERSION:
        raise BadValueError(
            f"{path}: version {meta.get('version')!r}, expected {META_VERSION}; "
            "prepare the dataset again (into a new folder, or remove this one first)"
        )
    _check_clip_order(Path(data_dir), meta)
    return meta


@dataclass(frozen=True)
class LabelTable:
    """Every prepared clip's id, split, group, labels `(N, C)` and mask `(N, C)`, and the
    names of the C classes (`meta.json`); no audio."""

    clip_ids: list[str]
    split: np.ndarray
    group: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    classes: tuple[str, ...]

    def rows(self, split: str) -> np.ndarray:
        """Row indices of `split`."""
        return np.flatnonzero(self.split == split)

    def training_rows(self, fraction: float, seed: int) -> np.ndarray:
        """Row indices of the training subset of a (fraction, seed) cell (`subsets`)."""
        train = self.rows("train")
        chosen = training_subset(
            [self.clip_ids[i] for i in train],
            self.labels[train],
            self.mask[train],
            fraction=fraction,
            seed=seed,
            groups=list(self.group[train]),
        )
        rows: np.ndarray = train[chosen]
        return rows


def read_labels(data_dir: Path, meta: dict[str, Any] | None = None) -> LabelTable:
    """The label columns of `clips/` (Parquet is columnar: the spectrograms are not read)
    and the class names of `meta.json` (of `meta`, when the caller has read it)."""
    table = pq.read_table(
        Path(data_dir) / "clips", columns=["clip_id", "split", "group", "labels", "label_mask"]
    )
    return LabelTable(
        clip_ids=table["clip_id"].to_pylist(),
        split=np.asarray(table["split"].to_pylist()),
        group=np.asarray(table["group"].to_pylist()),
        labels=column_numpy(table["labels"]).astype(np.float32),
        mask=column_numpy(table["label_mask"]).astype(bool),
        classes=tuple((meta or read_meta(data_dir))["classes"]),
    )
