"""Arranging a score into a track: a tempo, and stems (parts on GM programs in their
instrument's register, an optional bass line and drum kit) with their gains and pans."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from east_ray.synthmic._scores import Grid, Note, ScoreData
from east_ray.synthmic._taxonomy import (
    CLASS_PROGRAMS,
    CLASS_RANGES,
    DISTRACTOR_PROGRAMS,
    gm_program_class,
    kit_key_class,
    program_range,
)

STEM_GAIN_DB = (-12.0, 0.0)
KIT_RING_S = 2.0  # kit hits ring until the next hit of the same key, at most this long
P_DISTRACTOR = 0.1
P_BASS = 0.45
P_DRUMS = 0.45


@dataclass(frozen=True)
class Stem:
    """One rendered part of a track: notes in seconds and how it is mixed."""

    name: str
    program: int
    is_drum: bool
    label: str | None
    gain_db: float
    pan: int
    notes: tuple[Note, ...]


def place_in_range(notes: Sequence[Note], low: int, high: int) -> tuple[Note, ...]:
    """Shift a part by octaves so its median lies mid-range, then fold stray notes inside."""
    if not notes:
        return ()
    median = float(np.median([n.pitch for n in notes]))
    shift = 12 * round(((low + high) / 2 - median) / 12)
    placed: list[Note] = []
    for n in notes:
        p = n.pitch + shift
        while p < low:
            p += 12
        while p > high:
            p -= 12
        placed.append(Note(n.start, n.end, max(0, min(127, p)), n.velocity))
    return tuple(placed)


def bass_line(data: ScoreData, style: int, rng: np.random.Generator) -> tuple[Note, ...]:
    """A bass part on the lowest sounding note of the score, per beat (quarter lengths).

    style 0: one note per beat; 1: one per two beats; 2: two per beat (root, then octave).
    """
    notes = [n for part in data.parts for n in part]
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    pitches = np.array([n.pitch for n in notes])
    step = data.grid.beat * (2 if style == 1 else 1)
    times = np.arange(data.grid.origin % step, data.length, step)
    sounding = (starts[None, :] <= times[:, None] + 1e-9) & (ends[None, :] > times[:, None] + 1e-9)
    low, high = CLASS_RANGES["bass"]
    out: list[Note] = []
    for t, row in zip(times, sounding, strict=True):
        if not row.any():
            continue
        root = int(pitches[row].min())
        while root > 47:
            root -= 12
        while root < low:
            root += 12
        vel = int(rng.integers(80, 101))
        if style == 2:
            half = step / 2
            second = root + 12 if root + 12 <= high else root
            out.append(Note(float(t), float(t) + 0.9 * half, root, vel))
            out.append(Note(float(t) + half, float(t) + 1.8 * half, second, max(1, vel - 12)))
        else:
            out.append(Note(float(t), float(t) + 0.9 * step, root, vel))
    return tuple(out)


def drum_pattern(grid: Grid, length: float, rng: np.random.Generator) -> tuple[Note, ...]:
    """A seeded groove on the GM kit over the score's bars (quarter lengths, short notes).

    Kick and snare every bar; a time-keeper (closed/pedal/open hi-hat or ride); optionally a
    crash at phrase starts, an accent (splash/china) and tom fills.
    """
    n = grid.beats_per_bar
    kicks = [0.0] + ([n // 2] if n >= 4 else [])
    kicks += [b + 0.5 for b in range(n) if rng.random() < 0.12]
    snares = [float(b) for b in range(1, n, 2)] if n != 3 else [1.0, 2.0]
    keeper = int(rng.choice([42, 42, 42, 44, 46, 46, 51, 53]))
    per_beat = 1 if keeper in (44, 53) else 2
    crash_every = int(rng.choice([0, 0, 4, 8]))
    crash_key = int(rng.choice([49, 57]))
    accent = int(rng.choice([0, 0, 0, 0, 55, 52]))
    fill_every = int(rng.choice([0, 4, 8]))
    hits: list[tuple[float, int, int]] = []  # (beat position in bar, key, base velocity)
    hits += [(k, 36, 105) for k in kicks]
    hits += [(s, 38, 96) for s in snares]
    for b in range(n):
        for j in range(per_beat):
            pos = b + j / per_beat
            key = keeper if keeper != 46 else (46 if j == 1 else 42)
            hits.append((pos, key, 80 if j == 0 else 64))
    out: list[Note] = []
    bar_start = grid.origin - grid.bar * math.ceil(grid.origin / grid.bar)
    index = 0
    while bar_start < length:
        fill = fill_every > 0 and index % fill_every == fill_every - 1
        bar_hits = [h for h in hits if not (fill and h[0] >= n - 1)]
        if fill:
            bar_hits += [(n - 1 + i / 4, k, 90) for i, k in enumerate((50, 48, 47, 45))]
        if crash_every and index % crash_every == 0:
            bar_hits.append((0.0, crash_key, 100))
        if accent and index % 4 == 2:
            bar_hits.append((float(n - 1), accent, 90))
        for pos, key, vel in bar_hits:
            t = bar_start + pos * grid.beat
            if 0 <= t < length:
                v = int(np.clip(vel + rng.integers(-6, 7), 1, 127))
                out.append(Note(t, t + 0.25 * grid.beat, key, v))
        bar_start += grid.bar
        index += 1
    return tuple(sorted(out, key=lambda x: (x.start, x.pitch)))


def ring_kit_notes(notes: Sequence[Note]) -> tuple[Note, ...]:
    """Let each kit hit ring until the next hit of the same key, at most ``KIT_RING_S``."""
    by_key: dict[int, list[Note]] = {}
    for n in sorted(notes, key=lambda x: x.start):
        by_key.setdefault(n.pitch, []).append(n)
    out: list[Note] = []
    for hits in by_key.values():
        for i, n in enumerate(hits):
            nxt = hits[i + 1].start if i + 1 < len(hits) else math.inf
            out.append(Note(n.start, min(nxt, n.start + KIT_RING_S), n.pitch, n.velocity))
    return tuple(sorted(out, key=lambda x: (x.start, x.pitch)))


def _to_seconds(notes: Iterable[Note], seconds_per_ql: float) -> tuple[Note, ...]:
    return tuple(
        Note(n.start * seconds_per_ql, n.end * seconds_per_ql, n.pitch, n.velocity) for n in notes
    )


def _velocity(v: int, rng: np.random.Generator) -> int:
    base = v if v > 0 else 88
    return int(np.clip(base + rng.integers(-8, 9), 30, 127))


def choose_tempo(data: ScoreData, rng: np.random.Generator) -> float:
    """Quarter notes per minute that make the score's median note last 0.35-0.65 s."""
    median_ql = float(np.median([n.end - n.start for p in data.parts for n in p]))
    target = float(rng.uniform(0.35, 0.65))
    return float(np.clip(60.0 * median_ql / target, 40.0, 240.0))


