"""The wire level of a TensorFlow checkpoint's `.index`: varints, protobuf fields, SSTables.

One job: turn the bytes of an index file into its (key, value) entries and split those
values into protobuf fields, checking every block's CRC-32C; what the keys and values
mean is `east_ray.teachers.tf_checkpoint`'s business. Anything malformed raises
`CheckpointError` naming the file.

The table is LevelDB's layout, from TensorFlow's public sources (`core/lib/io/format.h`,
`block.cc`):

- The last 48 bytes are the footer: two block handles (metaindex, index; each a varint64
  offset and a varint64 size), zero padding to 40 bytes, then the 64-bit magic
  `0xdb4775248b80fb57` (little-endian).
- Every block is followed by a 5-byte trailer: a compression byte (0 = none; TensorFlow
  writes bundles uncompressed) and the masked CRC-32C of the block plus that byte.
- A block is a run of prefix-compressed entries (varint32 shared key bytes, varint32
  unshared key bytes, varint32 value length, key suffix, value) followed by a uint32
  restart array and its uint32 length. The index block maps keys to the handles of the
  data blocks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from east_ray.errors import BadValueError
from east_ray.teachers.crc32c import crc32c, unmask_crc32c

__all__ = [
    "BLOCK_TRAILER_SIZE",
    "FOOTER_SIZE",
    "TABLE_MAGIC",
    "CheckpointError",
    "proto_fields",
    "read_varint",
    "table_entries",
]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5


# Defined at the lowest layer of the checkpoint reader because every layer raises it;
# `east_ray.teachers.tf_checkpoint` re-exports it as the reader's one error.
class CheckpointError(BadValueError):
    """A checkpoint file that is missing, malformed or uses an unsupported feature."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# --------------------------------------------------------------------------------------
# Varints and protobuf wire format


def read_varint(buf: bytes, pos: int, where: Path | str) -> tuple[int, int]:
    """Decode an unsigned varint at `pos` → (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError(where, "truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError(where, "varint longer than 10 bytes")


def proto_fields(buf: bytes, where: Path | str) -> list[tuple[int, int, int | bytes]]:
    """Split a protobuf message into (field number, wire type, value) triples."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos, where)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = read_varint(buf, pos, where)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise CheckpointError(where, "truncated fixed64 field")
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = read_varint(buf, pos, where)
            if pos + length > len(buf):
                raise CheckpointError(where, "truncated length-delimited field")
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise CheckpointError(where, "truncated fixed32 field")
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise CheckpointError(where, f"unsupported protobuf wire type {wire}")
        fields.append((number, wire, value))
    return fields


# --------------------------------------------------------------------------------------
# SSTable


def _read_block(data: bytes, offset: int, size: int, where: Path, verify: bool) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if offset < 0 or end > len(data):
        raise CheckpointError(where, f"block [{offset}, {end}) runs past the end of the file")
    contents = data[offset : offset + size]
    compression = data[offset + size]
    if verify:
        (stored,) = struct.unpack_from("<I", data, offset + size + 1)
        actual = crc32c(data[offset : offset + size + 1])
        if unmask_crc32c(stored) != actual:
            raise CheckpointError(where, f"block checksum mismatch at offset {offset}")
    if compression != 0:
        kind = "snappy" if compression == 1 else f"type {compression}"
        raise CheckpointError(where, f"compressed ({kind}) index blocks are not supported")
    return contents


def _block_entries(block: bytes, where: Path) -> list[tuple[bytes, bytes]]:
    """Decode a table block into its (key, value) pairs, in order."""
    if len(block) < 4:
        raise CheckpointError(where, "table block shorter than its restart count")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * n_restarts
    if limit < 0:
        raise CheckpointError(where, f"table block claims {n_restarts} restart points")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = read_varint(block, pos, where)
        unshared, pos = read_varint(block, pos, where)
        value_length, pos = read_varint(block, pos, where)
        if shared > len(key) or pos + unshared + value_length > limit:
            raise CheckpointError(where, "corrupt entry in table block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def table_entries(data: bytes, where: Path, verify: bool) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) entries of a table file's data blocks, in order.

    A generator, so that a data block is read (and its CRC checked, if `verify`) only
    after the entries of the blocks before it have been handled.
    """
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(where, f"too short ({len(data)} bytes) for a table footer")
    (magic,) = struct.unpack_from("<Q", data, len(data) - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointError(where, "bad table magic number: not a TensorFlow V2 checkpoint")
    footer = data[len(data) - FOOTER_SIZE :]
    _, pos = read_varint(footer, 0, where)  # metaindex offset (the metaindex is unused)
    _, pos = read_varint(footer, pos, where)
    index_offset, pos = read_varint(footer, pos, where)
    index_size, _ = read_varint(footer, pos, where)

    index_block = _read_block(data, index_offset, index_size, where, verify)
    for _, handle in _block_entries(index_block, where):
        offset, pos = read_varint(handle, 0, where)
        size, _ = read_varint(handle, pos, where)
        block = _read_block(data, offset, size, where, verify)
        yield from _block_entries(block, where)
