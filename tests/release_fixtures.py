"""Tiny releases in the real on-disk formats, written by the tests themselves."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from east_ray.config import Features
from east_ray.data.magnatagatune import TOP50

OPENMIC_CLASSES = (
    "accordion", "banjo", "bass", "cello", "clarinet", "cymbals", "drums", "flute", "guitar",
    "mallet_percussion", "mandolin", "organ", "piano", "saxophone", "synthesizer", "trombone",
    "trumpet", "ukulele", "violin", "voice",
)  # fmt: skip

# One second clips keep the fixtures small; the reader and pipeline do not care.
TEST_FEATURES = Features(sample_rate=16000, n_mels=32, f_max=8000.0, clip_seconds=1.0)


def tone(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    """A harmonic tone plus a little noise, `(samples, channels)` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    wave = 0.2 * wave + 0.01 * rng.standard_normal(len(t))
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


@dataclass(frozen=True)
class OpenmicFixture:
    root: Path
    keys: list[str]
    y_true: np.ndarray
    y_mask: np.ndarray
    train: list[str]
    test: list[str]
    bad: dict[str, str]  # key → expected skip reason prefix


def write_openmic(root: Path, n: int = 24, seed: int = 0, scale: float = 1.0) -> OpenmicFixture:
    """An OpenMIC-2018 release: npz (int64 X, float64 Y_true with 0.5, object keys), CSVs,
    partitions, `audio/PPP/<key>.ogg` at 44.1 kHz stereo, and a few broken clips."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    keys = [f"{100 + 7 * i:06d}_{1000 * (i % 3)}" for i in range(n)]
    c = len(OPENMIC_CLASSES)
    y_mask = rng.random((n, c)) < 0.3
    y_mask[:, 0] = True  # every clip labelled for class 0, so both splits have labels
    relevance = np.where(
        rng.random((n, c)) < 0.5, rng.uniform(0.0, 0.49, (n, c)), rng.uniform(0.51, 1.0, (n, c))
    )
    relevance[:, 0] = np.where(np.arange(n) % 2 == 0, 0.9, 0.1)  # both classes of label 0
    y_true = np.where(y_mask, relevance, 0.5)
    x = rng.integers(0, 256, size=(n, 10, 128), dtype=np.int64)
    np.savez(
        root / "openmic-2018.npz",
        X=x,
        Y_true=y_true,
        Y_mask=y_mask,
        sample_key=np.array(keys, dtype=object),
    )
    (root / "class-map.json").write_text(json.dumps({k: i for i, k in enumerate(OPENMIC_CLASSES)}))
    (root / "partitions").mkdir()
    test = keys[::4]
    train = [k for k in keys if k not in test]
    (root / "partitions" / "split01_train.csv").write_text("".join(f"{k}\n" for k in train))
    (root / "partitions" / "split01_test.csv").write_text("".join(f"{k}\n" for k in test))
    with (root / "openmic-2018-metadata.csv").open("w") as fh:
        fh.write("sample_key,track_id,artist_id,artist_name\n")
        for i, k in enumerate(keys):
            fh.write(f"{k},{int(k[:6])},{i // 3},Artist {i // 3}\n")
    bad = {
        keys[1]: "missing audio file",
        keys[2]: "empty audio file",
        keys[3]: "undecodable audio",
        keys[5]: "too short",
    }
    for i, key in enumerate(keys):
        path = root / "audio" / key[:3] / f"{key}.ogg"
        path.parent.mkdir(parents=True, exist_ok=True)
        reason = bad.get(key, "")
        if reason.startswith("missing"):
            continue
        if reason.startswith("empty"):
            path.write_bytes(b"")
        elif reason.startswith("undecodable"):
            path.write_bytes(b"OggS" + rng.bytes(2000))
        else:
            seconds = scale * (0.5 if reason.startswith("too short") else (0.97 if i == 6 else 1.2))
            sf.write(path, tone(seconds, 44100, 2, i), 44100, format="OGG", subtype="VORBIS")
    return OpenmicFixture(root, keys, y_true, y_mask, train, test, bad)


def prepared_openmic(
    tmp: Path, n: int = 24, valid_fraction: float = 0.3, scale: float = 1.0
) -> Path:
    """A prepared (Parquet) copy of `write_openmic`'s release, built in-process; `scale`
    lengthens every clip and the features' clip length by that factor."""
    from east_ray.data.openmic import read_openmic
    from east_ray.data.prepare import ShardJob, build_shard, prepare
    from east_ray.data.valid_split import SeededSplit

    fx = write_openmic(tmp / "openmic-2018", n=n, scale=scale)
    out = tmp / "prepared"
    index = read_openmic(fx.root, SeededSplit(valid_fraction))

    def in_process(jobs: list[ShardJob]) -> None:
        for job in jobs:
            build_shard(job)

    features = dataclasses.replace(TEST_FEATURES, clip_seconds=TEST_FEATURES.clip_seconds * scale)
    prepare(index, features, out, shard_size=8, runner=in_process)
    return out


