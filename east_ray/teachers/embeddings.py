"""Teacher embeddings of a prepared dataset, extracted as a Ray Data job.

`extract_teacher(data_dir, name)` writes `teachers/<name>/part-NNNNN.parquet` (`clip_id`,
`embedding` fixed-shape tensor `[T, D]` float32, the teacher's framing in the schema
metadata), one file per clip shard of the prepared dataset, then the teacher's record
`teachers/<name>/_teacher.json` (framing, frames, dim, hop, source;
`east_ray.teachers.stored`). A pool of Ray actors loads the network once per actor and
embeds whole shards, on a (fractional) GPU when the cluster has one, else on a CPU.
Shards and record are written atomically, so an interrupted run resumes; a finished
teacher is not extracted again, except for shards that have gone missing or cannot be
read (set aside, re-extracted, with a warning naming them) or were made with another
framing than the catalog's (extracted again, with a warning). A record made with another
framing (`stored.stale_reason`, e.g. OpenL3 from before its frames were centred) has every
shard extracted again. The spectrograms and `meta.json` are never rewritten.

`extract_teachers(data_dir, names)` does the same for several; references to layers of one
teacher (`musicnn@mean_pool`, `musicnn@taggram`; `catalog.teachers`) are extracted
together: each shard's audio goes through the network once and every requested layer's
shard is written from that pass.

VGGish on OpenMIC-2018 is not recomputed: the release ships it (`X` in the npz), read
dequantised by `east_ray.data.openmic.release_vggish`.

Reading them back is `east_ray.teachers.stored.load_embeddings`, which needs no Ray.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import torch
from tqdm import tqdm

from east_ray.catalog import check_licence, get_dataset, get_teacher
from east_ray.data.audio import decode, fit_length, resample
from east_ray.data.openmic import release_vggish
from east_ray.data.parquet import (
    move_aside,
    read_meta,
    tensor_array,
    write_json_atomic,
    write_table_atomic,
)
from east_ray.data.prepare import shard_paths
from east_ray.errors import BadValueError
from east_ray.ray_session import init_ray
from east_ray.teachers.extractor import Extractor
from east_ray.teachers.registry import load_extractor
from east_ray.teachers.stored import (
    SHARD_FRAMING_KEY,
    UNRECORDED_FRAMING,
    read_record,
    record_path,
    stale_reason,
    teacher_dir,
)

logger = logging.getLogger(__name__)

# how a study or the teachers command accepts weights licensed for non-commercial use only
OPT_IN = (
    "set non_commercial_weights = true at the top level of the study (the teachers "
    "command: --accept-non-commercial)"
)


@dataclasses.dataclass(frozen=True)
class EmbedJob:
    """What an actor needs to embed one shard: `teachers` are references of one teacher,
    all written from one forward pass."""

    data_dir: str
    teachers: tuple[str, ...]
    shard: int
    clip_seconds: float
    min_fraction: float
    batch_size: int = 8


def _shard_path(data_dir: Path, name: str, shard: int) -> Path:
    return teacher_dir(data_dir, name) / f"part-{shard:05d}.parquet"


def _write_shard(
    data_dir: Path, name: str, shard: int, ids: list[str], embeddings: np.ndarray
) -> None:
    table = pa.table(
        {"clip_id": pa.array(ids, pa.string()), "embedding": tensor_array(embeddings)},
        metadata={SHARD_FRAMING_KEY: get_teacher(name).framing.encode()},
    )
    write_table_atomic(table, _shard_path(data_dir, name, shard))


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
    """Embed every clip of one shard and write its Parquet file per reference of
    `job.teachers` (from one pass of `extractor`, which serves them); returns the clip
    count."""
    info = get_teacher(job.teachers[0])
    rows = _shard_clips(Path(job.data_dir), job.shard)
    n_samples = round(job.clip_seconds * info.sample_rate)
    ids, paths = rows["clip_id"].to_pylist(), rows["audio_path"].to_pylist()
    parts: dict[str, list[np.ndarray]] = {ref: [] for ref in job.teachers}
    for start in range(0, len(ids), job.batch_size):
        waves = []
        for path in paths[start : start + job.batch_size]:
            audio, rate = decode(path)
            wave, _ = fit_length(
                resample(audio, rate, info.sample_rate), n_samples, job.min_fraction, path
            )
            waves.append(wave)
        by_ref = extractor.embed_all(torch.stack(waves))
        for ref in job.teachers:
            parts[ref].append(by_ref[ref].numpy().astype(np.float32))
    for ref, chunks in parts.items():
        dim = get_teacher(ref).dim
        embeddings = np.concatenate(chunks) if chunks else np.zeros((0, 1, dim), np.float32)
        bad = ~np.isfinite(embeddings).all(axis=(1, 2))
        if bad.any():
            raise BadValueError(
                f"teacher {ref}: non-finite embedding for clip "
                f"{ids[int(np.flatnonzero(bad)[0])]} ({int(bad.sum())} clips in shard "
                f"{job.shard})"
            )
        _write_shard(Path(job.data_dir), ref, job.shard, ids, embeddings)
    return len(ids)


class _ShardEmbedder:
    """A Ray Data actor: loads the teacher once, embeds the shards it is handed."""

    def __init__(self, template: EmbedJob, checkpoint: str | None, pretrained: bool) -> None:
        torch.set_num_threads(1)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.template = template
        self.extractor = load_extractor(
            template.teachers[0],
            device,
            Path(checkpoint) if checkpoint else None,
            pretrained,
            outputs=template.teachers,
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


def _current_shard(path: Path, framing: str) -> bool:
    """Whether a teacher shard exists, reads, and was made with `framing`.

    A damaged one is moved aside with a warning; one of another framing is left to be
    overwritten, with a warning.
    """
    if not path.is_file():
        return False
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as exc:
        aside = move_aside(path)
        logger.warning("%s cannot be read (%s); moved to %s", path, exc, aside.name)
        return False
    made = metadata.get(SHARD_FRAMING_KEY, UNRECORDED_FRAMING.encode()).decode()
    if made != framing:
        logger.warning(
            "%s was made with %r framing, not %r; extracting it again", path, made, framing
        )
        return False
    return True


def _finished_record(data_dir: Path, name: str) -> dict[str, Any] | None:
    """The teacher's record if its extraction finished; a damaged one is moved aside with a
    warning (the extraction is then confirmed and the record written again)."""
    path = record_path(data_dir, name)
    try:
        return read_record(data_dir, name)
    except BadValueError:
        aside = move_aside(path)
        logger.warning("%s is damaged; moved to %s, checking the shards again", path, aside.name)
        return None


def _write_release_vggish(
    data_dir: Path, meta: dict[str, Any], clips: pa.Table, shards: list[int]
) -> bool:
    """Write the OpenMIC release's own VGGish (`X`) for `shards`; False if it ships none."""
    if "vggish" not in get_dataset(meta["dataset"]).release_embeddings:
        return False  # SynthMIC shares OpenMIC's layout, not its embeddings
    ids = {s: clips.filter(pc.equal(clips["shard"], s))["clip_id"].to_pylist() for s in shards}
    embeddings = release_vggish(Path(meta["release_root"]), [c for s in shards for c in ids[s]])
    if embeddings is None:
        return False
    start = 0
    for shard in tqdm(shards, desc="vggish from the release", unit="shard", disable=None):
        end = start + len(ids[shard])
        _write_shard(data_dir, "vggish", shard, ids[shard], embeddings[start:end])
        start = end
    return True


def extract_teacher(
    data_dir: Path,
    name: str,
    *,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    runner: Callable[[list[EmbedJob]], None] | None = None,
    accept_non_commercial: bool = False,
) -> dict[str, Any]:
    """Extract (or finish, or confirm) teacher `name` for a prepared dataset; returns its record.

    `runner` replaces the Ray actor pool (tests run the shards in-process).
    """
    records = extract_teachers(
        data_dir,
        [name],
        checkpoint=checkpoint,
        pretrained=pretrained,
        runner=runner,
        accept_non_commercial=accept_non_commercial,
    )
    return records[get_teacher(name).name]


def extract_teachers(
    data_dir: Path,
    names: list[str],
    *,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    runner: Callable[[list[EmbedJob]], None] | None = None,
    accept_non_commercial: bool = False,
) -> dict[str, dict[str, Any]]:
    """Extract (or finish, or confirm) every teacher of `names`, the layers of one teacher
    from one pass per shard; returns each one's record by name. A teacher with
    non-commercial weights is refused unless `accept_non_commercial`."""
    if not names:
        return {}
    for name in names:
        check_licence(name, accept_non_commercial, OPT_IN)
    data_dir = Path(data_dir)
    meta = read_meta(data_dir)
    clips = _ok_clips(data_dir)
    shards = sorted(set(clips["shard"].to_pylist()))
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(get_teacher(n).name for n in names):
        groups.setdefault(get_teacher(name).base, []).append(name)
    records = {}
    for group in groups.values():
        todo = {}
        for name in group:
            todo[name], done = _status(data_dir, name, shards)
            if done is not None:
                logger.info(
                    "%s: teacher %s already extracted (%d clips)", data_dir, name, done["clips"]
                )
                records[name] = done
        pending = [name for name in group if name not in records]
        if not pending:
            continue
        logger.info(
            "teacher %s: %d clips in %d shards, %d already written",
            ", ".join(pending),
            len(clips),
            len(shards),
            len(shards) - len(set().union(*(todo[n] for n in pending))),
        )
        source = "network"
        missing = sorted(set().union(*(todo[n] for n in pending)))
        if pending == ["vggish"] and _write_release_vggish(data_dir, meta, clips, missing):
            source = "release X (dequantised)"
        elif missing:
            features = meta["features"]
            jobs = [
                EmbedJob(
                    str(data_dir), tuple(pending), s, features["clip_seconds"], meta["min_fraction"]
                )
                for s in missing
            ]
            if runner is not None:
                runner(jobs)
            else:
                _run_on_ray(jobs, checkpoint, pretrained)
        for name in pending:
            records[name] = _write_record(
                data_dir, name, shards, len(clips), source=source, pretrained=pretrained
            )
    return records


def _status(data_dir: Path, name: str, shards: list[int]) -> tuple[set[int], dict[str, Any] | None]:
    """The shards of teacher `name` to embed (missing, unreadable or of another framing, or
    all of them when its record is stale: module doc), and its record when it is
    extracted and needs none."""
    info = get_teacher(name)
    todo = {s for s in shards if not _current_shard(_shard_path(data_dir, name, s), info.framing)}
    done = _finished_record(data_dir, name)
    stale = None if done is None else stale_reason(name, done)
    if stale is not None:
        # The stale record stays until the new one replaces it, so an interrupted run
        # starts over rather than trusting shards of either framing.
        logger.warning("%s: %s; extracting it again", record_path(data_dir, name), stale)
        return set(shards), None
    if done is not None and todo:
        logger.warning(
            "%s lists teacher %s as extracted, but %d of its %d shards in %s are missing or "
            "unreadable (%s); extracting them again",
            record_path(data_dir, name),
            name,
            len(todo),
            len(shards),
            teacher_dir(data_dir, name),
            ", ".join(_shard_path(data_dir, name, s).name for s in sorted(todo)),
        )
    return todo, done if not todo else None


def _write_record(
    data_dir: Path, name: str, shards: list[int], clips: int, *, source: str, pretrained: bool
) -> dict[str, Any]:
    """Check every shard of teacher `name` is there; write and return its record."""
    info = get_teacher(name)
    missing = [s for s in shards if not _shard_path(data_dir, name, s).is_file()]
    if missing:
        raise RuntimeError(f"teacher {name}: shards {missing} were not written")
    schema = pq.read_schema(_shard_path(data_dir, name, shards[0]))
    shape = schema.field("embedding").type.shape
    record = {
        "complete": True,
        "clips": clips,
        "framing": info.framing,
        "frames": int(shape[0]),
        "dim": int(shape[1]),
        "hop_seconds": info.hop_seconds,
        "sample_rate": info.sample_rate,
        "source": source,
        "pretrained": pretrained,
        "standardise": info.standardise,
    }
    write_json_atomic(record, record_path(data_dir, name))
    logger.info(
        "teacher %s: %d clips, embedding %dx%d (%s) in %s",
        name,
        clips,
        shape[0],
        shape[1],
        source,
        teacher_dir(data_dir, name),
    )
    return record
