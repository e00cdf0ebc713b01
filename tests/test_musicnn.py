"""musicnn in PyTorch: the TF checkpoint reader, the network, the front end, the golden outputs.

The golden files were made by the original TensorFlow musicnn 0.1.0 (`extractor(...,
input_length=3, input_overlap=False, extract_features=True)`, librosa >= 0.10 / soxr).
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from east_ray.errors import UnknownNameError
from east_ray.teachers.crc32c import crc32c, mask_crc32c, unmask_crc32c
from east_ray.teachers.musicnn import (
    FRAMES_PER_PATCH,
    MODELS,
    MusicnnTagger,
    _mel_filters,
    _same_padding,
    load_musicnn,
    musicnn_features,
    musicnn_file_features,
    musicnn_log_mel,
    musicnn_patches,
)
from east_ray.teachers.tf_checkpoint import (
    CheckpointError,
    read_checkpoint,
    read_checkpoint_entries,
)

HAS_MUSICNN = importlib.util.find_spec("musicnn") is not None
CLIP = "000046_3840"

# ---------------------------------------------------------------------------------------
# A minimal TensorFlow V2 checkpoint writer (test helper; the format as the reader documents)

_DTYPE_CODES = {"f4": 1, "f8": 2, "i4": 3, "i8": 9, "b1": 10, "f2": 19}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes, wire: int | None = None) -> bytes:
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    if wire == 5:
        return _varint(number << 3 | 5) + struct.pack("<I", value)
    return _varint(number << 3) + _varint(value)


def _tensor_bytes(array: np.ndarray) -> tuple[bytes, int]:
    """(bytes as stored in the data file, unmasked CRC as TensorFlow computes it)."""
    if array.dtype == object:
        items = [bytes(x) for x in array.reshape(-1)]
        lengths = b"".join(_varint(len(x)) for x in items)
        crc = 0
        for item in items:
            crc = crc32c(struct.pack("<I", len(item)), crc)
        checksum = struct.pack("<I", mask_crc32c(crc))
        crc = crc32c(checksum, crc)
        body = b"".join(items)
        return lengths + checksum + body, crc32c(body, crc)
    raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return raw, crc32c(raw)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """One table block, prefix-compressed keys, a single restart point."""
    out = bytearray()
    previous = b""
    for key, value in entries:
        shared = 0
        while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
            shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        previous = key
    return bytes(out) + struct.pack("<II", 0, 1)


def _with_trailer(block: bytes) -> bytes:
    return block + b"\x00" + struct.pack("<I", mask_crc32c(crc32c(block + b"\x00")))


def write_v2_checkpoint(prefix: str, tensors: dict[str, np.ndarray], per_block: int = 2) -> None:
    """Write `tensors` as `<prefix>.index` + `<prefix>.data-00000-of-00001`."""
    data = bytearray()
    entries: list[tuple[bytes, bytes]] = [(b"", _field(1, 1) + _field(3, _field(1, 1)))]
    for name in sorted(tensors):
        array = tensors[name]
        raw, crc = _tensor_bytes(array)
        dtype = 7 if array.dtype == object else _DTYPE_CODES[array.dtype.str[1:]]
        shape = b"".join(_field(2, _field(1, d)) for d in array.shape)
        entry = _field(1, dtype) + _field(2, shape)
        if data:  # proto3 leaves a zero offset out
            entry += _field(4, len(data))
        entry += _field(5, len(raw)) + _field(6, mask_crc32c(crc), wire=5)
        entries.append((name.encode(), entry))
        data += raw
    index = bytearray()
    handles: list[tuple[bytes, bytes]] = []
    for start in range(0, len(entries), per_block):
        chunk = entries[start : start + per_block]
        block = _block(chunk)
        handles.append((chunk[-1][0], _varint(len(index)) + _varint(len(block))))
        index += _with_trailer(block)
    meta = _block([])
    meta_handle = _varint(len(index)) + _varint(len(meta))
    index += _with_trailer(meta)
    index_block = _block(handles)
    index_handle = _varint(len(index)) + _varint(len(index_block))
    index += _with_trailer(index_block)
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(prefix + ".index").write_bytes(bytes(index + footer))
    Path(prefix + ".data-00000-of-00001").write_bytes(bytes(data))


def _fixture_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    strings = np.array([b"", b"musicnn", bytes(range(200))], dtype=object)
    return {
        "conv2d/kernel": rng.standard_normal((7, 38, 1, 20)).astype(np.float32),  # > 4 KiB
        "conv2d/bias": rng.standard_normal(20).astype(np.float32),
        "dense/kernel": rng.standard_normal((3, 4)),
        "global_step": np.array(1234, dtype=np.int64),
        "ids": np.arange(-3, 3, dtype=np.int32),
        "flags": np.array([True, False, True]),
        "half": np.array([1.5, -2.25], dtype=np.float16),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "names": strings,
    }


# ---------------------------------------------------------------------------------------
# Checkpoint reader (no shared data needed)


def test_crc32c_reference_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, B.4
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    data = np.random.default_rng(1).integers(0, 256, 50_001, dtype=np.uint8).tobytes()
    whole = crc32c(data)  # the vectorised path
    assert crc32c(data[20_000:], crc32c(data[:20_000])) == whole
    slow = 0xFFFFFFFF
    for byte in data[:5000]:  # bitwise reference on a prefix, then extended
        slow ^= byte
        for _ in range(8):
            slow = (slow >> 1) ^ (0x82F63B78 if slow & 1 else 0)
    assert crc32c(data[5000:], slow ^ 0xFFFFFFFF) == whole
    for value in (0, 1, 0xDEADBEEF, 0xFFFFFFFF):
        assert unmask_crc32c(mask_crc32c(value)) == value


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    tensors = _fixture_tensors()
    write_v2_checkpoint(f"{tmp_path}/model.ckpt", tensors)
    loaded = read_checkpoint(tmp_path / "model.ckpt")
    assert list(loaded) == sorted(tensors)
    for name, expected in tensors.items():
        assert loaded[name].dtype == expected.dtype, name
        assert loaded[name].shape == expected.shape, name
        assert np.array_equal(loaded[name], expected), name
    subset = read_checkpoint(tmp_path / "model.ckpt", ["global_step", "conv2d/bias"])
    assert list(subset) == ["global_step", "conv2d/bias"]
    entries = read_checkpoint_entries(tmp_path / "model.ckpt")
    assert entries["conv2d/kernel"].shape == (7, 38, 1, 20)
    with pytest.raises(CheckpointError, match="no tensors named"):
        read_checkpoint(tmp_path / "model.ckpt", ["nope"])


def test_checkpoint_directory_prefix(tmp_path: Path) -> None:
    """TF1's `saver.restore(sess, 'dir/')` layout: `dir/.index`, as musicnn ships."""
    folder = tmp_path / "MSD_musicnn"
    folder.mkdir()
    write_v2_checkpoint(f"{folder}/", {"w": np.ones(3, dtype=np.float32)})
    assert (folder / ".index").is_file()
    assert np.array_equal(read_checkpoint(folder)["w"], np.ones(3, dtype=np.float32))


