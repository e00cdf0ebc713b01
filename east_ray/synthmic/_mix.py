"""One clip's audio: the stems' notes inside the 10 s window, rendered, gain-staged, mixed and
peak-normalised, with what each stem contributed (the construction truth its labels follow)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from east_ray.synthmic._arrange import Stem
from east_ray.synthmic._format import CLIP_SECONDS
from east_ray.synthmic._render import Renderer, render_stem
from east_ray.synthmic._scores import Note

MIN_NOTE_OVERLAP_S = 0.1  # a held note must sound this long inside the window to be rendered
AUDIBLE_DB = -40.0  # a stem quieter than this relative to the loudest stem counts as absent
PEAK_DBFS = -3.0  # headroom: Vorbis overshoots the peak by up to ~1 dB


@dataclass(frozen=True)
class StemRecord:
    """What one stem contributed to one clip (the construction truth)."""

    name: str
    program: int
    is_drum: bool
    label: str | None
    gain_db: float
    n_notes: int
    audible: bool


def window_notes(
    notes: Iterable[Note], start: float, duration: float, *, onsets_only: bool = False
) -> tuple[Note, ...]:
    """The notes that sound in ``[start, start + duration)``, shifted to the window and clipped.

    A held note counts when it overlaps the window by at least ``MIN_NOTE_OVERLAP_S``; with
    ``onsets_only`` (kit hits) a note counts when it starts inside the window, at least that
    long before its end. Only these notes are rendered, so the labels follow from them exactly.
    """
    end = start + duration
    kept: list[Note] = []
    for n in notes:
        if onsets_only:
            if not start <= n.start <= end - MIN_NOTE_OVERLAP_S:
                continue
        elif min(n.end, end) - max(n.start, start) < MIN_NOTE_OVERLAP_S:
            continue
        kept.append(Note(max(n.start, start) - start, min(n.end, end) - start, n.pitch, n.velocity))
    return tuple(kept)


def _render_window(
    stems: Sequence[Stem], start_s: float, r: Renderer, n_frames: int
) -> tuple[list[np.ndarray | None], list[int]]:
    """Each stem's gained audio in the window (None without notes there) and its note count."""
    rendered: list[np.ndarray | None] = []
    counts: list[int] = []
    for stem in stems:
        notes = window_notes(stem.notes, start_s, CLIP_SECONDS, onsets_only=stem.is_drum)
        counts.append(len(notes))
        if not notes:
            rendered.append(None)
            continue
        dry = render_stem(
            r, notes, program=stem.program, is_drum=stem.is_drum, n_frames=n_frames, pan=stem.pan
        )
        rendered.append(dry * np.float32(10 ** (stem.gain_db / 20)))
    return rendered, counts


def mix_clip(
    stems: Sequence[Stem], start_s: float, r: Renderer
) -> tuple[np.ndarray, tuple[StemRecord, ...]]:
    """Render and mix one 10 s window: float32 stereo audio ``(frames, 2)`` and what each stem
    contributed. A stem that is silent or more than ``AUDIBLE_DB`` below the loudest stem is
    left out of the mix and recorded as not audible."""
    n_frames = round(CLIP_SECONDS * r.sample_rate)
    rendered, counts = _render_window(stems, start_s, r, n_frames)
    peaks = [0.0 if a is None else float(np.abs(a).max()) for a in rendered]
    floor = max(peaks, default=0.0) * 10 ** (AUDIBLE_DB / 20)
    mix = np.zeros((n_frames, 2), dtype=np.float32)
    records: list[StemRecord] = []
    for stem, audio, peak, count in zip(stems, rendered, peaks, counts, strict=True):
        audible = audio is not None and peak > 0.0 and peak >= floor
        if audible and audio is not None:
            mix += audio
        records.append(
            StemRecord(
                stem.name, stem.program, stem.is_drum, stem.label, stem.gain_db, count, audible
            )
        )
    top = float(np.abs(mix).max())
    if top > 0:
        mix = mix * np.float32(10 ** (PEAK_DBFS / 20) / top)
    return mix.astype(np.float32), tuple(records)
