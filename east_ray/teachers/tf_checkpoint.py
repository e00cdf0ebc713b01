"""Read TensorFlow V2 checkpoints (`<prefix>.index` + `<prefix>.data-*`) without TensorFlow.

One job: turn a checkpoint on disk into `{variable name: numpy array}`, using only the
standard library and numpy, so that teachers shipped as TF1 checkpoints (musicnn) load
into PyTorch on machines where TensorFlow cannot be installed. This module finds the
files and walks the index; `east_ray.teachers.sstable` reads the index's table format,
`east_ray.teachers.tf_tensors` decodes each tensor and `east_ray.teachers.crc32c` checks
the checksums.

The layout, from TensorFlow's public sources (`core/util/tensor_bundle/tensor_bundle.
{h,cc,proto}`):

- `<prefix>.index` is an SSTable. Key `""` holds a `BundleHeaderProto` (1: num_shards,
  2: endianness, 3: version); every other key is a tensor name whose value is a
  `BundleEntryProto` saying which data file holds the tensor and where.
- `<prefix>.data-{shard:05d}-of-{num_shards:05d}` holds the raw tensor bytes.

V1 checkpoints (a single SSTable of `SavedTensorSlices`) and partitioned (sliced)
variables are not supported and are reported as such.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from io import BufferedReader
from pathlib import Path

import numpy as np

from east_ray.teachers.sstable import CheckpointError, proto_fields, table_entries
from east_ray.teachers.tf_tensors import ByteOrder, TensorEntry, decode_tensor, parse_entry

__all__ = [
    "CheckpointError",
    "TensorEntry",
    "index_path",
    "read_checkpoint",
    "read_checkpoint_entries",
]

HEADER_KEY = b""


def index_path(prefix: Path | str) -> Path:
    """The `.index` file of a checkpoint prefix.

    A prefix naming a directory (how TF1 savers treat a prefix ending in `/`, as musicnn's
    checkpoints were saved) resolves to `<dir>/.index`, unless `<dir>.index` exists.
    """
    prefix = Path(prefix)
    sibling = prefix.with_name(prefix.name + ".index")
    if prefix.is_dir() and not sibling.is_file():
        return prefix / ".index"
    return sibling


def _data_path(index: Path, shard: int, n_shards: int) -> Path:
    stem = index.name[: -len(".index")]
    return index.with_name(f"{stem}.data-{shard:05d}-of-{n_shards:05d}")


def _read_index(index: Path, verify: bool) -> tuple[int, ByteOrder, list[TensorEntry]]:
    """Parse an index file → (number of shards, byte order, tensor entries)."""
    if not index.is_file():
        if index.with_name(index.name[: -len(".index")]).is_file():
            raise CheckpointError(
                index, "missing; a bare checkpoint file suggests a V1 checkpoint (unsupported)"
            )
        raise CheckpointError(index, "checkpoint index file is missing")
    data = index.read_bytes()

    n_shards = 1
    byte_order: ByteOrder = "<"
    entries: list[TensorEntry] = []
    header_seen = False
    for key, value in table_entries(data, index, verify):
        if key == HEADER_KEY:
            header_seen = True
            for number, _, field in proto_fields(value, index):
                if number == 1 and isinstance(field, int):
                    n_shards = field
                elif number == 2 and isinstance(field, int):
                    byte_order = ">" if field == 1 else "<"
            continue
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(index, f"tensor name is not UTF-8: {key!r}") from exc
        entries.append(parse_entry(name, value, index))
    if not header_seen:
        raise CheckpointError(index, "no bundle header entry: not a TensorFlow V2 checkpoint")
    if n_shards < 1:
        raise CheckpointError(index, f"bundle header declares {n_shards} shards")
    return n_shards, byte_order, entries


def read_checkpoint_entries(prefix: Path | str) -> dict[str, TensorEntry]:
    """The tensor entries of a checkpoint (names, dtypes, shapes) without reading data."""
    index = index_path(prefix)
    _, _, entries = _read_index(index, verify=True)
    return {entry.name: entry for entry in entries}


def read_checkpoint(
    prefix: Path | str,
    names: Iterable[str] | None = None,
    *,
    verify_checksums: bool = True,
) -> dict[str, np.ndarray]:
    """Read a TensorFlow V2 checkpoint → `{tensor name: array}`.

    `prefix` is what TensorFlow's saver was given (`<prefix>.index` and
    `<prefix>.data-*-of-*` beside it), or a directory holding a bare `.index`.
    `names` restricts the read to those tensors (an unknown name is an error).
    Every block CRC of the index and every tensor's CRC are checked unless
    `verify_checksums` is false; tensor byte sizes are always checked.
    Raises `CheckpointError` (a `BadValueError`) naming the offending file.
    """
    index = index_path(prefix)
    n_shards, byte_order, entries = _read_index(index, verify_checksums)
    by_name = {entry.name: entry for entry in entries}
    if names is not None:
        wanted = list(names)
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise CheckpointError(index, f"no tensors named {unknown}")
        entries = [by_name[n] for n in wanted]

    out: dict[str, np.ndarray] = {}
    with contextlib.ExitStack() as stack:
        shards: dict[int, tuple[Path, int, BufferedReader]] = {}
        for entry in sorted(entries, key=lambda e: (e.shard_id, e.offset)):
            label = f"{index} [{entry.name}]"
            if entry.sliced:
                raise CheckpointError(label, "partitioned (sliced) variables are not supported")
            if not 0 <= entry.shard_id < n_shards:
                raise CheckpointError(label, f"shard {entry.shard_id} of {n_shards}")
            if entry.shard_id not in shards:
                path = _data_path(index, entry.shard_id, n_shards)
                if not path.is_file():
                    raise CheckpointError(path, "checkpoint data file is missing")
                opened: BufferedReader = stack.enter_context(path.open("rb"))
                shards[entry.shard_id] = (path, path.stat().st_size, opened)
            path, file_size, stream = shards[entry.shard_id]
            if entry.offset + entry.size > file_size:
                raise CheckpointError(
                    path,
                    f"tensor {entry.name!r} [{entry.offset}, {entry.offset + entry.size}) "
                    f"runs past the end of the file ({file_size} bytes)",
                )
            raw = bytearray(entry.size)
            stream.seek(entry.offset)
            if stream.readinto(raw) != entry.size:
                raise CheckpointError(path, f"short read of tensor {entry.name!r}")
            out[entry.name] = decode_tensor(entry, raw, byte_order, path, verify_checksums)
    return {entry.name: out[entry.name] for entry in entries}