def test_malformed_checkpoints_name_the_file(tmp_path: Path) -> None:
    prefix = tmp_path / "model.ckpt"
    write_v2_checkpoint(str(prefix), _fixture_tensors())
    index = tmp_path / "model.ckpt.index"
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    original_index, original_data = index.read_bytes(), data.read_bytes()

    corrupt = bytearray(original_data)
    corrupt[100] ^= 0x01  # inside conv2d/bias or conv2d/kernel
    data.write_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match="checksum mismatch") as info:
        read_checkpoint(prefix)
    assert str(data) in str(info.value)
    read_checkpoint(prefix, verify_checksums=False)  # sizes still fine

    data.write_bytes(original_data[:-10])
    with pytest.raises(CheckpointError, match="past the end") as info:
        read_checkpoint(prefix)
    assert str(data) in str(info.value)
    data.unlink()
    with pytest.raises(CheckpointError, match="data file is missing") as info:
        read_checkpoint(prefix)
    assert str(data) in str(info.value)
    data.write_bytes(original_data)

    corrupt = bytearray(original_index)
    corrupt[5] ^= 0x40
    index.write_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match="block checksum mismatch") as info:
        read_checkpoint(prefix)
    assert str(index) in str(info.value)
    index.write_bytes(original_index[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="magic"):
        read_checkpoint(prefix)
    index.write_bytes(original_index[:20])
    with pytest.raises(CheckpointError, match="too short"):
        read_checkpoint(prefix)
    with pytest.raises(CheckpointError, match="index file is missing"):
        read_checkpoint(tmp_path / "absent")


@pytest.mark.skipif(not HAS_MUSICNN, reason="the musicnn wheel is not installed")
def test_wheel_checkpoints_read_and_verify() -> None:
    from east_ray.teachers.musicnn import default_checkpoint_dir

    for model in MODELS:
        entries = read_checkpoint_entries(default_checkpoint_dir(model))
        assert entries["conv2d/kernel"].shape == (7, 38, 1, 204)
        assert entries["conv2d_5/kernel"].shape == (7, 561, 1, 64)
        assert entries["dense/kernel"].shape == (1506, 200)
        assert entries["dense_1/kernel"].shape == (200, 50)


# ---------------------------------------------------------------------------------------
# Network and front end (no shared data needed)


@pytest.fixture(scope="module")
def networks() -> dict[str, MusicnnTagger]:
    """Both models: released weights when the wheel is installed, random ones otherwise."""
    if HAS_MUSICNN:
        return {name: load_musicnn(name) for name in MODELS}
    torch.manual_seed(0)
    return {name: MusicnnTagger().eval() for name in MODELS}


def test_tf_same_padding() -> None:
    assert _same_padding(128) == (63, 64)
    assert _same_padding(32) == (15, 16)
    assert _same_padding(7) == (3, 3)


@pytest.mark.parametrize("seconds,patches", [(10.0, 3), (29.1, 9)])
def test_shapes_and_finiteness(
    networks: dict[str, MusicnnTagger], seconds: float, patches: int
) -> None:
    audio = np.random.default_rng(2).uniform(-0.5, 0.5, round(seconds * 16_000))
    for name, net in networks.items():
        out = musicnn_features(audio.astype(np.float32), 16_000, net)
        shapes = {key: tuple(value.shape) for key, value in out.items()}
        assert shapes == {
            "input_batch": (patches, FRAMES_PER_PATCH, 96),
            "taggram": (patches, 50),
            "logits": (patches, 50),
            "penultimate": (patches, 200),
            "mean_pool": (patches, 753),
            "max_pool": (patches, 753),
        }, name
        assert all(bool(torch.isfinite(v).all()) for v in out.values()), name
        assert bool(((out["taggram"] > 0) & (out["taggram"] < 1)).all())


def test_stereo_resampled_and_short_input() -> None:
    rng = np.random.default_rng(3)
    stereo = rng.uniform(-0.5, 0.5, (2, 16_000 * 4)).astype(np.float32)
    both = musicnn_log_mel(stereo, 16_000)
    assert torch.equal(both, musicnn_log_mel(stereo.mean(axis=0), 16_000))
    high = musicnn_log_mel(torch.from_numpy(rng.uniform(-0.5, 0.5, 44_100 * 4)), 44_100)
    assert high.shape == (251, 96)  # 4 s at 16 kHz, hop 256, centred
    assert musicnn_patches(high).shape == (1, FRAMES_PER_PATCH, 96)
    with pytest.raises(ValueError, match="too short"):
        musicnn_patches(musicnn_log_mel(np.zeros(16_000 * 2, dtype=np.float32), 16_000))


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="MSD_musicnn, MTT_musicnn"):
        load_musicnn("MSD_vgg", tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / ".index")):
        load_musicnn("MSD_musicnn", tmp_path)


