"""One track, the unit of parallel work: parse its score, arrange it, cut 1-3 clips, render
and encode each to OGG Vorbis, and return the clips' records."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from east_ray.synthmic._arrange import arrange, choose_tempo
from east_ray.synthmic._format import CLIP_SECONDS, TRACK_STREAM
from east_ray.synthmic._mix import StemRecord, mix_clip
from east_ray.synthmic._render import renderer
from east_ray.synthmic._scores import COLLECTIONS, Candidates, first_usable_score, loop_score


@dataclass(frozen=True)
class TrackJob:
    """Everything a worker needs to render one track: pure data, picklable."""

    track_id: int
    candidates: Candidates
    n_clips: int
    seed: int
    programs: tuple[int, ...]  # melodic programs the SoundFont has
    kits: tuple[int, ...]  # drum kits the SoundFont has
    soundfont: str
    audio_dir: str


@dataclass(frozen=True)
class ClipRecord:
    """One rendered clip and where it came from."""

    sample_key: str
    track_id: int
    start_ms: int
    score_id: int
    score_path: str
    composer: str
    title: str
    tempo_bpm: float
    stems: tuple[StemRecord, ...]


def clip_starts(length_s: float, n: int, rng: np.random.Generator) -> tuple[int, ...]:
    """`n` non-overlapping 10 s window offsets in whole milliseconds, ascending.

    Requires ``length_s >= n * CLIP_SECONDS``: the track is cut into `n` equal segments and
    one window is placed at a random offset inside each.
    """
    seg = length_s / n
    if seg < CLIP_SECONDS:
        raise ValueError(f"{length_s:.2f} s is too short for {n} clips")
    starts = []
    for i in range(n):
        lo = i * seg
        s = lo + float(rng.uniform(0.0, seg - CLIP_SECONDS))
        starts.append(math.floor(s * 1000))
    return tuple(starts)


def audio_path(root: Path, key: str) -> Path:
    """Where the OpenMIC layout keeps a clip's audio."""
    return root / "audio" / key[:3] / f"{key}.ogg"


def render_track(job: TrackJob) -> tuple[ClipRecord, ...]:
    """Parse, arrange, render and encode one track's clips; returns their records."""
    r = renderer(job.soundfont)
    rng = np.random.default_rng([job.seed, TRACK_STREAM, job.track_id])
    data = first_usable_score(job.candidates)
    if data is None:
        raise RuntimeError(f"track {job.track_id}: no usable score among {job.candidates}")
    bpm = choose_tempo(data, rng)
    spq = 60.0 / bpm
    data = loop_score(data, (job.n_clips * CLIP_SECONDS + 1.0) / spq)
    stems = arrange(data, bpm, rng, job.programs, job.kits)
    records: list[ClipRecord] = []
    for start_ms in clip_starts(data.length * spq, job.n_clips, rng):
        key = f"{job.track_id:06d}_{start_ms}"
        audio, stem_records = mix_clip(stems, start_ms / 1000.0, r)
        dest = audio_path(Path(job.audio_dir), key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dest, audio, r.sample_rate, format="OGG", subtype="VORBIS")
        records.append(
            ClipRecord(
                sample_key=key,
                track_id=job.track_id,
                start_ms=start_ms,
                score_id=data.score_id,
                score_path=data.path,
                composer=COLLECTIONS[data.collection][3],
                title=data.title,
                tempo_bpm=round(bpm, 2),
                stems=stem_records,
            )
        )
    return tuple(records)
