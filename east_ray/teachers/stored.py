"""Extracted teacher embeddings read back: `load_embeddings(data_dir, name, clip_ids)`.

A teacher's folder `teachers/<name>/` holds its shards (`part-NNNNN.parquet`) and, once
extraction finished, its record `_teacher.json` (clips, framing, frames, dim, hop,
source, ...); one file per teacher, so teachers extracted at once never write the same
file. The leading underscore keeps the record out of Arrow's dataset discovery: the folder
still reads as one Parquet dataset. A record made with another framing than the
catalog's (`stale_reason`, e.g. OpenL3 extracted before its frames were centred) is
refused here, naming the command that extracts it again.

`load_embeddings` returns them in the requested clip order, z-scored with training-split
statistics for teachers marked `standardise`, refusing missing clips and non-finite
values. Kept apart from the extraction (`embeddings.py`, a Ray Data job) because trials
and the trainer read embeddings and must not import Ray.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from east_ray.catalog.teachers import get_teacher
from east_ray.data.parquet import column_numpy
from east_ray.errors import BadValueError

RECORD = "_teacher.json"
# Records and shards written before the framing was recorded: every teacher framed from 0.
UNRECORDED_FRAMING = "start"
SHARD_FRAMING_KEY = b"east_ray.framing"  # a shard's framing, in its Parquet schema metadata


def teacher_dir(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "teachers" / name


def record_path(data_dir: Path, name: str) -> Path:
    return teacher_dir(data_dir, name) / RECORD


def _extract_again(data_dir: Path, name: str) -> str:
    return (
        f"extract the teacher again (python -m east_ray.teachers extract --teacher {name} "
        f"--data {data_dir})"
    )


def stale_reason(name: str, record: dict[str, Any]) -> str | None:
    """Why a finished record no longer matches the catalog's framing, or None."""
    info = get_teacher(name)
    framing = record.get("framing", UNRECORDED_FRAMING)
    if framing == info.framing and record.get("hop_seconds") == info.hop_seconds:
        return None
    return (
        f"extracted with {framing!r} framing and hop {record.get('hop_seconds')} s "
        f"(T = {record.get('frames')}), but {name} now frames {info.framing!r} with hop "
        f"{info.hop_seconds} s"
    )


def read_record(data_dir: Path, name: str) -> dict[str, Any] | None:
    """Teacher `name`'s extraction record, or None if its extraction never finished."""
    path = record_path(data_dir, name)
    if not path.is_file():
        return None
    fix = _extract_again(data_dir, name)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadValueError(f"{path}: not a teacher record ({exc}); {fix}") from exc
    if not isinstance(record, dict) or record.get("complete") is not True:
        raise BadValueError(f'{path}: not a finished teacher record (no "complete": true); {fix}')
    return record


def extracted_teachers(data_dir: Path) -> list[str]:
    """Names of the teachers whose extraction finished."""
    return sorted(p.parent.name for p in (Path(data_dir) / "teachers").glob(f"*/{RECORD}"))


def load_embeddings(data_dir: Path, name: str, clip_ids: list[str]) -> np.ndarray:
    """Embeddings `(N, T, D)` float32 of `clip_ids`, in that order."""
    record = read_record(data_dir, name)
    if record is None:
        raise FileNotFoundError(
            errno.ENOENT,
            f"teacher {name!r} not extracted; extracted: "
            f"{extracted_teachers(data_dir) or 'none'} (run `python -m east_ray.teachers "
            f"extract --teacher {name} --data {data_dir}`)",
            str(record_path(data_dir, name)),
        )
    stale = stale_reason(name, record)
    if stale is not None:
        raise BadValueError(
            f"{record_path(data_dir, name)}: {stale}; {_extract_again(data_dir, name)}"
        )
    table = pq.read_table(teacher_dir(data_dir, name))
    row_of = {c: i for i, c in enumerate(table["clip_id"].to_pylist())}
    missing = [c for c in clip_ids if c not in row_of]
    if missing:
        raise BadValueError(
            f"teacher {name}: no embedding for {len(missing)} clips, e.g. {missing[:3]}; "
            "extract it again for this dataset"
        )
    values = column_numpy(table["embedding"]).astype(np.float32)
    embeddings = values[[row_of[c] for c in clip_ids]]
    bad = ~np.isfinite(embeddings).all(axis=(1, 2))
    if bad.any():
        first = clip_ids[int(np.flatnonzero(bad)[0])]
        raise BadValueError(
            f"teacher {name}: NaN or Inf in the embedding of clip {first} ({int(bad.sum())} "
            f"clips) in {teacher_dir(data_dir, name)}"
        )
    if record.get("standardise"):
        clips = pq.read_table(Path(data_dir) / "clips", columns=["clip_id", "split"])
        train = [
            row_of[c]
            for c, s in zip(clips["clip_id"].to_pylist(), clips["split"].to_pylist(), strict=True)
            if s == "train" and c in row_of
        ]
        flat = values[train].reshape(-1, values.shape[-1])
        embeddings = (embeddings - flat.mean(0)) / (flat.std(0) + 1e-8)
    return embeddings.astype(np.float32)