def test_front_end_matches_librosa() -> None:
    """Same 16 kHz signal: librosa's melspectrogram → float16 → log10(10000x + 1)."""
    librosa = pytest.importorskip("librosa")
    filters = librosa.filters.mel(sr=16_000, n_fft=512, n_mels=96)
    assert np.allclose(_mel_filters(torch.device("cpu")).numpy().T, filters, atol=1e-7)
    audio = np.random.default_rng(4).uniform(-0.5, 0.5, 16_000 * 4).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=audio, sr=16_000, hop_length=256, n_fft=512, n_mels=96)
    expected = np.log10(10_000 * mel.T.astype(np.float16).astype(np.float32) + 1)
    ours = musicnn_log_mel(audio, 16_000).numpy()
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() < 2e-3  # a float16 rounding step at most
    assert np.abs(ours - expected).mean() < 1e-5
    assert musicnn_patches(torch.from_numpy(expected)).shape == (1, 187, 96)


# ---------------------------------------------------------------------------------------
# Golden outputs of the original TensorFlow musicnn (needs ../shared/data and the wheel)


def _golden(shared_data: Path, model: str) -> dict[str, np.ndarray]:
    path = shared_data / "musicnn-golden" / f"openmic_{CLIP}__{model}.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


def _relative(ours: np.ndarray, golden: np.ndarray) -> float:
    return float(np.abs(ours - golden).max() / np.abs(golden).max())


