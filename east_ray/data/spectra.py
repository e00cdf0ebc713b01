"""The training clips' STFT magnitudes, which mel-band jitter needs (`recipe.mel_jitter`).

Layout, beside `clips/` of a prepared dataset (which is never rewritten):
```
spectra/part-NNNNN.parquet   clip_id, magnitude fixed-shape tensor float16 [n_fft // 2, frames]
meta.json "spectra"          {"split": "train", "shape", "dtype", "bytes_per_clip",
                              "clips", "dataset_fingerprint"}: written last, it marks them complete
```
One file per clip shard of `clips/` (the same shard numbers), holding the shard's
training clips that `prepare` wrote: validation and test never jitter, so they keep
using the stored log-mels. Why magnitudes, float16, and not the waveform or the power:
east_ray.data.meljitter.

This module reads them (no Ray: trials use it); east_ray.data.spectra_prepare writes them.
`check_spectra` is the clear error when they are missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from east_ray.config import StudySpec
from east_ray.data.parquet import column_numpy, read_meta
from east_ray.errors import UserError

SPECTRA = "spectra"
COLUMN = "magnitude"
SPLIT = "train"


class MissingSpectraError(UserError, FileNotFoundError):
    """A dataset without the training clips' STFT magnitudes, asked for by mel jitter."""


def needs_spectra(spec: StudySpec) -> bool:
    """Whether a cell of `spec` (its grid, or an extra system) jitters the mel bands."""
    recipes = [spec.recipe] + [spec.for_system(x.name).recipe for x in spec.systems]
    return any(r.mel_jitter != "off" for r in recipes)


def spectra_path(data_dir: Path, shard: int) -> Path:
    return Path(data_dir) / SPECTRA / f"part-{shard:05d}.parquet"


def prepare_command(data_dir: Path) -> str:
    return f"python -m east_ray.data spectra --data {data_dir}"


def spectra_record(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset's spectra record when complete for this very dataset, else None."""
    record = meta.get(SPECTRA)
    if isinstance(record, dict) and record.get("dataset_fingerprint") == meta.get("fingerprint"):
        return record
    return None


def check_spectra(data_dir: Path) -> dict[str, Any]:
    """The spectra record of `data_dir`; `MissingSpectraError` naming the folder and the
    command that prepares them when they are missing or from another preparation."""
    record = spectra_record(read_meta(data_dir))
    if record is None:
        raise MissingSpectraError(
            f"{Path(data_dir) / SPECTRA}: missing or incomplete; recipe.mel_jitter needs the "
            f"training clips' STFT magnitudes (4x their log-mel's bytes); prepare them with "
            f"`{prepare_command(data_dir)}` (the release must be where the dataset was "
            'prepared from), or set recipe.mel_jitter = "off"'
        )
    return record


def read_spectra(data_dir: Path) -> tuple[list[str], np.ndarray]:
    """Clip ids and magnitudes `(N, n_fft // 2, frames)` float16 of `data_dir` (no Ray)."""
    check_spectra(data_dir)
    table = pq.read_table(Path(data_dir) / SPECTRA, columns=["clip_id", COLUMN])
    return table["clip_id"].to_pylist(), column_numpy(table[COLUMN])
