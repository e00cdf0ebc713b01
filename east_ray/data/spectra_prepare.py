"""Write the training clips' STFT magnitudes of a prepared dataset (layout, and why:
east_ray.data.spectra, east_ray.data.meljitter).

`prepare_spectra` decodes each training clip again from the `audio_path` the dataset's
`manifest.parquet` records, with the dataset's own features (`meta.json`), one Ray task
per clip shard as `prepare` does; it resumes from the shards already written and does
nothing when the record is there. `python -m east_ray.data spectra --data DIR` runs it,
and so does a study whose recipe asks for mel-band jitter
(`east_ray.study.stages.ensure_data`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from east_ray.config import Features
from east_ray.data.audio import AudioError, stft_magnitude
from east_ray.data.parquet import (
    META,
    read_meta,
    tensor_array,
    write_json_atomic,
    write_table_atomic,
)
from east_ray.data.prepare import MANIFEST, ShardJob, clip_wave, run_shards, shard_paths, shard_rows
from east_ray.data.spectra import COLUMN, SPECTRA, SPLIT, spectra_path, spectra_record
from east_ray.errors import UserError

logger = logging.getLogger(__name__)


def _written_clips(data_dir: Path, shard: int) -> set[str]:
    """The clips of `shard` that `prepare` wrote (its status file)."""
    statuses = json.loads(shard_paths(data_dir, shard)[1].read_text())
    return {s["clip_id"] for s in statuses if s["status"] == "ok"}


def build_spectra_shard(job: ShardJob) -> dict[str, Any]:
    """Decode the training clips of one shard and write their magnitudes (atomically)."""
    torch.set_num_threads(1)  # one task per CPU, as prepare's
    data_dir, f = Path(job.out), job.features
    rows = shard_rows(data_dir, job.shard)
    written = _written_clips(data_dir, job.shard)
    ids, mags = [], []
    for clip_id, split, path in zip(
        rows["clip_id"].to_pylist(),
        rows["split"].to_pylist(),
        rows["audio_path"].to_pylist(),
        strict=True,
    ):
        if split != SPLIT or clip_id not in written:
            continue
        try:
            wave, _ = clip_wave(path, job)
        except AudioError as exc:  # prepare read it: the release moved or changed since
            raise UserError(
                f"{path}: {exc.reason} (clip {clip_id}, shard {job.shard} of {data_dir}); "
                "the release must be where the dataset was prepared from "
                f"({data_dir / MANIFEST}, column audio_path)"
            ) from exc
        with torch.inference_mode():
            mags.append(stft_magnitude(wave[None], f)[0].numpy().astype(np.float16))
        ids.append(clip_id)
    shape = (f.n_fft // 2, f.frames)
    values = np.stack(mags) if mags else np.empty((0, *shape), np.float16)
    table = pa.table({"clip_id": pa.array(ids, pa.string()), COLUMN: tensor_array(values)})
    write_table_atomic(table, spectra_path(data_dir, job.shard))
    return {"shard": job.shard, "clips": len(ids)}


def prepare_spectra(
    data_dir: Path, *, runner: Callable[[list[ShardJob]], None] | None = None
) -> dict[str, Any]:
    """Write (or finish, or confirm) `data_dir/spectra/`; returns its meta record.
    `runner` replaces Ray for the shard jobs (tests run them in-process)."""
    data_dir = Path(data_dir)
    meta = read_meta(data_dir)
    record = spectra_record(meta)
    if record is not None:
        logger.info("%s: spectra already prepared (%d clips)", data_dir / SPECTRA, record["clips"])
        return record
    features = Features(**meta["features"])
    n_shards = (
        int(pq.read_table(data_dir / MANIFEST, columns=["shard"])["shard"].to_numpy().max()) + 1
    )
    todo = [s for s in range(n_shards) if not spectra_path(data_dir, s).is_file()]
    logger.info(
        "%s: STFT magnitudes of the %s clips, %d shards (%d already written)",
        data_dir / SPECTRA,
        SPLIT,
        n_shards,
        n_shards - len(todo),
    )
    min_fraction = float(meta["min_fraction"])
    jobs = [ShardJob(str(data_dir), s, features, min_fraction) for s in todo]
    run_shards(jobs, build_spectra_shard, runner)
    clips = pq.read_table(data_dir / SPECTRA, columns=["clip_id"]).num_rows
    shape = [features.n_fft // 2, features.frames]
    record = {
        "split": SPLIT,
        "column": COLUMN,
        "shape": shape,
        "dtype": "float16",
        "what": "pre-emphasised STFT magnitude |X| (the log-mel's power is |X|^2), "
        "Nyquist bin left out",
        "bytes_per_clip": 2 * shape[0] * shape[1],
        "clips": clips,
        "dataset_fingerprint": meta["fingerprint"],
    }
    write_json_atomic({**meta, SPECTRA: record}, data_dir / META)
    return record