@pytest.mark.skipif(not HAS_MUSICNN, reason="the musicnn wheel is not installed")
@pytest.mark.parametrize("model", sorted(MODELS))
def test_golden_from_golden_input(
    shared_data: Path, networks: dict[str, MusicnnTagger], model: str
) -> None:
    golden = _golden(shared_data, model)
    assert list(golden["tags"]) == list(MODELS[model])
    with torch.inference_mode():
        out = networks[model](torch.from_numpy(golden["input_batch"]))
    taggram = torch.sigmoid(out.logits).numpy()
    assert np.abs(taggram - golden["taggram"]).max() < 1e-4  # measured ~3e-6
    assert _relative(out.mean_pool.numpy(), golden["mean_pool"]) < 1e-3  # ~1e-6
    assert _relative(out.max_pool.numpy(), golden["max_pool"]) < 1e-3  # ~7e-6
    # musicnn 0.1.0's extractor appends the *first* patch's penultimate for every later
    # patch (it unpacks the later runs into `backend_` but concatenates `penultimate_`),
    # so only row 0 of the golden `penultimate` is genuine; the rest are copies of it.
    penultimate = golden["penultimate"]
    assert np.array_equal(penultimate, np.broadcast_to(penultimate[:1], penultimate.shape))
    assert _relative(out.penultimate.numpy()[:1], penultimate[:1]) < 1e-3  # ~4e-6


@pytest.mark.skipif(not HAS_MUSICNN, reason="the musicnn wheel is not installed")
@pytest.mark.parametrize("model", sorted(MODELS))
def test_golden_end_to_end_from_audio(
    shared_data: Path, networks: dict[str, MusicnnTagger], model: str
) -> None:
    golden = _golden(shared_data, model)
    out = musicnn_file_features(shared_data / "real-audio" / f"{CLIP}.ogg", networks[model])
    front = np.abs(out["input_batch"].numpy() - golden["input_batch"])
    assert front.max() < 2e-2  # measured 5.8e-3 (resampler differs from soxr)
    assert front.mean() < 2e-4  # measured 3.5e-5
    assert np.abs(out["taggram"].numpy() - golden["taggram"]).max() < 1e-3  # measured 1.5e-4
    assert _relative(out["mean_pool"].numpy(), golden["mean_pool"]) < 3e-3  # ~3e-4
    assert _relative(out["max_pool"].numpy(), golden["max_pool"]) < 3e-3  # ~6e-4


def test_golden_front_end_given_librosa_resampling(shared_data: Path) -> None:
    """With librosa's (soxr) 16 kHz audio, our STFT/mel/log path reproduces the golden input."""
    librosa = pytest.importorskip("librosa")
    pytest.importorskip("soxr")
    golden = _golden(shared_data, "MSD_musicnn")
    audio, _ = librosa.load(shared_data / "real-audio" / f"{CLIP}.ogg", sr=16_000)
    ours = musicnn_patches(musicnn_log_mel(audio, 16_000)).numpy()
    assert np.abs(ours - golden["input_batch"]).max() < 1e-3  # measured 4.2e-4 (float16 steps)
