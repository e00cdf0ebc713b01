"""Extracted teacher embeddings read back: `load_embeddings(data_dir, name, clip_ids)`.

Returns them in the requested clip order, z-scored with training-split statistics for
teachers marked `standardise`, refusing missing clips and non-finite values. Kept apart
from the extraction (`embeddings.py`, a Ray Data job) because trials and the trainer
read embeddings and must not import Ray.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from east_ray.data.parquet import column_numpy, read_meta


def teacher_dir(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "teachers" / name


def load_embeddings(data_dir: Path, name: str, clip_ids: list[str]) -> np.ndarray:
    """Embeddings `(N, T, D)` float32 of `clip_ids`, in that order."""
    meta = read_meta(data_dir)
    record = meta.get("teachers", {}).get(name)
    if not record or not record.get("complete"):
        raise FileNotFoundError(
            f"{data_dir}: teacher {name!r} not extracted; extracted: "
            f"{sorted(meta.get('teachers', {})) or 'none'} (run `python -m east_ray.teachers "
            f"extract --teacher {name} --data {data_dir}`)"
        )
    table = pq.read_table(teacher_dir(data_dir, name))
    row_of = {c: i for i, c in enumerate(table["clip_id"].to_pylist())}
    missing = [c for c in clip_ids if c not in row_of]
    if missing:
        raise ValueError(
            f"teacher {name}: no embedding for {len(missing)} clips, e.g. {missing[:3]}"
        )
    values = column_numpy(table["embedding"]).astype(np.float32)
    embeddings = values[[row_of[c] for c in clip_ids]]
    bad = ~np.isfinite(embeddings).all(axis=(1, 2))
    if bad.any():
        first = clip_ids[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"teacher {name}: NaN or Inf in the embedding of clip {first} ({int(bad.sum())} clips)"
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
