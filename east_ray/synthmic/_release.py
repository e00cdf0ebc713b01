"""Writing a rendered set's files in the OpenMIC-2018 release layout: class map, npz, label
and metadata CSVs, partitions, SynthMIC's stems CSV and README (audio is written per track)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from east_ray.synthmic._format import CHANNELS, FORMAT_VERSION, SAMPLE_RATE
from east_ray.synthmic._labels import Labels, present_classes
from east_ray.synthmic._taxonomy import CLASSES
from east_ray.synthmic._track import ClipRecord

STEMS_CSV = "synthmic-stems.csv"
METADATA_COLUMNS = (
    "sample_key",
    "track_id",
    "artist_id",
    "artist_name",
    "track_title",
    "source",
    "start_ms",
    "tempo_bpm",
)
STEMS_COLUMNS = (
    "sample_key",
    "stem",
    "instrument",
    "gm_program",
    "is_drum",
    "gain_db",
    "notes",
    "audible",
    "present",
)

_README = """\
SynthMIC {version}: a synthetic demo set in the OpenMIC-2018 release layout
===========================================================================

{n} clips of 10.0 s, {sr} Hz, {ch} channel(s), OGG Vorbis, rendered by east_ray
(east_ray.synthmic) from music21's corpus scores with the General-MIDI SoundFont
{sf} (sha256 {sha}), seed {seed}.

Layout (file names as in OpenMIC-2018):
  class-map.json                       20 classes, alphabetical, indices 0..19
  openmic-2018.npz                     Y_true (N,20) float64, Y_mask (N,20) bool, sample_key (N,)
  openmic-2018-aggregated-labels.csv   sample_key,instrument,relevance,num_responses
  openmic-2018-metadata.csv            sample_key,track_id,artist_id,artist_name,track_title,...
  partitions/split01_train.csv         keys, one per line, no header
  partitions/split01_test.csv          (disjoint by artist_id = source score)
  audio/<key[:3]>/<key>.ogg

SynthMIC has no VGGish model: openmic-2018.npz has NO `X` array and there is NO vggish/
folder. Compute teacher embeddings from the audio instead.

Labels are exact by construction: relevance 1.0 = the instrument is audible in the clip,
0.0 = it is not; unobserved entries are exactly 0.5 with Y_mask False. As in OpenMIC, not
every class is annotated; some present instruments are deliberately left unannotated.
mandolin and ukulele have no General-MIDI program and are never present.
synthmic-stems.csv holds the full construction truth (every stem of every clip);
synthmic.json the generation parameters and summary (written last: a complete set has it).
"""


def _write_csv(path: Path, header: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        if header is not None:
            w.writerow(header)
        w.writerows(rows)


def _write_labels(root: Path, keys: Sequence[str], labels: Labels) -> None:
    """The npz (no VGGish `X`), the aggregated-labels CSV and the partitions."""
    np.savez(
        root / "openmic-2018.npz",
        Y_true=labels.y_true,
        Y_mask=labels.y_mask,
        sample_key=np.array(keys, dtype=object),
    )
    _write_csv(
        root / "openmic-2018-aggregated-labels.csv",
        ("sample_key", "instrument", "relevance", "num_responses"),
        (
            (key, cls, f"{labels.y_true[i, j]:.1f}", 1)
            for i, key in enumerate(keys)
            for j, cls in enumerate(CLASSES)
            if labels.y_mask[i, j]
        ),
    )
    _write_csv(root / "partitions" / "split01_train.csv", None, ([k] for k in sorted(labels.train)))
    _write_csv(root / "partitions" / "split01_test.csv", None, ([k] for k in sorted(labels.test)))


def _write_metadata(root: Path, records: Sequence[ClipRecord]) -> None:
    """OpenMIC's metadata CSV (artist = source score) and SynthMIC's per-stem truth."""
    _write_csv(
        root / "openmic-2018-metadata.csv",
        METADATA_COLUMNS,
        (
            (
                r.sample_key,
                r.track_id,
                r.score_id,
                r.composer,
                r.title,
                f"music21:{r.score_path}",
                r.start_ms,
                r.tempo_bpm,
            )
            for r in records
        ),
    )
    _write_csv(
        root / STEMS_CSV,
        STEMS_COLUMNS,
        (
            (
                r.sample_key,
                st.name,
                st.label or "",
                st.program,
                int(st.is_drum),
                f"{st.gain_db:.2f}",
                st.n_notes,
                int(st.audible),
                int(bool(present_classes([st]))),
            )
            for r in records
            for st in r.stems
        ),
    )


def write_release(
    root: Path,
    records: Sequence[ClipRecord],
    labels: Labels,
    *,
    seed: int,
    soundfont_name: str,
    soundfont_sha256: str,
) -> None:
    """Write every file but the audio and the manifest into `root`; `records` in key order."""
    (root / "class-map.json").write_text(
        json.dumps({c: i for i, c in enumerate(CLASSES)}, indent=2) + "\n", encoding="utf-8"
    )
    _write_labels(root, [r.sample_key for r in records], labels)
    _write_metadata(root, records)
    readme = _README.format(
        version=FORMAT_VERSION,
        n=len(records),
        sr=SAMPLE_RATE,
        ch=CHANNELS,
        sf=soundfont_name,
        sha=soundfont_sha256,
        seed=seed,
    )
    (root / "README.txt").write_text(readme, encoding="utf-8")
