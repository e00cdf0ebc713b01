"""One tensor of a TensorFlow V2 checkpoint: its index entry and its stored bytes.

One job: parse a `BundleEntryProto` (the value of a tensor's key in the `.index`) into a
`TensorEntry`, and decode the tensor's bytes from a `.data-*` file into a numpy array,
checking its size and CRC-32C; where those bytes are is `east_ray.teachers.tf_checkpoint`'s
business.

The format, from TensorFlow's public sources (`core/util/tensor_bundle/tensor_bundle.
{h,cc,proto}`): a `BundleEntryProto` has 1: dtype, 2: shape, 3: shard_id, 4: offset,
5: size, 6: masked crc32c (fixed32), 7: slices. A tensor's bytes are row-major in the
bundle header's byte order; string tensors store varint64 lengths, a masked CRC of the
lengths, then the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from east_ray.teachers.crc32c import crc32c, unmask_crc32c
from east_ray.teachers.sstable import CheckpointError, proto_fields, read_varint

__all__ = ["ByteOrder", "TensorEntry", "decode_tensor", "parse_entry"]

ByteOrder = Literal["<", ">"]

# TensorFlow `DataType` enum → numpy dtype (little-endian form; byte-swapped as needed).
_NUMPY_DTYPES: dict[int, str] = {
    1: "<f4",  # DT_FLOAT
    2: "<f8",  # DT_DOUBLE
    3: "<i4",  # DT_INT32
    4: "u1",  # DT_UINT8
    5: "<i2",  # DT_INT16
    6: "i1",  # DT_INT8
    8: "<c8",  # DT_COMPLEX64
    9: "<i8",  # DT_INT64
    10: "?",  # DT_BOOL
    11: "i1",  # DT_QINT8
    12: "u1",  # DT_QUINT8
    13: "<i4",  # DT_QINT32
    15: "<i2",  # DT_QINT16
    16: "<u2",  # DT_QUINT16
    17: "<u2",  # DT_UINT16
    18: "<c16",  # DT_COMPLEX128
    19: "<f2",  # DT_HALF
    22: "<u4",  # DT_UINT32
    23: "<u8",  # DT_UINT64
}
DT_STRING = 7
DT_BFLOAT16 = 14
_DTYPE_NAMES = {7: "string", 14: "bfloat16", 20: "resource", 21: "variant"}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the data files (a decoded `BundleEntryProto`)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc32c: int | None
    sliced: bool


# --------------------------------------------------------------------------------------
# Index entries


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_shape(buf: bytes, where: str) -> tuple[int, ...]:
    """`TensorShapeProto` (2: repeated Dim {1: size}, 3: unknown_rank) → shape tuple."""
    dims: list[int] = []
    for number, _, value in proto_fields(buf, where):
        if number == 2 and isinstance(value, bytes):
            size = 0
            for dim_number, _, dim_value in proto_fields(value, where):
                if dim_number == 1 and isinstance(dim_value, int):
                    size = _signed64(dim_value)
            if size < 0:
                raise CheckpointError(where, f"unknown dimension in stored shape {dims}+[?]")
            dims.append(size)
        elif number == 3 and value:
            raise CheckpointError(where, "stored shape has unknown rank")
    return tuple(dims)


def parse_entry(name: str, buf: bytes, where: Path) -> TensorEntry:
    """The `TensorEntry` of tensor `name` from its `BundleEntryProto` bytes."""
    label = f"{where} [{name}]"
    dtype = shard_id = offset = size = 0
    shape: tuple[int, ...] = ()
    crc: int | None = None
    sliced = False
    for number, _, value in proto_fields(buf, label):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 2 and isinstance(value, bytes):
            shape = _parse_shape(value, label)
        elif number == 3 and isinstance(value, int):
            shard_id = value
        elif number == 4 and isinstance(value, int):
            offset = value
        elif number == 5 and isinstance(value, int):
            size = value
        elif number == 6 and isinstance(value, int):
            crc = value
        elif number == 7:
            sliced = True
    return TensorEntry(name, dtype, shape, shard_id, offset, size, crc, sliced)


# --------------------------------------------------------------------------------------
# Tensor bytes


def _decode_strings(
    raw: bytes, count: int, byte_order: ByteOrder, where: str, verify: bool
) -> tuple[np.ndarray, int]:
    """The string-tensor layout: varint64 lengths, masked CRC of the lengths, bytes.

    Returns the strings and the tensor's CRC as TensorFlow computes it: over the lengths
    as the writer's in-memory uint32 (uint64 above 4 GiB), the stored length checksum,
    then the string bytes.
    """
    lengths: list[int] = []
    pos = 0
    crc = 0
    for _ in range(count):
        length, pos = read_varint(raw, pos, where)
        lengths.append(length)
        if verify:
            fmt = "I" if length <= 0xFFFFFFFF else "Q"
            crc = crc32c(struct.pack(byte_order + fmt, length), crc)
    if pos + 4 > len(raw):
        raise CheckpointError(where, "string tensor truncated before its length checksum")
    stored = raw[pos : pos + 4]
    if verify:
        (masked,) = struct.unpack(byte_order + "I", stored)
        if unmask_crc32c(masked) != crc:
            raise CheckpointError(where, "string lengths checksum mismatch")
        crc = crc32c(stored, crc)
    pos += 4
    out = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        if pos + length > len(raw):
            raise CheckpointError(where, "string tensor truncated")
        out[i] = raw[pos : pos + length]
        pos += length
    if verify:
        crc = crc32c(raw[pos - sum(lengths) : pos], crc)
    return out, crc


def decode_tensor(
    entry: TensorEntry, raw: bytearray, byte_order: ByteOrder, path: Path, verify: bool
) -> np.ndarray:
    """The array stored in `raw` (the `entry.size` bytes at `entry.offset` of `path`)."""
    label = f"{path} [{entry.name}]"
    count = int(np.prod(entry.shape, dtype=np.int64))
    stored_crc = entry.masked_crc32c
    if entry.dtype == DT_STRING:
        strings, crc = _decode_strings(bytes(raw), count, byte_order, label, verify)
        if verify and stored_crc is not None and unmask_crc32c(stored_crc) != crc:
            raise CheckpointError(label, "tensor checksum mismatch (corrupt data file)")
        return strings.reshape(entry.shape)
    if verify and stored_crc is not None and unmask_crc32c(stored_crc) != crc32c(raw):
        raise CheckpointError(label, "tensor checksum mismatch (corrupt data file)")
    if entry.dtype == DT_BFLOAT16:
        if entry.size != 2 * count:
            raise CheckpointError(label, f"{entry.size} bytes for {count} bfloat16 values")
        halves = np.frombuffer(raw, dtype=byte_order + "u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(entry.shape)
    code = _NUMPY_DTYPES.get(entry.dtype)
    if code is None:
        kind = _DTYPE_NAMES.get(entry.dtype, f"DataType {entry.dtype}")
        raise CheckpointError(label, f"unsupported tensor dtype {kind}")
    dtype = np.dtype(code).newbyteorder(byte_order) if code[0] in "<>" else np.dtype(code)
    if entry.size != count * dtype.itemsize:
        raise CheckpointError(
            label,
            f"{entry.size} bytes stored for shape {list(entry.shape)} of {dtype.name} "
            f"({count * dtype.itemsize} expected)",
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(entry.shape)
    return array.astype(dtype.newbyteorder("="), copy=False)