def write_mtat(root: Path, clips: list[tuple[str, str, list[str]]]) -> None:
    """`annotations_final.csv` exactly as released (TAB, every field quoted, CRLF) with
    188 tag columns, for `(clip_id, mp3_path, tags)` rows; no audio."""
    root.mkdir(parents=True, exist_ok=True)
    extra = [f"tag{i}" for i in range(188 - len(TOP50))]
    tags = list(TOP50[:25]) + extra + list(TOP50[25:])
    lines = ["\t".join(f'"{v}"' for v in ["clip_id", *tags, "mp3_path"])]
    for clip_id, path, on in clips:
        values = ["1" if t in on else "0" for t in tags]
        lines.append("\t".join(f'"{v}"' for v in [clip_id, *values, path]))
    (root / "annotations_final.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())


def write_mtat_audio(root: Path, path: str, seconds: float, seed: int) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, tone(seconds, 16000, 1, seed)[:, 0], 16000, format="MP3")


def prepared_mtat(tmp: Path, n: int = 18) -> Path:
    """A prepared (Parquet) MagnaTagATune-layout dataset of `n` one-second MP3 clips, built
    in-process: folders 0-b train, c valid, d-f test; every split has clips with and
    without each of three tags."""
    from east_ray.data.magnatagatune import read_magnatagatune
    from east_ray.data.prepare import ShardJob, build_shard, prepare

    folders = ["0", "1", "2", "3", "4", "5", "c", "c", "d", "e", "f", "f"]
    tags = (["rock"], ["classical"], ["guitar", "rock"])
    clips = [
        (
            str(i),
            f"{folders[i % len(folders)]}/artist{i % 5}-album-{i:02d}-song-0-29.mp3",
            tags[i % 3],
        )
        for i in range(n)
    ]
    root = tmp / "magnatagatune"
    write_mtat(root, clips)
    for i, (_, path, _) in enumerate(clips):
        write_mtat_audio(root, path, 1.0, i)
    out = tmp / "prepared"

    def in_process(jobs: list[ShardJob]) -> None:
        for job in jobs:
            build_shard(job)

    prepare(read_magnatagatune(root), TEST_FEATURES, out, shard_size=8, runner=in_process)
    return out


def tiny_study(
    name: str,
    *,
    recipe: str = "",
    resources: str = "cpus_per_trial = 1",
    regularizers: str = '["none", "kd", "dcor"]',
    stages: str = '["final"]',
    lams: str = "0.5",
    dataset: str = "openmic",
) -> str:
    """A study TOML for `prepared_openmic` (or, with `dataset`, `prepared_mtat`) data:
    8-channel CP-ResNet, handcrafted teacher, a Teacher_LR of at most 100 steps (the
    authors' step budget ran the MTAT fixture's probe for about 40 s)."""
    return f"""name = "{name}"
dataset = "{dataset}"
student = "cp_resnet"
[student_options]
base_channels = 8
[features]
sample_rate = 16000
n_mels = 32
f_max = 8000.0
clip_seconds = 1.0
[recipe]
batch_size = 4
mixup_alpha = 0.0
{recipe}
[resources]
{resources}
[grid]
regularizers = {regularizers}
teachers = ["handcrafted"]
stages = {stages}
lams = [{lams}]
seeds = [0]
[teacher_lr]
max_steps = 100
"""
