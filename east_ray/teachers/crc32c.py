"""CRC-32C (Castagnoli) and the masked form TensorFlow and LevelDB store.

One job: checksum bytes the way TensorFlow checkpoints do, using only numpy. Short
inputs run a plain table loop; longer ones run the byte table over many chunks at once
and fold the chunk registers together, so that checking a checkpoint's tensors does not
cost a Python-level loop per byte.
"""

from __future__ import annotations

import functools
import struct

import numpy as np

__all__ = ["crc32c", "mask_crc32c", "unmask_crc32c"]

_CRC_MASK_DELTA = 0xA282EAD8
_CASTAGNOLI_REFLECTED = 0x82F63B78
_SMALL_CRC = 4096  # below this many bytes a plain loop beats the vectorised path


@functools.cache
def _crc_table() -> np.ndarray:
    """The 256-entry byte table of the reflected Castagnoli polynomial (uint32)."""
    values = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        values = np.where(values & 1, (values >> 1) ^ _CASTAGNOLI_REFLECTED, values >> 1)
    return values.astype(np.uint32)


@functools.cache
def _zeros_operator(n_bytes: int) -> np.ndarray:
    """`(4, 256)` tables of the linear map "feed `n_bytes` zero bytes" on a CRC register.

    Row `k`, column `v` is the image of the register value `v << 8k`, so the map of any
    register is the XOR of four lookups.
    """
    table = _crc_table()
    basis = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    for _ in range(n_bytes):
        basis = table[basis & 0xFF] ^ (basis >> 8)
    bits = (np.arange(256, dtype=np.uint32)[:, None] >> np.arange(8, dtype=np.uint32)) & 1
    out = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        images = basis[8 * k : 8 * k + 8]
        out[k] = np.bitwise_xor.reduce(np.where(bits == 1, images[None, :], 0), axis=1)
    return out


def _crc_register_loop(data: bytes | memoryview, register: int) -> int:
    table = _crc_table().tolist()
    for byte in bytes(data):
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _crc_register_vectorised(data: np.ndarray) -> int:
    """Register after feeding `data` (uint8) to a zero-initialised CRC register.

    The message is split into equal chunks (the first one front-padded with zeros, which
    leaves a zero register unchanged); all chunks run through the byte table at once, then
    the chunk registers are folded with the "feed L zero bytes" operator, which is linear.
    """
    n = data.size
    chunk = max(64, int(np.sqrt(n)) // 64 * 64)
    n_chunks = -(-n // chunk)
    padded = np.zeros(n_chunks * chunk, dtype=np.uint8)
    padded[n_chunks * chunk - n :] = data
    rows = padded.reshape(n_chunks, chunk)
    table = _crc_table()
    registers = np.zeros(n_chunks, dtype=np.uint32)
    for j in range(chunk):
        registers = table[(registers ^ rows[:, j]) & 0xFF] ^ (registers >> 8)
    shift = _zeros_operator(chunk).tolist()
    t0, t1, t2, t3 = shift
    acc = 0
    for value in registers.tolist():
        acc = (
            t0[acc & 0xFF] ^ t1[(acc >> 8) & 0xFF] ^ t2[(acc >> 16) & 0xFF] ^ t3[acc >> 24]
        ) ^ value
    return acc


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, value: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`; `value` is a previous CRC to extend (0 to start)."""
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    raw = raw.reshape(-1).view(np.uint8)
    register = (value ^ 0xFFFFFFFF) & 0xFFFFFFFF
    if raw.size < _SMALL_CRC:
        return _crc_register_loop(raw.tobytes(), register) ^ 0xFFFFFFFF
    # A non-zero starting register equals XOR-ing it into the first four bytes
    # (little-endian) with a zero start, for this reflected CRC.
    head = raw[:4].copy()
    head ^= np.frombuffer(struct.pack("<I", register), dtype=np.uint8)
    message = np.concatenate([head, raw[4:]])
    return _crc_register_vectorised(message) ^ 0xFFFFFFFF


def mask_crc32c(crc: int) -> int:
    """TensorFlow/LevelDB's masked CRC: rotate right by 15 bits, add a constant."""
    crc &= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def unmask_crc32c(masked: int) -> int:
    """Inverse of `mask_crc32c`."""
    rotated = (masked - _CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF
