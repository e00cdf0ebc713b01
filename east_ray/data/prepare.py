"""Release → sharded Parquet of log-mel spectrograms, as a Ray Data job.

`prepare(index, features, out)` writes the layout of `parquet.py`; `prepare_release` reads a
release folder first (what `python -m east_ray.data prepare` runs, and a study whose data is
missing). The clip table is cut into fixed shards (`shard_size` clips each, clip ids sorted,
as numbers where every id is one: MagnaTagATune's release order); one Ray task per shard
decodes its clips (soundfile), resamples and crops them,
computes the log-mel in batches (torchaudio) and writes `clips/part-NNNNN.parquet` plus the
shard's status file, each atomically (`write_shard`). Ray spreads the shards over every
CPU of the local machine or cluster and shows progress.

Re-running is cheap and safe: a complete output with the same fingerprint (release
content, validation rule, features, settings) is left alone; an interrupted one resumes
from the shards already written; an output prepared with other settings is refused, never
mixed in.
Clips that cannot be used (missing, empty, undecodable, much shorter than a clip) are
skipped and listed with their reason in `meta.json`; nothing is zero-filled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from east_ray.config import Features
from east_ray.data.audio import AudioError, decode, fit_length, logmel, resample
from east_ray.data.datasets import ReadOptions, read_release
from east_ray.data.parquet import (
    META,
    META_VERSION,
    clip_order,
    column_numpy,
    read_meta,
    tensor_array,
    vector_array,
    write_json_atomic,
    write_table_atomic,
)
from east_ray.data.release import ReleaseIndex
from east_ray.errors import BadValueError
from east_ray.ray_session import init_ray

MANIFEST = "manifest.parquet"
PROGRESS = "prepare.json"
SHARD_SIZE = 64
"""Clips per Parquet shard unless told otherwise."""
MIN_FRACTION = 0.9
"""Clips shorter than this fraction of the clip length are skipped unless told otherwise."""
# One clip at a time stays in cache; per clip on one core (bench.logmel, 2026-11-27):
# 10 s OpenMIC 6.6 ms at 1, 7.5 at 4, 8.9 at 8; 29.1 s MTAT 7.0 ms at 1, 11.4 at 4, 19.8 at 8.
LOGMEL_BATCH = 1

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """What one Ray task needs to build one shard (of `clips/`, or of `spectra/`)."""

    out: str
    shard: int
    features: Features
    min_fraction: float


def _fingerprint(
    index: ReleaseIndex,
    features: Features,
    shard_size: int,
    min_fraction: float,
    manifest: pa.Table,
) -> str:
    content = {
        "version": META_VERSION,
        "dataset": index.dataset,
        "classes": list(index.classes),
        "features": dataclasses.asdict(features),
        "shard_size": shard_size,
        "min_fraction": min_fraction,
        "sources": index.source_md5,
        # the rule, not where its list was read from: the same list from another path is reused
        "valid_split": {k: v for k, v in index.valid_split.items() if k != "source"},
    }
    order = clip_order(index.clips["clip_id"])
    if order != "string":  # string-ordered datasets keep the fingerprint they always had
        content["clip_order"] = order
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode())
    for column in ("clip_id", "split", "group", "audio_path"):
        digest.update("\0".join(manifest[column].to_pylist()).encode())
    for column in ("labels", "label_mask"):
        digest.update(column_numpy(manifest[column]).tobytes())
    return digest.hexdigest()


def _manifest(index: ReleaseIndex, shard_size: int) -> pa.Table:
    ids = index.clips["clip_id"]
    numeric = clip_order(ids) == "numeric"
    clips = index.clips.sort_values(
        "clip_id", key=(lambda s: s.astype(int)) if numeric else None, ignore_index=True
    )
    return pa.table(
        {
            "clip_id": pa.array(clips["clip_id"], pa.string()),
            "split": pa.array(clips["split"], pa.string()),
            "group": pa.array(clips["group"], pa.string()),
            "labels": vector_array(np.stack(clips["labels"].to_list()).astype(np.float32)),
            "label_mask": vector_array(np.stack(clips["label_mask"].to_list()).astype(bool)),
            "audio_path": pa.array(clips["audio_path"], pa.string()),
            "shard": pa.array(np.arange(len(clips)) // shard_size, pa.int32()),
        }
    )


def shard_paths(out: Path, shard: int) -> tuple[Path, Path]:
    """The spectrogram Parquet file and the status file of clip shard `shard`."""
    name = f"part-{shard:05d}"
    return out / "clips" / f"{name}.parquet", out / "status" / f"{name}.json"


def shard_rows(out: Path, shard: int) -> pa.Table:
    """The manifest rows of shard `shard`: the clips a shard job writes."""
    return pq.read_table(out / MANIFEST, filters=[("shard", "=", shard)])


def ok_status(clip_id: str, padded: bool = False) -> dict[str, Any]:
    """A shard status entry for a clip that was written (reflect-padded or not)."""
    return {"clip_id": clip_id, "status": "ok", "padded": padded}


def write_shard(
    out: Path, shard: int, rows: pa.Table, mels: np.ndarray, statuses: list[dict[str, Any]]
) -> dict[str, Any]:
    """Write shard `shard`: the manifest `rows` of its written clips with their log-mels
    `mels` `(len(rows), n_mels, frames)` float16, then its status file (`statuses`: one
    entry per clip of the shard, written or skipped); returns the one-line progress summary."""
    table = pa.table(
        {
            "clip_id": rows["clip_id"],
            "split": rows["split"],
            "group": rows["group"],
            "labels": rows["labels"],
            "label_mask": rows["label_mask"],
            "logmel": tensor_array(mels),
        }
    )
    parquet_path, status_path = shard_paths(out, shard)
    write_table_atomic(table, parquet_path)
    write_json_atomic(statuses, status_path)  # written last: its presence marks the shard done
    return {"shard": shard, "ok": len(rows), "skipped": len(statuses) - len(rows)}


def clip_wave(path: str, job: ShardJob) -> tuple[torch.Tensor, bool]:
    """The clip at `path` as `job` prepares it: decoded, resampled, cut or reflect-padded
    to the clip length (`AudioError` when it cannot be), and whether it was padded."""
    f = job.features
    audio, rate = decode(path)
    n_samples = round(f.clip_seconds * f.sample_rate)
    return fit_length(resample(audio, rate, f.sample_rate), n_samples, job.min_fraction, path)


def build_shard(job: ShardJob) -> dict[str, Any]:
    """Decode, log-mel and write one shard; returns a one-line summary for progress."""
    torch.set_num_threads(1)  # one task per CPU: no thread oversubscription
    out = Path(job.out)
    rows = shard_rows(out, job.shard)
    waveforms, kept, statuses = [], [], []
    for i, (clip_id, path) in enumerate(
        zip(rows["clip_id"].to_pylist(), rows["audio_path"].to_pylist(), strict=True)
    ):
        try:
            wave, padded = clip_wave(path, job)
        except AudioError as exc:
            statuses.append(
                {"clip_id": clip_id, "status": "skipped", "reason": exc.reason, "path": path}
            )
            continue
        waveforms.append(wave)
        kept.append(i)
        statuses.append(ok_status(clip_id, padded))
    frames = job.features.frames
    mels = np.empty((len(kept), job.features.n_mels, frames), dtype=np.float16)
    with torch.inference_mode():
        for start in range(0, len(kept), LOGMEL_BATCH):
            batch = torch.stack(waveforms[start : start + LOGMEL_BATCH])
            mels[start : start + len(batch)] = logmel(batch, job.features).numpy()
    return write_shard(out, job.shard, rows.take(pa.array(kept, pa.int64())), mels, statuses)


def run_shards(
    jobs: list[ShardJob],
    build: Callable[[ShardJob], dict[str, Any]],
    runner: Callable[[list[ShardJob]], None] | None,
) -> None:
    """`build` each job as one Ray Data task per shard on a CPU (or `runner(jobs)`, which
    tests use to build in-process)."""
    if not jobs:
        return
    if runner is not None:
        runner(jobs)
        return
    init_ray()
    template = jobs[0]
    items = [{"shard": job.shard} for job in jobs]
    ds = ray.data.from_items(items, override_num_blocks=len(items))

    def run(row: dict[str, Any]) -> dict[str, Any]:
        return build(dataclasses.replace(template, shard=int(row["shard"])))

    ds.map(run, num_cpus=1).materialize()


def _rule(valid_split: Any) -> str:
    return str(valid_split.get("rule")) if isinstance(valid_split, dict) else "unrecorded"


def _check_existing(out: Path, fingerprint: str, valid_split: dict[str, Any]) -> bool:
    """True when `out` already holds this exact dataset; raise if it holds another one."""
    meta_path = out / META
    if meta_path.is_file():
        meta = read_meta(out)
        if meta.get("fingerprint") == fingerprint and meta.get("complete"):
            return True
        old, new = _rule(meta.get("valid_split")), _rule(valid_split)
        rules = f"; validation rule {old}, now {new}" if old != new else ""
        raise FileExistsError(
            f"{out}: holds a dataset prepared from other data or settings (fingerprint "
            f"{str(meta.get('fingerprint'))[:12]}, now {fingerprint[:12]}{rules}); choose "
            "another --out or remove it"
        )
    progress = out / PROGRESS
    if progress.is_file() and json.loads(progress.read_text()).get("fingerprint") != fingerprint:
        logger.warning("%s: partial output from other settings; rebuilding it", out)
        shutil.rmtree(out / "clips", ignore_errors=True)
    return False


def prepare(
    index: ReleaseIndex,
    features: Features,
    out: Path,
    *,
    shard_size: int = SHARD_SIZE,
    min_fraction: float = MIN_FRACTION,
    runner: Callable[[list[ShardJob]], None] | None = None,
) -> dict[str, Any]:
    """Build (or finish, or confirm) the prepared dataset at `out`; returns its meta.

    `min_fraction`: a clip shorter than this fraction of `features.clip_seconds` is
    skipped; a shorter-than-nominal clip above it is reflect-padded (counted in meta).
    `runner` replaces Ray for running the shard jobs (tests run them in-process;
    `bench.scale` writes random log-mels through `write_shard` instead of decoding audio).
    """
    if shard_size < 1:
        raise BadValueError(f"--shard-size: got {shard_size}, expected an integer >= 1")
    if not 0.0 < min_fraction <= 1.0:
        raise BadValueError(f"--min-fraction: got {min_fraction}, expected a number in (0, 1]")
    out = Path(out)
    manifest = _manifest(index, shard_size)
    fingerprint = _fingerprint(index, features, shard_size, min_fraction, manifest)
    if _check_existing(out, fingerprint, index.valid_split):
        logger.info(
            "%s: already prepared (%s, fingerprint %s)", out, index.dataset, fingerprint[:12]
        )
        return read_meta(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"fingerprint": fingerprint}, out / PROGRESS)
    write_table_atomic(manifest, out / MANIFEST)
    n_shards = int(manifest["shard"].to_numpy().max()) + 1 if len(manifest) else 0
    todo = [s for s in range(n_shards) if not all(p.is_file() for p in shard_paths(out, s))]
    logger.info(
        "%s: %d clips in %d shards, %d already written",
        index.dataset,
        len(manifest),
        n_shards,
        n_shards - len(todo),
    )
    run_shards([ShardJob(str(out), s, features, min_fraction) for s in todo], build_shard, runner)
    statuses = [
        st for s in range(n_shards) for st in json.loads(shard_paths(out, s)[1].read_text())
    ]
    meta = _meta(
        index=index,
        features=features,
        fingerprint=fingerprint,
        statuses=statuses,
        shard_size=shard_size,
        min_fraction=min_fraction,
    )
    write_json_atomic(meta, out / META)
    (out / PROGRESS).unlink(missing_ok=True)
    logger.info("%s", summary(meta))
    return meta


def prepare_release(
    dataset: str,
    root: Path,
    features: Features,
    out: Path,
    options: ReadOptions | None = None,
    *,
    shard_size: int = SHARD_SIZE,
    min_fraction: float = MIN_FRACTION,
) -> dict[str, Any]:
    """Read the release of `dataset` at `root` (with `options`), then `prepare` it into `out`
    with `features`; returns the meta."""
    index = read_release(dataset, Path(root), options)
    logger.info("%s; %d rows left out by the reader", index.count_report(), len(index.skipped))
    return prepare(index, features, out, shard_size=shard_size, min_fraction=min_fraction)


def _meta(
    *,
    index: ReleaseIndex,
    features: Features,
    fingerprint: str,
    statuses: list[dict[str, Any]],
    shard_size: int,
    min_fraction: float,
) -> dict[str, Any]:
    ok = {s["clip_id"] for s in statuses if s["status"] == "ok"}
    split_of = dict(zip(index.clips["clip_id"], index.clips["split"], strict=True))
    counts = Counter(split_of[c] for c in ok)
    skipped = [dataclasses.asdict(s) for s in index.skipped] + [
        {"clip_id": s["clip_id"], "reason": s["reason"], "path": s["path"]}
        for s in statuses
        if s["status"] == "skipped"
    ]
    return {
        "version": META_VERSION,
        "complete": True,
        "fingerprint": fingerprint,
        "dataset": index.dataset,
        "release_root": str(index.root),
        "classes": list(index.classes),
        "features": dataclasses.asdict(features),
        "logmel": {
            "shape": [features.n_mels, features.frames],
            "hop_seconds": features.hop_seconds,
            "normalisation": "pre-emphasis [-0.97, 1]; power STFT; Kaldi mel; "
            "(log(x + 1e-5) + 3.7) / 3.1",
        },
        "counts": {split: counts.get(split, 0) for split in ("train", "valid", "test")},
        "published_counts": index.published_counts,
        "valid_split": index.valid_split,
        "padded_clips": sum(1 for s in statuses if s.get("padded")),
        "min_fraction": min_fraction,
        "shard_size": shard_size,
        "skipped": skipped,
        "source_md5": index.source_md5,
        "clip_order": clip_order(index.clips["clip_id"]),
    }


def summary(meta: dict[str, Any]) -> str:
    """Counts per split (next to the published ones) and skips grouped by reason."""
    published = meta.get("published_counts") or {}
    parts = [
        f"{split} {n}" + (f" (published {published[split]})" if split in published else "")
        for split, n in meta["counts"].items()
    ]
    lines = [f"{meta['dataset']}: " + ", ".join(parts)]
    reasons = Counter(s["reason"].split(":")[0] for s in meta["skipped"])
    if reasons:
        lines.append(
            f"skipped {len(meta['skipped'])} clips: "
            + ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        )
    if meta.get("padded_clips"):
        lines.append(f"padded {meta['padded_clips']} slightly short clips (reflect)")
    return "\n".join(lines)
