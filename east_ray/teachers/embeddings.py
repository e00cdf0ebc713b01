"""Teacher embeddings of a prepared dataset: extraction as a Ray Data job, and reading back.

`extract_teacher(data_dir, name)` writes `teachers/<name>/part-NNNNN.parquet` (`clip_id`,
`embedding` fixed-shape tensor `[T, D]` float32), one file per clip shard of the
prepared dataset, then records the teacher in `meta.json` (hop, dim, frames). A pool of
Ray actors loads the network once per actor and embeds whole shards, on a (fractional)
GPU when the cluster has one, else on a CPU. Shards are written atomically, so an
interrupted run resumes; a finished teacher is not extracted again, except for shards
that have gone missing or cannot be read (set aside, re-extracted, with a warning naming
them); the spectrograms are never rewritten.

VGGish on OpenMIC-2018 is not recomputed: the release ships it (`X` in the npz, 8-bit PCA
output), imported and dequantised as `(x - 128) / 256`.

Reading them back is `east_ray.teachers.stored.load_embeddings`, which needs no Ray.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import torch

from east_ray.data.audio import decode, fit_length, resample
from east_ray.data.openmic import NPZ, read_string_array
from east_ray.data.parquet import (
    META,
    move_aside,
    read_meta,
    tensor_array,
    write_json_atomic,
    write_table_atomic,
)
from east_ray.data.prepare import shard_paths
from east_ray.ray_session import init_ray
from east_ray.teachers.registry import Extractor, get_teacher, load_extractor
from east_ray.teachers.stored import teacher_dir

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EmbedJob:
    """What an actor needs to embed one shard."""

    data_dir: str
    teacher: str
    shard: int
    clip_seconds: float
    min_fraction: float
    batch_size: int = 8


def _shard_path(data_dir: Path, name: str, shard: int) -> Path:
    return teacher_dir(data_dir, name) / f"part-{shard:05d}.parquet"


def _ok_clips(data_dir: Path) -> pa.Table:
    """clip_id, audio_path, shard of every clip that made it into the prepared dataset."""
    ok = pq.read_table(Path(data_dir) / "clips", columns=["clip_id"])
    manifest = pq.read_table(
        Path(data_dir) / "manifest.parquet", columns=["clip_id", "audio_path", "shard"]
    )
    keep = pc.is_in(manifest["clip_id"], value_set=ok["clip_id"])
    return manifest.filter(keep)


def _shard_clips(data_dir: Path, shard: int) -> pa.Table:
    """clip_id, audio_path of the clips of one shard that made it into the dataset
    (reads that shard's files only: each actor handles many shards)."""
    ok = pq.read_table(shard_paths(data_dir, shard)[0], columns=["clip_id"])
    manifest = pq.read_table(
        Path(data_dir) / "manifest.parquet",
        columns=["clip_id", "audio_path"],
        filters=[("shard", "=", shard)],
    )
    return manifest.filter(pc.is_in(manifest["clip_id"], value_set=ok["clip_id"]))


def embed_shard(job: EmbedJob, extractor: Extractor) -> int:
    """Embed every clip of one shard and write its Parquet file; returns the clip count."""
    info = get_teacher(job.teacher)
    rows = _shard_clips(Path(job.data_dir), job.shard)
    n_samples = round(job.clip_seconds * info.sample_rate)
    ids, paths = rows["clip_id"].to_pylist(), rows["audio_path"].to_pylist()
    parts = []
    for start in range(0, len(ids), job.batch_size):
        waves = []
        for path in paths[start : start + job.batch_size]:
            audio, rate = decode(path)
            wave, _ = fit_length(
                resample(audio, rate, info.sample_rate), n_samples, job.min_fraction, path
            )
            waves.append(wave)
        parts.append(extractor(torch.stack(waves)).numpy().astype(np.float32))
    embeddings = np.concatenate(parts) if parts else np.zeros((0, 1, info.dim), np.float32)
    bad = ~np.isfinite(embeddings).all(axis=(1, 2))
    if bad.any():
        raise ValueError(
            f"teacher {job.teacher}: non-finite embedding for clip "
            f"{ids[int(np.flatnonzero(bad)[0])]} ({int(bad.sum())} clips in shard "
            f"{job.shard})"
        )
    table = pa.table({"clip_id": pa.array(ids, pa.string()), "embedding": tensor_array(embeddings)})
    write_table_atomic(table, _shard_path(Path(job.data_dir), job.teacher, job.shard))
    return len(ids)


class _ShardEmbedder:
    """A Ray Data actor: loads the teacher once, embeds the shards it is handed."""

    def __init__(self, template: EmbedJob, checkpoint: str | None, pretrained: bool) -> None:
        torch.set_num_threads(1)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.template = template
        self.extractor = load_extractor(
            template.teacher, device, Path(checkpoint) if checkpoint else None, pretrained
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        counts = [
            embed_shard(dataclasses.replace(self.template, shard=int(s)), self.extractor)
            for s in batch["shard"]
        ]
        return {"shard": batch["shard"], "clips": np.array(counts)}


def _run_on_ray(jobs: list[EmbedJob], checkpoint: Path | None, pretrained: bool) -> None:
    init_ray()
    available: dict[str, float] = ray.cluster_resources()
    gpus, cpus = available.get("GPU", 0.0), available.get("CPU", 1.0)
    actors = max(1, min(len(jobs), int(4 * gpus) if gpus else int(cpus)))
    resources = {"num_gpus": 0.25} if gpus else {"num_cpus": 1}
    ds = ray.data.from_items([{"shard": j.shard} for j in jobs], override_num_blocks=len(jobs))
    ds.map_batches(
        _ShardEmbedder,
        fn_constructor_kwargs={
            "template": jobs[0],
            "checkpoint": str(checkpoint or ""),
            "pretrained": pretrained,
        },
        batch_size=1,
        concurrency=actors,
        **resources,
    ).materialize()


def _readable_shard(path: Path) -> bool:
    """Whether a teacher shard exists and its Parquet footer reads; a damaged one is moved
    aside with a warning (extraction then writes it again)."""
    if not path.is_file():
        return False
    try:
        pq.read_metadata(path)
        return True
    except (pa.ArrowInvalid, OSError) as exc:
        aside = move_aside(path)
        logger.warning("%s cannot be read (%s); moved to %s", path, exc, aside.name)
        return False


def _import_release_vggish(data_dir: Path, meta: dict[str, Any], shards: list[int]) -> None:
    """Write the release's own VGGish (`X`) for OpenMIC-2018, dequantised."""
    npz = Path(meta["release_root"]) / NPZ
    keys = read_string_array(npz, "sample_key")
    with np.load(npz, allow_pickle=False) as archive:
        x = np.asarray(archive["X"])
    row_of = {k: i for i, k in enumerate(keys)}
    clips = _ok_clips(data_dir)
    for shard in shards:
        ids = clips.filter(pc.equal(clips["shard"], shard))["clip_id"].to_pylist()
        embedding = (x[[row_of[k] for k in ids]].astype(np.float32) - 128.0) / 256.0
        table = pa.table(
            {"clip_id": pa.array(ids, pa.string()), "embedding": tensor_array(embedding)}
        )
        write_table_atomic(table, _shard_path(data_dir, "vggish", shard))


def _release_has_vggish(meta: dict[str, Any]) -> bool:
    if meta["dataset"] != "openmic":
        return False
    npz = Path(meta.get("release_root", "")) / NPZ
    if not npz.is_file():
        return False
    with np.load(npz, allow_pickle=False) as archive:
        return "X" in archive.files


def extract_teacher(
    data_dir: Path,
    name: str,
    *,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    runner: Callable[[list[EmbedJob]], None] | None = None,
) -> dict[str, Any]:
    """Extract (or finish, or confirm) teacher `name` for a prepared dataset; returns its meta.

    `runner` replaces the Ray actor pool (tests run the shards in-process).
    """
    data_dir = Path(data_dir)
    info = get_teacher(name)
    meta = read_meta(data_dir)
    clips = _ok_clips(data_dir)
    shards = sorted(set(clips["shard"].to_pylist()))
    todo = [s for s in shards if not _readable_shard(_shard_path(data_dir, name, s))]
    done = meta.get("teachers", {}).get(name)
    if done and done.get("complete"):
        if not todo:
            print(f"{data_dir}: teacher {name} already extracted ({done['clips']} clips)")
            return dict(done)
        logger.warning(
            "%s lists teacher %s as extracted, but %d of its %d shards in %s are missing or "
            "unreadable (%s); extracting them again",
            data_dir / META,
            name,
            len(todo),
            len(shards),
            teacher_dir(data_dir, name),
            ", ".join(_shard_path(data_dir, name, s).name for s in todo),
        )
    print(
        f"teacher {name}: {len(clips)} clips in {len(shards)} shards, "
        f"{len(shards) - len(todo)} already written",
        file=sys.stderr,
    )
    source = "network"
    if name == "vggish" and _release_has_vggish(meta):
        source = "release X (dequantised)"
        _import_release_vggish(data_dir, meta, todo)
    elif todo:
        features = meta["features"]
        jobs = [
            EmbedJob(str(data_dir), name, s, features["clip_seconds"], meta["min_fraction"])
            for s in todo
        ]
        if runner is not None:
            runner(jobs)
        else:
            _run_on_ray(jobs, checkpoint, pretrained)
    missing = [s for s in shards if not _shard_path(data_dir, name, s).is_file()]
    if missing:
        raise RuntimeError(f"teacher {name}: shards {missing} were not written")
    schema = pq.read_schema(_shard_path(data_dir, name, shards[0]))
    shape = schema.field("embedding").type.shape
    record = {
        "complete": True,
        "clips": len(clips),
        "frames": int(shape[0]),
        "dim": int(shape[1]),
        "hop_seconds": info.hop_seconds,
        "sample_rate": info.sample_rate,
        "source": source,
        "pretrained": pretrained,
        "standardise": info.standardise,
    }
    meta = read_meta(data_dir)  # re-read: another teacher may have finished meanwhile
    meta.setdefault("teachers", {})[name] = record
    write_json_atomic(meta, data_dir / META)
    print(f"teacher {name}: {len(clips)} clips, embedding {shape[0]}x{shape[1]} ({source})")
    return record
