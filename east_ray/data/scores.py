"""A finished run's test scores on disk: `test_scores.parquet`, one row per test clip.

Columns, one of each kind per class in the dataset's class order (`meta.json` "classes"),
so `pd.read_parquet(path)` gives plain columns:

    clip_id          string
    score:<class>    float16   the sigmoid output of the best-validation weights
    label:<class>    float32   the prepared label (positive where > 0.5; OpenMIC relevance)
    mask:<class>     bool      True where <class> is labelled for this clip

e.g. `frame.filter(like="score:")` is the `(N, K)` score matrix. The schema metadata key
`east_ray` holds JSON `{"version": 1, "classes": [...], "f1_threshold": t}`: the exact
class names and the threshold the run's F1 used. float16 keeps three significant digits:
metrics recomputed from the file can differ from `result.json`'s (computed in float32) in
the fourth decimal, where float16 makes near-equal scores tie.

Training writes the file into the run folder before `result.json` (the cell's "done"
marker), so a finished cell always has its scores; Teacher_LR writes one per fit beside its
logits (`east_ray.train.teacher_lr`). `read_scores` gives `east_ray.analysis.stats.ScoredClips`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from east_ray.analysis.stats import ScoredClips
from east_ray.data.parquet import write_table_atomic
from east_ray.errors import BadValueError

SCORES = "test_scores.parquet"
VERSION = 1
_KEY = b"east_ray"


def write_scores(clips: ScoredClips, path: Path) -> None:
    """Write `clips` to `path` (module doc), atomically."""
    columns: dict[str, pa.Array] = {"clip_id": pa.array(clips.clip_ids.tolist(), pa.string())}
    for prefix, values, dtype in (
        ("score", clips.scores, np.float16),
        ("label", clips.labels, np.float32),
        ("mask", clips.mask, np.bool_),
    ):
        array = np.asarray(values, dtype=dtype)
        columns |= {f"{prefix}:{c}": pa.array(array[:, k]) for k, c in enumerate(clips.classes)}
    meta = {"version": VERSION, "classes": list(clips.classes), "f1_threshold": clips.threshold}
    table = pa.table(columns).replace_schema_metadata({_KEY: json.dumps(meta).encode()})
    write_table_atomic(table, path)


def read_scores(path: Path) -> ScoredClips:
    """The clips of a `test_scores.parquet`; a file of another layout is refused by name."""
    table = pq.read_table(path)
    try:
        meta = json.loads((table.schema.metadata or {})[_KEY])
        if meta["version"] != VERSION:
            raise ValueError(f"version {meta['version']!r}")
        classes = tuple(str(c) for c in meta["classes"])
        threshold = float(meta["f1_threshold"])
        matrices = {
            prefix: np.column_stack([table[f"{prefix}:{c}"].to_numpy() for c in classes])
            for prefix in ("score", "label", "mask")
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise BadValueError(
            f"{path}: not a test-scores file of version {VERSION} ({type(exc).__name__}: "
            f"{exc}); run the cell again to rewrite it"
        ) from exc
    return ScoredClips(
        clip_ids=np.asarray(table["clip_id"].to_pylist(), dtype=str),
        classes=classes,
        scores=matrices["score"].astype(np.float32),
        labels=matrices["label"],
        mask=matrices["mask"].astype(bool),
        threshold=threshold,
        source=str(path),
    )