def _part_stems(
    data: ScoreData, spq: float, rng: np.random.Generator, available: set[int]
) -> list[Stem]:
    """1-4 of the score's parts, each on a program of a distinct class (or a distractor)."""
    classes = [
        c for c in CLASS_PROGRAMS if c != "bass" and any(p in available for p in CLASS_PROGRAMS[c])
    ]
    distractors = [p for p in DISTRACTOR_PROGRAMS if p in available]
    n_keep = int(rng.integers(1, min(4, len(data.parts)) + 1))
    keep = sorted(int(i) for i in rng.choice(len(data.parts), size=n_keep, replace=False))
    chosen = list(rng.choice(classes, size=min(n_keep, len(classes)), replace=False))
    stems: list[Stem] = []
    for j, idx in enumerate(keep):
        if j > 0 and distractors and rng.random() < P_DISTRACTOR:
            program = int(rng.choice(distractors))
        else:
            cls = str(chosen[j % len(chosen)])
            program = int(rng.choice([p for p in CLASS_PROGRAMS[cls] if p in available]))
        low, high = program_range(program)
        notes = [Note(n.start, n.end, n.pitch, _velocity(n.velocity, rng)) for n in data.parts[idx]]
        stems.append(
            Stem(
                name=f"part{idx + 1}",
                program=program,
                is_drum=False,
                label=gm_program_class(program),
                gain_db=float(rng.uniform(*STEM_GAIN_DB)),
                pan=int(rng.integers(24, 104)),
                notes=_to_seconds(place_in_range(notes, low, high), spq),
            )
        )
    return stems


def arrange(
    data: ScoreData,
    bpm: float,
    rng: np.random.Generator,
    programs: Sequence[int],
    kits: Sequence[int],
) -> tuple[Stem, ...]:
    """The stems of one track at `bpm` quarter notes per minute, notes in seconds."""
    spq = 60.0 / bpm
    available = set(programs)
    stems = _part_stems(data, spq, rng, available)
    bass_programs = [p for p in CLASS_PROGRAMS["bass"] if p in available]
    if bass_programs and rng.random() < P_BASS:
        program = int(rng.choice(bass_programs))
        line = bass_line(data, int(rng.integers(3)), rng)
        gain = float(rng.uniform(*STEM_GAIN_DB))
        stems.append(Stem("bass", program, False, "bass", gain, 64, _to_seconds(line, spq)))
    if kits and rng.random() < P_DRUMS:
        kit = int(rng.choice(list(kits)))
        hits = ring_kit_notes(_to_seconds(drum_pattern(data.grid, data.length, rng), spq))
        gain = float(rng.uniform(*STEM_GAIN_DB))
        for label in ("drums", "cymbals"):
            own = tuple(n for n in hits if kit_key_class(n.pitch) == label)
            stems.append(Stem(label, kit, True, label, gain, 64, own))
    return tuple(stems)
